// deltaproduct: linear RNNs whose state transitions are products of generalized Householder matrices.
// The umbrella header of the CPU parts; the CUDA backend has its own (<deltaproduct/cuda/cuda.hpp>).
#pragma once

#include "deltaproduct/core/arguments.hpp"
#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/config.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/error.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/core/scalar.hpp"
#include "deltaproduct/core/step.hpp"
#include "deltaproduct/core/view.hpp"
#include "deltaproduct/cpu/backward.hpp"
#include "deltaproduct/cpu/forward.hpp"
#include "deltaproduct/version.hpp"

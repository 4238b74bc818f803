// Simulated number formats: floating point of any width up to double (with IEEE or saturating overflow and
// nearest-even, toward-zero or stochastic rounding), fixed point, the papers' cast model, and their Eigen
// integration (Eigen::Matrix<fp16, ...> works).
#pragma once

#include "deltaproduct/precision/cast_model.hpp"
#include "deltaproduct/precision/fixed_point.hpp"
#include "deltaproduct/precision/float_format.hpp"
#include "deltaproduct/precision/formats.hpp"
#include "deltaproduct/precision/rounding.hpp"

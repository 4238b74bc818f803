// Constructions, checks and impossibility enumerations of the state-tracking theorems.
#pragma once

#include "deltaproduct/theory/checker.hpp"
#include "deltaproduct/theory/construction.hpp"
#include "deltaproduct/theory/constructions.hpp"
#include "deltaproduct/theory/impossibility.hpp"
#include "deltaproduct/theory/krohn_rhodes.hpp"
#include "deltaproduct/theory/multilayer.hpp"
#include "deltaproduct/theory/rational.hpp"
#include "deltaproduct/theory/spectral.hpp"

// Everything under deltaproduct/groups: finite groups with reference-data indexing, word-problem data and its files,
// and the parity / modular-arithmetic tasks of the negative-eigenvalue paper.
#pragma once

#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/groups/modular_arithmetic.hpp"
#include "deltaproduct/groups/permutation.hpp"
#include "deltaproduct/groups/random.hpp"
#include "deltaproduct/groups/word_problem.hpp"
#include "deltaproduct/groups/word_problem_io.hpp"

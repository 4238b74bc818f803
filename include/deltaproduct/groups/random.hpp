// The random numbers behind the generated data sets: a fixed engine and an unbiased bounded sampler, both defined
// exactly by the standard or by this file, so a seed gives the same data on every platform and compiler.
// (std::uniform_int_distribution is not used: its algorithm, hence its output, is implementation-defined.)
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "deltaproduct/core/error.hpp"

namespace deltaproduct {

/// The engine of every generator here: std::mt19937_64, whose output sequence for a given seed is fixed by the C++
/// standard (seeded with its single-integer constructor).
using RandomEngine = std::mt19937_64;

/// A uniform integer in [0, bound), bound >= 1, exactly unbiased: draw a 64-bit x, reject the 2^64 mod bound
/// smallest values, return x mod bound. The accepted range is a whole number of copies of [0, bound), and fewer
/// than half of the draws are rejected for any bound, so the expected number of draws is below 2.
inline std::uint64_t uniform_below(RandomEngine& engine, std::uint64_t bound) {
  if (bound == 0) detail::argument_error("bound", "bound >= 1", "0");
  const std::uint64_t rejected = (std::uint64_t{0} - bound) % bound;  // 2^64 mod bound, in 64-bit arithmetic
  while (true) {
    const std::uint64_t x = engine();
    if (x >= rejected) return x % bound;
  }
}

/// A uniform integer in [low, high], low <= high.
inline std::int64_t uniform_between(RandomEngine& engine, std::int64_t low, std::int64_t high) {
  if (low > high)
    detail::argument_error("low, high", "low <= high", std::to_string(low) + " > " + std::to_string(high));
  const std::uint64_t span = static_cast<std::uint64_t>(high) - static_cast<std::uint64_t>(low);
  if (span == UINT64_MAX) return static_cast<std::int64_t>(engine());  // the whole 64-bit range
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(low) + uniform_below(engine, span + 1));
}

}  // namespace deltaproduct

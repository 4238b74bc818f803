// Named number formats and the enumeration of a format's values (for exhaustive searches over parameters).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "deltaproduct/precision/fixed_point.hpp"
#include "deltaproduct/precision/float_format.hpp"
#include "deltaproduct/precision/rounding.hpp"

namespace deltaproduct {

using fp64 = FloatFormat<11, 52>;  ///< IEEE binary64: native double arithmetic, bit for bit
using fp32 = FloatFormat<8, 23>;   ///< IEEE binary32 (float)
using tf32 = FloatFormat<8, 10>;   ///< NVIDIA TensorFloat-32: fp32's range, fp16's precision
using bf16 = FloatFormat<8, 7>;    ///< bfloat16: fp32's range, 8 bits of precision
using fp16 = FloatFormat<5, 10>;   ///< IEEE binary16 (_Float16)
/// OCP 8-bit E4M3 ("E4M3FN"): no infinities, max 448, NaN only at S.1111.111, overflow saturates to +-448.
using fp8_e4m3 = FloatFormat<4, 3, Overflow::saturate>;
/// OCP 8-bit E5M2: IEEE-like (infinities, NaN), max 57344.
using fp8_e5m2 = FloatFormat<5, 2>;
/// 6-bit IEEE-like format for exhaustive searches: 55 finite values, max 14, min normal 1/4, denorm_min 1/16.
using tiny_e3m2 = FloatFormat<3, 2>;
/// 4-bit IEEE-like format: finite values 0, +-0.5, +-1, +-1.5, +-2, +-3 (bias 1), then +-inf and NaN.
using tiny_e2m1 = FloatFormat<2, 1>;

using q1_14 = FixedPoint<1, 14>;   ///< 16-bit fixed point, range [-2, 2), resolution 2^-14
using q3_12 = FixedPoint<3, 12>;   ///< 16-bit fixed point, range [-8, 8), resolution 2^-12
using q7_8 = FixedPoint<7, 8>;     ///< 16-bit fixed point, range [-128, 128), resolution 2^-8
using q15_16 = FixedPoint<15, 16>;  ///< 32-bit fixed point, range [-32768, 32768), resolution 2^-16

/// The same format with another rounding mode, e.g. with_rounding<bf16, Rounding::stochastic>.
template <class Format, Rounding R>
using with_rounding = typename Format::template with_rounding<R>;

/// Every finite value of a format in increasing order (one zero). Use Format::for_each_finite_value for formats
/// too large to hold in memory.
template <class Format>
std::vector<Format> finite_values() {
  static_assert(Format::finite_value_count <= (std::uint64_t{1} << 26),
                "finite_values: this format has more than 2^26 finite values; iterate with "
                "Format::for_each_finite_value(fn) instead of building a vector");
  std::vector<Format> values;
  values.reserve(static_cast<std::size_t>(Format::finite_value_count));
  Format::for_each_finite_value([&values](const Format& v) { values.push_back(v); });
  return values;
}

}  // namespace deltaproduct

// What every simulated number format shares: the rounding modes, the overflow behaviours, the random stream behind
// stochastic rounding, and the exact rounding decision (which neighbour an exact value goes to).
//
// Floating-point environment: the simulator computes with double arithmetic and assumes the default environment
// (round to nearest even, no trapping). Do not call it while std::fesetround has changed the rounding mode.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace deltaproduct {

/// How a simulated format rounds an exact result that it cannot represent.
enum class Rounding {
  nearest_even,  ///< IEEE 754 roundTiesToEven: the nearer neighbour, ties to the one with an even last bit
  toward_zero,   ///< IEEE 754 roundTowardZero: the neighbour of smaller magnitude (truncation)
  stochastic,    ///< the neighbour above with probability (x - below) / (above - below): E[round(x)] = x exactly
};

/// What a simulated floating-point format does with values beyond its largest finite value.
enum class Overflow {
  /// IEEE 754: the top exponent code holds +-inf and NaN; overflow gives +-inf when rounding to nearest or
  /// stochastically (rounding up past the largest finite value), the largest finite value when rounding toward zero.
  ieee,
  /// No infinities (the OCP FP8 "fn" layout, as E4M3FN): the top exponent code holds finite values too, except the
  /// all-ones code S.11..1.11..1, which is NaN. Overflow, +-inf inputs and x/0 give +-(largest finite value).
  saturate,
};

/// The state of a thread's stochastic-rounding stream: draw number i (i = 1, 2, ...) is
/// splitmix64_mix(seed + i * 0x9E3779B97F4A7C15), i.e. SplitMix64 started at `seed` (Steele, Lea and Flood, 2014).
/// The stream is counter-based: (seed, counter) determines every later draw.
struct StochasticRoundingStream {
  std::uint64_t seed = 0;
  std::uint64_t counter = 0;  ///< draws made since the seed was set
  friend bool operator==(const StochasticRoundingStream&, const StochasticRoundingStream&) = default;
};

namespace detail {

/// One stream per thread, seed 0 at start (so every thread starts with the same stream: seed threads differently
/// with set_stochastic_rounding_seed when they must not be correlated).
inline constinit thread_local StochasticRoundingStream stochastic_rounding_state{};

/// SplitMix64's output function (Stafford's "Mix13" variant of the MurmurHash3 finalizer).
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// 64 uniformly random bits from this thread's stream.
inline std::uint64_t next_random_bits() noexcept {
  StochasticRoundingStream& stream = stochastic_rounding_state;
  ++stream.counter;
  return splitmix64_mix(stream.seed + stream.counter * 0x9E3779B97F4A7C15ull);
}

/// True with probability exactly 2^-n (n >= 0): n random bits are all zero.
inline bool bernoulli_power_of_two(int n) noexcept {
  for (; n >= 64; n -= 64) {
    if (next_random_bits() != 0) return false;
  }
  return n == 0 || (next_random_bits() >> (64 - n)) == 0;
}

inline constexpr std::uint64_t double_sign_bit = 0x8000000000000000ull;
inline constexpr std::uint64_t double_fraction_mask = 0x000FFFFFFFFFFFFFull;
inline constexpr std::uint64_t double_implicit_bit = 0x0010000000000000ull;
inline constexpr std::uint64_t double_quiet_bit = 0x0008000000000000ull;

/// 2^e as a double, for -1074 <= e <= 1023 (exact; usable in constant expressions).
constexpr double power_of_two(int e) {
  return e >= -1022 ? std::bit_cast<double>(static_cast<std::uint64_t>(e + 1023) << 52)
                    : std::bit_cast<double>(std::uint64_t{1} << (e + 1074));
}

/// x = m * 2^e with m in [1/2, 1), for finite x > 0 (std::frexp, without the call for normal doubles).
inline double split_exponent(double x, int& e) noexcept {
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
  const int field = static_cast<int>(bits >> 52);
  if (field == 0) return std::frexp(x, &e);
  e = field - 1022;
  return std::bit_cast<double>((bits & double_fraction_mask) | (std::uint64_t{1022} << 52));
}

/// The rounding error of s = RN(a + b): a + b = s + error exactly (Knuth's TwoSum; exact unless s overflows).
inline double two_sum_error(double a, double b, double s) noexcept {
  const double b_virtual = s - a;
  const double a_virtual = s - b_virtual;
  return (a - a_virtual) + (b - b_virtual);
}

/// x moved one step (in the last bit) away from zero when `away`, toward zero otherwise (x finite, nonzero).
inline double step_magnitude(double x, bool away) noexcept {
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(x);
  return std::bit_cast<double>(away ? bits + 1 : bits - 1);
}

/// RO(a + b), a + b rounded to odd: the rounded sum, moved to its odd neighbour toward the exact sum when inexact.
/// Rounding to odd keeps every comparison with numbers of fewer significant bits (as 2^k, half a unit).
inline double odd_sum(double a, double b) noexcept {
  const double s = a + b;
  const double error = two_sum_error(a, b, s);
  if (error == 0.0 || (std::bit_cast<std::uint64_t>(s) & 1) != 0) return s;
  return step_magnitude(s, (error > 0.0) == (s > 0.0));
}

/// RO(r / b): the exact remainder r - q b (fma) gives the side of the exact quotient.
inline double odd_quotient(double r, double b) noexcept {
  const double q = r / b;
  const double remainder = std::fma(-q, b, r);
  if (remainder == 0.0 || (std::bit_cast<std::uint64_t>(q) & 1) != 0) return q;
  return step_magnitude(q, ((remainder > 0.0) == (b > 0.0)) == (q > 0.0));
}

/// A part of one unit that a rounding cannot see in the bits it looks at: t = m * 2^-k, or 1 - m * 2^-k when
/// `complement`, with m in [1/2, 1) and k >= 0; m = 0 means t = 0. Keeping the exponent apart means tiny parts
/// never underflow, so ties, directions and stochastic probabilities stay exact.
struct UnitFraction {
  double m = 0.0;
  int k = 0;
  bool complement = false;

  bool is_zero() const noexcept { return m == 0.0; }

  /// |part| / 2^unit_exponent for 0 < |part| < 2^unit_exponent.
  static UnitFraction of(double part, int unit_exponent, bool complement) noexcept {
    int e = 0;
    const double m = split_exponent(std::fabs(part), e);
    return UnitFraction{m, unit_exponent - e, complement};
  }

  /// The sign of t - 1/2.
  int compare_with_half() const noexcept {
    if (m == 0.0) return -1;
    const int plain = k != 0 ? -1 : (m > 0.5 ? 1 : (m == 0.5 ? 0 : -1));
    return complement ? -plain : plain;
  }
};

/// True with probability m * 2^-k exactly, m in [1/2, 1) (53 significant bits), k >= 0.
inline bool bernoulli_scaled(double m, int k) noexcept {
  const std::uint64_t significand = (std::bit_cast<std::uint64_t>(m) & double_fraction_mask) | double_implicit_bit;
  const int width = 53 + k;  // probability = significand / 2^width
  if (width <= 64) return (next_random_bits() >> (64 - width)) < significand;
  // significand / 2^width = (significand / 2^53) * 2^-k: two independent events.
  return bernoulli_power_of_two(k) && (next_random_bits() >> 11) < significand;
}

/// True with probability t exactly.
inline bool bernoulli(const UnitFraction& t) noexcept {
  if (t.is_zero()) return false;
  const bool event = bernoulli_scaled(t.m, t.k);
  return t.complement ? !event : event;
}

/// True with probability p, for a double p in [0, 1], exactly.
inline bool bernoulli(double p) noexcept {
  if (!(p > 0.0)) return false;
  if (p >= 1.0) return true;
  int e = 0;
  const double m = split_exponent(p, e);
  return bernoulli_scaled(m, -e);
}

/// Uniform integer in [0, bound), bound >= 1, exactly (rejection of the incomplete last block).
inline std::uint64_t uniform_below(std::uint64_t bound) noexcept {
  const std::uint64_t rejected = (0 - bound) % bound;  // 2^64 mod bound
  for (;;) {
    const std::uint64_t r = next_random_bits();
    if (r >= rejected) return r % bound;
  }
}

/// Whether a magnitude q * 2^s + rem + t (in units of its last bit; rem < 2^s, t in [0, 1)) rounds up to
/// (q + 1) * 2^s. For s >= 64, q = 0 and rem < 2^53. Nearest-even compares rem + t with 2^(s-1); stochastic
/// rounds up with probability (rem + t) / 2^s, drawing s random bits and, on equality with rem, the event t.
template <Rounding R>
bool rounds_up(std::uint64_t rem, int s, bool q_odd, const UnitFraction& t) noexcept {
  if constexpr (R == Rounding::toward_zero) {
    return false;
  } else if constexpr (R == Rounding::nearest_even) {
    if (s == 0) {
      const int c = t.compare_with_half();
      return c > 0 || (c == 0 && q_odd);
    }
    if (s >= 64) return false;
    const std::uint64_t half = std::uint64_t{1} << (s - 1);
    if (rem != half) return rem > half;
    return !t.is_zero() || q_odd;
  } else {
    if (rem == 0 && t.is_zero()) return false;  // exact: no draw
    if (s == 0) return bernoulli(t);
    if (s <= 64) {
      const std::uint64_t r = s == 64 ? next_random_bits() : next_random_bits() >> (64 - s);
      return r < rem || (r == rem && bernoulli(t));
    }
    // (rem + t) / 2^s = ((rem + t) / 2^53) * 2^-(s - 53), rem < 2^53.
    if (!bernoulli_power_of_two(s - 53)) return false;
    const std::uint64_t r = next_random_bits() >> 11;
    return r < rem || (r == rem && bernoulli(t));
  }
}

/// Marks the simulated scalar types (FloatFormat, FixedPoint), which convert into each other through double.
template <class T>
struct is_simulated_scalar : std::false_type {};
template <class T>
inline constexpr bool is_simulated_scalar_v = is_simulated_scalar<T>::value;

}  // namespace detail

/// Restarts this thread's stochastic-rounding stream: seed `seed`, counter 0. Reproducible: the same seed and the
/// same sequence of operations give the same results.
inline void set_stochastic_rounding_seed(std::uint64_t seed) noexcept {
  detail::stochastic_rounding_state = StochasticRoundingStream{seed, 0};
}

/// This thread's stream (to save and later restore it).
inline StochasticRoundingStream stochastic_rounding_stream() noexcept { return detail::stochastic_rounding_state; }

/// Restores a stream saved with stochastic_rounding_stream().
inline void set_stochastic_rounding_stream(StochasticRoundingStream stream) noexcept {
  detail::stochastic_rounding_state = stream;
}

/// Seeds this thread's stream for a scope and restores the previous stream when the scope ends.
class ScopedStochasticRoundingSeed {
public:
  explicit ScopedStochasticRoundingSeed(std::uint64_t seed) noexcept : saved_(stochastic_rounding_stream()) {
    set_stochastic_rounding_seed(seed);
  }
  ~ScopedStochasticRoundingSeed() { set_stochastic_rounding_stream(saved_); }
  ScopedStochasticRoundingSeed(const ScopedStochasticRoundingSeed&) = delete;
  ScopedStochasticRoundingSeed& operator=(const ScopedStochasticRoundingSeed&) = delete;

private:
  StochasticRoundingStream saved_;
};

}  // namespace deltaproduct

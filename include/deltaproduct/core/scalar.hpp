// What a state scalar must provide. float and double qualify; so does any type that behaves like them, such as the
// simulated number formats in <deltaproduct/precision/...>: the recurrence templates use only these operations.
#pragma once

#include <cmath>
#include <concepts>
#include <type_traits>

namespace deltaproduct {
namespace detail::scalar_math {
using std::exp;
using std::sqrt;
// Unqualified calls find std:: overloads for built-in types and the type's own overloads by ADL.
template <class S>
S call_exp(const S& x) { return static_cast<S>(exp(x)); }
template <class S>
S call_sqrt(const S& x) { return static_cast<S>(sqrt(x)); }
}  // namespace detail::scalar_math

/// A number type the recurrence can run in: arithmetic, ordering, conversion from and to double, exp and sqrt.
template <class S>
concept StateScalar = std::copyable<S> && requires(const S a, const S b, double d) {
  { a + b } -> std::convertible_to<S>;
  { a - b } -> std::convertible_to<S>;
  { a * b } -> std::convertible_to<S>;
  { a / b } -> std::convertible_to<S>;
  { -a } -> std::convertible_to<S>;
  { a < b } -> std::convertible_to<bool>;
  static_cast<S>(d);
  static_cast<double>(a);
  detail::scalar_math::call_exp(a);
  detail::scalar_math::call_sqrt(a);
};

/// exp and sqrt in the scalar's own arithmetic (one rounding each for simulated formats).
template <StateScalar S>
S scalar_exp(const S& x) { return detail::scalar_math::call_exp(x); }
template <StateScalar S>
S scalar_sqrt(const S& x) { return detail::scalar_math::call_sqrt(x); }

/// Converts between element types of the caller's views and the state scalar: directly when the types allow it,
/// through double otherwise (exact for every format narrower than double).
template <class To, class From>
To convert_scalar(const From& x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else if constexpr (std::is_arithmetic_v<To> && std::is_arithmetic_v<From>) {
    return static_cast<To>(x);
  } else if constexpr (std::is_constructible_v<To, From>) {
    return To(x);
  } else {
    return static_cast<To>(static_cast<double>(x));
  }
}

}  // namespace deltaproduct

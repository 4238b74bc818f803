// Non-owning strided views over memory the caller owns, in the spirit of std::mdspan: an extent and a stride (in
// elements) per dimension, no copies. Strides may be zero (broadcast) or any positive value, so slices of larger
// tensors and PyTorch / flash-linear-attention layouts are passed as they are.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace deltaproduct {

using index_t = std::int64_t;

template <class T, std::size_t Rank>
class View {
  static_assert(Rank >= 1, "deltaproduct::View needs at least one dimension");

public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using extents_type = std::array<index_t, Rank>;
  static constexpr std::size_t rank = Rank;

  /// An absent view: no data, every extent zero. Optional arguments are left this way.
  constexpr View() noexcept = default;

  /// A dense row-major view (the last dimension is contiguous), as a contiguous PyTorch tensor.
  constexpr View(T* data, const extents_type& extents) noexcept
      : data_(data), extents_(extents), strides_(row_major_strides(extents)) {}

  /// A view with explicit strides, in elements.
  constexpr View(T* data, const extents_type& extents, const extents_type& strides) noexcept
      : data_(data), extents_(extents), strides_(strides) {}

  /// A view of mutable elements converts to a view of const elements.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_const_v<U>)
  constexpr View(const View<U, Rank>& other) noexcept  // NOLINT(google-explicit-constructor)
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  constexpr T* data() const noexcept { return data_; }
  constexpr const extents_type& extents() const noexcept { return extents_; }
  constexpr const extents_type& strides() const noexcept { return strides_; }
  constexpr index_t extent(std::size_t dim) const noexcept { return extents_[dim]; }
  constexpr index_t stride(std::size_t dim) const noexcept { return strides_[dim]; }

  constexpr index_t size() const noexcept {
    index_t n = 1;
    for (index_t e : extents_) n *= e;
    return n;
  }

  /// True for a default-constructed view: the caller did not pass this optional argument.
  constexpr bool absent() const noexcept {
    if (data_ != nullptr) return false;
    for (index_t e : extents_)
      if (e != 0) return false;
    return true;
  }

  template <class... Indices>
    requires(sizeof...(Indices) == Rank && (std::is_integral_v<Indices> && ...))
  constexpr T& operator()(Indices... indices) const noexcept {
    return data_[offset(static_cast<index_t>(indices)...)];
  }

  template <class... Indices>
    requires(sizeof...(Indices) == Rank)
  constexpr index_t offset(Indices... indices) const noexcept {
    const std::array<index_t, Rank> idx{static_cast<index_t>(indices)...};
    index_t off = 0;
    for (std::size_t d = 0; d < Rank; ++d) off += idx[d] * strides_[d];
    return off;
  }

  static constexpr extents_type row_major_strides(const extents_type& extents) noexcept {
    extents_type strides{};
    index_t s = 1;
    for (std::size_t d = Rank; d-- > 0;) {
      strides[d] = s;
      s *= extents[d];
    }
    return strides;
  }

private:
  T* data_ = nullptr;
  extents_type extents_{};
  extents_type strides_{};
};

/// Dense row-major view: `make_view(ptr, {B, T, H, K})`.
template <class T, std::size_t Rank>
constexpr View<T, Rank> make_view(T* data, const index_t (&extents)[Rank]) noexcept {
  std::array<index_t, Rank> e{};
  for (std::size_t d = 0; d < Rank; ++d) e[d] = extents[d];
  return View<T, Rank>(data, e);
}

/// Strided view: `make_view(ptr, {B, T, H, K}, {sB, sT, sH, 1})`, strides in elements.
template <class T, std::size_t Rank>
constexpr View<T, Rank> make_view(T* data, const index_t (&extents)[Rank], const index_t (&strides)[Rank]) noexcept {
  std::array<index_t, Rank> e{}, s{};
  for (std::size_t d = 0; d < Rank; ++d) {
    e[d] = extents[d];
    s[d] = strides[d];
  }
  return View<T, Rank>(data, e, s);
}

}  // namespace deltaproduct

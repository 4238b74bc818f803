// Eigen works with the simulated formats through NumTraits and argument-dependent lookup only: matrices of fp16,
// bf16, fp8 and fixed point add, multiply, take norms and do the recurrence's row updates, and every scalar
// operation inside is the format's (rounded) operation.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include <Eigen/Core>

#include <deltaproduct/precision/precision.hpp>

using namespace deltaproduct;

namespace {

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using RowMajorMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

template <class T>
Matrix<T> random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937_64& rng, double scale) {
  std::uniform_real_distribution<double> dist(-scale, scale);
  Matrix<T> m(rows, cols);
  for (Eigen::Index i = 0; i < rows; ++i) {
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = T(dist(rng));
  }
  return m;
}

}  // namespace

TEST_CASE_TEMPLATE("NumTraits describe the format", T, fp16, bf16, fp8_e4m3, fp32, q1_14) {
  using Traits = Eigen::NumTraits<T>;
  static_assert(!Traits::IsComplex && !Traits::IsInteger && Traits::IsSigned && !Traits::RequireInitialization);
  static_assert(std::is_same_v<typename Traits::Real, T> && std::is_same_v<typename Traits::Literal, T>);
  CHECK(Traits::epsilon() == T::epsilon());
  CHECK(Traits::highest() == T::max());
  CHECK(Traits::lowest() == T::lowest());
  CHECK(Traits::dummy_precision() > T(0.0));
  CHECK(Traits::digits10() >= 0);
}

TEST_CASE("matrix sums and products of small integers are exact and equal double's") {
  // Small integers and their sums of products stay below 2^11: exact in fp16, so the result must equal double's.
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> small(-4, 4);
  Matrix<double> a(7, 9), b(9, 5);
  for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = small(rng);
  for (Eigen::Index i = 0; i < b.size(); ++i) b.data()[i] = small(rng);
  const Matrix<fp16> ah = a.cast<fp16>();
  const Matrix<fp16> bh = b.cast<fp16>();
  const Matrix<fp16> product = ah * bh;
  const Matrix<double> exact = a * b;
  CHECK(product.cast<double>() == exact);
  CHECK((ah + ah).cast<double>() == a + a);
  CHECK((ah.transpose() * ah).cast<double>() == a.transpose() * a);
  CHECK((fp16(2.0) * ah).cast<double>() == 2.0 * a);
}

TEST_CASE("matrix products round every operation in the format") {
  // A large product (Eigen's blocked GEBP kernel) in bf16: every entry lies within the standard bound for
  // recursive summation, |c - exact| <= gamma_n sum |a||b| with gamma_n = n u / (1 - n u), u = 2^-8 (each of
  // the n products and n - 1 additions rounds once; Higham, Accuracy and Stability, Thm 3.5); and it differs
  // from the double result, which shows the rounding happens.
  std::mt19937_64 rng(2);
  const Eigen::Index n = 40;
  const Matrix<bf16> a = random_matrix<bf16>(50, n, rng, 1.0);
  const Matrix<bf16> b = random_matrix<bf16>(n, 30, rng, 1.0);
  const Matrix<bf16> c = a * b;
  const Matrix<double> ad = a.cast<double>();
  const Matrix<double> bd = b.cast<double>();
  const Matrix<double> exact = ad * bd;  // exact enough: 2 * 8-bit products summed in double
  const Matrix<double> bound_terms = ad.cwiseAbs() * bd.cwiseAbs();
  const double u = 0x1p-8;
  const double gamma = static_cast<double>(n) * u / (1 - static_cast<double>(n) * u);
  int differ = 0;
  for (Eigen::Index i = 0; i < c.rows(); ++i) {
    for (Eigen::Index j = 0; j < c.cols(); ++j) {
      const double value = static_cast<double>(c(i, j));
      REQUIRE(std::fabs(value - exact(i, j)) <= gamma * bound_terms(i, j));
      REQUIRE(static_cast<double>(bf16(value)) == value);  // a bf16 value
      differ += value != exact(i, j) ? 1 : 0;
    }
  }
  CHECK(differ > c.size() / 2);
}

TEST_CASE("the recurrence's updates: row += scalar * row and S^T k, element by element in the format") {
  std::mt19937_64 rng(3);
  const Matrix<fp16> s_initial = random_matrix<fp16>(6, 8, rng, 2.0);
  RowMajorMatrix<fp16> s = s_initial;
  const Vector<fp16> k = random_matrix<fp16>(6, 1, rng, 1.0);
  const Vector<fp16> w = random_matrix<fp16>(8, 1, rng, 1.0);
  // S.row(i) += k_i * w^T: each entry is fl(s + fl(k_i w_j)), two roundings, as written element by element.
  for (Eigen::Index i = 0; i < s.rows(); ++i) s.row(i) += k(i) * w.transpose();
  for (Eigen::Index i = 0; i < s.rows(); ++i) {
    for (Eigen::Index j = 0; j < s.cols(); ++j) REQUIRE(s(i, j) == s_initial(i, j) + k(i) * w(j));
  }
  // u = S^T k accumulated row by row: u += k_i * S.row(i).
  Vector<fp16> u = Vector<fp16>::Zero(8);
  for (Eigen::Index i = 0; i < s.rows(); ++i) u += k(i) * s.row(i).transpose();
  for (Eigen::Index j = 0; j < s.cols(); ++j) {
    fp16 expected(0.0);
    for (Eigen::Index i = 0; i < s.rows(); ++i) expected = expected + k(i) * s(i, j);
    REQUIRE(u(j) == expected);
  }
  // The rank-1 form of a Householder step: S - beta k (k^T S).
  const fp16 beta(1.5);
  const RowMajorMatrix<fp16> updated = s - beta * k * (k.transpose() * s);
  CHECK(updated.allFinite());
}

TEST_CASE("norms, reductions and approximate comparisons") {
  Vector<fp16> v(2);
  v << fp16(3.0), fp16(4.0);
  CHECK(v.norm() == fp16(5.0));
  CHECK(v.squaredNorm() == fp16(25.0));
  CHECK(v.sum() == fp16(7.0));
  CHECK(v.maxCoeff() == fp16(4.0));
  CHECK(v.cwiseAbs().minCoeff() == fp16(3.0));
  CHECK(v.normalized().isApprox(Vector<fp16>::Constant(2, fp16(0.0)) + v / fp16(5.0)));
  // norm() in fp16 of a vector whose squared norm is not representable: sqrt(fp16(sum of squares)).
  Vector<fp16> w(3);
  w << fp16(0.1), fp16(0.2), fp16(0.3);
  const fp16 squared = fp16(0.1) * fp16(0.1) + fp16(0.2) * fp16(0.2) + fp16(0.3) * fp16(0.3);
  CHECK(w.norm() == sqrt(squared));
  CHECK(w.isApprox(w * fp16(1.0)));
  CHECK_FALSE(w.isApprox(w * fp16(1.5)));
  CHECK(w.allFinite());
  w(1) = fp16::infinity();
  CHECK_FALSE(w.allFinite());
  w(1) = fp16::quiet_NaN();
  CHECK(w.hasNaN());
  Vector<fp8_e4m3> big(2);
  big << fp8_e4m3(400.0), fp8_e4m3(400.0);
  CHECK(big.sum() == fp8_e4m3(448.0));  // saturates
  CHECK((Matrix<q1_14>::Identity(3, 3) * Matrix<q1_14>::Constant(3, 3, q1_14(0.5))).sum() == q1_14(1.9999389648437500));
}

TEST_CASE("fixed-point and fp8 matrices multiply through Eigen's kernels") {
  std::mt19937_64 rng(4);
  const Matrix<q3_12> a = random_matrix<q3_12>(20, 20, rng, 0.5);  // sums of 20 products stay below 8
  const Matrix<q3_12> b = random_matrix<q3_12>(20, 20, rng, 0.5);
  const Matrix<q3_12> c = a * b;
  const Matrix<double> exact = a.cast<double>() * b.cast<double>();
  // Each of 20 products rounds by at most half a unit (2^-13), the sums are exact (no overflow here).
  CHECK((c.cast<double>() - exact).cwiseAbs().maxCoeff() <= 20 * 0x1p-13);
  const Matrix<fp8_e5m2> d = random_matrix<fp8_e5m2>(16, 16, rng, 1.0);
  const Matrix<fp8_e5m2> e = d * d;
  CHECK(e.allFinite());
}

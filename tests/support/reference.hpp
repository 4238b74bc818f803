// Independent references for the tests: plain loops in double over contiguous arrays in the documented layouts,
// written from the formulas (explicit transition matrices), sharing no code with the library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace reference {

struct Problem {
  int B = 1, T = 1, H = 1, K = 1, V = 1, n_h = 1;
  bool gated = false;
  // Layouts: q [B,T,H,K], k [B,T*n_h,H,K], v [B,T*n_h,H,V], beta [B,T*n_h,H], g [B,T,H], initial_state [N,H,K,V].
  std::vector<double> q, k, v, beta, g, initial_state;
  std::vector<std::int64_t> cu_seqlens;  // empty: N = B
  int key_norm = 0, query_norm = 0;      // 0 none, 1 l2, 2 l2 with eps
  double eps = 1e-6;
  double scale = 1.0;

  int sequences() const { return cu_seqlens.empty() ? B : static_cast<int>(cu_seqlens.size()) - 1; }
};

struct Result {
  std::vector<double> o;            // [B,T,H,V]
  std::vector<double> final_state;  // [N,H,K,V]
};

inline std::vector<double> normalized(std::vector<double> x, int mode, double eps) {
  if (mode == 0) return x;
  double ss = 0;
  for (double e : x) ss += e * e;
  if (mode == 2) ss += eps;
  if (ss <= 0) return x;
  const double n = std::sqrt(ss);
  for (double& e : x) e /= n;
  return x;
}

struct SequenceSpan {
  int row, begin, end;
};

inline SequenceSpan span_of(const Problem& p, int n) {
  if (p.cu_seqlens.empty()) return {n, 0, p.T};
  return {0, static_cast<int>(p.cu_seqlens[n]), static_cast<int>(p.cu_seqlens[n + 1])};
}

inline std::vector<double> initial_of(const Problem& p, int n, int h) {
  std::vector<double> S(static_cast<std::size_t>(p.K) * p.V, 0.0);
  if (!p.initial_state.empty())
    for (int i = 0; i < p.K * p.V; ++i) S[i] = p.initial_state[(static_cast<std::size_t>(n) * p.H + h) * p.K * p.V + i];
  return S;
}

inline void read_out(const Problem& p, const std::vector<double>& S, std::size_t token, Result& r) {
  std::vector<double> qq(p.q.begin() + static_cast<std::ptrdiff_t>(token * p.K),
                         p.q.begin() + static_cast<std::ptrdiff_t>((token + 1) * p.K));
  qq = normalized(qq, p.query_norm, p.eps);
  for (int c = 0; c < p.V; ++c) {
    double acc = 0;
    for (int a = 0; a < p.K; ++a) acc += S[a * p.V + c] * qq[a];
    r.o[token * p.V + c] = p.scale * acc;
  }
}

/// DeltaProduct: S <- exp(g) S; for each micro-step S <- (I - b k k^T) S + b k v^T; o = scale S^T q.
inline Result delta_product(const Problem& p) {
  const int N = p.sequences();
  Result r;
  r.o.assign(static_cast<std::size_t>(p.B) * p.T * p.H * p.V, 0.0);
  r.final_state.assign(static_cast<std::size_t>(N) * p.H * p.K * p.V, 0.0);
  const std::size_t R = static_cast<std::size_t>(p.T) * p.n_h;
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < p.H; ++h) {
      const SequenceSpan s = span_of(p, n);
      std::vector<double> S = initial_of(p, n, h);
      for (int t = s.begin; t < s.end; ++t) {
        const std::size_t token = (static_cast<std::size_t>(s.row) * p.T + t) * p.H + h;
        if (p.gated) {
          const double gate = std::exp(p.g[token]);
          for (double& x : S) x *= gate;
        }
        for (int j = 0; j < p.n_h; ++j) {
          const std::size_t rr =
              (static_cast<std::size_t>(s.row) * R + static_cast<std::size_t>(t) * p.n_h + j) * p.H + h;
          std::vector<double> kk(p.k.begin() + static_cast<std::ptrdiff_t>(rr * p.K),
                                 p.k.begin() + static_cast<std::ptrdiff_t>((rr + 1) * p.K));
          kk = normalized(kk, p.key_norm, p.eps);
          const double b = p.beta[rr];
          // A = I - b k k^T (K x K); S' = A S + b k v^T.
          std::vector<double> A(static_cast<std::size_t>(p.K) * p.K);
          for (int a = 0; a < p.K; ++a)
            for (int c = 0; c < p.K; ++c) A[a * p.K + c] = (a == c ? 1.0 : 0.0) - b * kk[a] * kk[c];
          std::vector<double> next(S.size(), 0.0);
          for (int a = 0; a < p.K; ++a)
            for (int c = 0; c < p.V; ++c) {
              double acc = b * kk[a] * p.v[rr * p.V + c];
              for (int m = 0; m < p.K; ++m) acc += A[a * p.K + m] * S[m * p.V + c];
              next[a * p.V + c] = acc;
            }
          S = next;
        }
        read_out(p, S, token, r);
      }
      std::copy(
          S.begin(), S.end(),
          r.final_state.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(n) * p.H + h) * p.K * p.V));
    }
  return r;
}

/// Diagonal LRNN: S_ij <- a_i S_ij + k_i v_j; o = scale S^T q. `a` is [B,T,H,K].
inline Result diagonal(const Problem& p, const std::vector<double>& a) {
  const int N = p.sequences();
  Result r;
  r.o.assign(static_cast<std::size_t>(p.B) * p.T * p.H * p.V, 0.0);
  r.final_state.assign(static_cast<std::size_t>(N) * p.H * p.K * p.V, 0.0);
  for (int n = 0; n < N; ++n)
    for (int h = 0; h < p.H; ++h) {
      const SequenceSpan s = span_of(p, n);
      std::vector<double> S = initial_of(p, n, h);
      for (int t = s.begin; t < s.end; ++t) {
        const std::size_t token = (static_cast<std::size_t>(s.row) * p.T + t) * p.H + h;
        std::vector<double> kk(p.k.begin() + static_cast<std::ptrdiff_t>(token * p.K),
                               p.k.begin() + static_cast<std::ptrdiff_t>((token + 1) * p.K));
        kk = normalized(kk, p.key_norm, p.eps);
        for (int i = 0; i < p.K; ++i)
          for (int c = 0; c < p.V; ++c)
            S[i * p.V + c] = a[token * p.K + i] * S[i * p.V + c] + kk[i] * p.v[token * p.V + c];
        read_out(p, S, token, r);
      }
      std::copy(
          S.begin(), S.end(),
          r.final_state.begin() + static_cast<std::ptrdiff_t>((static_cast<std::size_t>(n) * p.H + h) * p.K * p.V));
    }
  return r;
}

/// Random inputs: q, k, v ~ N(0,1); beta uniform in [0, beta_max]; g uniform in [-0.5, 0]; keys L2-normalised
/// (so every transition has spectral norm <= 1, UST Prop. 1.1, and errors cannot grow exponentially).
inline Problem random_problem(int B, int T, int H, int K, int V, int n_h, bool gated, double beta_max,
                              bool with_initial_state, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  Problem p;
  p.B = B;
  p.T = T;
  p.H = H;
  p.K = K;
  p.V = V;
  p.n_h = n_h;
  p.gated = gated;
  const std::size_t R = static_cast<std::size_t>(T) * n_h;
  auto fill = [&](std::vector<double>& x, std::size_t n) {
    x.resize(n);
    for (double& e : x) e = normal(rng);
  };
  fill(p.q, static_cast<std::size_t>(B) * T * H * K);
  fill(p.k, B * R * H * K);
  fill(p.v, B * R * H * V);
  p.beta.resize(B * R * H);
  for (double& b : p.beta) b = beta_max * unit(rng);
  if (gated) {
    p.g.resize(static_cast<std::size_t>(B) * T * H);
    for (double& x : p.g) x = -0.5 * unit(rng);
  }
  if (with_initial_state) fill(p.initial_state, static_cast<std::size_t>(B) * H * K * V);
  p.key_norm = 1;
  p.scale = 1.0 / std::sqrt(static_cast<double>(K));
  return p;
}

/// max |a - b| / max |b|: the error relative to the reference's largest entry (infinite on a size mismatch).
inline double relative_max_error(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, mag = std::numeric_limits<double>::min();
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    mag = std::max(mag, std::abs(b[i]));
  }
  return diff / mag;
}

}  // namespace reference

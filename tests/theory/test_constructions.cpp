// The constructions and the checker: every construction solves its task in double; the exact ones are proven at
// every length in every format; the verdicts agree with the exactness table in the README; the checker runs
// the same arithmetic as the CPU backend; the impossibility enumerations agree with the theorems.
#include <doctest/doctest.h>

#include <cmath>
#include <deltaproduct/deltaproduct.hpp>
#include <deltaproduct/groups/groups.hpp>
#include <deltaproduct/precision/precision.hpp>
#include <deltaproduct/theory/checker.hpp>
#include <deltaproduct/theory/constructions.hpp>
#include <deltaproduct/theory/impossibility.hpp>
#include <vector>

namespace dp = deltaproduct;

namespace {

std::vector<dp::Construction> every_construction() {
  std::vector<dp::Construction> all{dp::parity_by_reflection(), dp::parity_by_toggle()};
  for (const char* g : {"S3", "S4", "A4", "Z3", "Z5", "D4", "S3_x_Z2"})
    all.push_back(dp::permutation_construction(dp::FiniteGroup::parse(g)));
  for (int m : {3, 4, 5}) all.push_back(dp::cyclic_by_rotations(m));
  for (int n : {3, 4, 5}) all.push_back(dp::dihedral_in_plane(n));
  all.push_back(dp::s4_as_cube_rotations());
  all.push_back(dp::a5_as_icosahedral_rotations());
  for (int m : {2, 3, 5}) all.push_back(dp::cyclic_by_two_reflection_layers(m));
  for (int n : {3, 4}) all.push_back(dp::dihedral_two_layers(n));
  all.push_back(dp::flip_flop_cascade());
  return all;
}

// A dense matrix of the product of a letter's factors C_n ... C_1, each I - beta u u^T / |u|^2 (no input term).
dp::DenseMatrix product_of(const std::vector<dp::HouseholderFactor>& factors, int d) {
  dp::DenseMatrix m = dp::DenseMatrix::identity(d);
  for (const auto& f : factors) {
    double n2 = 0;
    for (double x : f.direction) n2 += x * x;
    dp::DenseMatrix c = dp::DenseMatrix::identity(d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) c(i, j) -= f.beta * f.direction[i] * f.direction[j] / n2;
    m = c * m;
  }
  return m;
}

}  // namespace

TEST_CASE("every construction decodes every word up to its BFS depth and 5000 random tokens in double") {
  dp::CheckOptions options;
  options.max_reachable_pairs = 1000;
  options.random_tokens = 5000;
  for (const auto& c : every_construction()) {
    CAPTURE(c.task);
    CAPTURE(c.method);
    const auto v = dp::check_construction<double>(c, dp::KeyForm::normalised, options);
    CHECK(v.first_failure == 0);
    CHECK(v.exhaustive_length >= 2);
    CHECK(!v.random_failed);
    CHECK(v.random_tokens == options.random_tokens);
  }
}

TEST_CASE("permutation constructions with raw keys are exact: proven in every format, one pair per element") {
  // n_h = the most swaps a letter needs: d - (cycles) maximised over the group (a 3-cycle or two swaps in A4).
  const std::vector<std::pair<const char*, int>> groups{{"S3", 2}, {"S4", 3}, {"A4", 2}, {"Z5", 4}, {"D4", 3}};
  for (const auto& [name, steps] : groups) {
    const auto group = dp::FiniteGroup::parse(name);
    const auto c = dp::permutation_construction(group);
    CAPTURE(name);
    CHECK(c.max_householder_steps() == steps);
    for (auto v : {dp::check_construction<dp::fp64>(c, dp::KeyForm::unnormalised),
                   dp::check_construction<dp::bf16>(c, dp::KeyForm::unnormalised),
                   dp::check_construction<dp::fp8_e4m3>(c, dp::KeyForm::unnormalised),
                   dp::check_construction<dp::tiny_e3m2>(c, dp::KeyForm::unnormalised),
                   dp::check_construction<dp::q3_12>(c, dp::KeyForm::unnormalised)}) {
      CHECK(v.proven);
      CHECK(v.reachable_pairs == group.order());  // every state is the exact codeword of its element
    }
  }
}

TEST_CASE("normalised swap keys (e_i - e_j)/sqrt 2 with beta = 2 round as the README's exactness table says") {
  // the README's Theory section: not exact in fp64; exact in bf16, fp16, tf32; fp32 through a rounding tie; e4m3 not.
  const auto s3 = dp::permutation_construction(dp::FiniteGroup::symmetric(3));
  dp::CheckOptions options;
  options.max_reachable_pairs = 2000;
  options.random_tokens = 1000;
  CHECK_FALSE(dp::check_construction<dp::fp64>(s3, dp::KeyForm::normalised, options).proven);
  CHECK(dp::check_construction<dp::fp32>(s3, dp::KeyForm::normalised, options).proven);
  CHECK(dp::check_construction<dp::tf32>(s3, dp::KeyForm::normalised, options).proven);
  CHECK(dp::check_construction<dp::bf16>(s3, dp::KeyForm::normalised, options).proven);
  CHECK(dp::check_construction<dp::fp16>(s3, dp::KeyForm::normalised, options).proven);
  CHECK(dp::check_construction<dp::fp8_e4m3>(s3, dp::KeyForm::normalised, options).first_failure > 0);
}

TEST_CASE("parity by reflection is proven in every format; eps-normalised keys are no exact reflection in fp64") {
  const auto c = dp::parity_by_reflection();
  CHECK(dp::check_construction<dp::fp64>(c, dp::KeyForm::normalised).proven);
  CHECK(dp::check_construction<dp::tiny_e2m1>(c, dp::KeyForm::normalised).proven);
  CHECK(dp::check_construction<dp::q1_14>(c, dp::KeyForm::normalised).proven);
  dp::CheckOptions options;
  options.max_reachable_pairs = 500;
  options.random_tokens = 1000;
  const auto eps = dp::check_construction<dp::fp64>(c, dp::KeyForm::eps_normalised, options);
  CHECK_FALSE(eps.proven);  // the state shrinks by 1 - 2e-6 per reflection: always a new state
  CHECK(eps.solved());      // but the sign still decodes parity
  CHECK(dp::check_construction<dp::bf16>(c, dp::KeyForm::eps_normalised).proven);  // 1/sqrt(1 + 1e-6) rounds to 1
}

TEST_CASE("the exact geometric constructions close: D4 in the plane, S4 as cube rotations, the reset cascade") {
  CHECK(dp::check_construction<dp::fp64>(dp::dihedral_in_plane(4), dp::KeyForm::unnormalised).proven);
  CHECK(dp::check_construction<dp::fp64>(dp::cyclic_by_rotations(4), dp::KeyForm::unnormalised).proven);
  const auto cube = dp::check_construction<dp::bf16>(dp::s4_as_cube_rotations(), dp::KeyForm::unnormalised);
  CHECK(cube.proven);
  CHECK(cube.reachable_pairs == 24);
  CHECK(dp::check_construction<dp::fp8_e4m3>(dp::flip_flop_cascade(), dp::KeyForm::normalised).proven);
  CHECK(dp::check_construction<dp::fp64>(dp::cyclic_by_two_reflection_layers(2), dp::KeyForm::unnormalised).proven);
}

TEST_CASE("letters' factors multiply back to the intended matrices, with the fewest reflections") {
  SUBCASE("permutations: A(g) = M(g)^T, d - cycles swaps") {
    const auto group = dp::FiniteGroup::symmetric(4);
    const auto c = dp::permutation_construction(group);
    for (dp::GroupElement g = 0; g < group.order(); ++g) {
      const auto p = group.permutation(g);
      const auto m = product_of(c.layers[0].letters[static_cast<std::size_t>(g)], 4);
      int cycles = 0;
      std::vector<bool> seen(4, false);
      for (int s = 0; s < 4; ++s)
        if (!seen[s]) {
          ++cycles;
          for (int x = s; !seen[x]; x = p[x]) seen[x] = true;
        }
      int used = 0;
      for (const auto& f : c.layers[0].letters[static_cast<std::size_t>(g)]) used += f.beta != 0.0;
      CHECK(used == 4 - cycles);
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) REQUIRE(m(i, j) == doctest::Approx(p[i] == j ? 1.0 : 0.0));  // M^T e_{p(j)} = e_j
    }
  }
  SUBCASE("matrix groups: orders, orthogonality, at most 2 reflections in 2-D and 3-D") {
    const auto cube = dp::s4_as_cube_rotations();
    const auto icosahedron = dp::a5_as_icosahedral_rotations();
    CHECK(cube.input_letters == 24);
    CHECK(icosahedron.input_letters == 60);
    CHECK(dp::dihedral_in_plane(5).input_letters == 10);
    CHECK(dp::cyclic_by_rotations(7).input_letters == 7);
    for (const auto* c : {&cube, &icosahedron}) {
      CHECK(c->max_householder_steps() == 2);
      const auto& codebook = c->layers[0].codebook;
      for (std::size_t a = 0; a < codebook.size(); ++a)
        for (std::size_t b = a + 1; b < codebook.size(); ++b) {
          double d = 0;
          for (int i = 0; i < 3; ++i) d += std::abs(codebook[a][i] - codebook[b][i]);
          REQUIRE(d > 1e-3);  // distinct states for distinct elements
        }
    }
  }
}

TEST_CASE("the checker's arithmetic is the CPU backend's: bit-identical final states on a random word") {
  const auto group = dp::FiniteGroup::symmetric(3);
  const auto c = dp::permutation_construction(group);
  constexpr int T = 200, n_h = 2, K = 3;
  std::vector<int> word(T);
  for (int t = 0; t < T; ++t) word[t] = (t * 7 + 3) % 6;

  auto compare = [&]<class Format>(dp::KeyForm form) {
    dp::ConstructionRunner<Format> runner(c, form);
    auto states = runner.initial_states();
    std::vector<int> decoded;
    for (int letter : word) runner.advance(states, letter, decoded);

    // The same word through forward(): keys, betas and values as the construction hands them to the update.
    std::vector<double> q(T * K, 0.0), k(T * n_h * K), v(T * n_h, 0.0), beta(T * n_h), o(T), h(K), final_state(K);
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < n_h; ++j) {
        const auto& f = c.layers[0].letters[static_cast<std::size_t>(word[t])][static_cast<std::size_t>(j)];
        double n2 = 0;
        for (double x : f.direction) n2 += x * x;
        for (int i = 0; i < K; ++i) k[(t * n_h + j) * K + i] = f.direction[i];
        beta[t * n_h + j] = form == dp::KeyForm::unnormalised ? f.beta / n2 : f.beta;
      }
    for (int i = 0; i < K; ++i) h[i] = c.layers[0].initial_state[i];
    dp::DeltaProduct<Format, n_h> model;
    model.options.key_normalization =
        form == dp::KeyForm::unnormalised ? dp::Normalization::none : dp::Normalization::l2;
    dp::forward(dp::CpuBackend{.algorithm = dp::CpuAlgorithm::sequential}, model,  // token loop
                dp::DeltaInputs<double>{.q = dp::make_view(q.data(), {1, T, 1, K}),
                                        .k = dp::make_view(k.data(), {1, T * n_h, 1, K}),
                                        .v = dp::make_view(v.data(), {1, T * n_h, 1, 1}),
                                        .beta = dp::make_view(beta.data(), {1, T * n_h, 1}),
                                        .initial_state = dp::make_view(h.data(), {1, 1, K, 1})},
                dp::ForwardOutputs<double>{.o = dp::make_view(o.data(), {1, T, 1, 1}),
                                           .final_state = dp::make_view(final_state.data(), {1, 1, K, 1})});
    for (int i = 0; i < K; ++i) CHECK(final_state[i] == static_cast<double>(states[0](i, 0)));
  };
  compare.operator()<dp::bf16>(dp::KeyForm::normalised);
  compare.operator()<dp::fp64>(dp::KeyForm::normalised);
  compare.operator()<dp::fp8_e4m3>(dp::KeyForm::unnormalised);
}

TEST_CASE("step-by-step rounding makes a [0,1] scalar DeltaNet oscillate (orbit worked out by hand in e3m2)") {
  // k = -2.5, beta = 1/8, v = -7, h0 = -2.5: eigenvalue 1 - beta k^2 = 0.21875, fixed point 2.8 in exact arithmetic.
  // By hand (e3m2 keeps 3 significant bits, ties to even):
  //   h=-2.5: k h = 6.25 -> 6; v - 6 = -13 -> -12 (tie); beta * -12 = -1.5; k * -1.5 = 3.75 -> 4 (tie); h = 1.5
  //   h=1.5:  k h = -3.75 -> -4; v + 4 = -3; -0.375; k * -0.375 = 0.9375 -> 1 (tie); h = 2.5
  //   h=2.5:  k h = -6.25 -> -6; -1; -0.125; 0.3125; h = 2.8125 -> 3
  //   h=3:    k h = -7.5 -> -8 (tie); 1; 0.125; -0.3125; h = 2.6875 -> 2.5       ... then 3, 2.5, 3, ...
  using F = dp::tiny_e3m2;
  dp::RowVector<F> key(1), value(1), work(1);
  key(0) = F(-2.5);
  value(0) = F(-7.0);
  dp::StateMatrix<F> state(1, 1);
  state(0, 0) = F(-2.5);
  const std::vector<double> expected{1.5, 2.5, 3.0, 2.5, 3.0, 2.5};
  for (double e : expected) {
    dp::householder_step<F>(state, key, value, F(0.125), work);
    CHECK(static_cast<double>(state(0, 0)) == e);
  }
  // The enumeration's decision for this setting: eventual period 2, so n mod 2 is decodable from the state.
  std::vector<double> values;
  for (const F& x : dp::finite_values<F>()) values.push_back(static_cast<double>(x));
  std::vector<std::int64_t> scratch(values.size());
  auto step = [&](F h) {
    state(0, 0) = h;
    dp::householder_step<F>(state, key, value, F(0.125), work);
    return state(0, 0);
  };
  CHECK(dp::eventual_period(step, F(-2.5), values, scratch) == 2);
  CHECK(dp::eventual_period(step, F(3.0), values, scratch) == 2);
}

TEST_CASE("impossibility enumerations agree with UST Thms 1 and 2 where their hypotheses hold") {
  using F = dp::tiny_e2m1;
  // Diagonal a h + b with a >= 0 is monotone after rounding: no parity; a = -1 gives parity; nothing counts mod 3.
  CHECK(dp::enumerate_scalar_diagonal<F>(dp::EigenvalueRange::unit, 2).solving == 0);
  const auto signed_parity = dp::enumerate_scalar_diagonal<F>(dp::EigenvalueRange::signed_unit, 2);
  CHECK(signed_parity.solving > 0);
  REQUIRE(signed_parity.example.size() == 3);
  CHECK(signed_parity.example[0] < 0.0);  // a negative decay is what flips the state
  CHECK(dp::enumerate_scalar_diagonal<F>(dp::EigenvalueRange::signed_unit, 3).solving == 0);
  // Scalar DeltaNet in e2m1: beta = 2 on a unit key is a reflection, so [-1, 1] settings solve parity.
  const auto deltanet = dp::enumerate_scalar_deltanet<F>(dp::EigenvalueRange::signed_unit, 2);
  CHECK(deltanet.solving > 0);
  CHECK(deltanet.settings > 0);
  // The papers' cast model, on e2m1's value set (the report runs e3m2).
  const auto cast = dp::CastModel::of_format<F>();
  CHECK(dp::enumerate_cast_model(cast, dp::EigenvalueRange::unit, 2, 96).solving == 0);
  CHECK(dp::enumerate_cast_model(cast, dp::EigenvalueRange::signed_unit, 2, 96).solving > 0);
  CHECK(dp::enumerate_cast_model(cast, dp::EigenvalueRange::signed_unit, 3, 96).solving == 0);
}

TEST_CASE("counts_modulo decides decodability from a sequence") {
  CHECK(dp::counts_modulo({1, 2, 1, 2, 1, 2}, 2));
  CHECK_FALSE(dp::counts_modulo({1, 2, 3, 1, 2, 3}, 2));
  CHECK(dp::counts_modulo({5, 1, 2, 3, 1, 2, 3}, 3));  // a transient state occurs once: no conflict
  CHECK_FALSE(dp::counts_modulo({5, 1, 2, 1, 2}, 3));  // period 2: 1 at n = 1 and n = 3
  CHECK(dp::counts_modulo({1, 2, 3, 1, 2, 3}, 3));
}

TEST_CASE("a construction reports the eigenvalue range its betas need") {
  CHECK(dp::parity_by_reflection().needed_range() == dp::EigenvalueRange::signed_unit);  // beta = 2
  auto resets_only = dp::flip_flop_cascade();
  resets_only.layers.pop_back();  // the flip-flop alone: resets with beta = 1
  CHECK(resets_only.needed_range() == dp::EigenvalueRange::unit);
}

TEST_CASE("simulated fp64 rounds each operation once: a * b + c is not fused into an FMA") {
  // (1 + 2^-30)(1 - 2^-30) = 1 - 2^-60 rounds to 1, so the unfused sum with -1 is 0; an FMA would give -2^-60.
  // The project compiles with -ffp-contract=off; users who simulate fp64 need the same (README, Number formats).
  volatile double a = 1.0 + 0x1p-30, b = 1.0 - 0x1p-30, c = -1.0;
  const dp::fp64 r = dp::fp64(a) * dp::fp64(b) + dp::fp64(c);
  CHECK(static_cast<double>(r) == 0.0);
}

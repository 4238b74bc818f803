// Every rejected call raises deltaproduct::ArgumentError naming the argument, the expected and the actual value,
// before any data is read or written.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "support/harness.hpp"

namespace dp = deltaproduct;

namespace {

// Runs `call`, which must throw ArgumentError for `argument` with every fragment in its message.
template <class Call>
void expect_argument_error(Call&& call, const std::string& argument, std::initializer_list<std::string> fragments) {
  try {
    call();
    FAIL("no ArgumentError for '" << argument << "'");
  } catch (const dp::ArgumentError& e) {
    const std::string message = e.what();
    CAPTURE(message);
    CHECK(e.argument() == argument);
    CHECK(message.find("'" + argument + "'") != std::string::npos);
    for (const auto& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
  }
}

// A valid gated DeltaProduct call (B=2, T=5, H=3, K=4, V=6, n_h=2) that each test breaks in one way.
struct Call {
  reference::Problem p = reference::random_problem(2, 5, 3, 4, 6, 2, true, 2.0, true, 99);
  harness::Buffers<float> b{p};
  dp::GatedDeltaProduct<float, 2> model;
  dp::DeltaInputs<float> in = b.delta_inputs(p);
  dp::ForwardOutputs<float> out = b.outputs(p);
  std::vector<float> scratch = std::vector<float>(4096, 0.0f);

  void run() { dp::forward(dp::cpu, model, in, out); }
};

}  // namespace

TEST_CASE("the baseline call is valid") {
  Call c;
  CHECK_NOTHROW(c.run());
}

TEST_CASE("wrong shapes name the argument, the expected layout and the actual extents") {
  SUBCASE("k with T rows instead of T * n_h") {
    Call c;
    c.in.k = dp::make_view(c.b.k.data(), {2, 5, 3, 4});
    expect_argument_error([&] { c.run(); }, "k", {"[B, T*n_h, H, K] = [2, 10, 3, 4]", "[2, 5, 3, 4]"});
  }
  SUBCASE("v with T rows instead of T * n_h") {
    Call c;
    c.in.v = dp::make_view(c.b.v.data(), {2, 5, 3, 6});
    expect_argument_error([&] { c.run(); }, "v", {"[2, 10, 3, 6]", "[2, 5, 3, 6]"});
  }
  SUBCASE("beta with T rows instead of T * n_h") {
    Call c;
    c.in.beta = dp::make_view(c.b.beta.data(), {2, 5, 3});
    expect_argument_error([&] { c.run(); }, "beta", {"[B, T*n_h, H] = [2, 10, 3]", "[2, 5, 3]"});
  }
  SUBCASE("k with a different number of heads than q") {
    Call c;
    c.in.k = dp::make_view(c.b.k.data(), {2, 10, 2, 4});
    expect_argument_error([&] { c.run(); }, "k", {"[2, 10, 3, 4]", "[2, 10, 2, 4]"});
  }
  SUBCASE("k with a different key dimension than q") {
    Call c;
    c.in.k = dp::make_view(c.b.k.data(), {2, 10, 3, 3});
    expect_argument_error([&] { c.run(); }, "k", {"[2, 10, 3, 4]", "[2, 10, 3, 3]"});
  }
  SUBCASE("o with another value dimension than v") {
    Call c;
    c.out.o = dp::make_view(c.b.o.data(), {2, 5, 3, 5});
    expect_argument_error([&] { c.run(); }, "o", {"[B, T, H, V] = [2, 5, 3, 6]", "[2, 5, 3, 5]"});
  }
  SUBCASE("o with another batch size") {
    Call c;
    c.out.o = dp::make_view(c.b.o.data(), {1, 5, 3, 6});
    expect_argument_error([&] { c.run(); }, "o", {"[2, 5, 3, 6]", "[1, 5, 3, 6]"});
  }
  SUBCASE("g of the wrong length") {
    Call c;
    c.in.g = dp::make_view(c.b.g.data(), {2, 4, 3});
    expect_argument_error([&] { c.run(); }, "g", {"[B, T, H] = [2, 5, 3]", "[2, 4, 3]"});
  }
  SUBCASE("initial state with the wrong key dimension") {
    Call c;
    c.in.initial_state = dp::make_view(c.b.initial_state.data(), {2, 3, 6, 4});
    expect_argument_error([&] { c.run(); }, "initial_state", {"[N, H, K, V] = [2, 3, 4, 6]", "[2, 3, 6, 4]"});
  }
  SUBCASE("final state with the wrong number of sequences") {
    Call c;
    c.out.final_state = dp::make_view(c.b.final_state.data(), {1, 3, 4, 6});
    expect_argument_error([&] { c.run(); }, "final_state", {"[2, 3, 4, 6]", "[1, 3, 4, 6]"});
  }
  SUBCASE("zero heads") {
    Call c;
    c.in.q = dp::make_view(c.b.q.data(), {2, 5, 0, 4});
    expect_argument_error([&] { c.run(); }, "q", {"number of heads H", ">= 1", "0"});
  }
  SUBCASE("a negative extent") {
    Call c;
    c.in.q = dp::make_view(c.b.q.data(), {2, -5, 3, 4});
    expect_argument_error([&] { c.run(); }, "q", {"non-negative extents", "[2, -5, 3, 4]"});
  }
}

TEST_CASE("missing or null data is rejected") {
  SUBCASE("null q") {
    Call c;
    c.in.q = dp::View<const float, 4>(nullptr, {2, 5, 3, 4});
    expect_argument_error([&] { c.run(); }, "q", {"non-null data", "null data"});
  }
  SUBCASE("absent v") {
    Call c;
    c.in.v = {};
    expect_argument_error([&] { c.run(); }, "v", {"[B, T*n_h, H, V]", "absent"});
  }
  SUBCASE("null beta") {
    Call c;
    c.in.beta = dp::View<const float, 3>(nullptr, {2, 10, 3});
    expect_argument_error([&] { c.run(); }, "beta", {"null data"});
  }
  SUBCASE("absent o") {
    Call c;
    c.out.o = {};
    expect_argument_error([&] { c.run(); }, "o", {"absent"});
  }
  SUBCASE("a gated model without g") {
    Call c;
    c.in.g = {};
    expect_argument_error([&] { c.run(); }, "g", {"[B, T, H]", "absent"});
  }
  SUBCASE("g given to an ungated model") {
    Call c;
    dp::DeltaProduct<float, 2> ungated;
    expect_argument_error([&] { dp::forward(dp::cpu, ungated, c.in, c.out); }, "g", {"Gating::none", "[2, 5, 3]"});
  }
  SUBCASE("null final state with extents") {
    Call c;
    c.out.final_state = dp::View<float, 4>(nullptr, {2, 3, 4, 6});
    expect_argument_error([&] { c.run(); }, "final_state", {"null data"});
  }
}

TEST_CASE("values outside the eigenvalue range are rejected when validation is on") {
  SUBCASE("beta above 2 for [-1, 1]") {
    Call c;
    c.b.beta[7] = 2.5f;
    expect_argument_error([&] { c.run(); }, "beta",
                          {"[0, 2]", "signed_unit", "2.5", "at [0, 2, 1]"});  // flat 7 of [2, 10, 3]
  }
  SUBCASE("beta above 1 for [0, 1]") {
    Call c;
    dp::GatedDeltaProduct<float, 2, dp::EigenvalueRange::unit> model;
    for (float& b : c.b.beta) b *= 0.5f;  // the random betas lie in [0, 2]
    c.b.beta[4] = 1.5f;
    expect_argument_error([&] { dp::forward(dp::cpu, model, c.in, c.out); }, "beta", {"[0, 1]", "1.5"});
  }
  SUBCASE("negative beta") {
    Call c;
    c.b.beta[0] = -0.25f;
    expect_argument_error([&] { c.run(); }, "beta", {"-0.25", "at [0, 0, 0]"});
  }
  SUBCASE("NaN beta") {
    Call c;
    c.b.beta[1] = std::numeric_limits<float>::quiet_NaN();
    expect_argument_error([&] { c.run(); }, "beta", {"nan"});
  }
  SUBCASE("positive log-decay g") {
    Call c;
    c.b.g[3] = 0.5f;
    expect_argument_error([&] { c.run(); }, "g", {"<= 0", "0.5"});
  }
  SUBCASE("infinite g") {
    Call c;
    c.b.g[3] = -std::numeric_limits<float>::infinity();
    expect_argument_error([&] { c.run(); }, "g", {"finite", "inf"});
  }
  SUBCASE("validation off runs anyway") {
    Call c;
    c.b.beta[7] = 2.5f;
    c.model.options.validate_ranges = false;
    CHECK_NOTHROW(c.run());
  }
  SUBCASE("diagonal decay below -1") {
    const auto p = reference::random_problem(1, 3, 1, 2, 2, 1, false, 1.0, false, 98);
    std::vector<double> a(6, 0.5);
    a[5] = -1.5;
    harness::Buffers<double> b(p, a);
    expect_argument_error([&] { dp::forward(dp::cpu, dp::DiagonalLrnn<double>{}, b.diagonal_inputs(p), b.outputs(p)); },
                          "a", {"[-1, 1]", "-1.5"});
  }
  SUBCASE("diagonal decay below 0 for [0, 1]") {
    const auto p = reference::random_problem(1, 3, 1, 2, 2, 1, false, 1.0, false, 98);
    std::vector<double> a(6, 0.5);
    a[2] = -0.5;
    harness::Buffers<double> b(p, a);
    expect_argument_error(
        [&] {
          dp::forward(dp::cpu, dp::DiagonalLrnn<double, dp::EigenvalueRange::unit>{}, b.diagonal_inputs(p),
                      b.outputs(p));
        },
        "a", {"[0, 1]", "-0.5"});
  }
}

TEST_CASE("cu_seqlens errors") {
  auto p = reference::random_problem(1, 8, 2, 3, 3, 1, false, 2.0, false, 97);
  harness::Buffers<double> b(p);
  auto in = b.delta_inputs(p);
  auto out = b.outputs(p);
  out.final_state = {};
  std::vector<std::int64_t> offsets;
  auto run = [&] {
    in.cu_seqlens = dp::make_view(offsets.data(), {static_cast<dp::index_t>(offsets.size())});
    dp::forward(dp::cpu, dp::DeltaNet<double>{}, in, out);
  };
  SUBCASE("not starting at 0") {
    offsets = {1, 4, 8};
    expect_argument_error(run, "cu_seqlens", {"cu_seqlens[0] = 0", "1"});
  }
  SUBCASE("decreasing") {
    offsets = {0, 5, 3, 8};
    expect_argument_error(run, "cu_seqlens", {"non-decreasing", "cu_seqlens[2] = 3 < cu_seqlens[1] = 5"});
  }
  SUBCASE("not ending at T") {
    offsets = {0, 4, 7};
    expect_argument_error(run, "cu_seqlens", {"last offset = T = 8", "7"});
  }
  SUBCASE("a single offset") {
    offsets = {0};
    expect_argument_error(run, "cu_seqlens", {"at least 2 offsets", "1"});
  }
  SUBCASE("with B > 1") {
    auto p2 = reference::random_problem(2, 8, 2, 3, 3, 1, false, 2.0, false, 96);
    harness::Buffers<double> b2(p2);
    in = b2.delta_inputs(p2);
    out = b2.outputs(p2);
    offsets = {0, 8};
    expect_argument_error(run, "q", {"B = 1 when cu_seqlens is given", "B = 2"});
  }
  SUBCASE("a state with B entries instead of N") {
    offsets = {0, 3, 8};
    std::vector<double> state(static_cast<std::size_t>(3) * 2 * 3 * 3);
    out.final_state = dp::make_view(state.data(), {3, 2, 3, 3});
    expect_argument_error(run, "final_state", {"[N, H, K, V] = [2, 2, 3, 3]", "[3, 2, 3, 3]"});
  }
}

TEST_CASE("option errors") {
  SUBCASE("non-finite scale") {
    Call c;
    c.model.options.scale = std::numeric_limits<double>::infinity();
    expect_argument_error([&] { c.run(); }, "options.scale", {"finite", "inf"});
  }
  SUBCASE("eps <= 0 with eps normalisation") {
    Call c;
    c.model.options.key_normalization = dp::Normalization::l2_eps;
    c.model.options.normalization_eps = 0.0;
    expect_argument_error([&] { c.run(); }, "options.normalization_eps", {"> 0", "0"});
  }
}

TEST_CASE("step() errors name the step layouts") {
  Call c;
  std::vector<float> state(static_cast<std::size_t>(2) * 3 * 4 * 6), o(static_cast<std::size_t>(2) * 3 * 6);
  const dp::DeltaStepInputs<float> in{.q = dp::make_view(c.b.q.data(), {2, 3, 4}),
                                      .k = dp::make_view(c.b.k.data(), {2, 2, 3, 4}),
                                      .v = dp::make_view(c.b.v.data(), {2, 2, 3, 6}),
                                      .beta = dp::make_view(c.b.beta.data(), {2, 2, 3}),
                                      .g = dp::make_view(c.b.g.data(), {2, 3})};
  const auto state_view = dp::make_view(state.data(), {2, 3, 4, 6});
  const auto o_view = dp::make_view(o.data(), {2, 3, 6});
  CHECK_NOTHROW(dp::step(dp::cpu, c.model, in, state_view, o_view));
  SUBCASE("absent state") {
    expect_argument_error([&] { dp::step(dp::cpu, c.model, in, dp::View<float, 4>{}, o_view); }, "state",
                          {"[B, H, K, V]", "absent"});
  }
  SUBCASE("absent q") {
    auto bad = in;
    bad.q = {};
    expect_argument_error([&] { dp::step(dp::cpu, c.model, bad, state_view, o_view); }, "q", {"[B, H, K]"});
  }
  SUBCASE("k with one Householder step instead of two") {
    auto bad = in;
    bad.k = dp::make_view(c.b.k.data(), {2, 1, 3, 4});
    expect_argument_error([&] { dp::step(dp::cpu, c.model, bad, state_view, o_view); }, "k", {"[2, 2, 3, 4]"});
  }
  SUBCASE("state of the wrong shape") {
    expect_argument_error(
        [&] {
          dp::step(dp::cpu, c.model, in, dp::make_view(state.data(), {2, 3, 6, 4}), o_view);
        },
        "initial_state", {"[2, 3, 4, 6]", "[2, 3, 6, 4]"});
  }
}

TEST_CASE("a failed check leaves the outputs untouched") {
  Call c;
  std::fill(c.b.o.begin(), c.b.o.end(), 7.0f);
  c.b.beta.back() = 3.0f;  // the last beta: found only after scanning everything else
  CHECK_THROWS_AS(c.run(), dp::ArgumentError);
  for (float x : c.b.o) REQUIRE(x == 7.0f);
}

TEST_CASE("ArgumentError is a deltaproduct::Error and a std::exception") {
  Call c;
  c.in.q = {};
  CHECK_THROWS_AS(c.run(), dp::Error);
  CHECK_THROWS_AS(c.run(), std::exception);
}

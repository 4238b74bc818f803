#include "cuda/cpu_reference.hpp"

#include <deltaproduct/model/model.hpp>
#include <stdexcept>

#include "support/harness.hpp"

namespace cuda_test {
namespace {

namespace dp = deltaproduct;

template <int HouseholderSteps, dp::Gating Gate>
reference::Result run(const reference::Problem& p) {
  dp::DeltaProduct<double, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.validate_ranges = false;
  return harness::run_delta(p, model, dp::CpuBackend{.threads = 0, .algorithm = dp::CpuAlgorithm::sequential});
}

template <int HouseholderSteps>
reference::Result run_gating(const reference::Problem& p) {
  return p.gated ? run<HouseholderSteps, dp::Gating::scalar_decay>(p) : run<HouseholderSteps, dp::Gating::none>(p);
}

template <int HouseholderSteps, dp::Gating Gate>
reference::Gradients run_backward(const reference::Problem& p, const reference::LossWeights& w) {
  dp::DeltaProduct<double, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.validate_ranges = false;
  harness::configure(model.options, p);
  const harness::Buffers<double> inputs(p);
  const dp::index_t B = p.B, T = p.T, H = p.H, K = p.K, V = p.V, R = T * p.n_h, N = p.sequences();
  reference::Gradients d;
  d.q.assign(p.q.size(), 0.0);
  d.k.assign(p.k.size(), 0.0);
  d.v.assign(p.v.size(), 0.0);
  d.beta.assign(p.beta.size(), 0.0);
  if (p.gated) d.g.assign(p.g.size(), 0.0);
  d.initial_state.assign(static_cast<std::size_t>(N * H * K * V), 0.0);
  dp::OutputGradients<double> og{.o = dp::make_view(w.o.data(), {B, T, H, V})};
  if (!w.final_state.empty()) og.final_state = dp::make_view(w.final_state.data(), {N, H, K, V});
  dp::DeltaGradients<double> g{.q = dp::make_view(d.q.data(), {B, T, H, K}),
                               .k = dp::make_view(d.k.data(), {B, R, H, K}),
                               .v = dp::make_view(d.v.data(), {B, R, H, V}),
                               .beta = dp::make_view(d.beta.data(), {B, R, H}),
                               .initial_state = dp::make_view(d.initial_state.data(), {N, H, K, V})};
  if (p.gated) g.g = dp::make_view(d.g.data(), {B, T, H});
  dp::backward(dp::CpuBackend{.threads = 0, .algorithm = dp::CpuAlgorithm::sequential}, model,
               inputs.delta_inputs(p), og, g);
  return d;
}

template <int HouseholderSteps>
reference::Gradients run_backward_gating(const reference::Problem& p, const reference::LossWeights& w) {
  return p.gated ? run_backward<HouseholderSteps, dp::Gating::scalar_decay>(p, w)
                 : run_backward<HouseholderSteps, dp::Gating::none>(p, w);
}

}  // namespace

reference::Result cpu_forward_double(const reference::Problem& p) {
  switch (p.n_h) {
    case 1:
      return run_gating<1>(p);
    case 2:
      return run_gating<2>(p);
    case 3:
      return run_gating<3>(p);
    case 4:
      return run_gating<4>(p);
    default:
      throw std::invalid_argument("cpu_forward_double: n_h must be 1..4");
  }
}

}  // namespace cuda_test

namespace cuda_test {

reference::Gradients cpu_backward_double(const reference::Problem& p, const reference::LossWeights& w) {
  switch (p.n_h) {
    case 1:
      return run_backward_gating<1>(p, w);
    case 2:
      return run_backward_gating<2>(p, w);
    case 3:
      return run_backward_gating<3>(p, w);
    case 4:
      return run_backward_gating<4>(p, w);
    default:
      throw std::invalid_argument("cpu_backward_double: n_h must be 1..4");
  }
}

}  // namespace cuda_test

namespace cuda_test {

std::vector<std::vector<float>> cpu_model_initial_values(const deltaproduct::ModelConfig& config, std::uint64_t seed) {
  deltaproduct::WordProblemModel<float> model(config);
  model.initialize(seed);
  std::vector<std::vector<float>> values;
  for (const auto& p : model.parameters()) values.emplace_back(p.value.data(), p.value.data() + p.value.size());
  return values;
}

ModelRun cpu_model_run(const deltaproduct::ModelConfig& config, const std::vector<std::vector<float>>& values,
                       std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                       int tokens) {
  deltaproduct::WordProblemModel<double> model(config);
  auto& parameters = model.parameters();
  if (values.size() != parameters.size()) throw std::invalid_argument("cpu_model_run: wrong number of parameters");
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    if (static_cast<Eigen::Index>(values[i].size()) != parameters[i].value.size())
      throw std::invalid_argument("cpu_model_run: wrong size of parameter " + parameters[i].name);
    for (Eigen::Index e = 0; e < parameters[i].value.size(); ++e)
      parameters[i].value.data()[e] = values[i][static_cast<std::size_t>(e)];
  }
  model.zero_gradients();
  ModelRun run;
  const deltaproduct::BatchResult r = model.train_batch(inputs, labels, batch, tokens, true, 1);
  run.loss = r.loss;
  run.accuracy = r.accuracy;
  for (const auto& p : parameters) run.gradients.emplace_back(p.gradient.data(), p.gradient.data() + p.gradient.size());
  run.correct_per_position.assign(static_cast<std::size_t>(tokens), 0);
  (void)model.evaluate(inputs, labels, batch, tokens, run.correct_per_position, 1);
  return run;
}

}  // namespace cuda_test

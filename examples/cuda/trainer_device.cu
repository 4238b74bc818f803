// trainer_device.hpp on the CUDA backend: CudaWordProblemModel (include/deltaproduct/model/cuda_model.cuh).
#include <cuda_runtime.h>

#include <deltaproduct/model/cuda_model.cuh>
#include <stdexcept>

#include "../trainer_device.hpp"

namespace trainer {
namespace {

namespace dp = deltaproduct;

class CudaModel final : public DeviceModel {
 public:
  explicit CudaModel(const dp::ModelConfig& config) : model_(config) {}

  void upload(const HostParameters& p) override {
    for (std::size_t i = 0; i < model_.parameter_count(); ++i)
      model_.set_parameter(i, p.values.at(i), p.first_moments.empty() ? std::span<const float>{} : p.first_moments.at(i),
                           p.second_moments.empty() ? std::span<const float>{} : p.second_moments.at(i));
  }
  void download(HostParameters& p) override {
    const std::size_t n = model_.parameter_count();
    p.values.resize(n), p.first_moments.resize(n), p.second_moments.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const dp::ModelParameterShape s = model_.parameter_shape(i);
      const auto size = static_cast<std::size_t>(s.rows * s.cols);
      p.values[i].resize(size), p.first_moments[i].resize(size), p.second_moments[i].resize(size);
      model_.get_parameter(i, p.values[i], {}, p.first_moments[i], p.second_moments[i]);
    }
  }
  dp::BatchResult train_batch(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                              int tokens) override {
    return model_.train_batch(inputs, labels, batch, tokens);
  }
  double clip_gradient_norm(double max_norm) override { return model_.clip_gradient_norm(max_norm); }
  void adamw_update(double beta1, double beta2, double eps, double weight_decay, std::int64_t step,
                    double learning_rate) override {
    model_.adamw_update(beta1, beta2, eps, weight_decay, step, learning_rate);
  }
  double evaluate(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch, int tokens,
                  std::span<std::int64_t> correct_per_position) override {
    return model_.evaluate(inputs, labels, batch, tokens, correct_per_position);
  }

 private:
  dp::CudaWordProblemModel model_;
};

}  // namespace

std::unique_ptr<DeviceModel> make_cuda_model(const deltaproduct::ModelConfig& config) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    (void)cudaGetLastError();
    throw std::runtime_error("--device cuda: no CUDA device is present");
  }
  return std::make_unique<CudaModel>(config);
}

}  // namespace trainer

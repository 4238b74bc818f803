// The trainer's GPU path (examples/cuda/trainer_device.cu, compiled by nvcc when the CUDA parts are built): the
// CudaWordProblemModel behind an interface that needs neither CUDA nor Eigen, so that train_word_problem.cpp stays a
// C++ translation unit.
#pragma once

#include <cstdint>
#include <deltaproduct/model/config.hpp>
#include <memory>
#include <span>
#include <vector>

namespace trainer {

/// Parameters in the CPU model's order, row-major.
struct HostParameters {
  std::vector<std::vector<float>> values, first_moments, second_moments;
};

class DeviceModel {
 public:
  virtual ~DeviceModel() = default;
  virtual void upload(const HostParameters& p) = 0;
  virtual void download(HostParameters& p) = 0;
  virtual deltaproduct::BatchResult train_batch(std::span<const std::int32_t> inputs,
                                                std::span<const std::int32_t> labels, int batch, int tokens) = 0;
  virtual double clip_gradient_norm(double max_norm) = 0;
  virtual void adamw_update(double beta1, double beta2, double eps, double weight_decay, std::int64_t step,
                            double learning_rate) = 0;
  virtual double evaluate(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                          int tokens, std::span<std::int64_t> correct_per_position) = 0;
};

/// The model on the first CUDA device; throws when none is present.
std::unique_ptr<DeviceModel> make_cuda_model(const deltaproduct::ModelConfig& config);

}  // namespace trainer

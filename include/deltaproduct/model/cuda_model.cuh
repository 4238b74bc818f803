// The word-problem model of word_problem_model.hpp on the GPU (nvcc only): the same parameters, in the same order and
// shapes, the same forward and backward pass and the same AdamW update, in fp32 on device memory. The recurrence is
// the CUDA backend's forward() and backward() (fp32 data: the recurrent kernels); the matrix products are cuBLAS
// SGEMMs (fp32 arithmetic, no TF32), the rest small kernels of this file.
//
//   deltaproduct::CudaWordProblemModel gpu(config);              // parameters zero until set
//   for (i) gpu.set_parameter(i, host_value);                       // e.g. from an initialised WordProblemModel<float>
//   BatchResult r = gpu.train_batch(inputs, labels, batch, tokens); // gradients of the mean loss, on the device
//   gpu.clip_gradient_norm(1.0);
//   gpu.adamw_update(options, step, learning_rate);
//
// Host data in and out are plain spans (inputs and labels row-major [batch, tokens]); the call synchronises on its
// stream once per batch, to return the loss. Gradients of the embedding and of the norm gains are sums made with
// atomics, so results agree with the CPU model to fp32 rounding, not bit for bit.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "deltaproduct/core/config.hpp"
#include "deltaproduct/cuda/backward.cuh"
#include "deltaproduct/cuda/chunked_forward.cuh"
#include "deltaproduct/cuda/error.hpp"
#include "deltaproduct/model/config.hpp"

namespace deltaproduct {

/// A cuBLAS call failed.
class CublasError : public Error {
 public:
  CublasError(std::string call, cublasStatus_t status)
      : Error("deltaproduct: cuBLAS call '" + call + "' failed: status " + std::to_string(static_cast<int>(status))),
        call_(std::move(call)) {}
  const std::string& call() const noexcept { return call_; }

 private:
  std::string call_;
};

namespace detail::cuda_model {

inline void cublas_check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) throw CublasError(call, status);
}
#define DELTAPRODUCT_CUBLAS_CHECK(call) ::deltaproduct::detail::cuda_model::cublas_check((call), #call)

/// Device memory for n floats (or other trivially copyable elements), freed on destruction.
template <class E>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t n) { resize(n); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  Buffer& operator=(Buffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  ~Buffer() { (void)cudaFree(data_); }
  /// Grows to hold at least n elements (contents are not kept).
  void resize(std::size_t n) {
    if (n <= size_) return;
    (void)cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaMalloc(&data_, std::max<std::size_t>(n, 1) * sizeof(E)));
    size_ = n;
  }
  E* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }

 private:
  E* data_ = nullptr;
  std::size_t size_ = 0;
};

inline unsigned blocks_for(std::int64_t work, int threads) {
  const std::int64_t blocks = (std::max<std::int64_t>(work, 1) + threads - 1) / threads;
  return static_cast<unsigned>(std::min<std::int64_t>(blocks, 65535));
}

__device__ __forceinline__ float warp_total(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// x[r, :] = table[ids[r], :].
__global__ void embedding_forward_kernel(const std::int32_t* ids, const float* table, float* x, std::int64_t rows,
                                         int dim) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < rows * dim;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] = table[static_cast<std::int64_t>(ids[i / dim]) * dim + i % dim];
}

/// d table[ids[r], :] += dx[r, :].
__global__ void embedding_backward_kernel(const std::int32_t* ids, const float* dx, float* d_table, std::int64_t rows,
                                          int dim) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < rows * dim;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    atomicAdd(&d_table[static_cast<std::int64_t>(ids[i / dim]) * dim + i % dim], dx[i]);
}

/// y = gain o x / r, r = sqrt(mean(x^2) + eps), one warp per row; keeps 1 / r.
__global__ void rms_norm_forward_kernel(const float* x, const float* gain, float* y, float* inverse_rms,
                                        std::int64_t rows, int dim, float eps) {
  const std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;
  const float* xr = x + row * dim;
  float sum = 0.0f;
  for (int j = lane; j < dim; j += 32) sum = fmaf(xr[j], xr[j], sum);
  const float inv = rsqrtf(warp_total(sum) / static_cast<float>(dim) + eps);
  if (lane == 0) inverse_rms[row] = inv;
  for (int j = lane; j < dim; j += 32) y[row * dim + j] = xr[j] * inv * gain[j];
}

/// With x_hat = x / r and dz = dy o g: dx = (dz - x_hat mean(dz o x_hat)) / r (accumulated into dx when `add`).
__global__ void rms_norm_backward_kernel(const float* x, const float* gain, const float* inverse_rms, const float* dy,
                                         float* dx, std::int64_t rows, int dim, bool add) {
  const std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;
  const float inv = inverse_rms[row];
  const float* xr = x + row * dim;
  const float* dyr = dy + row * dim;
  float dot = 0.0f;
  for (int j = lane; j < dim; j += 32) dot = fmaf(dyr[j] * gain[j], xr[j] * inv, dot);
  const float mean = warp_total(dot) / static_cast<float>(dim);
  for (int j = lane; j < dim; j += 32) {
    const float value = (dyr[j] * gain[j] - xr[j] * inv * mean) * inv;
    dx[row * dim + j] = add ? dx[row * dim + j] + value : value;
  }
}

/// d gain[j] += sum_rows dy[r, j] x[r, j] / r: each thread sums a column over a stripe of rows, one atomic per
/// thread.
__global__ void rms_norm_gain_kernel(const float* x, const float* inverse_rms, const float* dy, float* d_gain,
                                     std::int64_t rows, int dim, std::int64_t rows_per_block) {
  const int j = static_cast<int>(blockIdx.y * blockDim.x + threadIdx.x);
  if (j >= dim) return;
  const std::int64_t first = blockIdx.x * rows_per_block, last = min(first + rows_per_block, rows);
  float sum = 0.0f;
  for (std::int64_t r = first; r < last; ++r) sum = fmaf(dy[r * dim + j], x[r * dim + j] * inverse_rms[r], sum);
  atomicAdd(&d_gain[j], sum);
}

/// beta = s sigmoid(z), in place.
__global__ void scaled_sigmoid_kernel(float* z, std::int64_t n, float s) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    z[i] = s / (1.0f + expf(-z[i]));
}

/// dL/dz = dL/dbeta beta (1 - beta / s), in place in d_beta.
__global__ void scaled_sigmoid_backward_kernel(const float* beta, float* d_beta, std::int64_t n, float s) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    d_beta[i] *= beta[i] * (1.0f - beta[i] / s);
}

/// GELU, tanh form (layers.hpp): 0.5 x (1 + tanh(c (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh(float x) {
  const float c = 0.7978845608028654f, inner = c * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(inner));
}
__device__ __forceinline__ float gelu_tanh_derivative(float x) {
  const float c = 0.7978845608028654f, inner = c * (x + 0.044715f * x * x * x);
  const float t = tanhf(inner);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * x * x);
}

__global__ void gelu_forward_kernel(const float* a, float* g, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    g[i] = gelu_tanh(a[i]);
}

/// dg = dg o GELU'(a), in place.
__global__ void gelu_backward_kernel(const float* a, float* dg, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dg[i] *= gelu_tanh_derivative(a[i]);
}

/// Softmax cross-entropy per row (one warp a row): adds the summed loss (double) and the rows whose arg-max is the
/// label; writes dL/dlogits = (softmax - onehot) * weight when d_logits is given; counts correct rows per position
/// (row % tokens) when per_position is given.
__global__ void cross_entropy_kernel(const float* logits, const std::int32_t* labels, float* d_logits, double* loss,
                                     unsigned long long* correct, unsigned long long* per_position, std::int64_t rows,
                                     int classes, int tokens, float weight) {
  const std::int64_t row = (blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (row >= rows) return;
  const float* z = logits + row * classes;
  // The first largest logit is the arg-max (the CPU model's maxCoeff keeps the first too).
  float top = -INFINITY;
  int best = classes;
  for (int c = lane; c < classes; c += 32)
    if (z[c] > top) top = z[c], best = c;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other = __shfl_xor_sync(0xffffffffu, top, offset);
    const int other_best = __shfl_xor_sync(0xffffffffu, best, offset);
    if (other > top || (other == top && other_best < best)) top = other, best = other_best;
  }
  float sum = 0.0f;
  for (int c = lane; c < classes; c += 32) sum += expf(z[c] - top);
  sum = warp_total(sum);
  const int label = labels[row];
  if (d_logits != nullptr)
    for (int c = lane; c < classes; c += 32)
      d_logits[row * classes + c] = expf(z[c] - top) * (weight / sum) - (c == label ? weight : 0.0f);
  if (lane == 0) {
    atomicAdd(loss, static_cast<double>(logf(sum) - (z[label] - top)));
    if (best == label) {
      atomicAdd(correct, 1ull);
      if (per_position != nullptr) atomicAdd(&per_position[row % tokens], 1ull);
    }
  }
}

/// Sum of squares of n floats into a double.
__global__ void sum_of_squares_kernel(const float* x, std::int64_t n, double* total) {
  double sum = 0.0;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    sum += static_cast<double>(x[i]) * x[i];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (threadIdx.x % 32 == 0) atomicAdd(total, sum);
}

__global__ void scale_kernel(float* x, std::int64_t n, float factor) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    x[i] *= factor;
}

/// AdamW (optimizer.hpp): m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w *= 1 - lr wd (decaying parameters);
/// w -= step_size m / (sqrt(v) / root_correction2 + eps).
__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, std::int64_t n, float b1, float b2,
                             float decay_factor, float step_size, float root_correction2, float eps) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    m[i] = b1 * m[i] + (1.0f - b1) * g[i];
    v[i] = b2 * v[i] + (1.0f - b2) * (g[i] * g[i]);
    const float decayed = w[i] * decay_factor;
    w[i] = decayed - step_size * m[i] / (sqrtf(v[i]) / root_correction2 + eps);
  }
}

/// Where one parameter lives in the flat device arrays.
struct ParameterSlot {
  std::string name;
  std::int64_t rows = 0, cols = 0, offset = 0;
  bool weight_decay = true;
  std::int64_t size() const { return rows * cols; }
};

}  // namespace detail::cuda_model

/// The word-problem model on one GPU. Not copyable; one stream; not thread-safe.
class CudaWordProblemModel {
 public:
  explicit CudaWordProblemModel(const ModelConfig& config, cudaStream_t stream = nullptr)
      : config_(config), stream_(stream) {
    for (const ModelParameterShape& p : model_parameter_shapes(config)) {
      slots_.push_back(Slot{p.name, p.rows, p.cols, total_, p.weight_decay});
      total_ += (p.rows * p.cols + 63) / 64 * 64;  // 256-byte aligned slots
    }
    for (auto* b : {&values_, &gradients_, &first_moments_, &second_moments_}) {
      b->resize(static_cast<std::size_t>(total_));
      DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(b->data(), 0, static_cast<std::size_t>(total_) * sizeof(float), stream_));
    }
    DELTAPRODUCT_CUBLAS_CHECK(cublasCreate(&cublas_));
    DELTAPRODUCT_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    // fp32 products (no TF32), as the CPU model computes them.
    DELTAPRODUCT_CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_PEDANTIC_MATH));
  }
  CudaWordProblemModel(const CudaWordProblemModel&) = delete;
  CudaWordProblemModel& operator=(const CudaWordProblemModel&) = delete;
  ~CudaWordProblemModel() { (void)cublasDestroy(cublas_); }

  const ModelConfig& config() const noexcept { return config_; }
  std::size_t parameter_count() const noexcept { return slots_.size(); }
  ModelParameterShape parameter_shape(std::size_t i) const {
    const auto& s = slot(i);
    return {s.name, s.rows, s.cols, s.weight_decay};
  }

  /// Copies parameter i's value (and, when given, its AdamW moments) from host memory, row-major [rows, cols].
  void set_parameter(std::size_t i, std::span<const float> value, std::span<const float> first_moment = {},
                     std::span<const float> second_moment = {}) {
    const auto& s = slot(i);
    copy_in(values_.data() + s.offset, value, s, "value");
    if (!first_moment.empty()) copy_in(first_moments_.data() + s.offset, first_moment, s, "first_moment");
    if (!second_moment.empty()) copy_in(second_moments_.data() + s.offset, second_moment, s, "second_moment");
  }
  /// Copies parameter i's value, gradient or moments to host memory (spans may be empty to skip). Synchronises.
  void get_parameter(std::size_t i, std::span<float> value, std::span<float> gradient = {},
                     std::span<float> first_moment = {}, std::span<float> second_moment = {}) const {
    const auto& s = slot(i);
    copy_out(values_.data() + s.offset, value, s, "value");
    copy_out(gradients_.data() + s.offset, gradient, s, "gradient");
    copy_out(first_moments_.data() + s.offset, first_moment, s, "first_moment");
    copy_out(second_moments_.data() + s.offset, second_moment, s, "second_moment");
    DELTAPRODUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  /// Mean cross-entropy and accuracy over `batch` sequences of `tokens` positions, and the gradients of that mean
  /// (replacing the previous ones).
  BatchResult train_batch(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch,
                          int tokens) {
    DELTAPRODUCT_CUDA_CHECK(
        cudaMemsetAsync(gradients_.data(), 0, static_cast<std::size_t>(total_) * sizeof(float), stream_));
    return run(inputs, labels, batch, tokens, true, {});
  }

  /// Adds, per position, how many of the `batch` sequences the model labels correctly (correct_per_position has
  /// `tokens` entries); returns the batch's mean loss. No gradients.
  double evaluate(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch, int tokens,
                  std::span<std::int64_t> correct_per_position) {
    if (static_cast<int>(correct_per_position.size()) != tokens)
      detail::argument_error("correct_per_position", std::to_string(tokens) + " entries",
                             std::to_string(correct_per_position.size()));
    return run(inputs, labels, batch, tokens, false, correct_per_position).loss;
  }

  /// Scales every gradient so that their global L2 norm is at most max_norm (> 0); returns the norm before.
  /// Synchronises (the norm decides the scale).
  double clip_gradient_norm(double max_norm) {
    if (!(max_norm > 0)) detail::argument_error("max_norm", "> 0", std::to_string(max_norm));
    using namespace detail::cuda_model;
    DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(norm_.data(), 0, sizeof(double), stream_));
    sum_of_squares_kernel<<<blocks_for(total_, 256 * 8), 256, 0, stream_>>>(gradients_.data(), total_, norm_.data());
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    double sum = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(&sum, norm_.data(), sizeof(double), cudaMemcpyDeviceToHost, stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    const double norm = std::sqrt(sum);
    if (norm > max_norm) {
      scale_kernel<<<blocks_for(total_, 256 * 8), 256, 0, stream_>>>(gradients_.data(), total_,
                                                                     static_cast<float>(max_norm / norm));
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    }
    return norm;
  }

  /// AdamW update number `step` (counted from 1, as AdamW::step after its increment) at this learning rate, with
  /// optimizer.hpp's options (beta1, beta2, eps, weight_decay).
  void adamw_update(double beta1, double beta2, double eps, double weight_decay, std::int64_t step,
                    double learning_rate) {
    using namespace detail::cuda_model;
    if (step < 1) detail::argument_error("step", ">= 1 (updates made, this one included)", std::to_string(step));
    const double correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    for (const auto& s : slots_) {
      const float decay = s.weight_decay ? static_cast<float>(1.0 - learning_rate * weight_decay) : 1.0f;
      adamw_kernel<<<blocks_for(s.size(), 256 * 4), 256, 0, stream_>>>(
          values_.data() + s.offset, gradients_.data() + s.offset, first_moments_.data() + s.offset,
          second_moments_.data() + s.offset, s.size(), static_cast<float>(beta1), static_cast<float>(beta2), decay,
          static_cast<float>(learning_rate / correction1), static_cast<float>(std::sqrt(correction2)),
          static_cast<float>(eps));
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    }
  }

 private:
  using Slot = detail::cuda_model::ParameterSlot;
  template <class E>
  using Buffer = detail::cuda_model::Buffer<E>;

  /// What one layer's forward keeps for its backward (device activations, rows = batch x tokens).
  struct LayerCache {
    Buffer<float> x, n1, q, k, v, beta, o, h, n2, a, g, inverse_rms1, inverse_rms2;
  };

  const Slot& slot(std::size_t i) const {
    if (i >= slots_.size())
      detail::argument_error("parameter", "an index below " + std::to_string(slots_.size()), std::to_string(i));
    return slots_[i];
  }
  void copy_in(float* device, std::span<const float> host, const Slot& s, const char* what) {
    if (static_cast<std::int64_t>(host.size()) != s.size())
      detail::argument_error(std::string(what) + " of " + s.name,
                             std::to_string(s.size()) + " floats ([" + std::to_string(s.rows) + ", " +
                                 std::to_string(s.cols) + "])",
                             std::to_string(host.size()));
    DELTAPRODUCT_CUDA_CHECK(
        cudaMemcpyAsync(device, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the host span may go away
  }
  void copy_out(const float* device, std::span<float> host, const Slot& s, const char* what) const {
    if (host.empty()) return;
    if (static_cast<std::int64_t>(host.size()) != s.size())
      detail::argument_error(std::string(what) + " of " + s.name, std::to_string(s.size()) + " floats",
                             std::to_string(host.size()));
    DELTAPRODUCT_CUDA_CHECK(
        cudaMemcpyAsync(host.data(), device, host.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  }
  float* value(std::size_t i) const { return values_.data() + slots_[i].offset; }
  float* gradient(std::size_t i) const { return gradients_.data() + slots_[i].offset; }

  /// y[rows, out] (=, or += with accumulate) x[rows, in] W[in, out], all row-major: column-major y^T = W^T x^T.
  void linear_forward(const float* x, std::size_t w, float* y, std::int64_t rows, bool accumulate = false) {
    const Slot& s = slots_[w];
    const float one = 1.0f, zero = 0.0f;
    DELTAPRODUCT_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(s.cols),
                                          static_cast<int>(rows), static_cast<int>(s.rows), &one, value(w),
                                          static_cast<int>(s.cols), x, static_cast<int>(s.rows),
                                          accumulate ? &one : &zero, y, static_cast<int>(s.cols)));
  }
  /// dW += x^T dy; dx (=, or += with accumulate) dy W^T when dx is given.
  void linear_backward(const float* x, std::size_t w, const float* dy, float* dx, std::int64_t rows,
                       bool accumulate = false) {
    const Slot& s = slots_[w];
    const float one = 1.0f, zero = 0.0f;
    // column-major dW^T [cols, rows_w] += dy^T [cols, rows] x [rows, rows_w]
    DELTAPRODUCT_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_N, CUBLAS_OP_T, static_cast<int>(s.cols),
                                          static_cast<int>(s.rows), static_cast<int>(rows), &one, dy,
                                          static_cast<int>(s.cols), x, static_cast<int>(s.rows), &one, gradient(w),
                                          static_cast<int>(s.cols)));
    if (dx == nullptr) return;
    // column-major dx^T [rows_w, rows] = W [rows_w, cols] (stored as W^T, hence OP_T) dy^T [cols, rows]
    DELTAPRODUCT_CUBLAS_CHECK(cublasSgemm(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.rows),
                                          static_cast<int>(rows), static_cast<int>(s.cols), &one, value(w),
                                          static_cast<int>(s.cols), dy, static_cast<int>(s.cols),
                                          accumulate ? &one : &zero, dx, static_cast<int>(s.rows)));
  }

  void rms_norm_forward(const float* x, std::size_t gain, float* y, float* inverse_rms, std::int64_t rows) {
    using namespace detail::cuda_model;
    rms_norm_forward_kernel<<<blocks_for(rows * 32, 256), 256, 0, stream_>>>(
        x, value(gain), y, inverse_rms, rows, config_.model_dim, static_cast<float>(config_.norm_eps));
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
  }
  void rms_norm_backward(const float* x, std::size_t gain, const float* inverse_rms, const float* dy, float* dx,
                         std::int64_t rows, bool add) {
    using namespace detail::cuda_model;
    const int d = config_.model_dim;
    rms_norm_backward_kernel<<<blocks_for(rows * 32, 256), 256, 0, stream_>>>(x, value(gain), inverse_rms, dy, dx,
                                                                              rows, d, add);
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    constexpr std::int64_t rows_per_block = 256;
    const dim3 grid(static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block),
                    static_cast<unsigned>((d + 127) / 128));
    rms_norm_gain_kernel<<<grid, 128, 0, stream_>>>(x, inverse_rms, dy, gradient(gain), rows, d, rows_per_block);
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
  }

  /// The recurrence of one layer on the device: o from q, k, v, beta, or (d_o given) their gradients.
  template <int NH, EigenvalueRange Range>
  void recurrence(int batch, int tokens, LayerCache& L, const float* d_o, float* dq, float* dk, float* dv,
                  float* dbeta) {
    DeltaProduct<float, NH, Range> model;
    model.options.key_normalization = Normalization::l2;
    model.options.query_normalization = Normalization::l2;
    model.options.validate_ranges = false;  // beta = s sigmoid(.) lies in range by construction
    const index_t B = batch, T = tokens, H = config_.heads, D = config_.head_dim, R = T * NH;
    const DeltaInputs<float, float> in{.q = make_view<const float>(L.q.data(), {B, T, H, D}),
                                       .k = make_view<const float>(L.k.data(), {B, R, H, D}),
                                       .v = make_view<const float>(L.v.data(), {B, R, H, D}),
                                       .beta = make_view<const float>(L.beta.data(), {B, R, H})};
    CudaBackend backend{.stream = stream_, .algorithm = CudaAlgorithm::recurrent};
    if (d_o == nullptr) {
      const ForwardOutputs<float, float> out{.o = make_view(L.o.data(), {B, T, H, D})};
      prepare_workspace(backend, forward_workspace_bytes(backend, model, in, out));
      forward(backend, model, in, out);
      return;
    }
    const OutputGradients<float, float> og{.o = make_view<const float>(d_o, {B, T, H, D})};
    const DeltaGradients<float, float> grads{.q = make_view(dq, {B, T, H, D}), .k = make_view(dk, {B, R, H, D}),
                                             .v = make_view(dv, {B, R, H, D}), .beta = make_view(dbeta, {B, R, H})};
    prepare_workspace(backend, backward_workspace_bytes(model, in, og, grads));
    backward(backend, model, in, og, grads);
  }
  template <int NH>
  void recurrence_range(int batch, int tokens, LayerCache& L, const float* d_o, float* dq, float* dk, float* dv,
                        float* dbeta) {
    if (config_.negative_eigenvalues)
      recurrence<NH, EigenvalueRange::signed_unit>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
    else
      recurrence<NH, EigenvalueRange::unit>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
  }
  void run_recurrence(int batch, int tokens, LayerCache& L, const float* d_o = nullptr, float* dq = nullptr,
                      float* dk = nullptr, float* dv = nullptr, float* dbeta = nullptr) {
    switch (config_.householder_steps) {
      case 1: return recurrence_range<1>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
      case 2: return recurrence_range<2>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
      case 3: return recurrence_range<3>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
      default: return recurrence_range<4>(batch, tokens, L, d_o, dq, dk, dv, dbeta);
    }
  }
  /// Points the backend at a zeroed workspace of at least `bytes` (grown as needed; zeroed again when grown).
  void prepare_workspace(CudaBackend& backend, std::size_t bytes) {
    if (bytes > workspace_.size()) {
      workspace_ = Buffer<unsigned char>(bytes);
      DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(workspace_.data(), 0, bytes, stream_));
    }
    backend.workspace = workspace_.data();
    backend.workspace_bytes = workspace_.size();
  }

  /// Forward over the batch; with `backward`, gradients of the mean loss into the gradient array; counts correct
  /// labels per position into `per_position` when it is not empty.
  BatchResult run(std::span<const std::int32_t> inputs, std::span<const std::int32_t> labels, int batch, int tokens,
                  bool backward, std::span<std::int64_t> per_position) {
    using namespace detail::cuda_model;
    check_word_problem_batch(config_, inputs, labels, batch, tokens);
    const ModelConfig& c = config_;
    const std::int64_t rows = static_cast<std::int64_t>(batch) * tokens;
    const std::int64_t d = c.model_dim, hd = static_cast<std::int64_t>(c.heads) * c.head_dim;
    const std::int64_t nh = c.householder_steps;
    const float beta_scale = c.negative_eigenvalues ? 2.0f : 1.0f;
    constexpr std::size_t per_layer = 9;
    const auto at = [](int layer, std::size_t offset) { return 1 + per_layer * static_cast<std::size_t>(layer) + offset; };
    const std::size_t final_norm = 1 + per_layer * static_cast<std::size_t>(c.layers), classifier = final_norm + 1;
    const auto n = [rows](std::int64_t width) { return static_cast<std::size_t>(rows * width); };

    ids_.resize(2 * n(1));
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(ids_.data(), inputs.data(), n(1) * sizeof(std::int32_t),
                                            cudaMemcpyHostToDevice, stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(ids_.data() + n(1), labels.data(), n(1) * sizeof(std::int32_t),
                                            cudaMemcpyHostToDevice, stream_));
    const std::int32_t* input_ids = ids_.data();
    const std::int32_t* label_ids = ids_.data() + n(1);

    cache_.resize(static_cast<std::size_t>(c.layers));
    x_.resize(n(d));
    embedding_forward_kernel<<<blocks_for(rows * d, 256 * 4), 256, 0, stream_>>>(input_ids, value(0), x_.data(), rows,
                                                                                   static_cast<int>(d));
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    for (int l = 0; l < c.layers; ++l) {
      LayerCache& L = cache_[static_cast<std::size_t>(l)];
      L.x.resize(n(d)), L.n1.resize(n(d)), L.q.resize(n(hd)), L.k.resize(n(nh * hd)), L.v.resize(n(nh * hd));
      L.beta.resize(n(nh * c.heads)), L.o.resize(n(hd)), L.h.resize(n(d)), L.n2.resize(n(d));
      L.a.resize(n(c.mlp_dim)), L.g.resize(n(c.mlp_dim)), L.inverse_rms1.resize(n(1)), L.inverse_rms2.resize(n(1));
      DELTAPRODUCT_CUDA_CHECK(
          cudaMemcpyAsync(L.x.data(), x_.data(), n(d) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      rms_norm_forward(L.x.data(), at(l, 0), L.n1.data(), L.inverse_rms1.data(), rows);
      linear_forward(L.n1.data(), at(l, 1), L.q.data(), rows);
      linear_forward(L.n1.data(), at(l, 2), L.k.data(), rows);
      linear_forward(L.n1.data(), at(l, 3), L.v.data(), rows);
      linear_forward(L.n1.data(), at(l, 4), L.beta.data(), rows);
      scaled_sigmoid_kernel<<<blocks_for(rows * nh * c.heads, 256 * 4), 256, 0, stream_>>>(
          L.beta.data(), rows * nh * c.heads, beta_scale);
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
      run_recurrence(batch, tokens, L);
      // h = x + o Wo
      DELTAPRODUCT_CUDA_CHECK(
          cudaMemcpyAsync(L.h.data(), L.x.data(), n(d) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      linear_forward(L.o.data(), at(l, 5), L.h.data(), rows, true);
      rms_norm_forward(L.h.data(), at(l, 6), L.n2.data(), L.inverse_rms2.data(), rows);
      linear_forward(L.n2.data(), at(l, 7), L.a.data(), rows);
      gelu_forward_kernel<<<blocks_for(rows * c.mlp_dim, 256 * 4), 256, 0, stream_>>>(L.a.data(), L.g.data(),
                                                                                       rows * c.mlp_dim);
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
      // x = h + GELU(n2 W1) W2
      DELTAPRODUCT_CUDA_CHECK(
          cudaMemcpyAsync(x_.data(), L.h.data(), n(d) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
      linear_forward(L.g.data(), at(l, 8), x_.data(), rows, true);
    }
    nf_.resize(n(d)), inverse_rms_final_.resize(n(1)), logits_.resize(n(c.classes)), d_logits_.resize(n(c.classes));
    rms_norm_forward(x_.data(), final_norm, nf_.data(), inverse_rms_final_.data(), rows);
    linear_forward(nf_.data(), classifier, logits_.data(), rows);

    per_position_.resize(static_cast<std::size_t>(tokens));
    DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(loss_.data(), 0, sizeof(double), stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(correct_.data(), 0, sizeof(unsigned long long), stream_));
    if (!per_position.empty())
      DELTAPRODUCT_CUDA_CHECK(
          cudaMemsetAsync(per_position_.data(), 0, static_cast<std::size_t>(tokens) * sizeof(std::uint64_t), stream_));
    cross_entropy_kernel<<<blocks_for(rows * 32, 256), 256, 0, stream_>>>(
        logits_.data(), label_ids, backward ? d_logits_.data() : nullptr, loss_.data(), correct_.data(),
        per_position.empty() ? nullptr : per_position_.data(), rows,
        static_cast<int>(c.classes), tokens, static_cast<float>(1.0 / static_cast<double>(rows)));
    DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());

    if (backward) {
      d_nf_.resize(n(d)), dx_.resize(n(d)), dh_.resize(n(d)), dg_.resize(n(c.mlp_dim)), dn_.resize(n(d));
      d_o_.resize(n(hd)), dq_.resize(n(hd)), dk_.resize(n(nh * hd)), dv_.resize(n(nh * hd));
      dbeta_.resize(n(nh * c.heads));
      linear_backward(nf_.data(), classifier, d_logits_.data(), d_nf_.data(), rows);
      rms_norm_backward(x_.data(), final_norm, inverse_rms_final_.data(), d_nf_.data(), dx_.data(), rows, false);
      for (int l = c.layers - 1; l >= 0; --l) {
        LayerCache& L = cache_[static_cast<std::size_t>(l)];
        // x_out = h + GELU(n2 W1) W2: dh = dx + (through the MLP)
        DELTAPRODUCT_CUDA_CHECK(
            cudaMemcpyAsync(dh_.data(), dx_.data(), n(d) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
        linear_backward(L.g.data(), at(l, 8), dx_.data(), dg_.data(), rows);
        gelu_backward_kernel<<<blocks_for(rows * c.mlp_dim, 256 * 4), 256, 0, stream_>>>(L.a.data(), dg_.data(),
                                                                                         rows * c.mlp_dim);
        DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
        linear_backward(L.n2.data(), at(l, 7), dg_.data(), dn_.data(), rows);
        rms_norm_backward(L.h.data(), at(l, 6), L.inverse_rms2.data(), dn_.data(), dh_.data(), rows, true);
        // h = x + DeltaProduct(q, k, v, beta) Wo
        linear_backward(L.o.data(), at(l, 5), dh_.data(), d_o_.data(), rows);
        run_recurrence(batch, tokens, L, d_o_.data(), dq_.data(), dk_.data(), dv_.data(), dbeta_.data());
        scaled_sigmoid_backward_kernel<<<blocks_for(rows * nh * c.heads, 256 * 4), 256, 0, stream_>>>(
            L.beta.data(), dbeta_.data(), rows * nh * c.heads, beta_scale);
        DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
        linear_backward(L.n1.data(), at(l, 1), dq_.data(), dn_.data(), rows);
        linear_backward(L.n1.data(), at(l, 2), dk_.data(), dn_.data(), rows, true);
        linear_backward(L.n1.data(), at(l, 3), dv_.data(), dn_.data(), rows, true);
        linear_backward(L.n1.data(), at(l, 4), dbeta_.data(), dn_.data(), rows, true);
        // dx = dh + (through the mixer's norm)
        DELTAPRODUCT_CUDA_CHECK(
            cudaMemcpyAsync(dx_.data(), dh_.data(), n(d) * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
        rms_norm_backward(L.x.data(), at(l, 0), L.inverse_rms1.data(), dn_.data(), dx_.data(), rows, true);
      }
      embedding_backward_kernel<<<blocks_for(rows * d, 256 * 4), 256, 0, stream_>>>(input_ids, dx_.data(),
                                                                                      gradient(0), rows,
                                                                                      static_cast<int>(d));
      DELTAPRODUCT_CUDA_CHECK(cudaGetLastError());
    }

    double summed_loss = 0;
    unsigned long long correct_rows = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(&summed_loss, loss_.data(), sizeof summed_loss, cudaMemcpyDeviceToHost,
                                            stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(&correct_rows, correct_.data(), sizeof correct_rows,
                                            cudaMemcpyDeviceToHost, stream_));
    std::vector<unsigned long long> counts(per_position.size());
    if (!per_position.empty())
      DELTAPRODUCT_CUDA_CHECK(cudaMemcpyAsync(counts.data(), per_position_.data(), counts.size() * sizeof(counts[0]),
                                              cudaMemcpyDeviceToHost, stream_));
    DELTAPRODUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (std::size_t t = 0; t < counts.size(); ++t) per_position[t] += static_cast<std::int64_t>(counts[t]);
    BatchResult r;
    r.loss = summed_loss / static_cast<double>(rows);
    r.accuracy = static_cast<double>(correct_rows) / static_cast<double>(rows);
    return r;
  }

  ModelConfig config_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  std::vector<Slot> slots_;
  std::int64_t total_ = 0;
  Buffer<float> values_, gradients_, first_moments_, second_moments_;
  Buffer<double> norm_{1}, loss_{1};
  Buffer<unsigned long long> correct_{1}, per_position_;
  Buffer<std::int32_t> ids_;
  Buffer<unsigned char> workspace_;
  std::vector<LayerCache> cache_;
  Buffer<float> x_, nf_, inverse_rms_final_, logits_, d_logits_, d_nf_, dx_, dh_, dg_, dn_, d_o_, dq_, dk_, dv_,
      dbeta_;
};

}  // namespace deltaproduct

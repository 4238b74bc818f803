// Backends are values the caller passes first, as Thrust execution policies and Kokkos execution spaces are:
//   deltaproduct::forward(deltaproduct::cpu, model, inputs, outputs);
//   deltaproduct::forward(deltaproduct::CudaBackend{stream}, model, inputs, outputs);   // <deltaproduct/cuda/...>
// Each backend overloads forward() and step() for its own type and checks the same contract (core/contract.hpp).
#pragma once

#include <thread>

namespace deltaproduct {

/// How the CPU backend evaluates a forward or backward pass over a sequence.
enum class CpuAlgorithm {
  automatic,   ///< chunked for float and double when a sequence spans more than one chunk; sequential otherwise
  sequential,  ///< token by token, exactly the arithmetic of core/recurrence.hpp (the simulated formats' choice)
  chunked,     ///< chunks of `chunk_size` tokens in compact WY / UT form: matrix-matrix products (Eigen GEMM)
};

/// The CPU backend (Eigen). Work spreads over (sequence, head) pairs on `threads` threads, and over blocks of value
/// columns inside a sequence when there are fewer pairs than threads.
struct CpuBackend {
  int threads = 0;  ///< 0: every hardware thread; 1: run on the calling thread only
  CpuAlgorithm algorithm = CpuAlgorithm::automatic;
  int chunk_size = 32;  ///< tokens per chunk of the chunked form (>= 1); 32 was fastest for K = V = 128 in float

  int resolved_threads() const noexcept {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
};

/// The CPU backend on all cores: `deltaproduct::forward(deltaproduct::cpu, ...)`.
inline constexpr CpuBackend cpu{};

}  // namespace deltaproduct

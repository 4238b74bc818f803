// Backends are values the caller passes first, as Thrust execution policies and Kokkos execution spaces are:
//   deltaproduct::forward(deltaproduct::cpu, model, inputs, outputs);
//   deltaproduct::forward(deltaproduct::CudaBackend{stream}, model, inputs, outputs);   // <deltaproduct/cuda/...>
// Each backend overloads forward() and step() for its own type and checks the same contract (core/contract.hpp).
#pragma once

#include <thread>

namespace deltaproduct {

/// The CPU backend (Eigen). Work spreads over (sequence, head) pairs on `threads` threads.
struct CpuBackend {
  int threads = 0;  ///< 0: every hardware thread; 1: run on the calling thread only

  int resolved_threads() const noexcept {
    if (threads > 0) return threads;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }
};

/// The CPU backend on all cores: `deltaproduct::forward(deltaproduct::cpu, ...)`.
inline constexpr CpuBackend cpu{};

}  // namespace deltaproduct

// A minimal parallel loop for the CPU backend: items are handed out one at a time from an atomic counter, so uneven
// items (sequences of different lengths) balance across threads. Exceptions in a worker reach the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "deltaproduct/core/view.hpp"

namespace deltaproduct::detail {

/// Calls body(item, worker) for item in [0, count), on at most `threads` threads; worker in [0, threads) lets each
/// thread own its scratch memory. Runs on the calling thread alone when threads <= 1 or count <= 1.
template <class Body>
void parallel_for(index_t count, int threads, Body&& body) {
  if (count <= 0) return;
  const int workers = static_cast<int>(std::min<index_t>(std::max(threads, 1), count));
  if (workers == 1) {
    for (index_t item = 0; item < count; ++item) body(item, 0);
    return;
  }
  std::atomic<index_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto run = [&](int worker) {
    try {
      for (index_t item = next++; item < count; item = next++) body(item, worker);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = count;  // stop handing out work
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(workers - 1));
  for (int w = 1; w < workers; ++w) pool.emplace_back(run, w);
  run(0);
  for (auto& thread : pool) thread.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace deltaproduct::detail

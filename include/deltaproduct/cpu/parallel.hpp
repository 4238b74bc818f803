// How the CPU backend spreads a forward pass over threads. Work items are (sequence, head) pairs; when there are
// fewer pairs than threads (one long sequence, few heads), each pair's value columns are split into blocks too: the
// columns of the K x V state evolve independently given the keys, betas and gates (S^T k, the rank-1 updates, the
// readout and the chunked form's products are all column by column), so a block is a complete, smaller problem.
//
// parallel_for is a minimal loop: items are handed out one at a time from an atomic counter, so uneven items
// (sequences of different lengths) balance across threads. Exceptions in a worker reach the caller.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include "deltaproduct/core/backend.hpp"
#include "deltaproduct/core/contract.hpp"
#include "deltaproduct/core/recurrence.hpp"
#include "deltaproduct/core/scalar.hpp"
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

/// Value columns [begin, end) of one work item.
struct ColumnRange {
  index_t begin = 0;
  index_t end = 0;
  index_t size() const noexcept { return end - begin; }
};

/// The value dimension cut into `count` blocks of `width` columns (the last one may be narrower).
struct ValueColumnBlocks {
  index_t value_dim = 1;
  index_t count = 1;
  index_t width = 1;

  ColumnRange block(index_t b) const noexcept { return {b * width, std::min((b + 1) * width, value_dim)}; }
};

/// One block per pair when there are at least as many (sequence, head) pairs as workers; otherwise enough blocks of
/// nearly equal width that every worker gets an item.
inline ValueColumnBlocks value_column_blocks(index_t pairs, int workers, index_t value_dim) {
  ValueColumnBlocks blocks{.value_dim = value_dim, .count = 1, .width = value_dim};
  if (pairs <= 0 || value_dim <= 1 || pairs >= workers) return blocks;
  const index_t wanted = std::min<index_t>((workers + pairs - 1) / pairs, value_dim);
  blocks.width = (value_dim + wanted - 1) / wanted;
  blocks.count = (value_dim + blocks.width - 1) / blocks.width;
  return blocks;
}

/// Threads worth starting: below this many state-element updates a call runs on the calling thread, since starting
/// threads would cost more than the work.
inline int cpu_threads_for(const CpuBackend& backend, const Problem& p) {
  const double updates = static_cast<double>(p.batch) * static_cast<double>(p.tokens) * static_cast<double>(p.heads) *
                         p.householder_steps * static_cast<double>(p.key_dim) * static_cast<double>(p.value_dim);
  constexpr double min_updates_for_threads = 1 << 17;
  if (updates < min_updates_for_threads) return 1;
  return std::max(backend.resolved_threads(), 1);
}

/// The same, capped at the number of work items.
inline int cpu_threads_for(const CpuBackend& backend, const Problem& p, index_t items) {
  return static_cast<int>(std::max<index_t>(std::min<index_t>(cpu_threads_for(backend, p), items), 1));
}

/// The longest sequence of a call, in tokens (T, or the longest cu_seqlens interval).
inline index_t longest_sequence(const Problem& p) {
  if (p.cu_seqlens.absent()) return p.tokens;
  index_t longest = 0;
  for (index_t n = 0; n < p.sequences; ++n) longest = std::max(longest, p.cu_seqlens(n + 1) - p.cu_seqlens(n));
  return longest;
}

/// Reads x(fixed..., 0..n-1) into a row vector of the state scalar.
template <class Scalar, class T>
void load_row(const T* first, index_t stride, RowVector<Scalar>& dst) {
  for (Eigen::Index i = 0; i < dst.size(); ++i) dst(i) = convert_scalar<Scalar>(first[i * stride]);
}

template <class T, class Scalar>
void store_row(const RowVector<Scalar>& src, T* first, index_t stride) {
  for (Eigen::Index i = 0; i < src.size(); ++i) first[i * stride] = convert_scalar<T>(src(i));
}

/// Copies columns [first_column, first_column + state.cols()) of the (n, h) block of a [N, H, K, V] state into
/// `state` (zero when absent), a row at a time.
template <class Scalar, class S>
void load_state(const View<const S, 4>& initial, index_t n, index_t h, index_t first_column, StateArg<Scalar> state) {
  if (initial.absent()) {
    state.setConstant(Scalar(0.0));
    return;
  }
  for (Eigen::Index i = 0; i < state.rows(); ++i) {
    const S* row = &initial(n, h, i, first_column);
    for (Eigen::Index j = 0; j < state.cols(); ++j) state(i, j) = convert_scalar<Scalar>(row[j * initial.stride(3)]);
  }
}

template <class Scalar, class S>
void load_state(const View<const S, 4>& initial, index_t n, index_t h, StateArg<Scalar> state) {
  load_state<Scalar>(initial, n, h, 0, state);
}

template <class Scalar, class S>
void store_state(const StateArg<Scalar>& state, const View<S, 4>& final_state, index_t n, index_t h,
                 index_t first_column = 0) {
  if (final_state.absent()) return;
  for (Eigen::Index i = 0; i < state.rows(); ++i) {
    S* row = &final_state(n, h, i, first_column);
    for (Eigen::Index j = 0; j < state.cols(); ++j) row[j * final_state.stride(3)] = convert_scalar<S>(state(i, j));
  }
}

template <class S, std::size_t R>
bool same_memory(const View<const S, R>& a, const View<S, R>& b) {
  return a.data() == b.data() && a.extents() == b.extents() && a.strides() == b.strides();
}

/// One unit of work: a (sequence, head) pair, restricted to some of its value columns.
struct WorkItem {
  index_t sequence = 0;
  index_t head = 0;
  ColumnRange columns;
};

/// Runs body(state, workspace, item) for every work item on the backend's threads. `state` holds the item's value
/// columns of the (sequence, head) state: it starts as the initial state (or zero) and is stored as the final state
/// afterwards. When the final state holds the model's scalar with contiguous rows, the body works directly in the
/// caller's memory (in place for step()), with no copy in or out; otherwise in a per-worker buffer. Workspaces come
/// from make_workspace(widest block), one per worker, allocated once per call.
template <class Scalar, class S, class MakeWorkspace, class Body>
void for_each_work_item(const CpuBackend& backend, const Problem& p, const View<const S, 4>& initial_state,
                        const View<S, 4>& final_state, MakeWorkspace&& make_workspace, Body&& body) {
  const index_t pairs = p.sequences * p.heads;
  if (pairs <= 0) return;
  const int wanted = cpu_threads_for(backend, p);
  const ValueColumnBlocks blocks = value_column_blocks(pairs, wanted, p.value_dim);
  const index_t items = pairs * blocks.count;
  const int workers = static_cast<int>(std::min<index_t>(wanted, items));

  using Workspace = std::remove_cvref_t<decltype(make_workspace(blocks.width))>;
  std::vector<Workspace> workspaces;
  std::vector<StateMatrix<Scalar>> buffers(static_cast<std::size_t>(workers));
  workspaces.reserve(static_cast<std::size_t>(workers));
  for (int w = 0; w < workers; ++w) workspaces.push_back(make_workspace(blocks.width));

  bool direct = false;
  if constexpr (std::is_same_v<Scalar, S>)
    direct = !final_state.absent() && final_state.stride(3) == 1 && final_state.stride(2) >= p.value_dim;
  const bool in_place = direct && same_memory(initial_state, final_state);
  if (!direct)
    for (auto& buffer : buffers) buffer.resize(p.key_dim, blocks.width);

  parallel_for(items, workers, [&](index_t index, int worker) {
    const index_t pair = index / blocks.count;
    const WorkItem item{
        .sequence = pair / p.heads, .head = pair % p.heads, .columns = blocks.block(index % blocks.count)};
    const index_t n = item.sequence, h = item.head, c = item.columns.begin, width = item.columns.size();
    Workspace& workspace = workspaces[static_cast<std::size_t>(worker)];
    if constexpr (std::is_same_v<Scalar, S>) {
      if (direct) {
        Eigen::Map<StateMatrix<Scalar>, 0, Eigen::OuterStride<>> state(&final_state(n, h, 0, c), p.key_dim, width,
                                                                       Eigen::OuterStride<>(final_state.stride(2)));
        if (!in_place) load_state<Scalar>(initial_state, n, h, c, state);
        body(StateRef<Scalar>(state), workspace, item);
        return;
      }
    }
    auto state = buffers[static_cast<std::size_t>(worker)].leftCols(width);
    load_state<Scalar>(initial_state, n, h, c, state);
    body(StateRef<Scalar>(state), workspace, item);
    store_state<Scalar>(state, final_state, n, h, c);
  });
}

}  // namespace deltaproduct::detail

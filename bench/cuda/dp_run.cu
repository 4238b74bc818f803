// The bridge bench/gpu_compare.py calls: reads raw inputs the script wrote (flash-linear-attention layouts), runs this
// library's CUDA backend once for the outputs and then repeatedly for the time, writes the outputs back.
//
//   dp_run --dir D --mode forward|decode|training --B 8 --T 4096 --H 16 --K 128 --V 128 --nh 1 --gated 1 --h0 1
//          --iters 20 [--gradients 1] [--backward-algorithm automatic|recurrent|chunked] [--sequence-splits N]
//          [--keep-forward-states] [--keep-preambles] [--value-splits N]
//
// Reads D/q.bin [B,T,H,K], D/k.bin [B,T*nh,H,K], D/v.bin [B,T*nh,H,V], D/beta.bin [B,T*nh,H], D/g.bin [B,T,H]
// (gated), all bf16, and D/h0.bin [B,H,K,V] fp32 (with --h0 1). Writes D/o.bin (bf16) and D/ht.bin (fp32), and prints
// one line: `dp_run ms=<median> path=<chunked|recurrent|decode>`. Keys arrive L2-normalised; the readout scale is
// 1/sqrt(K); value checks are off (as in the kernels compared against). Each timed call follows an L2 flush (a 256 MB
// memset), as triton.testing.do_bench does.
//
// --mode training times a training step: forward() (o only, no final state, as FLA's training calls) then
// backward() from dL/do, read from D/do.bin [B,T,H,V] bf16, with no dL/d(final state). It writes D/o.bin, with
// --gradients 1 also D/dq.bin, D/dk.bin, D/dv.bin, D/dbeta.bin, D/dg.bin (gated) in bf16 and D/dh0.bin (with --h0 1)
// in fp32, and prints `dp_run ms=<median forward + backward> forward_ms=<median> backward_ms=<median>
// path=<forward's path> backward=<automatic|recurrent|chunked> backward_splits=<n> keep_forward_states=<0|1>
// keep_preambles=<0|1> value_splits=<n>`; the forward's algorithm is left automatic, the
// backward's is --backward-algorithm (default automatic); backward_splits is the number of runs of chunks the
// backward cuts each sequence into (backward_sequence_splits(); 1 when unsplit or recurrent); the last three echo the
// flags below.
//
// --sequence-splits N (forward and training modes) sets CudaBackend::sequence_splits of the forward and the backward
// calls, their workspaces sized for it: 0 (the default) keeps the automatic choice (the forward splits where B * H
// leaves multiprocessors idle, and the backward with it), 1 never splits, N >= 2 cuts every sequence into N runs
// of chunks. The forward's count shows in path= (`chunked/<n>splits`).
//
// --keep-forward-states and --keep-preambles (training mode; off by default; each takes an optional 0 or 1 after
// it, so `--keep-preambles 1` reads as `--keep-preambles`) set the CudaBackend fields keep_forward_states and
// keep_preambles of both calls of the step, as a training loop sets
// them. With --keep-forward-states the forward keeps each chunk's states and the backward reads them instead of running
// its own state pass (so backward_ms drops by that pass); both calls then share one workspace of
// max(forward_workspace_bytes(), backward_workspace_bytes()) for those fields, and both must take the chunked form
// (dp_run refuses the flag where the forward or the backward would take the recurrent one, e.g. with
// --backward-algorithm recurrent). Without it each call has a workspace of its own. --keep-preambles alone makes the
// backward's own state pass keep the preambles its reverse scan loads. The forward and decode modes ignore the
// three flags (as decode ignores --sequence-splits), so gpu_compare.py may pass them to every call.
//
// --value-splits N (training mode; default 1) sets CudaBackend::backward_value_splits: the reverse scan runs each
// sequence (or run) on N CTAs, V / N value rows each (2 needs V = 128 and the chunked backward). Other modes ignore it.
//
// --wgmma-chunk-gradients (training mode; a switch like the two above, on by default as the field is) sets
// CudaBackend::wgmma_chunk_gradients of the backward: the chunk-gradient pass's products on wgmma (K = V = 128 on
// Hopper; elsewhere the call runs as without it); `--wgmma-chunk-gradients 0` runs them on mma.sync. The printout
// ends with wgmma_chunk_gradients=<0|1>.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deltaproduct/cuda/cuda.cuh>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dp = deltaproduct;
using bf16 = __nv_bfloat16;

namespace {

struct Arguments {
  std::string dir, mode = "forward", backward_algorithm = "automatic";
  dp::index_t B = 1, T = 1, H = 1, K = 128, V = 128;
  int n_h = 1, iters = 20, warmup = 3, sequence_splits = 0, value_splits = 1;
  bool gated = false, h0 = false, gradients = false;
  // A training step's CudaBackend fields (--keep-forward-states, --keep-preambles).
  bool keep_forward_states = false, keep_preambles = false;
  // --wgmma-chunk-gradients: CudaBackend::wgmma_chunk_gradients of the backward (its default unless given).
  bool wgmma_gradients = dp::CudaBackend{}.wgmma_chunk_gradients;
};

dp::CudaAlgorithm algorithm_named(const std::string& name) {
  if (name == "automatic") return dp::CudaAlgorithm::automatic;
  if (name == "recurrent") return dp::CudaAlgorithm::recurrent;
  if (name == "chunked") return dp::CudaAlgorithm::chunked;
  throw std::invalid_argument("dp_run: --backward-algorithm must be automatic, recurrent or chunked, not " + name);
}

Arguments parse(int argc, char** argv) {
  Arguments a;
  for (int i = 1; i < argc; ++i) {
    const std::string key = argv[i];
    // Switches: the name alone turns one on; an explicit 0 or 1 after it is taken as its value.
    bool* const flag = key == "--keep-forward-states"     ? &a.keep_forward_states
                       : key == "--keep-preambles"        ? &a.keep_preambles
                       : key == "--wgmma-chunk-gradients" ? &a.wgmma_gradients
                                                          : nullptr;
    if (flag != nullptr) {
      bool on = true;
      if (i + 1 < argc && (std::strcmp(argv[i + 1], "0") == 0 || std::strcmp(argv[i + 1], "1") == 0))
        on = std::strcmp(argv[++i], "1") == 0;
      *flag = on;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument("dp_run: option " + key + " needs a value");
    const std::string value = argv[++i];
    if (key == "--dir")
      a.dir = value;
    else if (key == "--mode")
      a.mode = value;
    else if (key == "--B")
      a.B = std::stoll(value);
    else if (key == "--T")
      a.T = std::stoll(value);
    else if (key == "--H")
      a.H = std::stoll(value);
    else if (key == "--K")
      a.K = std::stoll(value);
    else if (key == "--V")
      a.V = std::stoll(value);
    else if (key == "--nh")
      a.n_h = std::stoi(value);
    else if (key == "--gated")
      a.gated = value == "1";
    else if (key == "--h0")
      a.h0 = value == "1";
    else if (key == "--iters")
      a.iters = std::stoi(value);
    else if (key == "--warmup")
      a.warmup = std::stoi(value);
    else if (key == "--gradients")
      a.gradients = value == "1";
    else if (key == "--backward-algorithm")
      a.backward_algorithm = value;
    else if (key == "--sequence-splits")
      a.sequence_splits = std::stoi(value);
    else if (key == "--value-splits")
      a.value_splits = std::stoi(value);
    else
      throw std::invalid_argument("dp_run: unknown option " + key);
  }
  if (a.dir.empty()) throw std::invalid_argument("dp_run: --dir is required");
  if (a.mode != "forward" && a.mode != "decode" && a.mode != "training")
    throw std::invalid_argument("dp_run: --mode must be forward, decode or training, not " + a.mode);
  algorithm_named(a.backward_algorithm);  // rejects an unknown name before any file is read
  if (a.sequence_splits < 0)
    throw std::invalid_argument("dp_run: --sequence-splits must be 0 (automatic) or a count >= 1, not " +
                                std::to_string(a.sequence_splits));
  if (a.mode == "decode" && a.T != 1) throw std::invalid_argument("dp_run: --mode decode needs --T 1");
  return a;
}

template <class T>
std::vector<T> read_file(const std::string& path, std::size_t n) {
  std::vector<T> x(n);
  std::ifstream in(path, std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(n * sizeof(T))))
    throw std::runtime_error("dp_run: cannot read " + std::to_string(n * sizeof(T)) + " bytes from " + path);
  return x;
}

template <class T>
void write_file(const std::string& path, const std::vector<T>& x) {
  std::ofstream out(path, std::ios::binary);
  if (!out.write(reinterpret_cast<const char*>(x.data()), static_cast<std::streamsize>(x.size() * sizeof(T))))
    throw std::runtime_error("dp_run: cannot write " + path);
}

template <class T>
struct Device {
  T* data = nullptr;
  std::size_t size = 0;
  explicit Device(std::size_t n) : size(n) {
    DELTAPRODUCT_CUDA_CHECK(cudaMalloc(&data, std::max<std::size_t>(n, 1) * sizeof(T)));
    DELTAPRODUCT_CUDA_CHECK(cudaMemset(data, 0, std::max<std::size_t>(n, 1) * sizeof(T)));
  }
  explicit Device(const std::vector<T>& host) : Device(host.size()) {
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() { (void)cudaFree(data); }
  std::vector<T> download() const {
    std::vector<T> host(size);
    DELTAPRODUCT_CUDA_CHECK(cudaMemcpy(host.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
};

/// Median per-call milliseconds of `call`, each call after an L2 flush.
template <class Call>
double median_ms(const Arguments& a, Call&& call) {
  constexpr std::size_t flush_bytes = 256u << 20;
  Device<unsigned char> flush(flush_bytes);
  cudaEvent_t start, stop;
  DELTAPRODUCT_CUDA_CHECK(cudaEventCreate(&start));
  DELTAPRODUCT_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < a.warmup; ++i) call();
  std::vector<double> times;
  for (int i = 0; i < a.iters; ++i) {
    DELTAPRODUCT_CUDA_CHECK(cudaMemsetAsync(flush.data, i & 0xff, flush_bytes));
    DELTAPRODUCT_CUDA_CHECK(cudaEventRecord(start));
    call();
    DELTAPRODUCT_CUDA_CHECK(cudaEventRecord(stop));
    DELTAPRODUCT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    DELTAPRODUCT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  DELTAPRODUCT_CUDA_CHECK(cudaEventDestroy(start));
  DELTAPRODUCT_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times.empty() ? 0.0 : times[times.size() / 2];
}

/// What a timed training step reports: the median of forward + backward, the forward's path and the output line's
/// further fields.
struct TrainingTimes {
  double ms = 0;
  std::string path, fields;
};

/// The path forward() with `backend` takes: `chunked`, `chunked/<n>splits` or `recurrent`.
template <class Model>
std::string forward_path(const dp::CudaBackend& backend, const Model& model, const dp::DeltaInputs<bf16, float>& in,
                         const dp::ForwardOutputs<bf16, float>& out) {
  if (!dp::chunked_forward_applies(backend, model, in, out)) return "recurrent";
  const int splits = dp::forward_sequence_splits(backend, model, in, out);
  return splits > 1 ? "chunked/" + std::to_string(splits) + "splits" : std::string("chunked");
}

/// A training step as a training loop runs it: forward() (o only; algorithm automatic), then backward() from dL/do
/// (D/do.bin, no dL/d(final state)) with --backward-algorithm. Both calls take --sequence-splits,
/// --keep-forward-states and --keep-preambles. With --keep-forward-states they share one
/// workspace sized for both, where the forward leaves each chunk's states for the backward; without it each has a
/// workspace of its own and the backward recomputes what it needs from the inputs. Writes D/o.bin, and the gradients
/// with --gradients 1.
template <class Model>
TrainingTimes time_training(const Arguments& a, const Model& model, const dp::DeltaInputs<bf16, float>& in,
                            const dp::ForwardOutputs<bf16, float>& out, const Device<bf16>& o) {
  const dp::index_t B = a.B, T = a.T, H = a.H, K = a.K, V = a.V, R = T * Model::householder_steps;
  constexpr bool gated = Model::gating == dp::Gating::scalar_decay;
  const auto path = [&](const char* name) { return a.dir + "/" + name; };
  Device<bf16> d_o(read_file<bf16>(path("do.bin"), B * T * H * V));
  Device<bf16> dq(B * T * H * K), dk(B * R * H * K), dv(B * R * H * V), dbeta(B * R * H), dg(gated ? B * T * H : 0);
  Device<float> dh0(a.h0 ? B * H * K * V : 0);
  const dp::OutputGradients<bf16, float> output_gradients{.o = dp::make_view<const bf16>(d_o.data, {B, T, H, V})};
  dp::DeltaGradients<bf16, float> gradients{.q = dp::make_view(dq.data, {B, T, H, K}),
                                            .k = dp::make_view(dk.data, {B, R, H, K}),
                                            .v = dp::make_view(dv.data, {B, R, H, V}),
                                            .beta = dp::make_view(dbeta.data, {B, R, H})};
  if constexpr (gated) gradients.g = dp::make_view(dg.data, {B, T, H});
  if (a.h0) gradients.initial_state = dp::make_view(dh0.data, {B, H, K, V});

  // The fields a training loop sets on both calls of a step; the forward's algorithm stays automatic.
  const bool keep = a.keep_forward_states;
  dp::CudaBackend forward_backend{.sequence_splits = a.sequence_splits,
                                  .keep_forward_states = keep,
                                  .keep_preambles = a.keep_preambles};
  dp::CudaBackend backward_backend = forward_backend;
  backward_backend.algorithm = algorithm_named(a.backward_algorithm);
  backward_backend.backward_value_splits = a.value_splits;
  backward_backend.wgmma_chunk_gradients = a.wgmma_gradients;
  const std::size_t forward_bytes = dp::forward_workspace_bytes(forward_backend, model, in, out);
  const std::size_t backward_bytes =
      dp::backward_workspace_bytes(backward_backend, model, in, output_gradients, gradients);
  // Kept states: one workspace for both calls, where the backward reads what the forward left (the backward's own
  // is then an empty placeholder). Else a workspace each.
  Device<unsigned char> workspace(keep ? std::max(forward_bytes, backward_bytes) : forward_bytes);
  Device<unsigned char> own_backward_workspace(keep ? 0 : backward_bytes);
  forward_backend.workspace = workspace.data;
  forward_backend.workspace_bytes = workspace.size;
  backward_backend.workspace = keep ? workspace.data : own_backward_workspace.data;
  backward_backend.workspace_bytes = keep ? workspace.size : own_backward_workspace.size;
  if (keep) {
    // The backward reads kept states only if the forward kept them: both calls must take the chunked form.
    const bool forward_chunked = dp::chunked_forward_applies(forward_backend, model, in, out);
    const bool backward_chunked =
        dp::chunked_backward_applies(backward_backend, model, in, output_gradients, gradients);
    if (!forward_chunked || !backward_chunked)
      throw std::invalid_argument(
          std::string("dp_run: --keep-forward-states needs the forward and the backward both to take the chunked "
                      "form, but here the forward takes the ") +
          (forward_chunked ? "chunked" : "recurrent") + " one and the backward (--backward-algorithm " +
          a.backward_algorithm + ") the " + (backward_chunked ? "chunked" : "recurrent") + " one");
  }
  const int backward_splits = dp::backward_sequence_splits(backward_backend, model, in, output_gradients, gradients);

  TrainingTimes times;
  times.path = forward_path(forward_backend, model, in, out);
  dp::forward(forward_backend, model, in, out);
  write_file(path("o.bin"), o.download());
  dp::backward(backward_backend, model, in, output_gradients, gradients);
  if (a.gradients) {
    write_file(path("dq.bin"), dq.download());
    write_file(path("dk.bin"), dk.download());
    write_file(path("dv.bin"), dv.download());
    write_file(path("dbeta.bin"), dbeta.download());
    if constexpr (gated) write_file(path("dg.bin"), dg.download());
    if (a.h0) write_file(path("dh0.bin"), dh0.download());
  }
  times.ms = median_ms(a, [&] {
    dp::forward(forward_backend, model, in, out);
    dp::backward(backward_backend, model, in, output_gradients, gradients);
  });
  // Apart: the backward alone reads the states the last forward kept (it writes none of them), so that with
  // --keep-forward-states backward_ms is the backward without its state pass.
  const double forward_ms = median_ms(a, [&] { dp::forward(forward_backend, model, in, out); });
  const double backward_ms =
      median_ms(a, [&] { dp::backward(backward_backend, model, in, output_gradients, gradients); });
  times.fields = " forward_ms=" + std::to_string(forward_ms) + " backward_ms=" + std::to_string(backward_ms) +
                 " backward=" + a.backward_algorithm + " backward_splits=" + std::to_string(backward_splits) +
                 " keep_forward_states=" + (a.keep_forward_states ? "1" : "0") +
                 " keep_preambles=" + (a.keep_preambles ? "1" : "0") +
                 " value_splits=" + std::to_string(a.value_splits) +
                 " wgmma_chunk_gradients=" + (a.wgmma_gradients ? "1" : "0");
  return times;
}

template <int HouseholderSteps, dp::Gating Gate>
void run(const Arguments& a) {
  const dp::index_t B = a.B, T = a.T, H = a.H, K = a.K, V = a.V, n_h = HouseholderSteps, R = T * n_h;
  constexpr bool gated = Gate == dp::Gating::scalar_decay;
  const auto path = [&](const char* name) { return a.dir + "/" + name; };
  Device<bf16> q(read_file<bf16>(path("q.bin"), B * T * H * K));
  Device<bf16> k(read_file<bf16>(path("k.bin"), B * R * H * K));
  Device<bf16> v(read_file<bf16>(path("v.bin"), B * R * H * V));
  Device<bf16> beta(read_file<bf16>(path("beta.bin"), B * R * H));
  Device<bf16> g(gated ? read_file<bf16>(path("g.bin"), B * T * H) : std::vector<bf16>(1));
  const std::vector<float> h0 = a.h0 ? read_file<float>(path("h0.bin"), B * H * K * V)
                                     : std::vector<float>(static_cast<std::size_t>(B * H * K * V), 0.0f);
  Device<float> initial_state(h0), final_state(h0.size());
  Device<bf16> o(B * T * H * V);

  dp::DeltaProduct<float, HouseholderSteps, dp::EigenvalueRange::signed_unit, Gate> model;
  model.options.validate_ranges = false;
  dp::CudaBackend backend{};
  std::string path_taken, fields;
  double ms = 0;
  if (a.mode == "decode") {
    // One token per sequence: step() in place on a copy of h0 (the timing loop keeps advancing it).
    dp::DeltaStepInputs<bf16> in{.q = dp::make_view<const bf16>(q.data, {B, H, K}),
                                 .k = dp::make_view<const bf16>(k.data, {B, n_h, H, K}),
                                 .v = dp::make_view<const bf16>(v.data, {B, n_h, H, V}),
                                 .beta = dp::make_view<const bf16>(beta.data, {B, n_h, H})};
    if constexpr (gated) in.g = dp::make_view<const bf16>(g.data, {B, H});
    const auto state = dp::make_view(final_state.data, {B, H, K, V});
    const auto out = dp::make_view(o.data, {B, H, V});
    DELTAPRODUCT_CUDA_CHECK(
        cudaMemcpy(final_state.data, initial_state.data, h0.size() * sizeof(float), cudaMemcpyDeviceToDevice));
    dp::step(backend, model, in, state, out);
    write_file(path("o.bin"), o.download());
    write_file(path("ht.bin"), final_state.download());
    ms = median_ms(a, [&] { dp::step(backend, model, in, state, out); });
    path_taken = "decode";
  } else {
    dp::DeltaInputs<bf16, float> in{.q = dp::make_view<const bf16>(q.data, {B, T, H, K}),
                                    .k = dp::make_view<const bf16>(k.data, {B, R, H, K}),
                                    .v = dp::make_view<const bf16>(v.data, {B, R, H, V}),
                                    .beta = dp::make_view<const bf16>(beta.data, {B, R, H})};
    if constexpr (gated) in.g = dp::make_view<const bf16>(g.data, {B, T, H});
    if (a.h0) in.initial_state = dp::make_view<const float>(initial_state.data, {B, H, K, V});
    // A training step keeps o only (gpu_compare.py asks FLA and FlashQLA for no final state there either).
    const bool training = a.mode == "training";
    dp::ForwardOutputs<bf16, float> out{.o = dp::make_view(o.data, {B, T, H, V})};
    if (!training) out.final_state = dp::make_view(final_state.data, {B, H, K, V});
    if (training) {
      const TrainingTimes times = time_training(a, model, in, out, o);
      ms = times.ms;
      path_taken = times.path;
      fields = times.fields;
    } else {
      // The workspace forward() asks for: sequences split where B * H leaves multiprocessors idle (automatic), or
      // into --sequence-splits runs.
      backend.sequence_splits = a.sequence_splits;
      Device<unsigned char> workspace(dp::forward_workspace_bytes(backend, model, in, out));
      backend.workspace = workspace.data;
      backend.workspace_bytes = workspace.size;
      path_taken = forward_path(backend, model, in, out);
      dp::forward(backend, model, in, out);
      write_file(path("o.bin"), o.download());
      write_file(path("ht.bin"), final_state.download());
      ms = median_ms(a, [&] { dp::forward(backend, model, in, out); });
    }
  }
  std::printf("dp_run ms=%.6f path=%s%s\n", ms, path_taken.c_str(), fields.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Arguments a = parse(argc, argv);
    if (a.n_h == 1)
      a.gated ? run<1, dp::Gating::scalar_decay>(a) : run<1, dp::Gating::none>(a);
    else if (a.n_h == 2)
      a.gated ? run<2, dp::Gating::scalar_decay>(a) : run<2, dp::Gating::none>(a);
    else if (a.n_h == 3)
      a.gated ? run<3, dp::Gating::scalar_decay>(a) : run<3, dp::Gating::none>(a);
    else
      throw std::invalid_argument("dp_run: --nh must be 1, 2 or 3");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}

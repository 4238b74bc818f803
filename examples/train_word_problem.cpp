// Trains a small DeltaProduct model (include/deltaproduct/model/) on a group word problem and evaluates it at a
// longer test length: the state-tracking experiment of DeltaProduct (Siems et al.) from C++, on the CPU.
//
//   ./build/release/examples/train_word_problem --preset small --num_householder 2 --allow_neg_eigval 1 --out runs/a
//   ./build/release/examples/train_word_problem --group S3 --k 128 --k_test 512 --n_layers 1 --num_householder 2
//       --allow_neg_eigval 1 --n_heads 4 --batch_size 64 --lr 1e-3 --epochs 20 --seed 666 --out runs/b
//
// Data: the prefix products of random words (the library's word-problem generator, or the reference CSV files with
// --data DIR, read as DIR/{group}={k}.csv and DIR/{group}={k_test}.csv). Every position is labelled; the loss is the
// mean cross-entropy over positions. Training: AdamW, linear warm-up then cosine decay, gradient clipping, batches
// split over --threads workers. --checkpoint PATH saves after every epoch; --resume continues from it exactly
// (--stop_after E ends a run after E epochs, with the learning-rate schedule still spanning --epochs: a job cut into
// time slices gives the uninterrupted run's result).
// At the end: accuracy against position at k_test in OUT/accuracy_by_position.csv and .png, and a summary line.
// --device cuda trains on the GPU (CudaWordProblemModel: the same model, parameters and update in fp32 on device
// memory), where the project was built with its CUDA parts; checkpoints are the same files either way.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deltaproduct/groups/groups.hpp>
#include <deltaproduct/model/model.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if DELTAPRODUCT_TRAINER_CUDA
#include "trainer_device.hpp"
#endif

namespace dp = deltaproduct;

namespace {

struct Options {
  std::string group = "S3";
  std::int64_t k = 128, k_test = 512;
  int layers = 1, householder = 2, heads = 4, head_dim = 32, model_dim = 128, mlp_dim = 0;
  bool negative = true;
  int batch = 64, epochs = 10, threads = 0;
  int stop_after = -1;  ///< stop once this many epochs are done (the schedule still spans --epochs); -1: never
  std::int64_t train_samples = 20000, test_samples = 500;
  double lr = 1e-3, weight_decay = 0.01, grad_clip = 1.0, warmup_fraction = 0.05;
  std::uint64_t seed = 666;
  std::string data_dir, checkpoint, out = "train_out", device = "cpu";
  bool resume = false;
};

const char* usage =
    "train_word_problem [options]\n"
    "  --preset small|medium|paper  small: S3, k 64 -> 256, d 64, under a minute on 2 CPU cores; medium: the same\n"
    "                           model at k 128 -> 512, about 3 minutes; paper: DP's S3 run\n"
    "  --group S3 --k 128 --k_test 512 --train_samples 20000 --test_samples 500 [--data DIR]\n"
    "  --n_layers 1 --num_householder 2 --allow_neg_eigval 1 --n_heads 4 --head_dim 32 --d_model 128 --mlp_dim 4d\n"
    "  --batch_size 64 --lr 1e-3 --epochs 10 --weight_decay 0.01 --grad_clip 1 --warmup 0.05 --seed 666\n"
    "  --threads N (0: all) --checkpoint PATH [--resume] [--stop_after EPOCHS] --out DIR\n"
    "  --device cpu|cuda        cuda: train and evaluate on the GPU (builds with the CUDA parts)\n";

void apply_preset(Options& o, const std::string& name) {
  if (name == "small") {
    o.group = "S3", o.k = 64, o.k_test = 256, o.train_samples = 10000, o.test_samples = 300;
    o.model_dim = 64, o.heads = 2, o.head_dim = 32, o.layers = 1, o.batch = 32, o.epochs = 6, o.lr = 2e-3;
  } else if (name == "medium") {
    // The small model at the papers' lengths: train on 128 letters, test on 512.
    apply_preset(o, "small");
    o.k = 128, o.k_test = 512, o.epochs = 15;
  } else if (name == "paper") {
    // DeltaProduct's S3 setting: 100000 words of 128 letters, test at 512; 1 layer, hidden 128, head dim 32,
    // batch 2048, lr 1e-3, 100 epochs (a GPU's work: on 2 CPU cores an epoch takes about an hour).
    o.group = "S3", o.k = 128, o.k_test = 512, o.train_samples = 100000, o.test_samples = 1000;
    o.model_dim = 128, o.heads = 4, o.head_dim = 32, o.layers = 1, o.batch = 2048, o.epochs = 100, o.lr = 1e-3;
  } else {
    throw std::invalid_argument("--preset: expected small, medium or paper, got " + name);
  }
}

Options parse(int argc, char** argv) {
  Options o;
  // A preset first, so that later options override it.
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--preset") apply_preset(o, argv[i + 1]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (a == "--resume") {
      o.resume = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(a + ": missing its value\n" + usage);
    const std::string v = argv[++i];
    if (a == "--preset") continue;
    else if (a == "--group") o.group = v;
    else if (a == "--k") o.k = std::stoll(v);
    else if (a == "--k_test") o.k_test = std::stoll(v);
    else if (a == "--train_samples") o.train_samples = std::stoll(v);
    else if (a == "--test_samples") o.test_samples = std::stoll(v);
    else if (a == "--data") o.data_dir = v;
    else if (a == "--n_layers") o.layers = std::stoi(v);
    else if (a == "--num_householder") o.householder = std::stoi(v);
    else if (a == "--allow_neg_eigval") o.negative = v == "1" || v == "true" || v == "True";
    else if (a == "--n_heads") o.heads = std::stoi(v);
    else if (a == "--head_dim") o.head_dim = std::stoi(v);
    else if (a == "--d_model") o.model_dim = std::stoi(v);
    else if (a == "--mlp_dim") o.mlp_dim = std::stoi(v);
    else if (a == "--batch_size") o.batch = std::stoi(v);
    else if (a == "--lr") o.lr = std::stod(v);
    else if (a == "--epochs") o.epochs = std::stoi(v);
    else if (a == "--weight_decay") o.weight_decay = std::stod(v);
    else if (a == "--grad_clip") o.grad_clip = std::stod(v);
    else if (a == "--warmup") o.warmup_fraction = std::stod(v);
    else if (a == "--seed") o.seed = std::stoull(v);
    else if (a == "--threads") o.threads = std::stoi(v);
    else if (a == "--checkpoint") o.checkpoint = v;
    else if (a == "--stop_after") o.stop_after = std::stoi(v);
    else if (a == "--out") o.out = v;
    else if (a == "--device") o.device = v;
    else throw std::invalid_argument("unknown option " + a + "\n" + usage);
  }
  if (o.device != "cpu" && o.device != "cuda")
    throw std::invalid_argument("--device: expected cpu or cuda, got " + o.device);
#if !DELTAPRODUCT_TRAINER_CUDA
  if (o.device == "cuda")
    throw std::invalid_argument("--device cuda: this build has no CUDA parts (configure where nvcc is found)");
#endif
  if (o.mlp_dim <= 0) o.mlp_dim = 4 * o.model_dim;
  if (o.threads <= 0) o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.k < 1 || o.k_test < 1 || o.batch < 1 || o.epochs < 0 || o.train_samples < 1 || o.test_samples < 1)
    throw std::invalid_argument("--k, --k_test, --batch_size, --train_samples and --test_samples must be >= 1");
  return o;
}

/// Words and labels as int32 token ids, row-major [count, k].
struct Split {
  std::int64_t k = 0, count = 0;
  std::vector<std::int32_t> inputs, labels;
};

Split to_split(const dp::WordProblemData& data) {
  Split s;
  s.k = data.k;
  s.count = data.count();
  s.inputs.assign(data.inputs.begin(), data.inputs.end());
  s.labels.assign(data.targets.begin(), data.targets.end());
  return s;
}

Split load_split(const Options& o, const dp::FiniteGroup& group, std::int64_t k, std::int64_t samples,
                 std::uint64_t seed) {
  if (!o.data_dir.empty()) {
    const std::string path =
        (std::filesystem::path(o.data_dir) / dp::word_problem_file_name(group.name(), k, dp::WordProblemFormat::csv))
            .string();
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read " + path);
    return to_split(dp::read_word_problems_csv(in, group));
  }
  dp::WordProblemSpec spec;
  spec.k = k;
  spec.samples = samples;
  spec.seed = seed;
  return to_split(dp::generate_word_problems(group, spec));
}

// ---- a PNG line plot, with no library: stored (uncompressed) deflate blocks, CRC-32 and Adler-32 by hand ----

std::uint32_t crc32(const unsigned char* data, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int b = 0; b < 8; ++b) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

void put32(std::string& s, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void write_png(const std::string& path, int width, int height, const std::vector<unsigned char>& rgb) {
  std::string raw;  // filter byte 0 per row, then the row's RGB
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(rgb.data()) + static_cast<std::size_t>(y) * width * 3,
               static_cast<std::size_t>(width) * 3);
  }
  std::string z = "\x78\x01";  // zlib header, no compression
  for (std::size_t pos = 0; pos < raw.size(); pos += 65535) {
    const std::size_t len = std::min<std::size_t>(65535, raw.size() - pos);
    z.push_back(pos + len == raw.size() ? 1 : 0);
    z.push_back(static_cast<char>(len & 0xFF));
    z.push_back(static_cast<char>(len >> 8));
    z.push_back(static_cast<char>(~len & 0xFF));
    z.push_back(static_cast<char>((~len >> 8) & 0xFF));
    z.append(raw, pos, len);
  }
  std::uint32_t a = 1, b = 0;
  for (unsigned char c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put32(z, (b << 16) | a);
  std::string png = "\x89PNG\r\n\x1a\n";
  const auto chunk = [&](const char* type, const std::string& body) {
    put32(png, static_cast<std::uint32_t>(body.size()));
    const std::string typed = std::string(type) + body;
    png += typed;
    put32(png, crc32(reinterpret_cast<const unsigned char*>(typed.data()), typed.size()));
  };
  std::string header;
  put32(header, static_cast<std::uint32_t>(width));
  put32(header, static_cast<std::uint32_t>(height));
  header += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  chunk("IHDR", header);
  chunk("IDAT", z);
  chunk("IEND", "");
  std::ofstream(path, std::ios::binary) << png;
}

/// Accuracy (0..1) against position 1..n, with grid lines at 0, 0.25, .. 1, a dashed line at the training length,
/// and tick labels in a 3 x 5 digit font.
void plot_accuracy(const std::string& path, const std::vector<double>& accuracy, std::int64_t train_length) {
  const int W = 800, H = 400, left = 60, right = 20, top = 20, bottom = 40;
  std::vector<unsigned char> img(static_cast<std::size_t>(W) * H * 3, 255);
  const auto pixel = [&](int x, int y, unsigned char r, unsigned char g, unsigned char b) {
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    unsigned char* p = &img[(static_cast<std::size_t>(y) * W + x) * 3];
    p[0] = r, p[1] = g, p[2] = b;
  };
  static const char* digits[11] = {"111101101101111", "010110010010111", "111001111100111", "111001111001111",
                                   "101101111001001", "111100111001111", "111100111101111", "111001001001001",
                                   "111101111101111", "111101111001111", "000000000000010"};
  const auto text = [&](int x, int y, const std::string& s) {
    for (char ch : s) {
      const int glyph = ch == '.' ? 10 : ch - '0';
      if (glyph < 0 || glyph > 10) continue;
      for (int r = 0; r < 5; ++r)
        for (int c = 0; c < 3; ++c)
          if (digits[glyph][r * 3 + c] == '1')
            for (int dy = 0; dy < 2; ++dy)
              for (int dx = 0; dx < 2; ++dx) pixel(x + 2 * c + dx, y + 2 * r + dy, 40, 40, 40);
      x += 8;
    }
  };
  const int n = static_cast<int>(accuracy.size());
  const auto sx = [&](double position) { return left + static_cast<int>((position - 1) / std::max(1, n - 1) * (W - left - right)); };
  const auto sy = [&](double a) { return top + static_cast<int>((1 - a) * (H - top - bottom)); };
  for (int q = 0; q <= 4; ++q) {
    const int y = sy(q / 4.0);
    for (int x = left; x < W - right; ++x) pixel(x, y, 220, 220, 220);
  }
  text(left - 30, sy(1.0) - 5, "1");
  text(left - 30, sy(0.5) - 5, "0.5");
  text(left - 30, sy(0.0) - 5, "0");
  for (int y = top; y <= H - bottom; ++y) pixel(left, y, 0, 0, 0);
  for (int x = left; x < W - right; ++x) pixel(x, H - bottom, 0, 0, 0);
  if (train_length < n) {
    const int x = sx(static_cast<double>(train_length));
    for (int y = top; y <= H - bottom; y += 2) pixel(x, y, 200, 60, 60);
    text(x - 8, H - bottom + 8, std::to_string(train_length));
  }
  text(left - 4, H - bottom + 8, "1");
  text(W - right - 24, H - bottom + 8, std::to_string(n));
  for (int i = 1; i < n; ++i) {
    const int x0 = sx(i), y0 = sy(accuracy[static_cast<std::size_t>(i - 1)]);
    const int x1 = sx(i + 1), y1 = sy(accuracy[static_cast<std::size_t>(i)]);
    const int steps = std::max(std::abs(x1 - x0), std::abs(y1 - y0)) + 1;
    for (int s = 0; s <= steps; ++s)
      for (int w = 0; w < 2; ++w)
        pixel(x0 + (x1 - x0) * s / steps, y0 + (y1 - y0) * s / steps + w, 30, 90, 200);
  }
  write_png(path, W, H, img);
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f s", s);
  return buf;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const dp::FiniteGroup group = dp::FiniteGroup::parse(o.group);
  std::filesystem::create_directories(o.out);

  dp::ModelConfig config;
  config.vocabulary = group.order();
  config.classes = group.order();
  config.layers = o.layers;
  config.heads = o.heads;
  config.head_dim = o.head_dim;
  config.model_dim = o.model_dim;
  config.mlp_dim = o.mlp_dim;
  config.householder_steps = o.householder;
  config.negative_eigenvalues = o.negative;

  const Split train = load_split(o, group, o.k, o.train_samples, o.seed);
  const Split test = load_split(o, group, o.k_test, o.test_samples, o.seed + 1);

  dp::WordProblemModel<float> model(config);
  model.initialize(o.seed);
  dp::AdamW optimizer;
  optimizer.options.weight_decay = o.weight_decay;
  std::mt19937_64 order(o.seed + 2);
  std::int64_t first_epoch = 0;
  if (o.resume) {
    if (o.checkpoint.empty()) throw std::invalid_argument("--resume needs --checkpoint PATH");
    auto c = dp::load_checkpoint<float>(o.checkpoint);
    if (c.model.config().householder_steps != config.householder_steps ||
        c.model.config().negative_eigenvalues != config.negative_eigenvalues ||
        c.model.config().model_dim != config.model_dim || c.model.config().layers != config.layers ||
        c.model.config().classes != config.classes)
      throw std::invalid_argument("--resume: the checkpoint's model differs from the options");
    model = std::move(c.model);
    optimizer = c.optimizer;
    std::istringstream(c.progress.data_order) >> order;
    first_epoch = c.progress.epochs_done;
    std::printf("resumed from %s after epoch %lld (step %lld)\n", o.checkpoint.c_str(),
                static_cast<long long>(first_epoch), static_cast<long long>(optimizer.step));
  }
#if DELTAPRODUCT_TRAINER_CUDA
  // On the GPU the device model holds the parameters and moments; the CPU model receives them for checkpoints.
  std::unique_ptr<trainer::DeviceModel> gpu;
  const auto host_parameters = [&](bool with_moments) {
    trainer::HostParameters h;
    for (const auto& p : model.parameters()) {
      h.values.emplace_back(p.value.data(), p.value.data() + p.value.size());
      if (!with_moments) continue;
      h.first_moments.emplace_back(p.first_moment.data(), p.first_moment.data() + p.first_moment.size());
      h.second_moments.emplace_back(p.second_moment.data(), p.second_moment.data() + p.second_moment.size());
    }
    return h;
  };
  const auto to_model = [&] {
    trainer::HostParameters h;
    gpu->download(h);
    auto& params = model.parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      std::copy(h.values[i].begin(), h.values[i].end(), params[i].value.data());
      std::copy(h.first_moments[i].begin(), h.first_moments[i].end(), params[i].first_moment.data());
      std::copy(h.second_moments[i].begin(), h.second_moments[i].end(), params[i].second_moment.data());
    }
  };
  if (o.device == "cuda") {
    gpu = trainer::make_cuda_model(config);
    gpu->upload(host_parameters(true));
  }
#endif
  const std::int64_t batches = std::max<std::int64_t>(1, train.count / o.batch);
  const std::int64_t total_steps = batches * o.epochs;
  const auto warmup = static_cast<std::int64_t>(o.warmup_fraction * static_cast<double>(total_steps));
  std::printf("%s: %lld training words of %lld, %lld test words of %lld; model %lld parameters, n_h %d, eigenvalues "
              "%s, %d layer(s), %d heads x %d; %s\n",
              o.group.c_str(), static_cast<long long>(train.count), static_cast<long long>(o.k),
              static_cast<long long>(test.count), static_cast<long long>(o.k_test),
              static_cast<long long>(model.parameter_count()), o.householder, o.negative ? "[-1, 1]" : "[0, 1]",
              o.layers, o.heads, o.head_dim,
              o.device == "cuda" ? "on the GPU" : (std::to_string(o.threads) + " threads").c_str());

  std::vector<std::int32_t> inputs(static_cast<std::size_t>(o.batch * o.k)), labels(inputs.size());
  std::vector<std::int64_t> permutation(static_cast<std::size_t>(train.count));
  const auto start = std::chrono::steady_clock::now();
  double epoch_loss = 0, epoch_accuracy = 0;
  const std::int64_t last_epoch = o.stop_after >= 0 ? std::min<std::int64_t>(o.stop_after, o.epochs) : o.epochs;
  for (std::int64_t epoch = first_epoch; epoch < last_epoch; ++epoch) {
    std::iota(permutation.begin(), permutation.end(), 0);
    std::shuffle(permutation.begin(), permutation.end(), order);
    epoch_loss = 0, epoch_accuracy = 0;
    for (std::int64_t b = 0; b < batches; ++b) {
      for (int s = 0; s < o.batch; ++s) {
        const std::int64_t row = permutation[static_cast<std::size_t>(b * o.batch + s)];
        std::copy_n(&train.inputs[static_cast<std::size_t>(row * o.k)], o.k, &inputs[static_cast<std::size_t>(s * o.k)]);
        std::copy_n(&train.labels[static_cast<std::size_t>(row * o.k)], o.k, &labels[static_cast<std::size_t>(s * o.k)]);
      }
      const double lr = dp::learning_rate_at(optimizer.step, total_steps, warmup, o.lr);
      dp::BatchResult r;
#if DELTAPRODUCT_TRAINER_CUDA
      if (gpu) {
        r = gpu->train_batch(inputs, labels, o.batch, static_cast<int>(o.k));
        if (o.grad_clip > 0) (void)gpu->clip_gradient_norm(o.grad_clip);
        ++optimizer.step;
        const dp::AdamWOptions& a = optimizer.options;
        gpu->adamw_update(a.beta1, a.beta2, a.eps, a.weight_decay, optimizer.step, lr);
      } else
#endif
      {
        model.zero_gradients();
        r = model.train_batch(inputs, labels, o.batch, static_cast<int>(o.k), true, o.threads);
        if (o.grad_clip > 0) (void)dp::clip_gradient_norm(model.parameters(), o.grad_clip);
        optimizer.update(model.parameters(), lr);
      }
      epoch_loss += r.loss, epoch_accuracy += r.accuracy;
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int filled = static_cast<int>(30 * (b + 1) / batches);
      std::fprintf(stderr, "\repoch %lld/%d [%s%s] %lld/%lld loss %.4f acc %.4f %s   ", static_cast<long long>(epoch + 1),
                   o.epochs, std::string(static_cast<std::size_t>(filled), '#').c_str(),
                   std::string(static_cast<std::size_t>(30 - filled), '.').c_str(), static_cast<long long>(b + 1),
                   static_cast<long long>(batches), epoch_loss / static_cast<double>(b + 1),
                   epoch_accuracy / static_cast<double>(b + 1), seconds_text(elapsed).c_str());
    }
    std::fprintf(stderr, "\n");
    if (!o.checkpoint.empty()) {
#if DELTAPRODUCT_TRAINER_CUDA
      if (gpu) to_model();
#endif
      std::ostringstream state;
      state << order;
      dp::save_checkpoint(o.checkpoint, model, optimizer,
                          dp::TrainingProgress{.epochs_done = epoch + 1, .data_order = state.str()});
    }
  }
  epoch_loss /= static_cast<double>(batches), epoch_accuracy /= static_cast<double>(batches);

  // Accuracy against position at the test length.
  std::vector<std::int64_t> correct(static_cast<std::size_t>(test.k), 0);
  int eval_batch = 16;
#if DELTAPRODUCT_TRAINER_CUDA
  if (gpu) eval_batch = 512;
#endif
  for (std::int64_t first = 0; first < test.count; first += eval_batch) {
    const int n = static_cast<int>(std::min<std::int64_t>(eval_batch, test.count - first));
    const std::size_t begin = static_cast<std::size_t>(first * test.k), size = static_cast<std::size_t>(n * test.k);
    const auto words = std::span(test.inputs).subspan(begin, size), truth = std::span(test.labels).subspan(begin, size);
#if DELTAPRODUCT_TRAINER_CUDA
    if (gpu) {
      (void)gpu->evaluate(words, truth, n, static_cast<int>(test.k), correct);
      continue;
    }
#endif
    (void)model.evaluate(words, truth, n, static_cast<int>(test.k), correct, o.threads);
  }
  std::vector<double> accuracy(correct.size());
  double mean = 0, within = 0, beyond = 0;
  for (std::size_t t = 0; t < correct.size(); ++t) {
    accuracy[t] = static_cast<double>(correct[t]) / static_cast<double>(test.count);
    mean += accuracy[t];
    (static_cast<std::int64_t>(t) < o.k ? within : beyond) += accuracy[t];
  }
  mean /= static_cast<double>(accuracy.size());
  within /= static_cast<double>(std::min<std::int64_t>(o.k, test.k));
  if (test.k > o.k) beyond /= static_cast<double>(test.k - o.k);
  {
    std::ofstream csv(std::filesystem::path(o.out) / "accuracy_by_position.csv");
    csv << "position,accuracy\n";
    for (std::size_t t = 0; t < accuracy.size(); ++t) csv << t + 1 << "," << accuracy[t] << "\n";
  }
  plot_accuracy((std::filesystem::path(o.out) / "accuracy_by_position.png").string(), accuracy, o.k);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("result group=%s n_h=%d eigenvalues=%s layers=%d seed=%llu train_acc=%.4f train_loss=%.4f "
              "test_acc=%.4f test_acc_upto_k=%.4f test_acc_beyond_k=%.4f last_position_acc=%.4f seconds=%.0f\n",
              o.group.c_str(), o.householder, o.negative ? "[-1,1]" : "[0,1]", o.layers,
              static_cast<unsigned long long>(o.seed), epoch_accuracy, epoch_loss, mean, within, beyond,
              accuracy.back(), seconds);
  std::printf("wrote %s/accuracy_by_position.csv and .png\n", o.out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_word_problem: %s\n", e.what());
  return 1;
}

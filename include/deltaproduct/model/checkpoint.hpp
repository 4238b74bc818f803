// Checkpoints of a WordProblemModel in training: the configuration, every parameter with its AdamW moments, the
// optimizer's step and options, and the trainer's progress (epochs done, the data-order engine's state). Loading a
// checkpoint and training on gives bit for bit what training on without the stop would have given.
//
// Format: text header lines "key value", then per parameter a line "name rows cols" followed by value, first and
// second moment as raw little-endian scalars (the header records their size), then "end". Written to `path.tmp`
// and renamed, so an interrupted save never leaves a truncated checkpoint behind.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/model/optimizer.hpp"
#include "deltaproduct/model/word_problem_model.hpp"

namespace deltaproduct {

/// What a trainer keeps besides the model and the optimizer.
struct TrainingProgress {
  std::int64_t epochs_done = 0;
  std::string data_order;  ///< the data-shuffling engine, as operator<< writes it
};

namespace detail {

inline constexpr const char* checkpoint_magic = "deltaproduct-checkpoint 1";

[[noreturn]] inline void checkpoint_error(const std::string& path, const std::string& what) {
  throw Error("deltaproduct: checkpoint '" + path + "': " + what);
}

template <class Scalar>
void write_matrix(std::ostream& out, const ModelMatrix<Scalar>& m) {
  out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(sizeof(Scalar) * m.size()));
}

template <class Scalar>
void read_matrix(std::istream& in, ModelMatrix<Scalar>& m, const std::string& path, const std::string& name) {
  in.read(reinterpret_cast<char*>(m.data()), static_cast<std::streamsize>(sizeof(Scalar) * m.size()));
  if (!in) checkpoint_error(path, "truncated in parameter " + name);
}

/// Reads "key value" where the key must be `key`.
template <class T>
T read_field(std::istream& in, const char* key, const std::string& path) {
  std::string name;
  T value{};
  if (!(in >> name) || name != key || !(in >> value))
    checkpoint_error(path, std::string("expected the field '") + key + "'" + (name.empty() ? "" : ", got '" + name + "'"));
  return value;
}

}  // namespace detail

template <class Scalar>
void save_checkpoint(const std::string& path, const WordProblemModel<Scalar>& model, const AdamW& optimizer,
                     const TrainingProgress& progress) {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) detail::checkpoint_error(path, "cannot open " + temporary + " for writing");
    const ModelConfig& c = model.config();
    out.precision(17);
    out << detail::checkpoint_magic << "\n"
        << "scalar_bytes " << sizeof(Scalar) << "\n"
        << "vocabulary " << c.vocabulary << "\nclasses " << c.classes << "\nlayers " << c.layers << "\nheads "
        << c.heads << "\nhead_dim " << c.head_dim << "\nmodel_dim " << c.model_dim << "\nmlp_dim " << c.mlp_dim
        << "\nhouseholder_steps " << c.householder_steps << "\nnegative_eigenvalues " << (c.negative_eigenvalues ? 1 : 0)
        << "\nnorm_eps " << c.norm_eps << "\n"
        << "optimizer_step " << optimizer.step << "\nbeta1 " << optimizer.options.beta1 << "\nbeta2 "
        << optimizer.options.beta2 << "\neps " << optimizer.options.eps << "\nweight_decay "
        << optimizer.options.weight_decay << "\n"
        << "epochs_done " << progress.epochs_done << "\n"
        << "data_order " << progress.data_order.size() << "\n"
        << progress.data_order << "\n"
        << "parameters " << model.parameters().size() << "\n";
    for (const auto& p : model.parameters()) {
      out << p.name << " " << p.value.rows() << " " << p.value.cols() << "\n";
      detail::write_matrix(out, p.value);
      detail::write_matrix(out, p.first_moment);
      detail::write_matrix(out, p.second_moment);
      out << "\n";
    }
    out << "end\n";
    if (!out) detail::checkpoint_error(path, "write failed");
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0)
    detail::checkpoint_error(path, "cannot rename " + temporary + " to it");
}

/// A checkpoint's contents: the model (configuration, parameters, moments), the optimizer and the progress.
template <class Scalar>
struct Checkpoint {
  WordProblemModel<Scalar> model;
  AdamW optimizer;
  TrainingProgress progress;
};

template <class Scalar>
Checkpoint<Scalar> load_checkpoint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) detail::checkpoint_error(path, "cannot open it for reading");
  std::string magic;
  std::getline(in, magic);
  if (magic != detail::checkpoint_magic)
    detail::checkpoint_error(path, "not a deltaproduct checkpoint (first line '" + magic.substr(0, 40) + "')");
  const auto bytes = detail::read_field<std::size_t>(in, "scalar_bytes", path);
  if (bytes != sizeof(Scalar))
    detail::checkpoint_error(path, "holds " + std::to_string(bytes) + "-byte scalars, this model uses " +
                                       std::to_string(sizeof(Scalar)));
  ModelConfig c;
  c.vocabulary = detail::read_field<std::int64_t>(in, "vocabulary", path);
  c.classes = detail::read_field<std::int64_t>(in, "classes", path);
  c.layers = detail::read_field<int>(in, "layers", path);
  c.heads = detail::read_field<int>(in, "heads", path);
  c.head_dim = detail::read_field<int>(in, "head_dim", path);
  c.model_dim = detail::read_field<int>(in, "model_dim", path);
  c.mlp_dim = detail::read_field<int>(in, "mlp_dim", path);
  c.householder_steps = detail::read_field<int>(in, "householder_steps", path);
  c.negative_eigenvalues = detail::read_field<int>(in, "negative_eigenvalues", path) != 0;
  c.norm_eps = detail::read_field<double>(in, "norm_eps", path);
  AdamW optimizer;
  optimizer.step = detail::read_field<std::int64_t>(in, "optimizer_step", path);
  optimizer.options.beta1 = detail::read_field<double>(in, "beta1", path);
  optimizer.options.beta2 = detail::read_field<double>(in, "beta2", path);
  optimizer.options.eps = detail::read_field<double>(in, "eps", path);
  optimizer.options.weight_decay = detail::read_field<double>(in, "weight_decay", path);
  TrainingProgress progress;
  progress.epochs_done = detail::read_field<std::int64_t>(in, "epochs_done", path);
  const auto order_bytes = detail::read_field<std::size_t>(in, "data_order", path);
  in.get();  // the newline after the length
  progress.data_order.resize(order_bytes);
  in.read(progress.data_order.data(), static_cast<std::streamsize>(order_bytes));
  Checkpoint<Scalar> checkpoint{WordProblemModel<Scalar>(c), optimizer, progress};
  const auto count = detail::read_field<std::size_t>(in, "parameters", path);
  auto& parameters = checkpoint.model.parameters();
  if (count != parameters.size())
    detail::checkpoint_error(path, std::to_string(count) + " parameters, the configuration has " +
                                       std::to_string(parameters.size()));
  for (auto& p : parameters) {
    std::string name;
    Eigen::Index rows = 0, cols = 0;
    if (!(in >> name >> rows >> cols) || name != p.name || rows != p.value.rows() || cols != p.value.cols())
      detail::checkpoint_error(path, "expected parameter " + p.name + " of " + std::to_string(p.value.rows()) + " x " +
                                         std::to_string(p.value.cols()) + ", got '" + name + "'");
    in.get();
    detail::read_matrix(in, p.value, path, p.name);
    detail::read_matrix(in, p.first_moment, path, p.name);
    detail::read_matrix(in, p.second_moment, path, p.name);
  }
  std::string end;
  if (!(in >> end) || end != "end") detail::checkpoint_error(path, "missing its 'end' line");
  return checkpoint;
}

}  // namespace deltaproduct

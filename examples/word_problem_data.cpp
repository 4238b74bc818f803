// word_problem_data: writes word-problem data files as the reference generator does (the README's Theory section).
//
//   word_problem_data --group S3 --k 128 --samples 100000 --seed 666 --out data
//
// writes data/S3=128.csv with the header "seed,input,target" and 100000 distinct words of 128 uniform letters, each
// labelled with its prefix products. Without --samples it writes all |G|^k words in lexicographic order. Options
// also take the form --name=value, as the reference tool's command line does.
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "deltaproduct/groups/groups.hpp"

namespace dp = deltaproduct;

namespace {

constexpr const char* usage = R"(usage: word_problem_data --group NAME --k N [options]

Writes word-problem data: words g_1..g_k of group elements, each position labelled with the prefix
product g_1 * ... * g_t, into DIR/{group}={k}.csv (or .bin), as the reference data files.

  --group NAME      S<n>, A<n> (n <= 20), Z<m>, D<n> (dihedral of order 2n), parity, or a direct
                    product joined by _x_ such as A5_x_Z2 (orders up to 2^32)
  --k N             letters per word (N >= 1)
  --samples N       N distinct random words (uniform letters; repeats are redrawn); N <= |G|^k.
                    Without it: all |G|^k words in lexicographic order
  --seed S          random seed, written in the CSV seed column of every row (default 0)
  --letters SET     all (default) or swaps: the identity and the transpositions of S_n only
  --format FORMAT   csv (default; header seed,input,target) or binary (.bin; see
                    deltaproduct/groups/word_problem_io.hpp for the layout)
  --out DIR         output directory, created if missing (default: the current directory)
  --overwrite       replace an existing file (otherwise an existing file is an error)
  -h, --help        this text

Element indices: S_n = one-line permutations in lexicographic order (S3: 0:123 1:132 2:213 3:231
4:312 5:321), A_n = the even ones re-indexed, Z_m = residues, D_n = r^i s^j at i + n*j,
G_x_H = i_G * |H| + i_H. Random stream: std::mt19937_64(seed) with an unbiased bounded sampler,
identical on every platform (it differs from the Python reference's stream).
)";

struct UsageError {
  std::string message;
};

struct Options {
  std::string group;
  std::optional<std::int64_t> k;
  std::optional<std::int64_t> samples;
  std::uint64_t seed = 0;
  std::string letters = "all";
  std::string format = "csv";
  std::filesystem::path out = ".";
  bool overwrite = false;
  bool help = false;
};

template <class Integer>
Integer parse_number(std::string_view option, std::string_view text) {
  Integer value{};
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || result.ec != std::errc() || result.ptr != text.data() + text.size() || text[0] == '-')
    throw UsageError{std::string(option) + " needs a non-negative decimal integer, got '" + std::string(text) + "'"};
  return value;
}

Options parse_options(std::span<char*> arguments) {
  Options options;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    std::string_view argument = arguments[i];
    if (argument == "-h" || argument == "--help") {
      options.help = true;
      continue;
    }
    if (argument == "--overwrite") {
      options.overwrite = true;
      continue;
    }
    std::string_view name = argument, value;
    bool has_value = false;
    if (const std::size_t equals = argument.find('='); argument.starts_with("--") && equals != std::string_view::npos) {
      name = argument.substr(0, equals);
      value = argument.substr(equals + 1);
      has_value = true;
    }
    const bool known = name == "--group" || name == "--k" || name == "--samples" || name == "--seed" ||
                       name == "--letters" || name == "--format" || name == "--out";
    if (!known) throw UsageError{"unknown option '" + std::string(argument) + "'"};
    if (!has_value) {
      if (i + 1 >= arguments.size()) throw UsageError{std::string(name) + " needs a value"};
      value = arguments[++i];
    }
    if (name == "--group") options.group = value;
    if (name == "--k") options.k = parse_number<std::int64_t>(name, value);
    if (name == "--samples") options.samples = parse_number<std::int64_t>(name, value);
    if (name == "--seed") options.seed = parse_number<std::uint64_t>(name, value);
    if (name == "--letters") options.letters = value;
    if (name == "--format") options.format = value;
    if (name == "--out") options.out = std::string(value);
  }
  if (options.help) return options;
  if (options.group.empty()) throw UsageError{"--group is required (e.g. --group S3)"};
  if (!options.k) throw UsageError{"--k is required (e.g. --k 128)"};
  if (*options.k < 1) throw UsageError{"--k must be at least 1"};
  if (options.letters != "all" && options.letters != "swaps")
    throw UsageError{"--letters must be 'all' or 'swaps', got '" + options.letters + "'"};
  if (options.format != "csv" && options.format != "binary")
    throw UsageError{"--format must be 'csv' or 'binary', got '" + options.format + "'"};
  return options;
}

int run(const Options& options) {
  dp::FiniteGroup group = dp::FiniteGroup::parse("Z1");
  try {
    group = dp::FiniteGroup::parse(options.group);
  } catch (const dp::ArgumentError& e) {
    throw UsageError{"--group '" + options.group + "' is not a group name: expected " + e.expected()};
  }
  dp::WordProblemSpec spec;
  spec.k = *options.k;
  spec.samples = options.samples;
  spec.seed = options.seed;
  if (options.letters == "swaps") {
    if (group.kind() != dp::GroupKind::symmetric)
      throw UsageError{"--letters swaps needs a symmetric group S<n>, got " + group.name()};
    spec.letters = dp::swap_letters(group);
  }
  std::int64_t count = 0;
  try {
    count = dp::word_problem_count(group, spec);
  } catch (const dp::ArgumentError& e) {
    throw UsageError{std::string(e.what())};
  }

  const dp::WordProblemFormat format =
      options.format == "csv" ? dp::WordProblemFormat::csv : dp::WordProblemFormat::binary;
  std::filesystem::create_directories(options.out);
  const std::filesystem::path path = options.out / dp::word_problem_file_name(group.name(), spec.k, format);
  if (std::filesystem::exists(path) && !options.overwrite) {
    std::cerr << "word_problem_data: " << path.string() << " exists; pass --overwrite to replace it\n";
    return 1;
  }
  std::cerr << "word_problem_data: " << (options.samples ? "sampling " : "enumerating all ") << count << " words of "
            << group.name() << " (order " << group.order() << (options.letters == "swaps" ? ", swap letters" : "")
            << "), k = " << spec.k << ", seed " << spec.seed << "\n";

  // Write under a temporary name and rename at the end, so an interrupted run leaves no truncated data file.
  std::filesystem::path partial = path;
  partial += ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) {
      std::cerr << "word_problem_data: cannot open " << partial.string() << " for writing\n";
      return 1;
    }
    if (format == dp::WordProblemFormat::csv) {
      dp::WordProblemCsvWriter writer(out, spec.seed);
      dp::for_each_word_problem(group, spec, [&](auto input, auto target) { writer.write(input, target); });
    } else {
      dp::WordProblemBinaryWriter writer(out, group, spec.k, count, spec.seed);
      dp::for_each_word_problem(group, spec, [&](auto input, auto target) { writer.write(input, target); });
      writer.finish();
    }
    out.flush();
    if (!out) {
      std::cerr << "word_problem_data: writing " << partial.string() << " failed (disk full?)\n";
      std::filesystem::remove(partial);
      return 1;
    }
  }
  std::filesystem::rename(partial, path);
  std::cerr << "word_problem_data: wrote " << path.string() << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options options = parse_options(std::span<char*>(argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0)));
    if (options.help) {
      std::cout << usage;
      return 0;
    }
    return run(options);
  } catch (const UsageError& e) {
    std::cerr << "word_problem_data: " << e.message << "\n(run with --help for the options)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "word_problem_data: " << e.what() << "\n";
    return 1;
  }
}

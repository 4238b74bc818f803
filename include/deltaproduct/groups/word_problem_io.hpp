// Word-problem data files: the reference tools' CSV, and a compact binary format. Readers verify what they load
// against the group (lengths, index ranges, every label a prefix product) and say where a file is wrong.
//
// CSV, as the reference generator writes it (file name "{group}={k}.csv", e.g. "S3=128.csv"):
//   seed,input,target
//   666,0 3 5 1,0 3 2 1
// one row per word: the generator's seed (the same in every row: the reference tool writes its global seed there),
// then the k input indices and the k prefix-product labels, each separated by single spaces; no BOS token, "\n" line
// ends, no quotes. The reader also accepts "\r\n" line ends, fields in double quotes, runs of spaces between indices
// and trailing empty lines; it keeps the first row's seed (rows with other seeds are accepted).
//
// Binary ("{group}={k}.bin"), every integer little-endian:
//   offset  size  field
//   0       8     magic "DPWORDS" followed by a zero byte
//   8       4     format version, 1
//   12      4     bytes per index: 2 (uint16) when the group order is <= 65536, else 4 (uint32)
//   16      8     group order
//   24      8     k, letters per word
//   32      8     count, number of words
//   40      8     seed
//   48      4     length L of the group name
//   52      L     group name, as FiniteGroup::parse reads it (no terminator)
//   52+L          count rows, each the k inputs followed by the k targets
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <istream>
#include <iterator>
#include <limits>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "deltaproduct/core/error.hpp"
#include "deltaproduct/groups/finite_group.hpp"
#include "deltaproduct/groups/word_problem.hpp"

namespace deltaproduct {

/// A data file that cannot be read or does not match its group: names the file, where (line or byte offset), and
/// what is wrong.
class DataFileError : public Error {
public:
  DataFileError(std::string source, std::string location, std::string problem)
      : Error("deltaproduct: " + source + (location.empty() ? "" : ", " + location) + ": " + problem),
        source_(std::move(source)), location_(std::move(location)), problem_(std::move(problem)) {}

  const std::string& source() const noexcept { return source_; }
  const std::string& location() const noexcept { return location_; }
  const std::string& problem() const noexcept { return problem_; }

private:
  std::string source_;
  std::string location_;
  std::string problem_;
};

enum class WordProblemFormat { csv, binary };

/// The exact CSV header of the reference data.
inline constexpr std::string_view word_problem_csv_header = "seed,input,target";

/// "{group}={k}.csv" or "{group}={k}.bin".
inline std::string word_problem_file_name(const std::string& group_name, std::int64_t k, WordProblemFormat format) {
  return group_name + "=" + std::to_string(k) + (format == WordProblemFormat::csv ? ".csv" : ".bin");
}

namespace detail {

inline void append_indices(std::string& line, std::span<const PackedElement> indices) {
  std::array<char, 16> buffer{};
  for (std::size_t t = 0; t < indices.size(); ++t) {
    if (t > 0) line += ' ';
    const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), indices[t]);
    line.append(buffer.data(), result.ptr);
  }
}

inline void check_row(std::span<const PackedElement> input, std::span<const PackedElement> target, std::int64_t k) {
  if (static_cast<std::int64_t>(input.size()) != k || static_cast<std::int64_t>(target.size()) != k)
    argument_error("input, target", "k = " + std::to_string(k) + " indices each",
                   std::to_string(input.size()) + " and " + std::to_string(target.size()));
}

template <class Unsigned>
void put_little_endian(std::string& bytes, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i)
    bytes += static_cast<char>(static_cast<unsigned char>((value >> (8 * i)) & 0xFFu));
}

template <class Unsigned>
Unsigned get_little_endian(const unsigned char* bytes) {
  Unsigned value = 0;
  for (std::size_t i = sizeof(Unsigned); i-- > 0;) value = static_cast<Unsigned>((value << 8) | bytes[i]);
  return value;
}

inline constexpr std::array<char, 8> binary_magic{'D', 'P', 'W', 'O', 'R', 'D', 'S', '\0'};
inline constexpr std::uint32_t binary_version = 1;
inline constexpr std::size_t binary_fixed_header = 52;

inline std::uint32_t binary_index_bytes(std::int64_t order) { return order <= 65536 ? 2u : 4u; }

}  // namespace detail

/// Streams rows into the reference CSV format; the header is written on construction.
class WordProblemCsvWriter {
public:
  WordProblemCsvWriter(std::ostream& out, std::uint64_t seed) : out_(out), seed_(std::to_string(seed)) {
    out_ << word_problem_csv_header << '\n';
  }

  void write(std::span<const PackedElement> input, std::span<const PackedElement> target) {
    if (input.size() != target.size() || input.empty())
      detail::argument_error("input, target", "equally long, non-empty rows",
                             std::to_string(input.size()) + " and " + std::to_string(target.size()) + " indices");
    line_ = seed_;
    line_ += ',';
    detail::append_indices(line_, input);
    line_ += ',';
    detail::append_indices(line_, target);
    line_ += '\n';
    out_.write(line_.data(), static_cast<std::streamsize>(line_.size()));
  }

private:
  std::ostream& out_;
  std::string seed_;
  std::string line_;
};

/// Streams rows into the binary format; the header (with the row count, known in advance) is written on
/// construction, and finish() checks that exactly `count` rows came.
class WordProblemBinaryWriter {
public:
  WordProblemBinaryWriter(std::ostream& out, const FiniteGroup& group, std::int64_t k, std::int64_t count,
                          std::uint64_t seed)
      : out_(out), k_(k), count_(count), index_bytes_(detail::binary_index_bytes(group.order())) {
    if (k < 1) detail::argument_error("k", "k >= 1", std::to_string(k));
    if (count < 0) detail::argument_error("count", "count >= 0", std::to_string(count));
    std::string header(detail::binary_magic.begin(), detail::binary_magic.end());
    detail::put_little_endian<std::uint32_t>(header, detail::binary_version);
    detail::put_little_endian<std::uint32_t>(header, index_bytes_);
    detail::put_little_endian<std::uint64_t>(header, static_cast<std::uint64_t>(group.order()));
    detail::put_little_endian<std::uint64_t>(header, static_cast<std::uint64_t>(k));
    detail::put_little_endian<std::uint64_t>(header, static_cast<std::uint64_t>(count));
    detail::put_little_endian<std::uint64_t>(header, seed);
    detail::put_little_endian<std::uint32_t>(header, static_cast<std::uint32_t>(group.name().size()));
    header += group.name();
    out_.write(header.data(), static_cast<std::streamsize>(header.size()));
  }

  void write(std::span<const PackedElement> input, std::span<const PackedElement> target) {
    detail::check_row(input, target, k_);
    if (written_ == count_)
      detail::argument_error("rows", "at most the " + std::to_string(count_) + " rows announced in the header",
                             "one more");
    row_.clear();
    for (std::span<const PackedElement> part : {input, target})
      for (PackedElement x : part) {
        if (index_bytes_ == 2)
          detail::put_little_endian<std::uint16_t>(row_, static_cast<std::uint16_t>(x));
        else
          detail::put_little_endian<std::uint32_t>(row_, x);
      }
    out_.write(row_.data(), static_cast<std::streamsize>(row_.size()));
    ++written_;
  }

  void finish() const {
    if (written_ != count_)
      detail::argument_error("rows", std::to_string(count_) + " rows, as announced in the header",
                             std::to_string(written_));
  }

private:
  std::ostream& out_;
  std::int64_t k_;
  std::int64_t count_;
  std::uint32_t index_bytes_;
  std::int64_t written_ = 0;
  std::string row_;
};

inline void write_word_problems_csv(std::ostream& out, const WordProblemData& data) {
  WordProblemCsvWriter writer(out, data.seed);
  for (std::int64_t row = 0; row < data.count(); ++row) writer.write(data.input(row), data.target(row));
}

inline void write_word_problems_binary(std::ostream& out, const WordProblemData& data) {
  WordProblemBinaryWriter writer(out, data.group, data.k, data.count(), data.seed);
  for (std::int64_t row = 0; row < data.count(); ++row) writer.write(data.input(row), data.target(row));
  writer.finish();
}

namespace detail {

inline std::string_view strip_quotes(std::string_view field) {
  if (field.size() >= 2 && field.front() == '"' && field.back() == '"') return field.substr(1, field.size() - 2);
  return field;
}

inline std::string quoted_excerpt(std::string_view text) {
  constexpr std::size_t limit = 60;
  return "'" + std::string(text.substr(0, limit)) + (text.size() > limit ? "...'" : "'");
}

/// Parses space-separated indices of `group` into `out`; returns an error text or an empty string.
inline std::string parse_indices(std::string_view field, const FiniteGroup& group, std::vector<PackedElement>& out) {
  out.clear();
  std::size_t i = 0;
  while (i < field.size()) {
    if (field[i] == ' ') {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < field.size() && field[end] != ' ') ++end;
    const std::string_view token = field.substr(i, end - i);
    std::uint64_t value = 0;
    const auto result = std::from_chars(token.data(), token.data() + token.size(), value);
    if (result.ec != std::errc() || result.ptr != token.data() + token.size())
      return "index " + std::to_string(out.size()) + " is " + quoted_excerpt(token) + ", not a non-negative integer";
    if (value >= static_cast<std::uint64_t>(group.order()))
      return "index " + std::to_string(out.size()) + " is " + std::string(token) + ", outside " + group.name() +
             " (elements 0.." + std::to_string(group.order() - 1) + ")";
    out.push_back(static_cast<PackedElement>(value));
    i = end;
  }
  return {};
}

inline std::optional<std::uint64_t> parse_seed(std::string_view field) {
  std::uint64_t value = 0;
  const auto result = std::from_chars(field.data(), field.data() + field.size(), value);
  if (field.empty() || result.ec != std::errc() || result.ptr != field.data() + field.size()) return std::nullopt;
  return value;
}

}  // namespace detail

/// Reads CSV word-problem data of `group`: checks the header, that every row has k inputs and k targets (k given, or
/// taken from the first row), that indices lie in the group, and that every target is the prefix product of its
/// input. Throws DataFileError naming `source` and the line.
inline WordProblemData read_word_problems_csv(std::istream& in, const FiniteGroup& group,
                                              std::optional<std::int64_t> k = std::nullopt,
                                              const std::string& source = "CSV data") {
  if (k && *k < 1) detail::argument_error("k", "k >= 1", std::to_string(*k));
  WordProblemData data{group, k.value_or(0), 0, {}, {}};
  std::string line;
  std::int64_t line_number = 0;
  const auto fail = [&](const std::string& problem) {
    throw DataFileError(source, "line " + std::to_string(line_number), problem);
  };
  const auto strip_cr = [](std::string& s) {
    if (!s.empty() && s.back() == '\r') s.pop_back();
  };
  ++line_number;
  if (!std::getline(in, line)) fail("empty, expected the header '" + std::string(word_problem_csv_header) + "'");
  strip_cr(line);
  if (line != word_problem_csv_header)
    fail("expected the header '" + std::string(word_problem_csv_header) + "', got " + detail::quoted_excerpt(line));

  std::vector<PackedElement> input, target;
  std::int64_t first_blank_line = 0;
  bool first_row = true;
  while (std::getline(in, line)) {
    ++line_number;
    strip_cr(line);
    if (line.empty()) {
      if (first_blank_line == 0) first_blank_line = line_number;  // allowed at the end only
      continue;
    }
    if (first_blank_line > 0) {
      line_number = first_blank_line;
      fail("empty line inside the data");
    }
    const std::size_t comma1 = line.find(',');
    const std::size_t comma2 = comma1 == std::string::npos ? comma1 : line.find(',', comma1 + 1);
    if (comma2 == std::string::npos || line.find(',', comma2 + 1) != std::string::npos)
      fail("expected 3 comma-separated fields (seed,input,target), got " + detail::quoted_excerpt(line));
    const std::string_view view(line);
    const std::string_view seed_field = detail::strip_quotes(view.substr(0, comma1));
    const std::string_view input_field = detail::strip_quotes(view.substr(comma1 + 1, comma2 - comma1 - 1));
    const std::string_view target_field = detail::strip_quotes(view.substr(comma2 + 1));
    const std::optional<std::uint64_t> seed = detail::parse_seed(seed_field);
    if (!seed) fail("the seed " + detail::quoted_excerpt(seed_field) + " is not a non-negative integer");
    if (std::string problem = detail::parse_indices(input_field, group, input); !problem.empty())
      fail("input " + problem);
    if (std::string problem = detail::parse_indices(target_field, group, target); !problem.empty())
      fail("target " + problem);
    if (first_row) {
      data.seed = *seed;
      if (!k) {
        if (input.empty()) fail("the input holds no indices");
        data.k = static_cast<std::int64_t>(input.size());
      }
      first_row = false;
    }
    if (static_cast<std::int64_t>(input.size()) != data.k)
      fail("expected k = " + std::to_string(data.k) + " input indices, got " + std::to_string(input.size()));
    if (static_cast<std::int64_t>(target.size()) != data.k)
      fail("expected k = " + std::to_string(data.k) + " target indices, got " + std::to_string(target.size()));
    const std::int64_t wrong =
        detail::first_wrong_label(group, std::span<const PackedElement>(input), std::span<const PackedElement>(target));
    if (wrong >= 0) {
      const std::vector<PackedElement> expected = prefix_products(group, std::span<const PackedElement>(input));
      fail("target " + std::to_string(wrong) + " is " + std::to_string(target[static_cast<std::size_t>(wrong)]) +
           ", but the prefix product of the input in " + group.name() + " is " +
           std::to_string(expected[static_cast<std::size_t>(wrong)]));
    }
    data.inputs.insert(data.inputs.end(), input.begin(), input.end());
    data.targets.insert(data.targets.end(), target.begin(), target.end());
  }
  if (in.bad()) throw DataFileError(source, "", "read error");
  return data;
}

/// Reads the binary format; checks magic, version, header fields against the group named in the file (and against
/// `expected_group` when given), the exact size, index ranges and labels. Throws DataFileError naming `source`.
inline WordProblemData read_word_problems_binary(std::istream& in,
                                                 const std::optional<FiniteGroup>& expected_group = std::nullopt,
                                                 const std::string& source = "binary data") {
  const auto fail = [&](const std::string& location, const std::string& problem) {
    throw DataFileError(source, location, problem);
  };
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("", "read error");
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < detail::binary_fixed_header)
    fail("", "only " + std::to_string(bytes.size()) + " bytes, shorter than the " +
                 std::to_string(detail::binary_fixed_header) + "-byte header");
  if (!std::equal(detail::binary_magic.begin(), detail::binary_magic.end(), bytes.begin()))
    fail("byte 0", "not a deltaproduct word-problem file (magic \"DPWORDS\\0\" missing)");
  const auto version = detail::get_little_endian<std::uint32_t>(p + 8);
  if (version != detail::binary_version)
    fail("byte 8", "format version " + std::to_string(version) + ", this reader knows version " +
                       std::to_string(detail::binary_version));
  const auto index_bytes = detail::get_little_endian<std::uint32_t>(p + 12);
  const auto order = detail::get_little_endian<std::uint64_t>(p + 16);
  const auto k = detail::get_little_endian<std::uint64_t>(p + 24);
  const auto count = detail::get_little_endian<std::uint64_t>(p + 32);
  const auto seed = detail::get_little_endian<std::uint64_t>(p + 40);
  const auto name_length = detail::get_little_endian<std::uint32_t>(p + 48);
  if (name_length > bytes.size() - detail::binary_fixed_header)
    fail("byte 48", "group name of " + std::to_string(name_length) + " bytes runs past the end of the file");
  const std::string name = bytes.substr(detail::binary_fixed_header, name_length);
  std::optional<FiniteGroup> parsed;
  try {
    parsed = FiniteGroup::parse(name);
  } catch (const ArgumentError& e) {
    fail("byte 52", "the group name " + detail::quoted_excerpt(name) + " is not a group this library knows (" +
                        e.expected() + ")");
  }
  const FiniteGroup& group = *parsed;
  if (expected_group && expected_group->name() != group.name())
    fail("byte 52", "holds data of " + group.name() + ", expected " + expected_group->name());
  if (order != static_cast<std::uint64_t>(group.order()))
    fail("byte 16", "group order " + std::to_string(order) + ", but " + group.name() + " has order " +
                        std::to_string(group.order()));
  if (index_bytes != 4 && !(index_bytes == 2 && group.order() <= 65536))
    fail("byte 12", std::to_string(index_bytes) + " bytes per index; expected 4, or 2 for orders <= 65536");
  if (k < 1 || k > (std::uint64_t{1} << 40)) fail("byte 24", "k = " + std::to_string(k) + ", expected k >= 1");
  const std::size_t data_begin = detail::binary_fixed_header + name_length;
  const std::uint64_t row_bytes = 2 * k * index_bytes;
  const std::uint64_t available = bytes.size() - data_begin;
  if (count > available / row_bytes || available != count * row_bytes)
    fail("byte 32", std::to_string(count) + " rows of " + std::to_string(row_bytes) + " bytes announced, but " +
                        std::to_string(available) + " bytes of rows follow the header");

  WordProblemData data{group, static_cast<std::int64_t>(k), seed, {}, {}};
  data.inputs.resize(static_cast<std::size_t>(count * k));
  data.targets.resize(static_cast<std::size_t>(count * k));
  const unsigned char* q = p + data_begin;
  const auto next = [&]() -> std::uint64_t {
    const std::uint64_t v = index_bytes == 2 ? detail::get_little_endian<std::uint16_t>(q)
                                             : detail::get_little_endian<std::uint32_t>(q);
    q += index_bytes;
    return v;
  };
  for (std::uint64_t row = 0; row < count; ++row) {
    for (std::vector<PackedElement>* part : {&data.inputs, &data.targets})
      for (std::uint64_t t = 0; t < k; ++t) {
        const std::uint64_t offset = static_cast<std::uint64_t>(q - p);
        const std::uint64_t v = next();
        if (v >= order)
          fail("byte " + std::to_string(offset), "row " + std::to_string(row) + ": index " + std::to_string(v) +
                                                     " outside " + group.name());
        (*part)[static_cast<std::size_t>(row * k + t)] = static_cast<PackedElement>(v);
      }
    const std::int64_t wrong =
        detail::first_wrong_label(group, data.input(static_cast<std::int64_t>(row)),
                                  data.target(static_cast<std::int64_t>(row)));
    if (wrong >= 0)
      fail("row " + std::to_string(row), "target " + std::to_string(wrong) +
                                             " is not the prefix product of the input in " + group.name());
  }
  return data;
}

/// Writes `data` into `directory` (created if missing) as "{group}={k}.csv" or ".bin"; the file appears complete or
/// not at all (written under a temporary name, then renamed). Returns the path.
inline std::filesystem::path save_word_problems(const WordProblemData& data, const std::filesystem::path& directory,
                                                WordProblemFormat format) {
  std::filesystem::create_directories(directory);
  const std::filesystem::path path = directory / word_problem_file_name(data.group.name(), data.k, format);
  std::filesystem::path temporary = path;
  temporary += ".partial";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw DataFileError(temporary.string(), "", "cannot open for writing");
    if (format == WordProblemFormat::csv)
      write_word_problems_csv(out, data);
    else
      write_word_problems_binary(out, data);
    out.flush();
    if (!out) throw DataFileError(temporary.string(), "", "write failed");
  }
  std::filesystem::rename(temporary, path);
  return path;
}

/// Reads "{group}={k}.csv" or "{group}={k}.bin" (format from the extension). The group comes from the file name
/// (CSV) or the header (binary) unless given; for CSV, k comes from the file name when it has one.
inline WordProblemData load_word_problems(const std::filesystem::path& file,
                                          const std::optional<FiniteGroup>& group = std::nullopt) {
  const std::string source = file.filename().string();
  const std::string extension = file.extension().string();
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataFileError(file.string(), "", "cannot open for reading");
  if (extension == ".bin") return read_word_problems_binary(in, group, source);
  if (extension != ".csv")
    throw DataFileError(source, "", "unknown extension '" + extension + "' (expected .csv or .bin)");
  const std::string stem = file.stem().string();
  const std::size_t equals = stem.rfind('=');
  std::optional<std::int64_t> k;
  if (equals != std::string::npos) {
    const std::string_view digits = std::string_view(stem).substr(equals + 1);
    std::int64_t value = 0;
    const auto result = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (result.ec == std::errc() && result.ptr == digits.data() + digits.size() && value >= 1) k = value;
  }
  if (group) return read_word_problems_csv(in, *group, k, source);
  if (equals == std::string::npos)
    throw DataFileError(source, "", "cannot tell the group: the name is not {group}={k}.csv; pass the group");
  std::optional<FiniteGroup> named;
  try {
    named = FiniteGroup::parse(stem.substr(0, equals));
  } catch (const ArgumentError& e) {
    throw DataFileError(source, "", "cannot tell the group from the file name (" + e.expected() + "); pass the group");
  }
  return read_word_problems_csv(in, *named, k, source);
}

}  // namespace deltaproduct

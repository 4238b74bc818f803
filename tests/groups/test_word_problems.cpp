// Word-problem data: labels against products computed here by hand (one-line arrays composed directly, residues
// added), distinctness and reproducibility of samples, lexicographic enumeration, the unbiased sampler
// (chi-square), and the CSV / binary files with their error reports.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "deltaproduct/groups/groups.hpp"
#include "support/permutations.hpp"

namespace dp = deltaproduct;
using dp::FiniteGroup;
using dp::GroupElement;
using dp::PackedElement;
using dp::WordProblemData;
using dp::WordProblemSpec;

namespace {

using Perm = std::vector<int>;
using Row = std::vector<PackedElement>;

using reference::lexicographic_permutations;

bool is_even(const Perm& p) {
  int inversions = 0;
  for (std::size_t i = 0; i < p.size(); ++i)
    for (std::size_t j = i + 1; j < p.size(); ++j) inversions += p[j] < p[i];
  return inversions % 2 == 0;
}

// Labels of a word over a list of one-line permutations (the group's elements in index order), composing arrays:
// label_t = label_{t-1} * g_t with (p * q)(x) = p(q(x)).
Row permutation_labels(const std::vector<Perm>& elements, std::span<const PackedElement> word) {
  Row labels;
  Perm acc = elements[0];
  for (PackedElement g : word) {
    const Perm& q = elements[g];
    Perm next(acc.size());
    for (std::size_t x = 0; x < acc.size(); ++x) next[x] = acc[static_cast<std::size_t>(q[x])];
    acc = next;
    labels.push_back(static_cast<PackedElement>(std::find(elements.begin(), elements.end(), acc) - elements.begin()));
  }
  return labels;
}

Row row_of(std::span<const PackedElement> s) { return Row(s.begin(), s.end()); }

std::vector<Row> rows(const WordProblemData& data) {
  std::vector<Row> result;
  for (std::int64_t r = 0; r < data.count(); ++r) result.push_back(row_of(data.input(r)));
  return result;
}

struct TemporaryDirectory {
  std::filesystem::path path;
  TemporaryDirectory() {
    std::random_device device;
    path = std::filesystem::temp_directory_path() /
           ("deltaproduct_word_problems_" + std::to_string(device()) + "_" + std::to_string(device()));
    std::filesystem::create_directories(path);
  }
  ~TemporaryDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
};

WordProblemSpec sampled(std::int64_t k, std::int64_t samples, std::uint64_t seed) {
  WordProblemSpec spec;
  spec.k = k;
  spec.samples = samples;
  spec.seed = seed;
  return spec;
}

WordProblemSpec enumerated(std::int64_t k) {
  WordProblemSpec spec;
  spec.k = k;
  return spec;
}

// The message of the DataFileError a callable throws ("" if none).
template <class F>
std::string data_error(F&& f) {
  try {
    f();
  } catch (const dp::DataFileError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Pearson's statistic of observed counts against equal expected counts.
double chi_square(const std::vector<std::int64_t>& counts) {
  std::int64_t total = 0;
  for (auto c : counts) total += c;
  const double expected = static_cast<double>(total) / static_cast<double>(counts.size());
  double chi2 = 0;
  for (auto c : counts) chi2 += (static_cast<double>(c) - expected) * (static_cast<double>(c) - expected) / expected;
  return chi2;
}

}  // namespace

TEST_CASE("labels are prefix products, checked against products computed by hand") {
  // S3, S4: lexicographic one-line arrays; A4: the even ones.
  for (int n : {3, 4}) {
    const std::vector<Perm> all = lexicographic_permutations(n);
    const WordProblemData data = dp::generate_word_problems(FiniteGroup::symmetric(n), sampled(24, 400, 5));
    REQUIRE(data.count() == 400);
    for (std::int64_t r = 0; r < data.count(); ++r)
      CHECK(row_of(data.target(r)) == permutation_labels(all, data.input(r)));
  }
  std::vector<Perm> even;
  for (const Perm& p : lexicographic_permutations(4))
    if (is_even(p)) even.push_back(p);
  const WordProblemData a4 = dp::generate_word_problems(FiniteGroup::alternating(4), sampled(30, 300, 8));
  for (std::int64_t r = 0; r < a4.count(); ++r) CHECK(row_of(a4.target(r)) == permutation_labels(even, a4.input(r)));

  // Z7: running sums. S3_x_Z4: index = i_S3 * 4 + i_Z4, each component by hand.
  const WordProblemData z7 = dp::generate_word_problems(FiniteGroup::cyclic(7), sampled(50, 100, 9));
  for (std::int64_t r = 0; r < z7.count(); ++r) {
    PackedElement sum = 0;
    for (std::size_t t = 0; t < 50; ++t) {
      sum = (sum + z7.input(r)[t]) % 7;
      CHECK(z7.target(r)[t] == sum);
    }
  }
  const std::vector<Perm> s3 = lexicographic_permutations(3);
  const WordProblemData product = dp::generate_word_problems(FiniteGroup::parse("S3_x_Z4"), sampled(16, 200, 10));
  for (std::int64_t r = 0; r < product.count(); ++r) {
    Row s3_word;
    PackedElement z4 = 0;
    for (std::size_t t = 0; t < 16; ++t) s3_word.push_back(product.input(r)[t] / 4);
    const Row s3_labels = permutation_labels(s3, s3_word);
    for (std::size_t t = 0; t < 16; ++t) {
      z4 = (z4 + product.input(r)[t] % 4) % 4;
      CHECK(product.target(r)[t] == s3_labels[t] * 4 + z4);
    }
  }
  // D5 through the vertex action x -> (-1)^j x + i of index i + 5j.
  const WordProblemData d5 = dp::generate_word_problems(FiniteGroup::dihedral(5), sampled(12, 100, 11));
  const auto act = [](std::int64_t g, std::int64_t x) { return (((g >= 5 ? -x : x) + g % 5) % 5 + 5) % 5; };
  for (std::int64_t r = 0; r < d5.count(); ++r) {
    std::vector<std::int64_t> image{0, 1, 2, 3, 4};  // where the running product sends each vertex
    for (std::size_t t = 0; t < 12; ++t) {
      // label_t = label_{t-1} * g_t: g_t acts first, then label_{t-1}.
      std::vector<std::int64_t> next(5);
      for (std::int64_t x = 0; x < 5; ++x)
        next[static_cast<std::size_t>(x)] = image[static_cast<std::size_t>(act(d5.input(r)[t], x))];
      image = next;
      for (std::int64_t x = 0; x < 5; ++x) CHECK(act(d5.target(r)[t], x) == image[static_cast<std::size_t>(x)]);
    }
  }
  // S3: 132 * 213 = 312 (index 4), then 312 * 213 = 132 (index 1).
  CHECK(dp::prefix_products(FiniteGroup::symmetric(3), std::span<const PackedElement>(Row{1, 2, 2})) == Row{1, 4, 1});
}

TEST_CASE("samples: N distinct words, reproducible for a seed, different for another seed") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  const WordProblemData a = dp::generate_word_problems(s3, sampled(8, 3000, 666));
  const WordProblemData b = dp::generate_word_problems(s3, sampled(8, 3000, 666));
  const WordProblemData c = dp::generate_word_problems(s3, sampled(8, 3000, 667));
  REQUIRE(a.count() == 3000);
  const std::vector<Row> words = rows(a);
  CHECK(std::set<Row>(words.begin(), words.end()).size() == 3000);
  CHECK(a.inputs == b.inputs);
  CHECK(a.targets == b.targets);
  CHECK(a.inputs != c.inputs);
  CHECK(a.seed == 666);
  // 6^8 = 1679616 words: a few of 3000 draws repeat (birthday bound ~2.7 expected), and are redrawn.
  dp::verify_word_problems(a);

  // Fewer samples give a prefix of the same words (acceptance depends only on the words before).
  const WordProblemData prefix = dp::generate_word_problems(s3, sampled(8, 100, 666));
  CHECK(std::equal(prefix.inputs.begin(), prefix.inputs.end(), a.inputs.begin()));
  // The stream is pinned: mt19937_64 is specified by the standard and uniform_below by this library, so these
  // words are the same on every platform.
  CHECK(row_of(a.input(0)) == Row{3, 5, 3, 4, 2, 0, 3, 1});
  CHECK(row_of(a.input(1)) == Row{5, 1, 4, 5, 3, 2, 1, 3});
}

TEST_CASE("N = |G|^k gives every word once; N > |G|^k is an error") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  const WordProblemData all = dp::generate_word_problems(s3, sampled(2, 36, 1));
  const std::vector<Row> words = rows(all);
  CHECK(std::set<Row>(words.begin(), words.end()).size() == 36);
  CHECK_THROWS_AS(dp::generate_word_problems(s3, sampled(2, 37, 1)), dp::ArgumentError);
  CHECK(dp::generate_word_problems(s3, sampled(2, 0, 1)).count() == 0);
  CHECK_THROWS_AS(dp::generate_word_problems(s3, sampled(2, -1, 1)), dp::ArgumentError);
  CHECK(dp::generate_word_problems(FiniteGroup::parity(), sampled(3, 8, 4)).count() == 8);
}

TEST_CASE("without samples: all |G|^k words in lexicographic order") {
  const WordProblemData s3 = dp::generate_word_problems(FiniteGroup::symmetric(3), enumerated(2));
  REQUIRE(s3.count() == 36);
  for (std::int64_t r = 0; r < 36; ++r) CHECK(row_of(s3.input(r)) == Row{PackedElement(r / 6), PackedElement(r % 6)});
  const std::vector<Perm> perms = lexicographic_permutations(3);
  for (std::int64_t r = 0; r < 36; ++r) CHECK(row_of(s3.target(r)) == permutation_labels(perms, s3.input(r)));

  const WordProblemData z2 = dp::generate_word_problems(FiniteGroup::cyclic(2), enumerated(3));
  REQUIRE(z2.count() == 8);
  for (std::int64_t r = 0; r < 8; ++r) {
    const Row bits{PackedElement(r >> 2 & 1), PackedElement(r >> 1 & 1), PackedElement(r & 1)};
    CHECK(row_of(z2.input(r)) == bits);
    CHECK(row_of(z2.target(r)) == Row{bits[0], bits[0] ^ bits[1], bits[0] ^ bits[1] ^ bits[2]});
  }
  // Lexicographic over a restricted alphabet, and the same count from the streaming interface.
  WordProblemSpec swaps = enumerated(3);
  swaps.letters = dp::swap_letters(FiniteGroup::symmetric(4));
  const WordProblemData s4 = dp::generate_word_problems(FiniteGroup::symmetric(4), swaps);
  REQUIRE(s4.count() == 7 * 7 * 7);
  const std::vector<Row> words = rows(s4);
  CHECK(std::is_sorted(words.begin(), words.end()));
  CHECK(std::adjacent_find(words.begin(), words.end()) == words.end());
  std::int64_t visited = 0;
  dp::for_each_word_problem(FiniteGroup::symmetric(4), swaps,
                            [&](std::span<const PackedElement>, std::span<const PackedElement>) { ++visited; });
  CHECK(visited == 343);
  CHECK(dp::word_problem_count(FiniteGroup::symmetric(4), swaps) == 343);
}

TEST_CASE("swap letters: S5 only swaps draws from the identity and the 10 transpositions") {
  const FiniteGroup s5 = FiniteGroup::symmetric(5);
  const std::vector<GroupElement> letters = dp::swap_letters(s5);
  REQUIRE(letters.size() == 11);
  CHECK(letters[0] == 0);
  std::set<PackedElement> allowed;
  for (GroupElement g : letters) {
    allowed.insert(static_cast<PackedElement>(g));
    CHECK(s5.element_order(g) <= 2);
  }
  WordProblemSpec spec = sampled(32, 1000, 3);
  spec.letters = letters;
  const WordProblemData data = dp::generate_word_problems(s5, spec);
  std::vector<std::int64_t> counts(11, 0);
  for (PackedElement g : data.inputs) {
    REQUIRE(allowed.count(g) == 1);
    ++counts[static_cast<std::size_t>(std::find(letters.begin(), letters.end(), GroupElement(g)) - letters.begin())];
  }
  // 32000 letters over 11 classes: chi-square with 10 degrees of freedom below 29.59 (its 0.999 quantile).
  CHECK(chi_square(counts) < 29.59);
  const std::vector<Perm> perms = lexicographic_permutations(5);
  for (std::int64_t r = 0; r < 50; ++r) CHECK(row_of(data.target(r)) == permutation_labels(perms, data.input(r)));
}

TEST_CASE("bad specs are rejected") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  WordProblemSpec spec = sampled(4, 10, 0);
  spec.letters = {1, 1};
  CHECK_THROWS_AS(dp::generate_word_problems(s3, spec), dp::ArgumentError);
  spec.letters = {0, 6};
  CHECK_THROWS_AS(dp::generate_word_problems(s3, spec), dp::ArgumentError);
  CHECK_THROWS_AS(dp::generate_word_problems(s3, sampled(0, 1, 0)), dp::ArgumentError);
  CHECK_THROWS_AS(dp::generate_word_problems(FiniteGroup::symmetric(5), enumerated(10)), dp::ArgumentError);
  CHECK_THROWS_AS(dp::swap_letters(FiniteGroup::cyclic(4)), dp::ArgumentError);
  CHECK_THROWS_AS(dp::generate_word_problems(FiniteGroup::symmetric(13), sampled(2, 1, 0)), dp::ArgumentError);
}

TEST_CASE("uniform_below is unbiased (chi-square) and rejects where a plain modulo would be biased") {
  dp::RandomEngine engine(2024);
  // 60000 draws over 6 values: chi-square (5 degrees of freedom) below 20.52, its 0.999 quantile.
  std::vector<std::int64_t> counts(6, 0);
  for (int i = 0; i < 60000; ++i) ++counts[dp::uniform_below(engine, 6)];
  CHECK(chi_square(counts) < 20.52);
  // bound = 0xAAAA...AA (about 2/3 of 2^64): x mod bound without rejection would put 2/3 of the mass below
  // bound/2; unbiased, it is 1/2. 20000 draws: standard deviation 0.0035, tolerance 0.02 (over 5 sigma).
  const std::uint64_t bound = 0xAAAAAAAAAAAAAAAAULL;
  int lower = 0;
  for (int i = 0; i < 20000; ++i) lower += dp::uniform_below(engine, bound) < bound / 2;
  CHECK(std::abs(lower / 20000.0 - 0.5) < 0.02);
  CHECK(dp::uniform_below(engine, 1) == 0);
  CHECK_THROWS_AS(dp::uniform_below(engine, 0), dp::ArgumentError);
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t x = dp::uniform_between(engine, -3, 3);
    CHECK((x >= -3 && x <= 3));
  }
  // Letters of sampled S3 data: 2000 words of 16 letters, chi-square over the 6 letters below 20.52.
  const WordProblemData data = dp::generate_word_problems(FiniteGroup::symmetric(3), sampled(16, 2000, 31));
  std::vector<std::int64_t> letters(6, 0);
  for (PackedElement g : data.inputs) ++letters[g];
  CHECK(chi_square(letters) < 20.52);
}

TEST_CASE("CSV: exact header and rows, round trip, files named {group}={k}.csv") {
  WordProblemSpec spec = enumerated(2);
  spec.seed = 7;
  const WordProblemData z3 = dp::generate_word_problems(FiniteGroup::cyclic(3), spec);
  std::ostringstream out;
  dp::write_word_problems_csv(out, z3);
  CHECK(out.str() ==
        "seed,input,target\n7,0 0,0 0\n7,0 1,0 1\n7,0 2,0 2\n7,1 0,1 1\n7,1 1,1 2\n7,1 2,1 0\n7,2 0,2 2\n"
        "7,2 1,2 0\n7,2 2,2 1\n");

  const FiniteGroup s4 = FiniteGroup::symmetric(4);
  const WordProblemData data = dp::generate_word_problems(s4, sampled(10, 200, 99));
  std::stringstream text;
  dp::write_word_problems_csv(text, data);
  const WordProblemData back = dp::read_word_problems_csv(text, s4);
  CHECK(back.k == 10);
  CHECK(back.seed == 99);
  CHECK(back.inputs == data.inputs);
  CHECK(back.targets == data.targets);

  TemporaryDirectory dir;
  const std::filesystem::path path = dp::save_word_problems(data, dir.path / "nested", dp::WordProblemFormat::csv);
  CHECK(path.filename() == "S4=10.csv");
  const WordProblemData loaded = dp::load_word_problems(path);  // group and k from the name
  CHECK(loaded.group.name() == "S4");
  CHECK(loaded.inputs == data.inputs);
  CHECK(loaded.targets == data.targets);
  CHECK_FALSE(std::filesystem::exists(path.string() + ".partial"));
}

TEST_CASE("CSV reader: reference-style files, CRLF and quotes") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  std::istringstream reference("seed,input,target\n666,1 2 5,1 4 2\n666,0 0 3,0 0 3\n");
  const WordProblemData data = dp::read_word_problems_csv(reference, s3);
  CHECK(data.count() == 2);
  CHECK(data.k == 3);
  CHECK(data.seed == 666);
  CHECK(row_of(data.target(0)) == Row{1, 4, 2});  // 132 * 213 = 312 (index 4); 312 * 321 = 213 (index 2)
  std::istringstream windows("seed,input,target\r\n1,\"1 2\",\"1 4\"\r\n\r\n");
  CHECK(dp::read_word_problems_csv(windows, s3).count() == 1);
}

TEST_CASE("CSV reader: clear errors for wrong headers, lengths, ranges and labels") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  const auto read = [&](const std::string& text, std::optional<std::int64_t> k = std::nullopt) {
    return data_error([&] {
      std::istringstream in(text);
      dp::read_word_problems_csv(in, s3, k, "S3=2.csv");
    });
  };
  CHECK(contains(read(""), "header"));
  CHECK(contains(read("seed,inputs,target\n"), "line 1"));
  CHECK(contains(read("input,target,seed\n"), "expected the header 'seed,input,target'"));
  CHECK(contains(read("seed,input,target\n1,1 2\n"), "3 comma-separated fields"));
  CHECK(contains(read("seed,input,target\n1,1 2,1 4,9\n"), "3 comma-separated fields"));
  CHECK(contains(read("seed,input,target\n1,1 2,1 4\n1,1 2 0,1 4 4\n"), "line 3: expected k = 2 input indices, got 3"));
  CHECK(contains(read("seed,input,target\n1,1 2,1\n"), "target indices, got 1"));
  CHECK(contains(read("seed,input,target\n1,1 2 0,1 4 4\n", 2), "expected k = 2"));
  CHECK(contains(read("seed,input,target\n1,1 6,1 4\n"), "outside S3"));
  CHECK(contains(read("seed,input,target\n1,1 x,1 4\n"), "not a non-negative integer"));
  CHECK(contains(read("seed,input,target\n1,1 -2,1 4\n"), "not a non-negative integer"));
  CHECK(contains(read("seed,input,target\nabc,1 2,1 4\n"), "seed"));
  CHECK(contains(read("seed,input,target\n1,1 2,1 3\n"),
                 "target 1 is 3, but the prefix product of the input in S3 is 4"));
  CHECK(contains(read("seed,input,target\n1,1 2,1 4\n\n1,1 2,1 4\n"), "line 3: empty line"));
  CHECK(contains(read("seed,input,target\n1,,\n"), "no indices"));
  CHECK(read("seed,input,target\n1,1 2,1 4\n").empty());  // the valid file throws nothing
  CHECK(contains(read("seed,input,target\n1,1 2,1 3\n"), "S3=2.csv, line 2"));

  TemporaryDirectory dir;
  const std::filesystem::path odd = dir.path / "notes.txt";
  std::ofstream(odd) << "seed,input,target\n";
  CHECK(contains(data_error([&] { dp::load_word_problems(odd); }), "extension"));
  const std::filesystem::path unknown = dir.path / "Q7=3.csv";
  std::ofstream(unknown) << "seed,input,target\n";
  CHECK(contains(data_error([&] { dp::load_word_problems(unknown); }), "cannot tell the group"));
  const std::filesystem::path wrong_k = dir.path / "S3=3.csv";
  std::ofstream(wrong_k) << "seed,input,target\n1,1 2,1 4\n";
  CHECK(contains(data_error([&] { dp::load_word_problems(wrong_k); }), "expected k = 3"));
}

TEST_CASE("binary: documented layout, round trip with uint16 and uint32 indices, and errors") {
  const FiniteGroup s3 = FiniteGroup::symmetric(3);
  const WordProblemData data = dp::generate_word_problems(s3, sampled(5, 20, 0x0102030405060708ULL));
  std::ostringstream out;
  dp::write_word_problems_binary(out, data);
  const std::string bytes = out.str();
  REQUIRE(bytes.size() == 52 + 2 + 20 * 2 * 5 * 2);
  CHECK(bytes.substr(0, 8) == std::string("DPWORDS\0", 8));
  const auto u8 = [&](std::size_t i) { return static_cast<unsigned>(static_cast<unsigned char>(bytes[i])); };
  CHECK(u8(8) == 1);    // version, little-endian
  CHECK(u8(12) == 2);   // bytes per index
  CHECK(u8(16) == 6);   // order
  CHECK(u8(24) == 5);   // k
  CHECK(u8(32) == 20);  // count
  CHECK(u8(40) == 0x08);
  CHECK(u8(47) == 0x01);  // seed, little-endian
  CHECK(u8(48) == 2);     // name length
  CHECK(bytes.substr(52, 2) == "S3");
  CHECK(u8(54) == data.inputs[0]);
  CHECK(u8(54 + 10) == data.targets[0]);  // targets follow the k inputs of the row
  std::istringstream in(bytes);
  const WordProblemData back = dp::read_word_problems_binary(in);
  CHECK(back.group.name() == "S3");
  CHECK(back.seed == data.seed);
  CHECK(back.inputs == data.inputs);
  CHECK(back.targets == data.targets);

  const FiniteGroup big = FiniteGroup::cyclic(70000);
  const WordProblemData wide = dp::generate_word_problems(big, sampled(3, 50, 1));
  std::ostringstream wide_out;
  dp::write_word_problems_binary(wide_out, wide);
  REQUIRE(wide_out.str().size() == 52 + 6 + 50 * 2 * 3 * 4);
  std::istringstream wide_in(wide_out.str());
  CHECK(dp::read_word_problems_binary(wide_in).targets == wide.targets);

  TemporaryDirectory dir;
  const std::filesystem::path path = dp::save_word_problems(data, dir.path, dp::WordProblemFormat::binary);
  CHECK(path.filename() == "S3=5.bin");
  CHECK(dp::load_word_problems(path).inputs == data.inputs);

  const auto read = [](std::string b, const std::optional<FiniteGroup>& expected = std::nullopt) {
    return data_error([&] {
      std::istringstream s(b);
      dp::read_word_problems_binary(s, expected, "S3=5.bin");
    });
  };
  std::string corrupt = bytes;
  corrupt[0] = 'X';
  CHECK(contains(read(corrupt), "magic"));
  CHECK(contains(read(bytes.substr(0, bytes.size() - 1)), "bytes of rows"));
  CHECK(contains(read(bytes.substr(0, 30)), "header"));
  corrupt = bytes;
  corrupt[8] = 2;
  CHECK(contains(read(corrupt), "version 2"));
  corrupt = bytes;
  corrupt[16] = 7;
  CHECK(contains(read(corrupt), "group order 7"));
  corrupt = bytes;
  corrupt[52] = 'Q';
  CHECK(contains(read(corrupt), "not a group"));
  corrupt = bytes;
  corrupt[54] = 9;  // first input index out of S3
  CHECK(contains(read(corrupt), "outside S3"));
  corrupt = bytes;
  corrupt[54 + 10] = static_cast<char>((data.targets[0] + 1) % 6);  // first label wrong
  CHECK(contains(read(corrupt), "row 0"));
  CHECK(contains(read(bytes, FiniteGroup::symmetric(4)), "expected S4"));
  CHECK(read(bytes).empty());
}

TEST_CASE("streaming writers check what they are given; verify_word_problems finds bad labels") {
  std::ostringstream out;
  dp::WordProblemBinaryWriter writer(out, FiniteGroup::symmetric(3), 2, 1, 0);
  CHECK_THROWS_AS(writer.write(Row{1}, Row{1}), dp::ArgumentError);
  writer.write(Row{1, 2}, Row{1, 4});
  CHECK_THROWS_AS(writer.write(Row{1, 2}, Row{1, 4}), dp::ArgumentError);
  CHECK_NOTHROW(writer.finish());
  dp::WordProblemBinaryWriter short_writer(out, FiniteGroup::symmetric(3), 2, 2, 0);
  CHECK_THROWS_AS(short_writer.finish(), dp::ArgumentError);

  WordProblemData data = dp::generate_word_problems(FiniteGroup::symmetric(3), sampled(4, 10, 2));
  CHECK_NOTHROW(dp::verify_word_problems(data));
  data.targets[17] = (data.targets[17] + 1) % 6;
  CHECK_THROWS_AS(dp::verify_word_problems(data), dp::ArgumentError);
}

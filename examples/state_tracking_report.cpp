// The state-tracking report: which explicit DeltaNet / DeltaProduct constructions solve which tasks, in which number
// formats, and the impossibility results checked by exhaustive enumeration. The README's first command runs it.
//
//   state_tracking_report [--tasks SUBSTRING] [--formats fp64,bf16,...] [--random-tokens N] [--max-pairs N]
//                         [--threads N] [--no-impossibility]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deltaproduct/deltaproduct.hpp>
#include <deltaproduct/groups/groups.hpp>
#include <deltaproduct/precision/precision.hpp>
#include <deltaproduct/theory/checker.hpp>
#include <deltaproduct/theory/constructions.hpp>
#include <deltaproduct/theory/impossibility.hpp>
#include <deltaproduct/theory/krohn_rhodes.hpp>
#include <deltaproduct/theory/multilayer.hpp>
#include <deltaproduct/theory/spectral.hpp>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace dp = deltaproduct;

namespace {

struct FormatColumn {
  const char* name;
  dp::CheckVerdict (*check)(const dp::Construction&, dp::KeyForm, const dp::CheckOptions&);
};

const std::vector<FormatColumn> all_formats = {
    {"fp64", &dp::check_construction<dp::fp64>},     {"fp32", &dp::check_construction<dp::fp32>},
    {"tf32", &dp::check_construction<dp::tf32>},     {"bf16", &dp::check_construction<dp::bf16>},
    {"fp16", &dp::check_construction<dp::fp16>},     {"e4m3", &dp::check_construction<dp::fp8_e4m3>},
    {"e5m2", &dp::check_construction<dp::fp8_e5m2>}, {"e3m2", &dp::check_construction<dp::tiny_e3m2>},
    {"Q3.12", &dp::check_construction<dp::q3_12>},
};

struct Row {
  dp::Construction construction;
  dp::KeyForm form;
  std::int64_t max_pairs = 0;  ///< the row's own cap on the search (0: the report's; --max-pairs overrides both)
};

std::vector<Row> standard_rows() {
  using dp::KeyForm;
  std::vector<Row> rows;
  auto add = [&rows](dp::Construction c, std::initializer_list<KeyForm> forms, std::int64_t max_pairs = 0) {
    for (KeyForm f : forms) {
      if (f == KeyForm::unnormalised && !c.has_non_unit_keys) continue;  // same as unit keys
      rows.push_back({c, f, max_pairs});
    }
  };
  const auto all_forms = {KeyForm::unnormalised, KeyForm::normalised, KeyForm::eps_normalised};
  add(dp::parity_by_reflection(), all_forms);
  add(dp::parity_by_toggle(), {KeyForm::normalised});
  for (const char* g : {"S3", "S4", "S5", "A4", "A5", "Z3", "Z5", "D4"})
    add(dp::permutation_construction(dp::FiniteGroup::parse(g)),
        std::string(g) == "S3" ? all_forms
                               : std::initializer_list<KeyForm>{KeyForm::unnormalised, KeyForm::normalised});
  for (int m : {3, 4, 5}) add(dp::cyclic_by_rotations(m), {KeyForm::unnormalised, KeyForm::normalised});
  for (int n : {3, 4}) add(dp::dihedral_in_plane(n), {KeyForm::unnormalised, KeyForm::normalised});
  add(dp::s4_as_cube_rotations(), {KeyForm::unnormalised, KeyForm::normalised});
  add(dp::a5_as_icosahedral_rotations(), {KeyForm::normalised});
  for (int m : {2, 3}) add(dp::cyclic_by_two_reflection_layers(m), {KeyForm::unnormalised, KeyForm::normalised});
  for (int n : {3, 4}) add(dp::dihedral_two_layers(n), {KeyForm::unnormalised, KeyForm::normalised});
  add(dp::flip_flop_cascade(), {KeyForm::normalised});
  // Any automaton (UST Thm 4): its holonomy decomposition, built by the library, as permutation-reset layers.
  for (const auto& a : {dp::automata::flip_flop_counter(), dp::automata::counter_with_reset(3),
                        dp::automata::full_transformations(3)})
    add(dp::holonomy_cascade(a), {KeyForm::unnormalised, KeyForm::normalised});
  add(dp::holonomy_cascade(dp::automata::full_transformations(4)), {KeyForm::unnormalised});
  add(dp::holonomy_cascade(dp::automata::random_automaton(6, 3, 7)), {KeyForm::unnormalised});
  // S_n in 3 layers (n_h = 2) and 4 (n_h = 1). S3's reachable pairs (439 and 31363) need a bigger cap to close;
  // S4 and S5 cannot close (the token buffer alone reaches (n!)^(2m) states), so a small cap bounds their search.
  for (int steps : {2, 1})
    add(dp::symmetric_group_in_layers(3, steps), {KeyForm::unnormalised, KeyForm::normalised}, 40000);
  for (int n : {4, 5})
    for (int steps : {2, 1}) add(dp::symmetric_group_in_layers(n, steps), {KeyForm::unnormalised}, 2000);
  return rows;
}

std::string cell(const dp::CheckVerdict& v) {
  if (v.first_failure) return "fail@" + std::to_string(v.first_failure);
  if (v.random_failed) return "rnd@" + std::to_string(v.random_tokens + 1);
  if (v.proven) return "ALL";
  return "ok<=" + std::to_string(v.exhaustive_length);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void print_enumeration(const char* what, const dp::EnumerationResult& r, const char* expected) {
  std::printf("  %-58s %9lld settings, %7lld solve it   (%s)", what, static_cast<long long>(r.settings),
              static_cast<long long>(r.solving), expected);
  if (!r.example.empty()) {
    std::printf("  e.g.");
    for (double x : r.example) std::printf(" %g", x);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string task_filter, format_list;
  dp::CheckOptions options;
  bool max_pairs_given = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool impossibility = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "state_tracking_report: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    try {
      if (arg == "--tasks")
        task_filter = value();
      else if (arg == "--formats")
        format_list = value();
      else if (arg == "--random-tokens")
        options.random_tokens = std::stoll(value());
      else if (arg == "--max-pairs")
        options.max_reachable_pairs = std::stoll(value()), max_pairs_given = true;
      else if (arg == "--threads")
        threads = std::max(1, std::stoi(value()));
      else if (arg == "--no-impossibility")
        impossibility = false;
      else if (arg == "--help" || arg == "-h") {
        std::printf(
            "usage: state_tracking_report [--tasks SUBSTRING] [--formats fp64,fp32,tf32,bf16,fp16,e4m3,e5m2,"
            "e3m2,Q3.12]\n       [--random-tokens N (100000)] [--max-pairs N (20000)] [--threads N] "
            "[--no-impossibility]\n");
        return 0;
      } else {
        std::fprintf(stderr, "state_tracking_report: unknown option '%s' (see --help)\n", arg.c_str());
        return 2;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "state_tracking_report: %s needs a number\n", arg.c_str());
      return 2;
    }
  }
  std::vector<FormatColumn> formats;
  if (format_list.empty()) {
    formats = all_formats;
  } else {
    for (const auto& name : split(format_list)) {
      bool found = false;
      for (const auto& f : all_formats)
        if (name == f.name) formats.push_back(f), found = true;
      if (!found) {
        std::fprintf(stderr, "state_tracking_report: unknown format '%s'\n", name.c_str());
        return 2;
      }
    }
  }

  std::vector<Row> rows;
  for (auto& r : standard_rows())
    if (task_filter.empty() || r.construction.task.find(task_filter) != std::string::npos) rows.push_back(r);

  const auto start = std::chrono::steady_clock::now();
  std::vector<dp::CheckVerdict> verdicts(rows.size() * formats.size());
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t job = next++; job < verdicts.size(); job = next++) {
      const Row& row = rows[job / formats.size()];
      dp::CheckOptions row_options = options;
      if (row.max_pairs > 0 && !max_pairs_given) row_options.max_reachable_pairs = row.max_pairs;
      verdicts[job] = formats[job % formats.size()].check(row.construction, row.form, row_options);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();

  std::printf("deltaproduct state-tracking report\n\n");
  std::printf(
      "Constructions, one per row, run through the library's update with every + and * rounded once in each\n"
      "format (step-by-step rounding). Keys: raw = u with beta/|u|^2, unit = u/|u| rounded in the format,\n"
      "eps = u/sqrt(|u|^2 + 1e-6) as flash-linear-attention normalises them.\n"
      "ALL     = proven at every length: the reachable (state, label) pairs closed under every letter;\n"
      "ok<=L   = every word up to length L and a random word of %lld tokens decoded correctly; no whole-length\n"
      "          proof (rounding keeps making new states; more than %lld pairs);\n"
      "fail@L  = the shortest word decoded wrongly has length L;  rnd@t = only the random word fails, at token t.\n\n",
      static_cast<long long>(options.random_tokens), static_cast<long long>(options.max_reachable_pairs));
  std::printf("%-15s %-44s %-4s %-7s %-6s %-4s", "task", "construction", "n_h", "range", "layers", "keys");
  for (const auto& f : formats) std::printf(" %-8s", f.name);
  std::printf(" %s\n", "checks");
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& c = rows[r].construction;
    std::printf("%-15s %-44s %-4d %-7s %-6zu %-4s", c.task.c_str(), c.method.c_str(), c.max_householder_steps(),
                c.needed_range() == dp::EigenvalueRange::unit ? "[0,1]" : "[-1,1]", c.layers.size(),
                dp::key_form_name(rows[r].form));
    for (std::size_t f = 0; f < formats.size(); ++f)
      std::printf(" %-8s", cell(verdicts[r * formats.size() + f]).c_str());
    std::printf(" %s\n", c.theorem.c_str());
  }
  bool header = false, multilayer = false, holonomy = false;
  for (const Row& row : rows) {
    multilayer = multilayer || row.construction.theorem.starts_with("DP (S_n");
    holonomy = holonomy || row.construction.method.starts_with("holonomy");
    if (row.max_pairs <= 0 || max_pairs_given) continue;
    if (!header)
      std::printf("\nRows searched with their own cap on the pairs (instead of %lld):\n",
                  static_cast<long long>(options.max_reachable_pairs));
    header = true;
    std::printf("  %-15s %-44s %-4s %lld\n", row.construction.task.c_str(), row.construction.method.c_str(),
                dp::key_form_name(row.form), static_cast<long long>(row.max_pairs));
  }
  if (multilayer)
    std::printf(
        "\nDP (S_n, 3 / 4 layers): our construction in the spirit of DP's statement (the paper's proof was not\n"
        "available): a position counter t mod 2m, a buffer of the last 2m tokens, and a top layer of swaps that pays\n"
        "the product of each block of m = ceil((n - 1) / n_h) tokens during the next block; the lookup table between\n"
        "layers reads 2m tokens, (n!)^(2m) entries. S4 and S5 reach too many states for a whole-length proof.\n");

  if (holonomy)
    std::printf(
        "\nholonomy cascade (UST Thm 4): the library decomposes the automaton itself (Krohn-Rhodes, holonomy\n"
        "form): one layer per level, one-hot over the level's tiles (K listed), each letter a permutation (swaps,\n"
        "beta = 2) or a reset (K factors, beta = 1); '+ delays' adds, after each level, a layer keeping its value\n"
        "one token ago, for automata whose lower levels need the upper levels' values before the letter.\n"
        "T3, T4: every map of 3 or 4 points; random 6x3 #7: random transitions (seed 7).\n");

  if (impossibility) {
    std::printf(
        "\nImpossibility by exhaustive enumeration over every value of the tiny format e3m2 (3 exponent, 2\n"
        "mantissa bits): one scalar layer reading 1^n; 'solve' = a decoder can read n mod m from the state\n"
        "at every n (UST Thm 1 parity, m = 2; UST Thm 2 counting, m = 3). DeltaNet settings keep the transition's\n"
        "eigenvalue 1 - beta k^2 in the range. The papers prove their negative results for the cast model; under\n"
        "step-by-step rounding DeltaNet's update h + k (beta (v - k h)) is not monotone, and rounding alone can\n"
        "make its orbit oscillate around the fixed point (e.g. 2.5 <-> 3 around 2.8 for the first example).\n");
    using dp::EigenvalueRange;
    print_enumeration("parity, DeltaNet (k, beta, v, h0), 1 - beta k^2 in [0,1], step",
                      dp::enumerate_scalar_deltanet<dp::tiny_e3m2>(EigenvalueRange::unit, 2),
                      "Thm 1 is for the cast model; rounding can oscillate");
    print_enumeration("parity, DeltaNet (k, beta, v, h0), 1 - beta k^2 in [-1,1], step",
                      dp::enumerate_scalar_deltanet<dp::tiny_e3m2>(EigenvalueRange::signed_unit, 2), "some");
    print_enumeration("mod 3, DeltaNet (k, beta, v, h0), 1 - beta k^2 in [-1,1], step",
                      dp::enumerate_scalar_deltanet<dp::tiny_e3m2>(EigenvalueRange::signed_unit, 3),
                      "Thm 2 is for the cast model; rounding can cycle");
    print_enumeration("parity, diagonal (a, b, h0), a in [0,1], step",
                      dp::enumerate_scalar_diagonal<dp::tiny_e3m2>(EigenvalueRange::unit, 2),
                      "none: a h + b is monotone for a >= 0");
    print_enumeration("parity, diagonal (a, b, h0), a in [-1,1], step",
                      dp::enumerate_scalar_diagonal<dp::tiny_e3m2>(EigenvalueRange::signed_unit, 2), "some");
    print_enumeration("mod 3, diagonal (a, b, h0), a in [-1,1], step",
                      dp::enumerate_scalar_diagonal<dp::tiny_e3m2>(EigenvalueRange::signed_unit, 3), "Thm 2: none");
    const auto cast = dp::CastModel::of_format<dp::tiny_e3m2>();
    print_enumeration("parity, diagonal (a, b, h0), a in [0,1], cast model",
                      dp::enumerate_cast_model(cast, EigenvalueRange::unit, 2), "Thm 1: none");
    print_enumeration("parity, diagonal (a, b, h0), a in [-1,1], cast model",
                      dp::enumerate_cast_model(cast, EigenvalueRange::signed_unit, 2), "some");
    print_enumeration("mod 3, diagonal (a, b, h0), a in [-1,1], cast model",
                      dp::enumerate_cast_model(cast, EigenvalueRange::signed_unit, 3), "Thm 2: none");
  }
  if (impossibility) {
    std::printf("\nSpectral facts in exact rational arithmetic (random rational keys and betas):\n");
    for (const std::string& text :
         {dp::to_string(dp::check_spectral_norm_bound(1, 3000)),
          dp::to_string(dp::find_spectral_norm_violation(1, 300)),
          dp::to_string(dp::check_two_factor_real_spectrum(1, 3000)),
          dp::to_string(dp::check_nonreal_needs_both_betas_above_one(1, 60)),
          dp::to_string(dp::find_nonreal_two_factor_spectrum(1, 300)),
          dp::to_string(dp::check_reflection_decompositions(1, 1000)),
          dp::to_string(dp::check_permutation_reflection_counts(5)), dp::to_string(dp::check_cube_rotation_group())}) {
      std::string indented = "  " + text;
      for (std::size_t at = indented.find('\n'); at != std::string::npos; at = indented.find('\n', at + 3))
        indented.replace(at, 1, "\n    ");
      std::printf("%s\n", indented.c_str());
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n%zu constructions x %zu formats checked in %.1f s on %d threads.\n", rows.size(), formats.size(),
              seconds, threads);
  return 0;
}

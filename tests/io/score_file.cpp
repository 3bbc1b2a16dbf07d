#include <childtune/io/score_file.hpp>
#include <childtune/mask/fisher.hpp>
#include <childtune/select/top_p.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "support/error_matcher.hpp"
#include "support/file_surgery.hpp"

using namespace childtune;

namespace {
using test_support::message_of;
std::uint64_t le64(const std::string& s, std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + static_cast<std::size_t>(i)]);
    return v;
}
} // namespace

TEST_CASE("mask file: scores files round-trip float and double scores bit for bit, laid out as documented", "[io][score_file]") {
    score_set<float> s;
    s.add("a", {0.5f, -0.0f, std::numeric_limits<float>::quiet_NaN()});
    s.add("b", {});
    std::ostringstream out;
    s.save(out);
    const std::string bytes = out.str();
    // 8 magic + 4 version + 4 width + 8 count + (8+1+8+12) + (8+1+8+0) + 8 checksum
    REQUIRE(bytes.size() == 78);
    CHECK(bytes.substr(0, 8) == std::string("CTSCOR\0\1", 8));
    CHECK(bytes.substr(8, 8) == std::string("\1\0\0\0\4\0\0\0", 8));
    CHECK(le64(bytes, 16) == 2);
    CHECK(le64(bytes, 33) == 3);
    CHECK(bytes.substr(41, 4) == std::string("\0\0\0\x3f", 4)); // 0.5f little-endian
    std::istringstream in(bytes);
    CHECK(score_set<float>::load(in) == s);

    score_set<double> d;
    d.add("x", {1e-300, 2.0});
    const auto path = (std::filesystem::temp_directory_path() / "childtune_scores_test.ctscores").string();
    d.save(path);
    CHECK(score_set<double>::load(path) == d);
    CHECK(message_of([&] { (void)score_set<float>::load(path); }) ==
          "childtune: scores file holds double scores; load it as score_set<double>, not score_set<float>");
    std::filesystem::remove(path);
    CHECK(message_of([&] { (void)score_set<double>::load(path); }) == "childtune: cannot open scores file '" + path + "'");
}

TEST_CASE("mask file: saved Fisher scores select the same mask as the accumulator", "[io][score_file]") {
    fisher_accumulator<float> fisher;
    fisher.add_tensor("l0", 5);
    fisher.add_tensor("l1", 3);
    fisher.accumulate("l0", std::vector<float>{1, -2, 3, 0.5f, 0});
    fisher.accumulate("l1", std::vector<float>{-4, 0.25f, 2});
    fisher.end_batch();
    const score_set<float> scores = scores_of(fisher);
    CHECK(*scores.find("l1") == std::vector<float>{16, 0.0625f, 4});
    std::stringstream file;
    scores.save(file);
    const score_set<float> back = score_set<float>::load(file);
    for (const double p : {0.25, 0.5})
        for (const auto rule : {selection_rule::percentile, selection_rule::exact_count}) {
            const auto direct = fisher.select(p, rule);
            const auto loaded = select_top_p(back.named(), p, rule);
            CHECK(loaded.masks == direct.masks);
            CHECK(loaded.kept == direct.kept);
        }
    // By hand: scores 1 4 9 0.25 0 | 16 0.0625 4; exact top 2 of 8 -> 16 and 9.
    const auto top2 = select_top_p(back.named(), 0.25, selection_rule::exact_count);
    CHECK(top2.masks.find("l0")->test(2));
    CHECK(top2.masks.find("l1")->test(0));
    CHECK(top2.kept == 2);
}

TEST_CASE("mask file: damaged, foreign and inconsistent scores files are refused", "[io][score_file][bad_input]") {
    score_set<double> s;
    s.add("t", {1, 2, 3});
    std::ostringstream out;
    s.save(out);
    const std::string good = out.str();
    std::string flipped = good;
    flipped[30] = static_cast<char>(flipped[30] ^ 1);
    CHECK_THAT(message_of([&] { std::istringstream in(flipped); (void)score_set<double>::load(in); }),
               Catch::Contains("scores file is corrupt: the byte at offset 30"));
    CHECK_THAT(message_of([&] { std::istringstream in(good.substr(0, 20)); (void)score_set<double>::load(in); }),
               Catch::Contains("scores file"));
    CHECK_THAT(message_of([&] {
                   std::istringstream in(test_support::with_bytes_after_checksum(good, "more"));
                   (void)score_set<double>::load(in);
               }),
               Catch::Contains("scores file is corrupt: 12 bytes follow its checksum"));
    std::ostringstream mask;
    mask_set().save(mask);
    CHECK_THAT(message_of([&] { std::istringstream in(mask.str()); (void)score_set<double>::load(in); }),
               Catch::Contains("not a childtune scores file (bad magic)"));
    CHECK_THAT(message_of([&] { s.add("t", {}); }), Catch::Contains("tensor 't' added twice"));
    CHECK_THAT(message_of([&] { s.add("", {}); }), Catch::Contains("a tensor name must not be empty"));
}

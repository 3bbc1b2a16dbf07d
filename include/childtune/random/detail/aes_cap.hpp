#pragma once
//! \file
//! The run-time cap on the AES instructions of mask definition 4's x86
//! generators: the environment variable `CHILDTUNE_MAX_AES`, `software`, `aesni`
//! or `vaes` (any case). Unset or empty: no cap. Every path gives the same keep
//! bits (tests/mask/bernoulli.cpp compares them), so the cap changes only the
//! speed, as `CHILDTUNE_MAX_ISA` does for the kernels (exec/cpu_isa.hpp).
//!
//! Why a cap: to time, on any CPU, what CPUs without VAES (Haswell to Skylake,
//! Zen 2: one block per AES-NI instruction) or without AES-NI (the table-driven
//! rounds of random/ars.hpp) pay for Child-Tuning_F's draws, and to run the
//! optimizer-level tests again on those paths (tests/CMakeLists.txt). A cap
//! above what the CPU has picks what it has.
//!
//! The variable is read once per process. A malformed value is a
//! childtune::error from the CPU optimizers' constructors (the executors call
//! check_aes_cap()), naming it; the generators themselves never throw (they run
//! on OpenMP threads) and read a malformed value as no cap.

#include <childtune/error.hpp>
#include <childtune/random/detail/philox_keep.hpp>

#include <cstdlib>
#include <string>
#include <string_view>

namespace childtune::detail {

//! "software", "aesni" or "vaes" ("automatic" for the unresolved path).
constexpr std::string_view aes_path_name(aes_path path) {
    switch (path) {
    case aes_path::automatic: return "automatic";
    case aes_path::software: return "software";
    case aes_path::aesni: return "aesni";
    case aes_path::vaes: return "vaes";
    }
    return "unknown";
}

//! The path `text` names (aes_path_name's names but "automatic", in any case);
//! throws childtune::error naming `what` and the text for anything else.
inline aes_path parse_aes_cap(std::string_view what, std::string_view text) {
    std::string lower(text);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    for (const aes_path path : {aes_path::software, aes_path::aesni, aes_path::vaes})
        if (lower == aes_path_name(path)) return path;
    fail(std::string(what) + " = '" + std::string(text) + "' is not an AES path: use software, aesni or vaes");
}

//! What `automatic` means under the cap `cap`, for generators that can use
//! VAES (`wide`: the AVX2 and AVX-512 passes) or not, on a CPU with or without
//! AES-NI and VAES. Any other `asked` is returned as it is (tests force paths).
//! A pure function of its arguments, so tests can pose any CPU.
constexpr aes_path choose_aes_path(aes_path asked, bool wide, aes_path cap, bool has_aesni, bool has_vaes) {
    if (asked != aes_path::automatic) return asked;
    const aes_path best = wide && has_vaes ? aes_path::vaes : has_aesni ? aes_path::aesni : aes_path::software;
    return best < cap ? best : cap;
}

//! CHILDTUNE_MAX_AES as this process read it: the cap (`vaes`, no cap, when the
//! variable is unset, empty or malformed) and, for a malformed value, the error.
struct environment_aes_cap_result {
    aes_path cap = aes_path::vaes; //!< the cap the generators apply
    std::string error;             //!< empty, or what check_aes_cap() throws
};
//! The cap for an environment text (null or empty: none); never throws.
inline environment_aes_cap_result read_aes_cap(const char* environment) {
    environment_aes_cap_result r;
    if (environment == nullptr || *environment == '\0') return r;
    try {
        r.cap = parse_aes_cap("CHILDTUNE_MAX_AES", environment);
    } catch (const error& e) {
        r.error = e.what();
    }
    return r;
}
//! This process's CHILDTUNE_MAX_AES, read once.
inline const environment_aes_cap_result& environment_aes_cap() {
    static const environment_aes_cap_result r = read_aes_cap(std::getenv("CHILDTUNE_MAX_AES"));
    return r;
}
//! Throws childtune::error for a malformed CHILDTUNE_MAX_AES (the CPU executors'
//! constructors call it, so the error comes before any step).
inline void check_aes_cap() {
    const environment_aes_cap_result& r = environment_aes_cap();
    if (!r.error.empty()) throw error(r.error);
}

} // namespace childtune::detail

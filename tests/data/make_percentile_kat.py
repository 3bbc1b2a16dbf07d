#!/usr/bin/env python3
"""Generates percentile_kat.hpp: numpy known answers for the Child-Tuning_D cut.

The reference Child-Tuning code computes

    polar = numpy.percentile(r, (1 - reserve_p) * 100)   # r: float32 array
    mask  = score >= polar                                # torch casts polar to float32

This script records, for each input and p, numpy's polar (float64), the polar
after the float32 cast, and the number of elements kept. It also checks the
arithmetic childtune reproduces (select/top_p.hpp) against numpy.percentile bit for
bit, so a numpy release that changes the rule fails here first.

Inputs are small explicit arrays or integer-only LCG recipes that the generated
header reproduces in C++ (no floating-point operation is involved in making an
input, so both languages build identical arrays).

Usage: python3 tests/data/make_percentile_kat.py > tests/data/percentile_kat.hpp
Needs numpy (written against 1.24). The test suite does not run this script.
"""

import math
import sys
import warnings

import numpy as np

MASK64 = (1 << 64) - 1
LCG_MUL = 6364136223846793005
LCG_ADD = 1442695040888963407

# Recipes; the C++ twin is emitted below (keep both in step).
#   KIND_POSITIVE: Fisher-like positive float32; `param` = mantissa bits kept
#                  (ties when small), about 1/8 exact zeros.
#   KIND_ANY:      any finite float32 bit pattern, with extra +0, -0, denormals.
#   KIND_LEVELS:   float32 integers in [-param/2, param - param/2): heavy ties.
#   KIND_ANY64:    any finite float64 bit pattern, with extra +0, -0, denormals.
KIND_POSITIVE, KIND_ANY, KIND_LEVELS, KIND_ANY64 = 0, 1, 2, 3


def lcg_bits(seed, n, kind, param):
    s = seed & MASK64
    out = []
    for _ in range(n):
        s = (s * LCG_MUL + LCG_ADD) & MASK64
        if kind == KIND_POSITIVE:
            if (s >> 16) & 7 == 0:
                out.append(0)
                continue
            exponent = 87 + (s >> 59)
            mantissa = (s >> 20) & 0x7FFFFF
            mantissa &= ~((1 << (23 - param)) - 1) & 0x7FFFFF
            out.append((exponent << 23) | mantissa)
        elif kind == KIND_ANY:
            u = s >> 32
            if (u & 0x7F800000) == 0x7F800000:
                u ^= 0x00800000
            sel = (s >> 24) & 0xF
            if sel == 0:
                u = 0
            elif sel == 1:
                u = 0x80000000
            elif sel == 2:
                u &= 0x807FFFFF
            out.append(u)
        elif kind == KIND_LEVELS:
            level = (s >> 33) % param
            out.append(level - param // 2)
        elif kind == KIND_ANY64:
            t = (s * LCG_MUL + LCG_ADD) & MASK64
            u = ((s >> 32) << 32) | (t >> 32)
            s = t
            if (u & 0x7FF0000000000000) == 0x7FF0000000000000:
                u ^= 0x0010000000000000
            sel = (t >> 24) & 0xF
            if sel == 0:
                u = 0
            elif sel == 1:
                u = 0x8000000000000000
            elif sel == 2:
                u &= 0x800FFFFFFFFFFFFF
            out.append(u)
    return out


def make_array(case):
    if case["explicit"] is not None:
        return np.array(case["explicit"], dtype=case["dtype"])
    bits = lcg_bits(case["seed"], case["n"], case["kind"], case["param"])
    if case["kind"] == KIND_LEVELS:
        return np.array(bits, dtype=np.float32)
    if case["kind"] == KIND_ANY64:
        return np.array(bits, dtype=np.uint64).view(np.float64)
    return np.array(bits, dtype=np.uint32).view(np.float32)


def emulate(arr, p):
    """The arithmetic select/top_p.hpp performs, written without numpy.percentile."""
    n = arr.size
    srt = np.sort(arr, kind="stable")
    q = ((1 - p) * 100) / 100
    vi = (n - 1) * q
    if vi >= n - 1:
        a = b = srt[n - 1]
        gamma = vi + 1.0
    else:
        lo = math.floor(vi)
        a, b = srt[lo], srt[lo + 1]
        gamma = vi - lo
    with np.errstate(invalid="ignore", over="ignore"):
        diff = b - a  # in the array's type
        if gamma >= 0.5:
            return float(b) - float(diff) * (1 - gamma)
        return float(a) + float(diff) * gamma


def same_double(x, y):
    """Bitwise equal, except that the sign of a zero is not compared: numpy's
    partition leaves -0 and +0 in an arbitrary order, and which one becomes the
    neighbour only decides the sign of a zero polar (score >= -0 iff score >= +0)."""
    if x == 0 and y == 0:
        return True
    return (math.isnan(x) and math.isnan(y)) or np.float64(x).tobytes() == np.float64(y).tobytes()


PS = [1e-6, 0.001, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0]

CASES = []


def explicit(name, values, dtype=np.float32, ps=PS):
    CASES.append(dict(name=name, explicit=values, dtype=dtype, seed=0, n=len(values), kind=-1, param=0, ps=ps))


def generated(name, seed, n, kind, param=0, ps=PS):
    dtype = np.float64 if kind == KIND_ANY64 else np.float32
    CASES.append(dict(name=name, explicit=None, dtype=dtype, seed=seed, n=n, kind=kind, param=param, ps=ps))


explicit("one", [0.25])
explicit("one_zero", [0.0])
explicit("two", [1.0, 3.0])
explicit("two_reversed", [3.0, 1.0])
explicit("three", [2.0, 7.0, 5.0])
explicit("ties_all", [0.5] * 7)
explicit("ties_low", [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
explicit("ties_high", [1.0, 2.0, 3.0, 3.0, 3.0, 3.0])
explicit("signed_zeros", [0.0, -0.0, 0.0, -0.0, 1.0, -1.0])
explicit("negatives", [-3.5, -1.25, -8.0, 2.0, -0.5, 7.75, -1.25])
explicit("denormals", [1e-45, 3e-45, 1e-40, 0.0, 1e-38, 2e-38])
explicit("wide", [-3.0e38, 3.0e38, 1.0])  # b - a overflows float32 to inf
explicit("inf_top", [1.0, 2.0, float("inf"), float("inf")])
explicit("inf_single", [float("inf")])
explicit("ninf", [-float("inf"), -1.0, 0.0, 1.0])
explicit("rounding", [1.0, 1.0000001, 1.0000002, 16777216.0, 16777218.0])
explicit("double_two", [1.0, 3.0], dtype=np.float64)
explicit("double_fine", [1.0, 1.0 + 2.0**-52, 1.0 + 2.0**-51, 3.0, 1e300, -1e300], dtype=np.float64)

generated("positive_n10", 1, 10, KIND_POSITIVE, 23)
generated("positive_n1000", 2, 1000, KIND_POSITIVE, 23)
generated("positive_n1001_ties", 3, 1001, KIND_POSITIVE, 3)
generated("any_n100", 4, 100, KIND_ANY)
generated("any_n4097", 5, 4097, KIND_ANY)
generated("levels_n5000", 6, 5000, KIND_LEVELS, 7)
generated("levels_n65537", 7, 65537, KIND_LEVELS, 3)
# Larger than the 1 MiB in-memory finish: exercises the histogram passes.
generated("positive_n300000", 8, 300000, KIND_POSITIVE, 23)
generated("positive_n300001_ties", 9, 300001, KIND_POSITIVE, 2)
generated("any_n262145", 10, 262145, KIND_ANY)
generated("levels_n300000", 11, 300000, KIND_LEVELS, 5)
generated("any64_n1000", 12, 1000, KIND_ANY64)
generated("any64_n140000", 13, 140000, KIND_ANY64)


def hexfloat(x):
    if math.isnan(x):
        return "std::numeric_limits<double>::quiet_NaN()"
    if math.isinf(x):
        return ("-" if x < 0 else "") + "std::numeric_limits<double>::infinity()"
    return float.hex(x)


def main():
    rows = []
    for ci, case in enumerate(CASES):
        arr = make_array(case)
        assert arr.size == case["n"] and not np.isnan(arr).any()
        for p in case["ps"]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                polar = float(np.percentile(arr, (1 - p) * 100))
            mine = emulate(arr, p)
            if not same_double(polar, mine):
                sys.exit(f"emulation differs from numpy for {case['name']} p={p}: {polar!r} vs {mine!r}")
            if case["dtype"] == np.float32:
                cut = np.float32(polar)  # torch: float32 tensor >= Python float
                cut_bits = int(np.array([cut], dtype=np.float32).view(np.uint32)[0])
                kept = int(np.count_nonzero(arr >= cut))
            else:
                cut = np.float64(polar)
                cut_bits = int(np.array([cut], dtype=np.float64).view(np.uint64)[0])
                kept = int(np.count_nonzero(arr >= cut))
            rows.append((ci, p, polar, cut_bits, kept))

    out = []
    w = out.append
    w("// Generated by tests/data/make_percentile_kat.py with numpy " + np.__version__ + "; do not edit.")
    w("// numpy.percentile(x, (1 - p) * 100) ('linear'), its float32 cast (for float32")
    w("// inputs) and the count of x >= cast, for the inputs described below.")
    w("#pragma once")
    w("")
    w("#include <bit>")
    w("#include <cstddef>")
    w("#include <cstdint>")
    w("#include <limits>")
    w("#include <vector>")
    w("")
    w("namespace childtune_test::percentile_kat {")
    w("")
    w("enum kind : int { explicit_values = -1, positive = 0, any = 1, levels = 2, any64 = 3 };")
    w("")
    w("struct kat_case {")
    w("    const char* name;")
    w("    bool is_double;")
    w("    int kind;")
    w("    std::uint64_t seed;")
    w("    std::size_t n;")
    w("    std::uint32_t param;")
    w("    const double* values; // explicit_values only (exactly representable in the case's type)")
    w("};")
    w("")
    w("struct kat_row {")
    w("    std::size_t case_index;")
    w("    double p;")
    w("    double numpy_polar;      // numpy's float64 result")
    w("    std::uint64_t cut_bits;  // bits of the cut in the case's type (float32: low 32 bits);")
    w("                             // the sign of a zero cut is an accident of numpy's partition")
    w("    std::size_t kept;        // elements >= cut")
    w("};")
    w("")
    for ci, case in enumerate(CASES):
        if case["explicit"] is not None:
            vals = ", ".join(hexfloat(float(v)) for v in make_array(case))
            w(f"inline constexpr double values_{ci}[] = {{{vals}}};")
    w("")
    w("inline constexpr kat_case cases[] = {")
    for ci, case in enumerate(CASES):
        is_double = "true" if case["dtype"] == np.float64 else "false"
        values = f"values_{ci}" if case["explicit"] is not None else "nullptr"
        kind = "explicit_values" if case["explicit"] is not None else ["positive", "any", "levels", "any64"][case["kind"]]
        w(f'    {{"{case["name"]}", {is_double}, {kind}, {case["seed"]}u, {case["n"]}u, {case["param"]}u, {values}}},')
    w("};")
    w("")
    w("inline constexpr kat_row rows[] = {")
    for ci, p, polar, cut_bits, kept in rows:
        w(f"    {{{ci}, {hexfloat(p)}, {hexfloat(polar)}, 0x{cut_bits:x}u, {kept}u}},")
    w("};")
    w("")
    w("//! The LCG recipes of make_percentile_kat.py: integer operations only.")
    w("inline std::vector<std::uint64_t> lcg_bits(const kat_case& c) {")
    w("    constexpr std::uint64_t mul = 6364136223846793005u, add = 1442695040888963407u;")
    w("    std::vector<std::uint64_t> out;")
    w("    out.reserve(c.n);")
    w("    std::uint64_t s = c.seed;")
    w("    for (std::size_t i = 0; i < c.n; ++i) {")
    w("        s = s * mul + add;")
    w("        if (c.kind == positive) {")
    w("            if (((s >> 16) & 7) == 0) {")
    w("                out.push_back(0);")
    w("                continue;")
    w("            }")
    w("            const std::uint64_t exponent = 87 + (s >> 59);")
    w("            std::uint64_t mantissa = (s >> 20) & 0x7FFFFFu;")
    w("            mantissa &= ~((std::uint64_t{1} << (23 - c.param)) - 1) & 0x7FFFFFu;")
    w("            out.push_back((exponent << 23) | mantissa);")
    w("        } else if (c.kind == any) {")
    w("            std::uint64_t u = s >> 32;")
    w("            if ((u & 0x7F800000u) == 0x7F800000u) u ^= 0x00800000u;")
    w("            const std::uint64_t sel = (s >> 24) & 0xF;")
    w("            if (sel == 0) u = 0;")
    w("            else if (sel == 1) u = 0x80000000u;")
    w("            else if (sel == 2) u &= 0x807FFFFFu;")
    w("            out.push_back(u);")
    w("        } else if (c.kind == levels) {")
    w("            const std::uint64_t level = (s >> 33) % c.param;")
    w("            out.push_back(level - c.param / 2); // two's complement of a small negative integer")
    w("        } else {")
    w("            const std::uint64_t t = s * mul + add;")
    w("            std::uint64_t u = ((s >> 32) << 32) | (t >> 32);")
    w("            s = t;")
    w("            if ((u & 0x7FF0000000000000u) == 0x7FF0000000000000u) u ^= 0x0010000000000000u;")
    w("            const std::uint64_t sel = (t >> 24) & 0xF;")
    w("            if (sel == 0) u = 0;")
    w("            else if (sel == 1) u = 0x8000000000000000u;")
    w("            else if (sel == 2) u &= 0x800FFFFFFFFFFFFFu;")
    w("            out.push_back(u);")
    w("        }")
    w("    }")
    w("    return out;")
    w("}")
    w("")
    w("//! The input of a float32 case.")
    w("inline std::vector<float> make_float(const kat_case& c) {")
    w("    std::vector<float> x;")
    w("    x.reserve(c.n);")
    w("    if (c.kind == explicit_values) {")
    w("        for (std::size_t i = 0; i < c.n; ++i) x.push_back(static_cast<float>(c.values[i]));")
    w("    } else if (c.kind == levels) {")
    w("        for (const auto b : lcg_bits(c)) x.push_back(static_cast<float>(static_cast<std::int64_t>(b)));")
    w("    } else {")
    w("        for (const auto b : lcg_bits(c)) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(b)));")
    w("    }")
    w("    return x;")
    w("}")
    w("")
    w("//! The input of a float64 case.")
    w("inline std::vector<double> make_double(const kat_case& c) {")
    w("    std::vector<double> x;")
    w("    x.reserve(c.n);")
    w("    if (c.kind == explicit_values) {")
    w("        for (std::size_t i = 0; i < c.n; ++i) x.push_back(c.values[i]);")
    w("    } else {")
    w("        for (const auto b : lcg_bits(c)) x.push_back(std::bit_cast<double>(b));")
    w("    }")
    w("    return x;")
    w("}")
    w("")
    w("} // namespace childtune_test::percentile_kat")
    print("\n".join(out))


if __name__ == "__main__":
    main()

#pragma once
//! \file
//! Choosing which parameters Child-Tuning masks, by name.
//!
//! The reference implementation masks the parameters whose names contain "layer"
//! (the encoder layers) and trains embeddings and the task head densely.

#include <algorithm>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace childtune::torch {

//! Decides from a parameter's name whether it joins the masked group.
using name_predicate = std::function<bool(std::string_view)>;

//! Every parameter is masked.
inline name_predicate every_name() {
    return [](std::string_view) { return true; };
}
//! Names containing `fragment` are masked (the reference uses "layer").
inline name_predicate name_contains(std::string fragment) {
    return [f = std::move(fragment)](std::string_view name) { return name.find(f) != std::string_view::npos; };
}
//! Exactly the listed names are masked.
inline name_predicate name_in(std::vector<std::string> names) {
    return [n = std::move(names)](std::string_view name) { return std::find(n.begin(), n.end(), name) != n.end(); };
}

} // namespace childtune::torch

#pragma once
//! \file
//! Choosing which parameters Child-Tuning masks, by name, and named groups.
//!
//! The reference implementation masks the parameters whose names contain "layer"
//! (the encoder layers) and trains embeddings and the task head densely.

#include <childtune/error.hpp>
#include <childtune/mask/name_filter.hpp>

#include <ATen/ATen.h>
#include <torch/ordered_dict.h>

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

//! A parameter group with the names of its parameters.
template <class Options>
struct named_param_group {
    //! One name per parameter (keys its Bernoulli draws and its fixed-mask entry).
    std::vector<std::string> names;
    //! The parameters, in the order of `names`.
    std::vector<at::Tensor> params;
    //! The group's options (`masked` says whether the mask applies).
    Options options;
};

namespace detail {
//! "'a', 'b', 'c' and 2 more": the names a filter was tried on, for its error.
inline std::string some_names(const ::torch::OrderedDict<std::string, at::Tensor>& named) {
    std::string out;
    std::size_t shown = 0;
    for (const auto& item : named) {
        if (shown == 4) return out + " and " + std::to_string(named.size() - shown) + " more";
        out += (shown++ ? ", '" : "'") + item.key() + "'";
    }
    return out;
}
} // namespace detail

//! Splits a module's named parameters into a masked group (names for which
//! `masked_if` is true) and a dense group, both with `options` (`masked` set
//! accordingly). An empty dense group is left out. A filter that masks no
//! parameter is an error (a typo such as name_contains("layr") would otherwise
//! train every parameter densely without a word) unless `allow_empty_masked`.
template <class Options>
std::vector<named_param_group<Options>> split_by_name(const ::torch::OrderedDict<std::string, at::Tensor>& named,
                                                       const Options& options, const name_predicate& masked_if,
                                                       bool allow_empty_masked = false) {
    named_param_group<Options> masked{{}, {}, options}, dense{{}, {}, options};
    masked.options.masked(true);
    dense.options.masked(false);
    for (const auto& item : named) {
        auto& g = masked_if(item.key()) ? masked : dense;
        g.names.push_back(item.key());
        g.params.push_back(item.value());
    }
    if (masked.params.empty() && !allow_empty_masked)
        childtune::detail::fail("name filter: it masks none of the module's " + std::to_string(named.size()) +
                                " parameters (" + detail::some_names(named) +
                                "), so Child-Tuning would mask nothing; fix the filter, or set "
                                "optimizer_options::allow_empty to train every parameter densely");
    std::vector<named_param_group<Options>> groups;
    if (!masked.params.empty()) groups.push_back(std::move(masked));
    if (!dense.params.empty()) groups.push_back(std::move(dense));
    return groups;
}

//! The parameters of `named` whose names `filter` selects (childtune::name_filter:
//! include/exclude globs and regexes), in order. No silent no-op: a filter that
//! selects none of them, or has a pattern that matches none, is an error naming
//! the pattern. A name_filter also serves wherever a name_predicate is taken
//! (split_by_name, the optimizer's `masked_if`).
inline ::torch::OrderedDict<std::string, at::Tensor> select_parameters(
    const ::torch::OrderedDict<std::string, at::Tensor>& named, const name_filter& filter) {
    filter.check(named.keys(), "parameter filter");
    ::torch::OrderedDict<std::string, at::Tensor> out;
    for (const auto& item : named)
        if (filter.matches(item.key())) out.insert(item.key(), item.value());
    return out;
}

} // namespace childtune::torch

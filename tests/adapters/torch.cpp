// Conformance of the LibTorch adapter. One translation unit on purpose: each
// file that includes <torch/torch.h> costs ~20 s to compile.
#include "compat/torch_scenarios.hpp"
#include "reference/naive_optimizers.hpp"

#include <childtune/numeric/blockwise8.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/torch.hpp>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace childtune::torch;
using childtune::adamw_flavour;

namespace {

struct NetImpl : ::torch::nn::Module {
    ::torch::nn::Linear layer1{nullptr}, layer2{nullptr}, head{nullptr};
    NetImpl() {
        layer1 = register_module("layer1", ::torch::nn::Linear(8, 16));
        layer2 = register_module("layer2", ::torch::nn::Linear(16, 16));
        head = register_module("head", ::torch::nn::Linear(16, 3));
    }
    at::Tensor forward(at::Tensor x) { return head(::torch::tanh(layer2(::torch::tanh(layer1(x))))); }
};
TORCH_MODULE(Net);

Net make_net(std::uint64_t seed) {
    ::torch::manual_seed(seed);
    return Net();
}

// The same (deterministic) batch for step t, for every model.
std::pair<at::Tensor, at::Tensor> batch(int t) {
    auto gen = at::detail::createCPUGenerator(1000 + static_cast<std::uint64_t>(t));
    return {at::randn({32, 8}, gen), at::randint(0, 3, {32}, gen)};
}

void backward(Net& m, int t) {
    auto [x, y] = batch(t);
    ::torch::nn::functional::cross_entropy(m->forward(x), y).backward();
}

std::vector<float> values(const at::Tensor& t) {
    const at::Tensor c = t.detach().to(at::kFloat).contiguous();
    return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
    return a.sizes() == b.sizes() && std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

void require_close(const at::Tensor& got, const at::Tensor& want, double rel, const std::string& what) {
    const auto g = values(got), w = values(want);
    for (std::size_t i = 0; i < g.size(); ++i) {
        // Relative to the value, floored at 0.01: near-zero parameters carry the
        // absolute rounding differences of their larger neighbours.
        const double tol = rel * std::max(std::abs(double(w[i])), 1e-2);
        if (!(std::abs(double(g[i]) - double(w[i])) <= tol)) {
            INFO(what << "[" << i << "]: childtune " << g[i] << " reference " << w[i]);
            REQUIRE(std::abs(double(g[i]) - double(w[i])) <= tol);
        }
    }
}

} // namespace

namespace {
// Steps our optimizer on `a` and LibTorch's on `b` (same start, same batches).
template <class Ours, class Theirs>
void step_side_by_side(Ours& ours, Theirs& theirs, Net& a, Net& b, int steps) {
    for (int t = 0; t < steps; ++t) {
        ours.zero_grad();
        theirs.zero_grad();
        backward(a, t);
        backward(b, t);
        ours.step();
        theirs.step();
    }
    for (const auto& item : a->named_parameters()) require_close(item.value(), b->named_parameters()[item.key()], 1e-5, item.key());
}
} // namespace

TEST_CASE("torch flavour, no mask, equals torch::optim::AdamW over many steps and several groups", "[torch][adamw]") {
    auto a = make_net(1), b = make_net(1);
    // Different lr and weight decay per group, as torch::optim::AdamW allows.
    ChildTuningAdamW ours(std::vector<ChildTuningAdamW::group_type>{
                              {{"layer1.weight", "layer1.bias"}, {a->layer1->weight, a->layer1->bias},
                               ChildTuningAdamWOptions(1e-2).weight_decay(0.05)},
                              {{"layer2.weight", "layer2.bias", "head.weight", "head.bias"},
                               {a->layer2->weight, a->layer2->bias, a->head->weight, a->head->bias},
                               ChildTuningAdamWOptions(3e-3).weight_decay(0.01).betas({0.8, 0.99})}},
                          childtune::dense{});
    std::vector<::torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<at::Tensor>{b->layer1->weight, b->layer1->bias},
                        std::make_unique<::torch::optim::AdamWOptions>(::torch::optim::AdamWOptions(1e-2).weight_decay(0.05)));
    groups.emplace_back(std::vector<at::Tensor>{b->layer2->weight, b->layer2->bias, b->head->weight, b->head->bias},
                        std::make_unique<::torch::optim::AdamWOptions>(
                            ::torch::optim::AdamWOptions(3e-3).weight_decay(0.01).betas({0.8, 0.99})));
    ::torch::optim::AdamW theirs(std::move(groups));
    step_side_by_side(ours, theirs, a, b, 50);
}

TEST_CASE("Adam and SGD siblings equal torch::optim::Adam and SGD without a mask", "[torch][adam][sgd]") {
    {
        auto a = make_net(2), b = make_net(2);
        ChildTuningAdam ours(a->named_parameters(), ChildTuningAdamOptions(5e-3).weight_decay(0.02));
        ::torch::optim::Adam theirs(b->parameters(), ::torch::optim::AdamOptions(5e-3).weight_decay(0.02));
        step_side_by_side(ours, theirs, a, b, 30);
    }
    {
        auto a = make_net(3), b = make_net(3);
        ChildTuningSGD ours(a->named_parameters(), ChildTuningSGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
        ::torch::optim::SGD theirs(b->parameters(),
                                   ::torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
        step_side_by_side(ours, theirs, a, b, 30);
    }
}

TEST_CASE("options serialize through archives and compare by value", "[torch][options]") {
    auto o = ChildTuningAdamWOptions(3e-4);
    o.betas({0.8, 0.95}).eps(1e-6).weight_decay(0.1).flavour(adamw_flavour::legacy).correct_bias(false).masked(false);
    ::torch::serialize::OutputArchive out;
    o.serialize(out);
    std::ostringstream bytes;
    out.save_to(bytes);
    ::torch::serialize::InputArchive in;
    std::istringstream read(bytes.str());
    in.load_from(read);
    ChildTuningAdamWOptions back;
    back.serialize(in);
    CHECK(back == o);
    CHECK_FALSE(back == ChildTuningAdamWOptions(3e-4));
    CHECK(back.get_lr() == 3e-4);
    back.set_lr(1.0);
    CHECK(back.lr() == 1.0);
}

namespace {
// Runs ChildTuningAdamW (legacy flavour, "layer" tensors masked) and the
// hand-written reference of the published ChildTuningAdamW side by side.
void compare_with_published_rule(const childtune::mask_mode& mode, bool force_aten) {
    const double lr = 2e-3, wd = 0.01;
    auto m = make_net(4);
    ChildTuningAdamW opt(m->named_parameters(), ChildTuningAdamWOptions(lr).weight_decay(wd).flavour(adamw_flavour::legacy),
                         mode, name_contains("layer"));
    opt.force_aten_path(force_aten);
    std::vector<std::string> names;
    std::vector<std::vector<float>> ref_params;
    std::vector<reference::legacy_adamw<float>> refs;
    for (const auto& item : m->named_parameters()) {
        names.push_back(item.key());
        ref_params.push_back(values(item.value()));
        refs.emplace_back(lr, 0.9, 0.999, 1e-8, wd);
    }
    for (int t = 0; t < 30; ++t) {
        opt.zero_grad();
        backward(m, t);
        const auto params = m->named_parameters();
        for (std::size_t i = 0; i < names.size(); ++i) {
            const auto grad = values(params[names[i]].grad());
            std::vector<bool> keep(grad.size(), true);
            double keep_p = 1.0;
            if (names[i].find("layer") != std::string::npos) {
                if (const auto* b = std::get_if<childtune::bernoulli>(&mode)) {
                    const auto view = b->view(childtune::stable_tensor_key(names[i]), static_cast<std::uint64_t>(t));
                    for (std::size_t j = 0; j < keep.size(); ++j) keep[j] = view.keep(j);
                    // The documented effective p: version 2 rounds p to units of 2^-16.
                    keep_p = b->version == 2 ? std::nearbyint(b->p * 65536.0) / 65536.0 : b->p;
                } else if (const auto* f = std::get_if<childtune::fixed>(&mode)) {
                    for (std::size_t j = 0; j < keep.size(); ++j) keep[j] = f->masks.find(names[i])->test(j);
                }
            }
            refs[i].apply(ref_params[i], grad, keep, keep_p, {});
        }
        opt.step();
        for (std::size_t i = 0; i < names.size(); ++i) {
            const auto got = values(m->named_parameters()[names[i]]);
            for (std::size_t j = 0; j < got.size(); ++j) {
                INFO(names[i] << "[" << j << "] after step " << t + 1);
                REQUIRE(got[j] == Approx(ref_params[i][j]).epsilon(2e-5).margin(1e-7));
            }
        }
    }
}

childtune::mask_set random_masks(Net& m, double p) {
    childtune::mask_set set;
    std::mt19937 rng(5);
    std::bernoulli_distribution keep(p);
    for (const auto& item : m->named_parameters()) {
        if (item.key().find("layer") == std::string::npos) continue;
        childtune::bit_mask bits(static_cast<std::size_t>(item.value().numel()));
        for (std::size_t j = 0; j < bits.size(); ++j) bits.set(j, keep(rng));
        set.add(item.key(), std::move(bits));
    }
    return set;
}
} // namespace

TEST_CASE("legacy flavour equals the published Child-Tuning rule: dense, CT_F, CT_D", "[torch][reference]") {
    auto m = make_net(4);
    const std::vector<childtune::mask_mode> modes = {childtune::dense{}, childtune::bernoulli{0.3, 11},
                                                     childtune::fixed{random_masks(m, 0.3)}};
    for (bool aten : {false, true})
        for (const auto& mode : modes) {
            CAPTURE(aten, mode.index());
            compare_with_published_rule(mode, aten);
        }
}

namespace {
std::string archive_of(const ::torch::optim::Optimizer& opt) {
    std::ostringstream out;
    ::torch::save(opt, out);
    return out.str();
}
} // namespace

TEST_CASE("torch::save / torch::load continue bit-identically and restore group options", "[torch][state]") {
    for (bool aten : {false, true})
        for (const childtune::mask_mode& mode : {childtune::mask_mode{childtune::bernoulli{0.4, 21}},
                                                 childtune::mask_mode{childtune::dense{}}}) {
            CAPTURE(aten, mode.index());
            auto straight = make_net(6), resumed = make_net(6);
            const auto options = ChildTuningAdamWOptions(1e-2).weight_decay(0.01);
            ChildTuningAdamW a(straight->named_parameters(), options, mode, name_contains("layer"));
            a.force_aten_path(aten);
            std::string saved;
            {
                ChildTuningAdamW first(resumed->named_parameters(), options, mode, name_contains("layer"));
                first.force_aten_path(aten);
                for (int t = 0; t < 4; ++t) {
                    first.zero_grad();
                    backward(resumed, t);
                    first.step();
                }
                first.param_groups()[1].options().set_lr(5e-3); // a scheduler's change
                saved = archive_of(first);
            }
            for (int t = 0; t < 4; ++t) {
                a.zero_grad();
                backward(straight, t);
                a.step();
            }
            a.param_groups()[1].options().set_lr(5e-3);

            // A fresh optimizer as a new process builds it: default options, dense.
            ChildTuningAdamW b(resumed->named_parameters(), ChildTuningAdamWOptions(), childtune::dense{}, name_contains("layer"));
            b.force_aten_path(aten);
            std::istringstream in(saved);
            ::torch::load(b, in);
            CHECK(b.param_groups()[1].options().get_lr() == 5e-3);
            CHECK(static_cast<const ChildTuningAdamWOptions&>(b.param_groups()[0].options()).weight_decay() == 0.01);
            CHECK_FALSE(static_cast<const ChildTuningAdamWOptions&>(b.param_groups()[1].options()).masked());
            CHECK(b.mask().index() == mode.index());
            CHECK(b.step_count() == 4);
            for (int t = 4; t < 10; ++t) {
                a.zero_grad();
                b.zero_grad();
                backward(straight, t);
                backward(resumed, t);
                a.step();
                b.step();
            }
            for (const auto& item : straight->named_parameters())
                REQUIRE(same_bits(item.value(), resumed->named_parameters()[item.key()]));
        }
}

TEST_CASE("the ATen path agrees with the fused kernels for every rule and mask", "[torch][aten]") {
    auto model = make_net(7);
    const auto masks = random_masks(model, 0.5);
    for (const childtune::mask_mode& mode : {childtune::mask_mode{childtune::dense{}}, childtune::mask_mode{childtune::bernoulli{0.3, 2}},
                                             childtune::mask_mode{childtune::fixed{masks}}})
        for (auto target : {childtune::mask_target::gradient, childtune::mask_target::update}) {
            const childtune::optimizer_options core{.masking = {target, false}};
            auto fused_sgd = make_net(7), aten_sgd = make_net(7), fused_adam = make_net(7), aten_adam = make_net(7);
            ChildTuningSGD s1(fused_sgd->named_parameters(), ChildTuningSGDOptions(0.1).momentum(0.9).weight_decay(0.01), mode,
                              name_contains("layer"), core);
            ChildTuningSGD s2(aten_sgd->named_parameters(), ChildTuningSGDOptions(0.1).momentum(0.9).weight_decay(0.01), mode,
                              name_contains("layer"), core);
            ChildTuningAdam a1(fused_adam->named_parameters(), ChildTuningAdamOptions(1e-2).weight_decay(0.01), mode,
                               name_contains("layer"), core);
            ChildTuningAdam a2(aten_adam->named_parameters(), ChildTuningAdamOptions(1e-2).weight_decay(0.01), mode,
                               name_contains("layer"), core);
            s2.force_aten_path(true);
            a2.force_aten_path(true);
            for (int t = 0; t < 15; ++t) {
                for (auto* m : {&fused_sgd, &aten_sgd, &fused_adam, &aten_adam}) {
                    (*m)->zero_grad();
                    backward(*m, t);
                }
                s1.step();
                s2.step();
                a1.step();
                a2.step();
            }
            CAPTURE(mode.index(), static_cast<int>(target));
            for (const auto& item : fused_sgd->named_parameters())
                require_close(aten_sgd->named_parameters()[item.key()], item.value(), 1e-5, "sgd " + item.key());
            for (const auto& item : fused_adam->named_parameters())
                require_close(aten_adam->named_parameters()[item.key()], item.value(), 1e-5, "adam " + item.key());
        }
}

TEST_CASE("mixed precision: bfloat16 and half parameters step in place with float state", "[torch][precision]") {
    for (auto type : {at::kBFloat16, at::kHalf}) {
        ::torch::manual_seed(9);
        at::Tensor p = at::randn({300}).to(type).set_requires_grad(true);
        at::Tensor p32 = p.detach().to(at::kFloat).clone();
        ChildTuningAdamW opt(std::vector<at::Tensor>{p}, ChildTuningAdamWOptions(1e-2), childtune::bernoulli{0.5, 3});
        std::vector<float> ref = values(p32);
        reference::torch_adamw<float> r(1e-2, 0.9, 0.999, 1e-8, 1e-2);
        for (int t = 0; t < 5; ++t) {
            at::Tensor g = at::randn({300}).to(type);
            p.mutable_grad() = g;
            std::vector<bool> keep(300);
            const auto view = childtune::bernoulli{0.5, 3}.view(childtune::stable_tensor_key("param_group0.0"), static_cast<std::uint64_t>(t));
            for (std::size_t j = 0; j < 300; ++j) keep[j] = view.keep(j);
            // The reference sees what the step sees: the stored 16-bit values, widened.
            r.apply(ref, values(g), keep, 0.5, {});
            opt.step();
            for (std::size_t j = 0; j < 300; ++j) ref[j] = static_cast<float>(at::scalar_tensor(ref[j]).to(type).item<float>());
        }
        const auto got = values(p);
        for (std::size_t j = 0; j < 300; ++j) REQUIRE(got[j] == ref[j]);
    }
}

TEST_CASE("parameters without gradients are skipped, as torch's optimizers skip them", "[torch]") {
    auto a = make_net(10), b = make_net(10);
    ChildTuningAdamW ours(a->named_parameters(), ChildTuningAdamWOptions(1e-2));
    ::torch::optim::AdamW theirs(b->parameters(), ::torch::optim::AdamWOptions(1e-2));
    for (int t = 0; t < 5; ++t) {
        ours.zero_grad();
        theirs.zero_grad();
        backward(a, t);
        backward(b, t);
        if (t % 2 == 0) { // the head gets no gradient on even steps
            a->head->weight.mutable_grad() = at::Tensor();
            b->head->weight.mutable_grad() = at::Tensor();
        }
        ours.step();
        theirs.step();
    }
    require_close(a->head->weight, b->head->weight, 1e-5, "head.weight");
}

TEST_CASE("the thread count of the fused step does not change results", "[torch]") {
    auto a = make_net(15), b = make_net(15);
    ChildTuningAdamW one(a->named_parameters(), ChildTuningAdamWOptions(1e-2), childtune::bernoulli{0.3, 4});
    ChildTuningAdamW two(b->named_parameters(), ChildTuningAdamWOptions(1e-2), childtune::bernoulli{0.3, 4});
    one.set_threads(1);
    two.set_threads(2);
    CHECK_THROWS_WITH(two.set_threads(-1), Catch::Contains(">= 0"));
    for (int t = 0; t < 3; ++t) {
        for (auto* m : {&a, &b}) {
            (*m)->zero_grad();
            backward(*m, t);
        }
        one.step();
        two.step();
    }
    for (const auto& item : a->named_parameters()) REQUIRE(same_bits(item.value(), b->named_parameters()[item.key()]));
}

TEST_CASE("step(closure) returns the closure's loss", "[torch]") {
    auto m = make_net(11);
    ChildTuningAdamW opt(m->named_parameters(), ChildTuningAdamWOptions(1e-2));
    auto [x, y] = batch(0);
    at::Tensor loss = opt.step([&] {
        opt.zero_grad();
        at::Tensor l = ::torch::nn::functional::cross_entropy(m->forward(x), y);
        l.backward();
        return l;
    });
    CHECK(loss.defined());
    CHECK(opt.step_count() == 1);
}

TEST_CASE("bad tensors and options get a clear error naming the parameter", "[torch][errors]") {
    at::Tensor transposed = at::randn({4, 3}).t().set_requires_grad(true);
    CHECK_THROWS_WITH(ChildTuningAdamW(std::vector<at::Tensor>{transposed}, ChildTuningAdamWOptions()),
                      Catch::Contains("'param_group0.0'") && Catch::Contains("not contiguous"));
    at::Tensor ints = at::zeros({3}, at::kInt);
    CHECK_THROWS_WITH(ChildTuningAdamW(std::vector<at::Tensor>{ints}, ChildTuningAdamWOptions()),
                      Catch::Contains("unsupported dtype"));

    at::Tensor p = at::randn({5}).set_requires_grad(true);
    ChildTuningAdamW opt(std::vector<at::Tensor>{p}, ChildTuningAdamWOptions());
    p.mutable_grad() = at::randn({5}).to_sparse();
    const at::Tensor before = p.detach().clone();
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("'param_group0.0'") && Catch::Contains("sparse gradients"));
    p.mutable_grad() = at::full({5}, std::numeric_limits<float>::quiet_NaN());
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("'param_group0.0'") && Catch::Contains("NaN or Inf"));
    p.mutable_grad() = at::ones({5});
    opt.param_groups()[0].options().set_lr(-1.0);
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("lr"));
    CHECK(same_bits(p.detach(), before));
    CHECK(opt.step_count() == 0);

    auto m = make_net(12);
    childtune::mask_set wrong;
    wrong.add("layer1.weight", childtune::bit_mask(3));
    CHECK_THROWS_WITH(ChildTuningAdamW(m->named_parameters(), ChildTuningAdamWOptions(), childtune::fixed{wrong}, name_contains("layer")),
                      Catch::Contains("'layer1.weight'") && Catch::Contains("has 3 elements"));
}

TEST_CASE("named parameters split into a masked and a dense group by name", "[torch][groups]") {
    auto m = make_net(13);
    ChildTuningAdamW opt(m->named_parameters(), ChildTuningAdamWOptions(1e-3), childtune::bernoulli{0.2, 1}, name_contains("layer"));
    REQUIRE(opt.param_groups().size() == 2);
    CHECK(opt.param_groups()[0].params().size() == 4);
    CHECK(opt.param_groups()[1].params().size() == 2);
    CHECK(static_cast<const ChildTuningAdamWOptions&>(opt.param_groups()[0].options()).masked());
    CHECK_FALSE(static_cast<const ChildTuningAdamWOptions&>(opt.param_groups()[1].options()).masked());
    CHECK(opt.parameter_names() == std::vector<std::string>{"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias",
                                                            "head.weight", "head.bias"});
    // The dense head moves like plain AdamW even though the mode is CT_F (one step:
    // afterwards its gradients differ, because the layers below it moved differently).
    auto d = make_net(13);
    ChildTuningAdamW dense_opt(d->named_parameters(), ChildTuningAdamWOptions(1e-3));
    backward(m, 0);
    backward(d, 0);
    opt.step();
    dense_opt.step();
    CHECK(same_bits(m->head->weight.detach(), d->head->weight.detach()));
    CHECK_FALSE(same_bits(m->layer1->weight.detach(), d->layer1->weight.detach()));
}

TEST_CASE("fisher_mask follows the reference loop and keeps the top p of the masked tensors", "[torch][fisher]") {
    auto m = make_net(14);
    std::vector<int> batches = {0, 1, 2, 3, 4};
    const auto loss_of = [&](int t) {
        auto [x, y] = batch(t);
        return ::torch::nn::functional::cross_entropy(m->forward(x), y);
    };
    m->eval();
    const auto result = fisher_mask(*m, batches, loss_of,
                                    {.keep = 0.3, .max_grad_norm = 1.0, .masked_if = name_contains("layer"), .progress = false});
    CHECK_FALSE(m->is_training()); // mode restored
    CHECK(result.batches == 5);
    REQUIRE(result.masks.tensor_count() == 4);
    CHECK(result.masks.find("head.weight") == nullptr);
    CHECK(result.summary.size() == 4);
    CHECK(static_cast<double>(result.kept) / static_cast<double>(result.masks.total_size()) == Approx(0.3).margin(0.01));

    // The same loop by hand with the core accumulator gives the same mask.
    childtune::fisher_accumulator<float> by_hand({.max_grad_norm = 1.0, .num_batches = 5});
    for (const auto& item : m->named_parameters())
        if (item.key().find("layer") != std::string::npos) by_hand.add_tensor(item.key(), static_cast<std::size_t>(item.value().numel()));
    m->train();
    for (int t : batches) {
        m->zero_grad();
        loss_of(t).backward();
        for (const auto& item : m->named_parameters())
            if (item.key().find("layer") != std::string::npos)
                by_hand.accumulate(item.key(), childtune::torch::detail::view_of<const float>(item.value().grad().contiguous()));
        by_hand.end_batch();
    }
    CHECK(by_hand.select(0.3).masks == result.masks);

    // The same batches from a torch data loader and from a generator.
    std::vector<at::Tensor> xs, ys;
    for (int t : batches) {
        auto [x, y] = batch(t);
        xs.push_back(x);
        ys.push_back(y);
    }
    auto loader = ::torch::data::make_data_loader<::torch::data::samplers::SequentialSampler>(
        ::torch::data::datasets::TensorDataset(at::cat(xs)).map(::torch::data::transforms::Stack<::torch::data::TensorExample>()),
        ::torch::data::DataLoaderOptions().batch_size(32));
    std::size_t b = 0;
    const auto from_loader = fisher_mask(
        *m, *loader,
        [&](const ::torch::data::TensorExample& example) {
            return ::torch::nn::functional::cross_entropy(m->forward(example.data), ys[b++]);
        },
        {.keep = 0.3, .max_grad_norm = 1.0, .masked_if = name_contains("layer"), .progress = false, .num_batches = 5});
    CHECK(from_loader.masks == result.masks);
    int next = 0;
    const auto from_generator = fisher_mask(
        *m, [&]() -> std::optional<int> { return next < 5 ? std::optional<int>(next++) : std::nullopt; }, loss_of,
        {.keep = 0.3, .max_grad_norm = 1.0, .masked_if = name_contains("layer"), .progress = false, .num_batches = 5});
    CHECK(from_generator.masks == result.masks);
    CHECK_THROWS_WITH(fisher_mask(*m, batches, loss_of, {.masked_if = name_contains("decoder"), .progress = false}),
                      Catch::Contains("no parameter"));
}

namespace {
std::string core_state(const ChildTuningAdamW& opt) {
    std::ostringstream out;
    opt.core().save(out);
    return out.str();
}
} // namespace

TEST_CASE("bad input: dtypes, devices, layouts and aliasing of LibTorch tensors", "[torch][errors][bad_input]") {
    at::Tensor p = at::randn({6}).set_requires_grad(true);
    ChildTuningAdamW opt(std::vector<at::Tensor>{p}, ChildTuningAdamWOptions(0.1));
    p.mutable_grad() = at::randn({6});
    opt.step();
    std::string state = core_state(opt);
    at::Tensor values = p.detach().clone();
    const auto unchanged = [&] {
        CHECK(core_state(opt) == state);
        CHECK(at::equal(p.detach(), values));
    };
    const auto rejected = [&](at::Tensor grad, const std::string& text) {
        p.mutable_grad() = std::move(grad);
        CHECK_THROWS_WITH(opt.step(), Catch::Contains("'param_group0.0'") && Catch::Contains(text));
        unchanged();
    };
    rejected(at::randn({6}, at::kDouble), "gradient dtype Double differs from the parameter's Float");
    rejected(at::ones({6}, at::kInt), "gradient dtype Int differs");
    rejected(at::randn({7}), "gradient has 7 elements, the parameter 6");
    rejected(at::randn({6, 2}).select(1, 0), "gradient is not contiguous");
    rejected(at::empty({6}, at::TensorOptions().device(at::kMeta)), "gradient is on meta, the parameter on cpu");
    rejected(at::full({6}, std::numeric_limits<float>::infinity()), "NaN or Inf");
    // The parameter as its own gradient, or a gradient that is a view of it.
    rejected(p.detach(), "parameter and gradient memory overlap");
    // requires_grad false / no gradient: skipped as torch skips it, nothing changes.
    p.mutable_grad() = at::Tensor();
    opt.step();
    CHECK(at::equal(p.detach(), values));
    state = core_state(opt); // the step counter moved on (Bernoulli masks follow it)

    // One device per optimizer; int and non-contiguous tensors in a group added later.
    at::Tensor cpu = at::randn({3}), meta = at::empty({3}, at::TensorOptions().device(at::kMeta));
    CHECK_THROWS_WITH(ChildTuningAdamW(std::vector<at::Tensor>{cpu, meta}, ChildTuningAdamWOptions()),
                      Catch::Contains("'param_group0.1'") && Catch::Contains("one device per optimizer"));
    p.mutable_grad() = at::randn({6});
    opt.add_param_group(::torch::optim::OptimizerParamGroup({at::zeros({4}, at::kLong)}, std::make_unique<ChildTuningAdamWOptions>()));
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("param_group1") && Catch::Contains("unsupported dtype"));
    CHECK(opt.core().group_count() == 1); // the bad group is not half registered
    unchanged();
    // No group at all is refused; a group without tensors is refused at the step
    // (since 0.3: a silent no-op before), and steps with allow_empty.
    CHECK_THROWS_WITH(ChildTuningAdamW(std::vector<ChildTuningAdamW::group_type>{}),
                      Catch::Contains("needs at least one parameter group"));
    ChildTuningAdamW empty(std::vector<at::Tensor>{}, ChildTuningAdamWOptions());
    CHECK_THROWS_WITH(empty.step(), Catch::Contains("no tensor is registered"));
    CHECK(empty.step_count() == 0);
    ChildTuningAdamW allowed(std::vector<at::Tensor>{}, ChildTuningAdamWOptions(), childtune::dense{},
                             childtune::optimizer_options{.allow_empty = true});
    CHECK_NOTHROW(allowed.step());
}

TEST_CASE("non-finite gradients off the host: the first in order, by their sums, exactly", "[torch][errors][bad_input]") {
    // force_aten_path sends CPU tensors through the scan CUDA tensors take
    // (executor.hpp: first_nonfinite sums each gradient in double).
    const double big = std::numeric_limits<double>::max();
    const float nanf = std::numeric_limits<float>::quiet_NaN(), inff = std::numeric_limits<float>::infinity();
    struct gradient_case {
        const char* what;
        std::vector<at::Tensor> grads;
        std::string first_bad; // empty: every gradient finite
    };
    const auto f32 = [](std::vector<float> v) { return at::tensor(v); };
    const auto f64 = [](std::vector<double> v) { return at::tensor(v, at::kDouble); };
    const std::vector<gradient_case> cases = {
        {"all finite", {f32({1, 2, 3}), f64({4, 5}), f32({6})}, ""},
        {"NaN in the second", {f32({1, 2, 3}), f64({4, std::nan("")}), f32({nanf})}, "param_group0.1"},
        {"+Inf in the third only", {f32({1, 2, 3}), f64({4, 5}), f32({inff})}, "param_group0.2"},
        {"+Inf and -Inf in one (their sum is NaN)", {f32({inff, -inff, 0}), f64({4, 5}), f32({6})}, "param_group0.0"},
        // finite doubles whose sum overflows: confirmed element-wise, not a false alarm
        {"double sums overflowing", {f32({1, 2, 3}), f64({big, big}), f32({6})}, ""},
        {"double sums overflowing, then a NaN", {f32({1, 2, 3}), f64({big, big}), f32({nanf})}, "param_group0.2"},
        {"float32 at its largest", {f32({3.4e38f, 3.4e38f, 3.4e38f}), f64({-big, -big}), f32({-3.4e38f})}, ""},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        std::vector<at::Tensor> params = {at::zeros({3}).set_requires_grad(true),
                                          at::zeros({2}, at::kDouble).set_requires_grad(true),
                                          at::zeros({1}).set_requires_grad(true)};
        for (std::size_t i = 0; i < params.size(); ++i) params[i].mutable_grad() = c.grads[i];
        childtune::optimizer_options skip;
        skip.on_nonfinite = childtune::nonfinite_policy::skip;
        ChildTuningAdamW opt(params, ChildTuningAdamWOptions(1e-3), childtune::dense{}, skip);
        opt.force_aten_path(true);
        opt.step();
        CHECK(opt.last_step().applied == c.first_bad.empty());
        CHECK(opt.last_step().nonfinite_tensor == c.first_bad);
        CHECK(opt.step_count() == (c.first_bad.empty() ? 1u : 0u));
    }
}

TEST_CASE("bad input: NaN, Inf and edge hyperparameters through LibTorch options", "[torch][errors][bad_input]") {
    at::Tensor p = at::randn({4}).set_requires_grad(true);
    ChildTuningAdamW opt(std::vector<at::Tensor>{p}, ChildTuningAdamWOptions(0.1));
    p.mutable_grad() = at::randn({4});
    opt.step();
    const std::string state = core_state(opt);
    auto& o = static_cast<ChildTuningAdamWOptions&>(opt.param_groups()[0].options());
    const ChildTuningAdamWOptions good = o;
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const auto rejected = [&](const std::string& text) {
        CHECK_THROWS_WITH(opt.step(), Catch::Contains("param_group0") && Catch::Contains(text));
        CHECK(core_state(opt) == state);
        o = good;
    };
    o.lr(nan);
    rejected("lr");
    o.betas({0.9, 1.0});
    rejected("beta2");
    o.betas({nan, 0.999});
    rejected("beta1");
    o.eps(-inf);
    rejected("eps");
    o.weight_decay(inf);
    rejected("weight_decay");
    for (const double keep : {0.0, -0.0, 1.0000001, nan, 1e-12})
        CHECK_THROWS_WITH(opt.set_mask(childtune::bernoulli{keep, 1}), Catch::Contains("bernoulli mask"));
    CHECK(std::holds_alternative<childtune::dense>(opt.mask()));
    CHECK(core_state(opt) == state);
}

// ---- archives written by childtune 0.1 (tests/compat/torch_scenarios.hpp) ------------------


namespace {
std::map<std::string, std::vector<std::string>> torch_recorded() {
    std::map<std::string, std::vector<std::string>> out;
    std::ifstream in(std::string(CHILDTUNE_COMPAT_DATA_DIR) + "/torch_trajectories.txt");
    std::string name, hash;
    std::size_t step = 0;
    while (in >> name >> step >> hash) {
        auto& steps = out[name];
        steps.resize(std::max(steps.size(), step));
        steps[step - 1] = hash;
    }
    return out;
}
} // namespace

TEST_CASE("compat: LibTorch archives written by 0.1 load and resume bit for bit") {
    const auto recorded = torch_recorded();
    for (const auto& s : compat::torch_scenarios()) {
        INFO("scenario " << s.name);
        const std::string archive = std::string(CHILDTUNE_COMPAT_DATA_DIR) + "/" + s.name + ".pt";
        std::vector<std::string> fresh, resumed;
        compat::run_torch_scenario(s, fresh, {}, {});
        compat::run_torch_scenario(s, resumed, {}, archive);
        REQUIRE(resumed.size() == static_cast<std::size_t>(compat::steps - compat::saved_step));
        const auto& want = recorded.at(s.name);
        if (!s.aten) {
            // The fused CPU path: 0.1's trajectory, from scratch and resumed.
            for (std::size_t t = 0; t < fresh.size(); ++t) CHECK(fresh[t] == want[t]);
            for (std::size_t t = 0; t < resumed.size(); ++t) CHECK(resumed[t] == want[compat::saved_step + t]);
        } else {
            // 0.1's ATen path agreed with the fused step to float rounding only
            // (ATen's own fused multiply-adds), so its trajectory is not
            // reproducible bit for bit, not even by 0.1 on another CPU. Its
            // archive must load, and resume exactly as the same archive resumed
            // on the fused path: since 0.2 the ATen path is the rule's own
            // definition, bit for bit.
            compat::torch_scenario fused = s;
            fused.aten = false;
            std::vector<std::string> on_fused;
            compat::run_torch_scenario(fused, on_fused, {}, archive);
            CHECK(resumed == on_fused);
            CHECK(fresh[0] == want[0]);
        }
    }
}

namespace {
//! What `f` writes to stderr (fd 2), which under ctest is not a terminal.
template <class F>
std::string captured_stderr(F&& f) {
    std::fflush(stderr);
    std::FILE* tmp = std::tmpfile();
    REQUIRE(tmp);
    const int saved = ::dup(2);
    ::dup2(::fileno(tmp), 2);
    f();
    std::fflush(stderr);
    ::dup2(saved, 2);
    ::close(saved);
    std::rewind(tmp);
    std::string out;
    for (int c; (c = std::fgetc(tmp)) != EOF;) out += static_cast<char>(c);
    std::fclose(tmp);
    return out;
}
} // namespace

TEST_CASE("no silent no-ops: a name filter that masks no parameter is an error unless allow_empty", "[torch][groups][bad_input]") {
    auto m = make_net(13);
    CHECK_THROWS_MATCHES(
        ChildTuningAdamW(m->named_parameters(), ChildTuningAdamWOptions(1e-3), childtune::bernoulli{0.2, 1}, name_contains("layr")),
        childtune::error,
        Catch::Matchers::Predicate<childtune::error>([](const childtune::error& e) {
            const std::string w = e.what();
            return w.find("name filter: it masks none of the module's 6 parameters ('layer1.weight', 'layer1.bias', "
                          "'layer2.weight', 'layer2.bias' and 2 more)") != std::string::npos &&
                   w.find("allow_empty") != std::string::npos;
        }));
    // Opted in: every parameter trains densely, in one group.
    ChildTuningAdamW dense_opt(m->named_parameters(), ChildTuningAdamWOptions(1e-3), childtune::bernoulli{0.2, 1},
                               name_contains("layr"), childtune::optimizer_options{.allow_empty = true});
    REQUIRE(dense_opt.param_groups().size() == 1);
    CHECK_FALSE(static_cast<const ChildTuningAdamWOptions&>(dense_opt.param_groups()[0].options()).masked());
    backward(m, 0);
    dense_opt.step();
    CHECK(dense_opt.step_count() == 1);
    // An empty masked group added by hand is refused at the step, and nothing changes.
    auto n = make_net(13);
    ChildTuningAdamW opt(n->named_parameters(), ChildTuningAdamWOptions(1e-3), childtune::bernoulli{0.2, 1}, name_contains("layer"));
    opt.add_param_group(::torch::optim::OptimizerParamGroup(std::vector<at::Tensor>{},
                                                            std::make_unique<ChildTuningAdamWOptions>(1e-3)));
    backward(n, 0);
    const at::Tensor before = n->layer1->weight.detach().clone();
    CHECK_THROWS_WITH(opt.step(), Catch::Contains("group 'param_group2' is masked but holds no tensor"));
    CHECK(opt.step_count() == 0);
    CHECK(same_bits(n->layer1->weight.detach(), before));
}

TEST_CASE("fisher_mask: progress only on a terminal unless asked, a callback for loggers, and N checked",
          "[torch][fisher][bad_input]") {
    auto m = make_net(14);
    std::vector<int> batches = {0, 1, 2};
    const auto loss_of = [&](int t) {
        auto [x, y] = batch(t);
        return ::torch::nn::functional::cross_entropy(m->forward(x), y);
    };
    const auto masked = name_contains("layer");
    // Defaults: stderr is not a terminal here, so nothing is written.
    CHECK(captured_stderr([&] { fisher_mask(*m, batches, loss_of, {.keep = 0.3, .masked_if = masked}); }).empty());
    // Asked for: one line at the end.
    CHECK(captured_stderr([&] {
              fisher_mask(*m, batches, loss_of, {.keep = 0.3, .masked_if = masked, .progress_off_terminal = true});
          }) == "Fisher information: 3 batches\n");
    // A logger sees every batch, with N.
    std::vector<std::pair<std::size_t, std::size_t>> seen;
    const auto quiet = captured_stderr([&] {
        fisher_mask(*m, batches, loss_of,
                    {.keep = 0.3, .masked_if = masked, .progress = false,
                     .on_batch = [&](std::size_t b, std::size_t of) { seen.emplace_back(b, of); }});
    });
    CHECK(quiet.empty());
    CHECK(seen == std::vector<std::pair<std::size_t, std::size_t>>{{1, 3}, {2, 3}, {3, 3}});
    // Fewer batches than the declared N: an error, not a mask scaled by 3/5.
    CHECK_THROWS_WITH(fisher_mask(*m, batches, loss_of, {.keep = 0.3, .masked_if = masked, .num_batches = 5}),
                      Catch::Contains("select() after 3 batches, but num_batches = 5 was declared"));
    int next = 0;
    CHECK_THROWS_WITH(fisher_mask(*m, [&]() -> std::optional<int> { return next < 0 ? std::optional<int>(next++) : std::nullopt; },
                                  loss_of, {.keep = 0.3, .masked_if = masked}),
                      Catch::Contains("before any batch ended"));
    CHECK_THROWS_WITH(fisher_mask(*m, batches, loss_of, {.masked_if = name_contains("layr")}),
                      Catch::Contains("no parameter of the module passes masked_if (tried on 'layer1.weight'"));
}

TEST_CASE("load options: an archive's hyperparameters by default, the optimizer's own with hyperparameter_source::current",
          "[torch][state]") {
    auto net = make_net(6);
    const auto options = ChildTuningAdamWOptions(1e-2).weight_decay(0.01);
    ChildTuningAdamW first(net->named_parameters(), options, childtune::bernoulli{0.4, 21}, name_contains("layer"));
    for (int t = 0; t < 2; ++t) {
        first.zero_grad();
        backward(net, t);
        first.step();
    }
    const std::string saved = archive_of(first);
    const auto fresh = [&] {
        auto opt = std::make_unique<ChildTuningAdamW>(net->named_parameters(), options, childtune::bernoulli{0.4, 21},
                                                      name_contains("layer"));
        opt->param_groups()[0].options().set_lr(3e-3); // set after construction
        opt->set_mask(childtune::bernoulli{0.7, 5});
        return opt;
    };
    auto by_default = fresh();
    {
        std::istringstream in(saved);
        ::torch::load(*by_default, in);
    }
    CHECK(by_default->param_groups()[0].options().get_lr() == 1e-2);
    CHECK(std::get<childtune::bernoulli>(by_default->mask()).seed == 21);
    CHECK(by_default->step_count() == 2);

    auto kept = fresh();
    kept->set_load_options({.hyperparameters = childtune::hyperparameter_source::current});
    {
        std::istringstream in(saved);
        ::torch::load(*kept, in);
    }
    CHECK(kept->param_groups()[0].options().get_lr() == 3e-3);
    CHECK(std::get<childtune::bernoulli>(kept->mask()).seed == 5);
    CHECK(std::get<childtune::bernoulli>(kept->mask()).p == 0.7);
    CHECK(kept->step_count() == 2);
    CHECK(kept->core().group_options(0).lr == 3e-3);
}

TEST_CASE("checkpoints: a damaged LibTorch archive is a childtune::error, and the optimizer is unchanged",
          "[torch][state][errors][bad_input]") {
    auto net = make_net(6);
    ChildTuningAdamW opt(net->named_parameters(), ChildTuningAdamWOptions(1e-2), childtune::bernoulli{0.4, 21},
                         name_contains("layer"));
    backward(net, 0);
    opt.step();
    const std::string good = archive_of(opt);
    backward(net, 1);
    opt.step();
    const std::string before = core_state(opt), before_archive = archive_of(opt);
    std::size_t rejected = 0;
    const auto attempt = [&](const std::string& bytes) {
        std::istringstream in(bytes);
        try {
            load_optimizer(opt, in);
        } catch (const childtune::error& e) {
            ++rejected;
            REQUIRE_THAT(std::string(e.what()), Catch::Contains("optimizer archive") || Catch::Contains("optimizer state"));
            REQUIRE(core_state(opt) == before);
            return;
        }
        // A byte LibTorch never reads (zip metadata) may be changed harmlessly; put the state back.
        std::istringstream reset(before_archive);
        ::torch::load(opt, reset);
        REQUIRE(core_state(opt) == before);
    };
    for (std::size_t at = 0; at < good.size(); at += 7) {
        std::string bad = good;
        bad[at] = static_cast<char>(bad[at] ^ 0x5a);
        attempt(bad);
    }
    for (std::size_t cut = 0; cut < good.size(); cut += 17) attempt(good.substr(0, cut));
    CHECK(rejected > 0);
    // A byte of the core state file inside the archive: corruption with its offset.
    const std::string core = core_state(opt);
    std::string damaged = core;
    damaged[40] = static_cast<char>(damaged[40] ^ 1);
    ::torch::serialize::OutputArchive archive;
    archive.write("childtune/state",
                  at::from_blob(damaged.data(), {static_cast<std::int64_t>(damaged.size())}, at::kByte).clone());
    archive.write("childtune/device_tensors", c10::IValue(std::int64_t{0}));
    std::ostringstream out;
    archive.save_to(out);
    std::istringstream in(out.str());
    CHECK_THROWS_WITH(load_optimizer(opt, in), Catch::Contains("optimizer state is corrupt: the byte at offset 40"));
    CHECK(core_state(opt) == before);
}

namespace {
// Distance in units in the last place between two floats (0 for equal bits).
std::int64_t ulp_distance(float a, float b) {
    const auto ordered = [](float f) {
        std::int32_t i;
        std::memcpy(&i, &f, sizeof i);
        return i < 0 ? std::int64_t{std::numeric_limits<std::int32_t>::min()} - i : std::int64_t{i};
    };
    return std::abs(ordered(a) - ordered(b));
}
// One step of ours and of LibTorch's on the same 4096 weights and gradient:
// the largest distance in ULP.
template <class Ours, class Theirs>
std::int64_t max_ulp_after_one_step(Ours make_ours, Theirs make_theirs) {
    ::torch::manual_seed(1);
    const at::Tensor start = ::torch::randn({4096}), gradient = ::torch::randn({4096});
    at::Tensor a = start.clone().set_requires_grad(true), b = start.clone().set_requires_grad(true);
    auto ours = make_ours(a);
    auto theirs = make_theirs(b);
    a.mutable_grad() = gradient.clone();
    b.mutable_grad() = gradient.clone();
    ours.step();
    theirs.step();
    const auto x = values(a), y = values(b);
    std::int64_t worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulp_distance(x[i], y[i]));
    return worst;
}
} // namespace

// What the README claims about LibTorch's own optimizers: the rules are the same
// formulas evaluated in another operation order, so they agree to a few ULP per
// step, not bit for bit (the multi-step agreement is the "equals torch::optim"
// cases above).
TEST_CASE("torch::optim after one step: AdamW and Adam within 2 ULP, SGD with Nesterov within 64 ULP",
          "[torch][adamw][adam][sgd]") {
    using tensors = std::vector<at::Tensor>;
    CHECK(max_ulp_after_one_step(
              [](at::Tensor& p) { return ChildTuningAdamW(tensors{p}, ChildTuningAdamWOptions(1e-2).weight_decay(0.05)); },
              [](at::Tensor& p) { return ::torch::optim::AdamW(tensors{p}, ::torch::optim::AdamWOptions(1e-2).weight_decay(0.05)); }) <= 2);
    CHECK(max_ulp_after_one_step(
              [](at::Tensor& p) { return ChildTuningAdam(tensors{p}, ChildTuningAdamOptions(1e-2).weight_decay(0.05)); },
              [](at::Tensor& p) { return ::torch::optim::Adam(tensors{p}, ::torch::optim::AdamOptions(1e-2).weight_decay(0.05)); }) <= 2);
    CHECK(max_ulp_after_one_step(
              [](at::Tensor& p) {
                  return ChildTuningSGD(tensors{p}, ChildTuningSGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
              },
              [](at::Tensor& p) {
                  return ::torch::optim::SGD(tensors{p},
                                             ::torch::optim::SGDOptions(0.05).momentum(0.9).nesterov(true).weight_decay(1e-3));
              }) <= 64);
}

TEST_CASE("mask from: LibTorch tensors of every 0/1 element type and layout give row-major bits", "[torch][mask_from]") {
    const at::Tensor b = at::tensor({1, 0, 0, 1}).to(at::kBool).view({2, 2}); // row-major elements 0 and 3
    const childtune::bit_mask m = mask_from("w", b);
    CHECK(m.size() == 4);
    CHECK(m.words()[0] == 0b1001u);
    for (const auto type : {at::kByte, at::kChar, at::kShort, at::kInt, at::kLong, at::kFloat, at::kDouble, at::kHalf, at::kBFloat16})
        CHECK(mask_from("w", b.to(type)) == m);
    // A transposed (non-contiguous) view: its logical row-major order counts.
    const at::Tensor t = at::tensor({1.0f, 1.0f, 0.0f, 0.0f}).view({2, 2}).t(); // [[1, 0], [1, 0]]
    CHECK(mask_from("w", t).words()[0] == 0b101u);
    at::Tensor bad = b.to(at::kFloat).clone();
    bad[1][0] = 0.5f;
    try {
        (void)mask_from("layer1.weight", bad);
        FAIL("no error");
    } catch (const childtune::error& e) {
        CHECK(std::string(e.what()) ==
              "childtune: mask from values: tensor 'layer1.weight', element 2 is 0.5; a mask holds only 0 (masked out) and 1 (kept)");
    }
    CHECK_THROWS_WITH(mask_from("c", at::zeros({2}, at::kComplexFloat)), Catch::Contains("tensor 'c' is complex"));
    CHECK_THROWS_WITH(mask_from("u", at::Tensor()), Catch::Contains("tensor 'u' is undefined"));
}

TEST_CASE("filter: name filters select a module's parameters and its masked group, and a typo is an error", "[torch][name_filter]") {
    auto m = make_net(3);
    const auto weights = select_parameters(m->named_parameters(), childtune::name_filter().include_glob("layer?.weight"));
    CHECK(weights.keys() == std::vector<std::string>{"layer1.weight", "layer2.weight"});
    CHECK_THROWS_WITH(select_parameters(m->named_parameters(), childtune::name_filter().include_glob("layr*")),
                      Catch::Contains("parameter filter (include glob 'layr*'): include pattern 'layr*' matches none of the 6 "
                                      "names 'layer1.weight', 'layer1.bias', 'layer2.weight', 'layer2.bias' and 2 more"));

    // A mask_set from a dict of 0/1 tensors for the filtered (masked) group; the head trains densely.
    ::torch::OrderedDict<std::string, at::Tensor> dict;
    for (const auto& item : m->named_parameters())
        if (item.key().rfind("layer", 0) == 0) {
            at::Tensor keep = at::zeros_like(item.value(), at::kBool);
            keep.view({-1})[0] = true; // one element per tensor
            dict.insert(item.key(), keep);
        }
    const childtune::mask_set masks = mask_set_from(dict);
    CHECK(masks.total_kept() == 4);
    ChildTuningAdamW opt(m->named_parameters(), ChildTuningAdamWOptions(1e-2).weight_decay(0), childtune::fixed{masks},
                         childtune::name_filter().include_regex("layer\\d\\..*"));
    const auto before = values(m->layer1->weight);
    m->zero_grad();
    backward(m, 0);
    opt.step();
    const auto after = values(m->layer1->weight);
    for (std::size_t i = 1; i < after.size(); ++i) CHECK(after[i] == before[i]);
    CHECK(after[0] != before[0]);
    const childtune::optimizer_summary s = childtune::summarize(opt.core());
    REQUIRE(s.groups.size() == 2);
    CHECK(s.groups[0].elements == 16 * 8 + 16 + 16 * 16 + 16);
    CHECK(*s.groups[0].kept == 4);
    CHECK(*s.groups[1].kept == 3 * 16 + 3);
}

TEST_CASE("8-bit blockwise state on CPU tensors: the core optimizer's steps and bytes, a bit-identical resume",
          "[torch][state][blockwise8]") {
    const childtune::optimizer_options eight_bit{.storage = childtune::state_storage::blockwise8};
    const auto options = ChildTuningAdamWOptions(1e-2).weight_decay(0.01);
    for (const childtune::mask_mode& mode : {childtune::mask_mode{childtune::bernoulli{0.4, 21}},
                                             childtune::mask_mode{childtune::dense{}}}) {
        CAPTURE(mode.index());
        auto net = make_net(7);
        ChildTuningAdamW opt(net->named_parameters(), options, mode, name_contains("layer"), eight_bit);
        // The core CPU optimizer (the CPU executor's 8-bit state) on copies of the same tensors.
        childtune::optimizer<childtune::adamw> core(mode, eight_bit);
        core.add_group("masked", options.to_core(), true);
        core.add_group("dense", options.to_core(), false);
        std::vector<std::string> names;
        std::vector<std::vector<float>> p, g;
        std::size_t expected_bytes = 0;
        for (const auto& item : net->named_parameters()) {
            names.push_back(item.key());
            p.push_back(values(item.value()));
            g.emplace_back(p.back().size());
            expected_bytes += 2 * childtune::detail::blockwise8_buffer_bytes(p.back().size(), p.back().size());
        }
        for (std::size_t i = 0; i < names.size(); ++i)
            core.add_parameter(names[i].find("layer") != std::string::npos ? 0 : 1, names[i], p[i], g[i]);
        for (int t = 0; t < 6; ++t) {
            opt.zero_grad();
            backward(net, t);
            for (std::size_t i = 0; i < names.size(); ++i) { // in place: the core holds views of g[i]
                const auto grad = values(net->named_parameters()[names[i]].grad());
                std::copy(grad.begin(), grad.end(), g[i].begin());
            }
            opt.step();
            REQUIRE(core.step());
            for (std::size_t i = 0; i < names.size(); ++i) {
                CAPTURE(t, names[i]);
                REQUIRE(values(net->named_parameters()[names[i]]) == p[i]);
            }
        }
        // Two moments of one byte per element and a float per 256 (2.03 bytes per parameter), as the core's.
        CHECK(opt.core().state_bytes() == expected_bytes);
        CHECK(core.state_bytes() == expected_bytes);

        // Saved after 3 steps and loaded by an optimizer built with the default
        // (fp32) storage, as a new process would: the file's 8-bit state is kept.
        auto resumed = make_net(7);
        std::string saved;
        {
            ChildTuningAdamW first(resumed->named_parameters(), options, mode, name_contains("layer"), eight_bit);
            for (int t = 0; t < 3; ++t) {
                first.zero_grad();
                backward(resumed, t);
                first.step();
            }
            saved = archive_of(first);
        }
        ChildTuningAdamW second(resumed->named_parameters(), options, mode, name_contains("layer"));
        std::istringstream in(saved);
        ::torch::load(second, in);
        CHECK(second.core().state_bytes() == expected_bytes);
        for (int t = 3; t < 6; ++t) {
            second.zero_grad();
            backward(resumed, t);
            second.step();
        }
        for (const auto& item : net->named_parameters())
            REQUIRE(same_bits(item.value(), resumed->named_parameters()[item.key()]));
    }
}

TEST_CASE("8-bit blockwise state: the ATen path refuses it, at registration and in a file, and changes nothing",
          "[torch][state][blockwise8][bad_input]") {
    using Catch::Matchers::Contains;
    const childtune::optimizer_options eight_bit{.storage = childtune::state_storage::blockwise8};
    const auto options = ChildTuningAdamWOptions(1e-2);
    auto net = make_net(8);
    ChildTuningAdamW opt(net->named_parameters(), options, childtune::dense{}, every_name(), eight_bit);
    CHECK_THROWS_WITH(opt.force_aten_path(true),
                      Contains("'layer1.weight'") && Contains("8-bit blockwise state (state_storage::blockwise8) is kept for "
                                                              "CPU tensors on the fused path only"));
    opt.zero_grad();
    backward(net, 0);
    opt.step(); // still the fused path: the refused call changed nothing
    const std::string saved = archive_of(opt);

    auto other = make_net(8);
    ChildTuningAdamW aten(other->named_parameters(), options, childtune::dense{}, every_name());
    aten.force_aten_path(true);
    std::istringstream in(saved);
    CHECK_THROWS_WITH(::torch::load(aten, in), Contains("'layer1.weight'") &&
                                                   Contains("the file holds 8-bit blockwise state, which is kept for "
                                                            "CPU tensors on the fused path only"));
    CHECK(aten.step_count() == 0);
    CHECK(aten.core().state_bytes() == 0);
    aten.zero_grad();
    backward(other, 0);
    aten.step(); // the ATen path with fp32 state, as before the load
    std::size_t elements = 0;
    for (const auto& item : other->named_parameters()) elements += static_cast<std::size_t>(item.value().numel());
    CHECK(aten.core().state_bytes() == 8 * elements);

    // The same check guards a file's compact Child-Tuning_D state.
    childtune::mask_set masks;
    for (const auto& item : net->named_parameters()) {
        childtune::bit_mask b(static_cast<std::size_t>(item.value().numel()));
        for (std::size_t i = 0; i < b.size(); i += 3) b.set(i, true);
        masks.add(item.key(), b);
    }
    auto compact_net = make_net(9), aten_net = make_net(9);
    ChildTuningAdamW compact(compact_net->named_parameters(), options, childtune::fixed{masks}, every_name(),
                             {.compact_fixed_state = true});
    compact.zero_grad();
    backward(compact_net, 0);
    compact.step();
    std::istringstream compact_file(archive_of(compact));
    ChildTuningAdamW fixed_aten(aten_net->named_parameters(), options, childtune::fixed{masks}, every_name());
    fixed_aten.force_aten_path(true);
    CHECK_THROWS_WITH(::torch::load(fixed_aten, compact_file),
                      Contains("'layer1.weight'") && Contains("the file holds compact Child-Tuning_D state, which is kept "
                                                              "for CPU tensors on the fused path only"));
    CHECK(fixed_aten.step_count() == 0);
    CHECK(fixed_aten.core().state_bytes() == 0);
}

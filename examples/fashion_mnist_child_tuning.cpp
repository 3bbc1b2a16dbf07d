//! \file
//! Child-Tuning on real data: low-resource transfer on Fashion-MNIST with LibTorch.
//!
//! Child-Tuning (Xu et al., EMNLP 2021) fine-tunes a pretrained model by
//! updating only a child network: the optimizer step masks the gradient. The
//! paper's claim is that this helps most when the target task has little data.
//! This program tests that claim at small scale:
//!
//!  1. Pretraining: a small CNN learns classes 0-4 of Fashion-MNIST (tops,
//!     trousers, pullovers, dresses, coats) from all their training images.
//!     The weights are cached in the output directory, keyed by the pretraining
//!     settings, so a second run skips this step.
//!  2. Fine-tuning: the pretrained body with a new head learns classes 5-9
//!     (sandals, shirts, sneakers, bags, ankle boots) from K labelled images per
//!     class, with vanilla AdamW, Child-Tuning_F (a fresh Bernoulli(p_F) mask
//!     every step, kept gradients scaled by 1/p_F) and Child-Tuning_D (a fixed
//!     mask of the top p_D of parameters by Fisher information on the K-shot
//!     training set), and with --methods the later masks (SIFT, fresh
//!     magnitude masks, DPS; the table methods()). As in the reference, the body
//!     ("layer*") is the masked group and the head is trained densely; every
//!     method runs the same optimizer code, only the mask differs.
//!  3. Test accuracy on every test image of classes 5-9, over several seeds. A
//!     seed fixes the K-shot sample, the head's initialisation, the batch order
//!     and the Bernoulli masks, and every method sees the same ones, so the
//!     differences to vanilla AdamW are paired.
//!
//! Output: the table (mean +- std per method, paired difference to vanilla), the
//! per-seed accuracies, a CSV of every run and a PNG plot (gnuplot) in --out;
//! with --runs-csv, a runs log that scripts/sweep.sh resumes from.
//! The numbers are a function of the flags only.
//!
//! With --data-parallel, under mpirun, the ranks fine-tune together: every batch
//! is split among them, the gradients are all-reduced over MPI, the optimizer
//! state is sharded (childtune::sharded_optimizer, ZeRO stage 1), the
//! Child-Tuning_D Fisher scores are accumulated on a share of the batches per
//! rank and summed (distributed_fisher_select), and the Bernoulli masks agree on
//! every rank because they are keyed, not drawn. Rank 0 pretrains (or reads the
//! cache) and reports.

#include "common/cli.hpp"
#include "common/stats.hpp"
#include "fashion_mnist/idx.hpp"
#include "fashion_mnist/report.hpp"
#include "fashion_mnist/runs_log.hpp"

#include <childtune/torch.hpp>
#ifdef FASHION_MNIST_WITH_MPI
#include <childtune/distributed/fisher.hpp>
#include <childtune/distributed/sharded_optimizer.hpp>
#include <childtune/mpi.hpp>
#endif

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#ifndef FASHION_MNIST_DEFAULT_OUT
#define FASHION_MNIST_DEFAULT_OUT "fashion_mnist_output"
#endif

namespace {

namespace fs = std::filesystem;

// ---- command line ---------------------------------------------------------------

struct settings {
    int shots = 20;   //!< labelled training images per target class
    int seeds = 10;
    int epochs = 30;  //!< fine-tuning epochs
    double p = 0.3;   //!< every masked method's p (keep probability or kept fraction)
    std::optional<double> p_f, p_d; //!< Child-Tuning_F's and _D's own p, instead of p
    double lr = 1e-3; //!< fine-tuning learning rate, every method
    std::vector<std::string> methods; //!< --methods (empty: every method of the table)
    int pretrain_epochs = 3;
    std::size_t pretrain_examples = 0; //!< 0: all 30000 training images of classes 0-4
    std::size_t test_examples = 0;     //!< 0: all 5000 test images of classes 5-9
    int threads = 2;
    bool state_8bit = false;    //!< --state 8bit: blockwise 8-bit moments (state_storage::blockwise8)
    bool data_parallel = false; //!< under mpirun: batches split over the ranks
    fs::path out = FASHION_MNIST_DEFAULT_OUT;
    fs::path cache; //!< where the pretrained weights are cached (empty: out)
    std::optional<fs::path> runs_csv; //!< the runs log a sweep resumes from
    fs::path data = "/usr/share/datasets/fashion-mnist";
};

constexpr const char* usage_text =
    "usage: fashion_mnist_child_tuning [options]\n"
    "  Pretrains a CNN on Fashion-MNIST classes 0-4, fine-tunes it on classes 5-9 from\n"
    "  K images per class with each method of --methods (vanilla AdamW, Child-Tuning_F,\n"
    "  Child-Tuning_D, ...), and\n"
    "  prints the test accuracy per method (mean +- std over seeds, paired differences).\n"
    "options (a value follows the flag or '='):\n"
    "  --K N, --shots N      labelled training images per target class (default 20)\n"
    "  --seeds N             fine-tuning seeds per method (default 10)\n"
    "  --methods A,B,...     the methods to run, in this order, or 'all': vanilla,\n"
    "                        Child-Tuning_F (or CT_F), Child-Tuning_D (or CT_D), SIFT,\n"
    "                        Magnitude (or MAG), DPS (default: the first three)\n"
    "  --p P                 every masked method's p, in (0, 1] (default 0.3): the keep\n"
    "                        probability of Child-Tuning_F, the kept fraction of _D\n"
    "  --pF P                Child-Tuning_F keep probability, in (0, 1] (default: --p)\n"
    "  --pD P                Child-Tuning_D kept fraction, in (0, 1] (default: --p)\n"
    "  --epochs N            fine-tuning epochs (default 30)\n"
    "  --lr X                fine-tuning learning rate (default 1e-3)\n"
    "  --pretrain-epochs N   pretraining epochs (default 3; 0: no pretraining)\n"
    "  --pretrain-examples N pretraining images (default 0: all 30000)\n"
    "  --test-examples N     test images of classes 5-9, and of 0-4 for the pretrained\n"
    "                        model's check (default 0: all 5000)\n"
    "  --threads N           LibTorch and optimizer threads (default 2; per rank)\n"
    "  --state S             the fine-tuning optimizer's state: fp32 (default) or 8bit\n"
    "                        (blockwise 8-bit moments, about 2 bytes per parameter;\n"
    "                        not with --data-parallel)\n"
    "  --data-parallel       run under mpirun -np N: each batch split over the N ranks,\n"
    "                        gradients all-reduced, optimizer state sharded (ZeRO-1);\n"
    "                        rank 0 reports (needs a build with MPI)\n"
    "  --out DIR             results (CSV, PNG) and the pretrained-weights cache\n"
    "                        (default " FASHION_MNIST_DEFAULT_OUT ")\n"
    "  --cache DIR           the pretrained-weights cache instead (default: --out)\n"
    "  --runs-csv FILE       append one row per finished run to FILE (K, lr, epochs,\n"
    "                        method, p, seed, ...), and read back instead of running\n"
    "                        again every run FILE already has: a sweep resumes\n"
    "  --data DIR            the dataset (default /usr/share/datasets/fashion-mnist,\n"
    "                        from the Debian package dataset-fashion-mnist)\n"
    "  --smoke               a run of seconds for CI: 2000 pretraining images, 1 epoch,\n"
    "                        2 seeds, 5 shots, 3 epochs, 1000 test images; flags after\n"
    "                        it override its values\n"
    "  --help                this text\n";

//! The items of a comma-separated list ("a,b" -> a, b; "" -> none; "a,,b" keeps the empty item).
std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    if (text.empty()) return out;
    out.emplace_back();
    for (const char c : text) {
        if (c == ',') out.emplace_back();
        else out.back() += c;
    }
    return out;
}

// The method table (below, after the model): its entry for a --methods name, and all names.
std::optional<std::size_t> find_method(std::string_view name);
std::string method_names();

settings parse(int argc, char** argv) {
    settings s;
    example_cli::arguments args(argc, argv, "fashion_mnist_child_tuning", usage_text);
    while (args.next()) {
        if (args.is("--smoke")) {
            s.pretrain_examples = 2000;
            s.pretrain_epochs = 1;
            s.test_examples = 1000;
            s.seeds = 2;
            s.shots = 5;
            s.epochs = 3;
        } else if (args.is("--K") || args.is("--shots")) s.shots = args.number<int>();
        else if (args.is("--seeds")) s.seeds = args.number<int>();
        else if (args.is("--p")) s.p = args.number<double>();
        else if (args.is("--pF")) s.p_f = args.number<double>();
        else if (args.is("--pD")) s.p_d = args.number<double>();
        else if (args.is("--methods")) {
            s.methods = split_list(args.text());
            if (s.methods.empty()) args.fail("--methods needs at least one method");
        }
        else if (args.is("--epochs")) s.epochs = args.number<int>();
        else if (args.is("--lr")) s.lr = args.number<double>();
        else if (args.is("--pretrain-epochs")) s.pretrain_epochs = args.number<int>();
        else if (args.is("--pretrain-examples")) s.pretrain_examples = args.number<std::size_t>();
        else if (args.is("--test-examples")) s.test_examples = args.number<std::size_t>();
        else if (args.is("--threads")) s.threads = args.number<int>();
        else if (args.is("--state")) {
            const std::string state = args.text();
            if (state != "fp32" && state != "8bit") args.fail("--state must be fp32 or 8bit, not '" + state + "'");
            s.state_8bit = state == "8bit";
        }
        else if (args.is("--data-parallel")) s.data_parallel = true;
        else if (args.is("--out")) s.out = args.text();
        else if (args.is("--cache")) s.cache = args.text();
        else if (args.is("--runs-csv")) s.runs_csv = fs::path(args.text());
        else if (args.is("--data")) s.data = args.text();
        else args.unknown();
    }
    const auto usage_error = [&](const std::string& message) { args.fail(message); };
    if (s.seeds < 1) usage_error("--seeds must be >= 1");
    if (s.shots < 1) usage_error("--K must be >= 1");
    if (s.epochs < 1) usage_error("--epochs must be >= 1");
    if (!(s.p > 0 && s.p <= 1)) usage_error("--p must be in (0, 1]");
    if ((s.p_f && !(*s.p_f > 0 && *s.p_f <= 1)) || (s.p_d && !(*s.p_d > 0 && *s.p_d <= 1)))
        usage_error("--pF and --pD must be in (0, 1]");
    const bool all_methods = s.methods == std::vector<std::string>{"all"};
    for (const auto& m : s.methods)
        if (!all_methods && !find_method(m)) usage_error("unknown method '" + m + "' in --methods (known: " + method_names() + ")");
    for (std::size_t i = 0; i < s.methods.size(); ++i)
        for (std::size_t j = 0; j < i; ++j)
            if (find_method(s.methods[i]) == find_method(s.methods[j]))
                usage_error("--methods names '" + s.methods[i] + "' twice");
    if (!(s.lr > 0) || !std::isfinite(s.lr)) usage_error("--lr must be > 0");
    if (s.threads < 1) usage_error("--threads must be >= 1");
    if (s.out.empty()) usage_error("--out must not be empty");
    if (s.cache.empty()) s.cache = s.out;
    if (s.runs_csv && s.data_parallel) usage_error("--runs-csv is for one-process runs, not --data-parallel");
    if (s.state_8bit && s.data_parallel)
        usage_error("--state 8bit is for one-process runs: the sharded optimizer of --data-parallel keeps fp32 state");
#ifndef FASHION_MNIST_WITH_MPI
    if (s.data_parallel) usage_error("--data-parallel needs a build with MPI (apt-get install libopenmpi-dev, reconfigure)");
#endif
    return s;
}

// ---- randomness -------------------------------------------------------------------

//! Data subsets and batch orders come from mt19937_64, whose output the standard
//! fixes, through a hand-written Fisher–Yates (std::shuffle's algorithm is the
//! library's choice): the same flags give the same samples everywhere.
class rng {
public:
    explicit rng(std::uint64_t seed) : engine_(seed) {}
    std::size_t below(std::size_t n) {
        return static_cast<std::size_t>(static_cast<double>(engine_() >> 11) * 0x1.0p-53 * static_cast<double>(n));
    }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }

private:
    std::mt19937_64 engine_;
};

//! Seeds of the streams a fine-tuning seed draws from, apart so that no two coincide.
constexpr std::uint64_t pretrain_seed = 0;
constexpr std::uint64_t sample_seed_base = 1000, head_seed_base = 2000, mask_seed_base = 3000, order_seed_base = 4000;

// ---- data -------------------------------------------------------------------------

constexpr int classes_per_task = 5;
constexpr int source_first_class = 0, target_first_class = 5;
//! Fashion-MNIST's pixel mean and standard deviation (training set).
constexpr float pixel_mean = 0.2860f, pixel_std = 0.3530f;

struct task_data {
    torch::Tensor x; //!< float [n, 1, 28, 28], normalised
    torch::Tensor y; //!< int64 [n], the class minus the task's first class
    std::int64_t size() const { return y.size(0); }
};

//! The images `indices` of `s`, relabelled to 0..4 from `first_class`.
task_data gather(const fashion_mnist::split& s, const std::vector<std::size_t>& indices, int first_class) {
    const auto n = static_cast<std::int64_t>(indices.size());
    const auto rows = static_cast<std::int64_t>(s.rows), cols = static_cast<std::int64_t>(s.cols);
    auto bytes = torch::empty({n, 1, rows, cols}, torch::kUInt8);
    auto labels = torch::empty({n}, torch::kInt64);
    auto* out = bytes.data_ptr<std::uint8_t>();
    auto* label_out = labels.data_ptr<std::int64_t>();
    for (std::size_t i = 0; i < indices.size(); ++i) {
        std::copy_n(s.image(indices[i]), s.image_size(), out + i * s.image_size());
        label_out[i] = s.labels[indices[i]] - first_class;
    }
    return {(bytes.to(torch::kFloat32) / 255.0f - pixel_mean) / pixel_std, labels};
}

//! Indices of the images of classes [first_class, first_class + 5), in file
//! order, the first `limit` of them (0: all).
std::vector<std::size_t> task_indices(const fashion_mnist::split& s, int first_class, std::size_t limit) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < s.size() && (limit == 0 || out.size() < limit); ++i)
        if (s.labels[i] >= first_class && s.labels[i] < first_class + classes_per_task) out.push_back(i);
    return out;
}

//! K training images of every target class, a sample fixed by the seed.
std::vector<std::size_t> few_shot_indices(const fashion_mnist::split& s, int shots, std::uint64_t seed) {
    rng r(seed);
    std::vector<std::size_t> out;
    for (int c = target_first_class; c < target_first_class + classes_per_task; ++c) {
        std::vector<std::size_t> of_class;
        for (std::size_t i = 0; i < s.size(); ++i)
            if (s.labels[i] == c) of_class.push_back(i);
        if (of_class.size() < static_cast<std::size_t>(shots))
            throw std::runtime_error("class " + std::to_string(c) + " has only " + std::to_string(of_class.size()) +
                                     " training images, fewer than --K " + std::to_string(shots));
        r.shuffle(of_class);
        out.insert(out.end(), of_class.begin(), of_class.begin() + shots);
    }
    return out;
}

//! Batches of one epoch: a permutation of [0, n) from `r`, cut into `batch`-sized pieces.
std::vector<torch::Tensor> epoch_batches(std::int64_t n, std::int64_t batch, rng& r) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    r.shuffle(order);
    const auto all = torch::tensor(order, torch::kInt64);
    std::vector<torch::Tensor> out;
    for (std::int64_t b = 0; b < n; b += batch) out.push_back(all.slice(0, b, std::min(n, b + batch)));
    return out;
}

// ---- the model --------------------------------------------------------------------

//! conv-pool-conv-pool-fc body and a linear head. The body's modules are named
//! "layer*": the reference masks the parameters whose names contain "layer"
//! (BERT's encoder layers) and trains everything else (here: the head) densely.
struct cnn_impl : torch::nn::Module {
    static constexpr std::int64_t channels1 = 32, channels2 = 64, hidden = 128;
    static constexpr const char* architecture = "cnn32-64-128"; //!< part of the cache's key

    explicit cnn_impl(std::int64_t classes)
        : layer1(register_module("layer1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, channels1, 3).padding(1)))),
          layer2(register_module("layer2",
                                 torch::nn::Conv2d(torch::nn::Conv2dOptions(channels1, channels2, 3).padding(1)))),
          layer3(register_module("layer3", torch::nn::Linear(channels2 * 7 * 7, hidden))),
          head(register_module("head", torch::nn::Linear(hidden, classes))) {}

    torch::Tensor forward(torch::Tensor x) {
        x = torch::max_pool2d(torch::relu(layer1(x)), 2);
        x = torch::max_pool2d(torch::relu(layer2(x)), 2);
        x = torch::relu(layer3(x.flatten(1)));
        return head(x);
    }

    torch::nn::Conv2d layer1, layer2;
    torch::nn::Linear layer3, head;
};
TORCH_MODULE_IMPL(cnn, cnn_impl);

//! The masked group: the body, as the reference selects it.
const childtune::torch::name_predicate in_body = childtune::torch::name_contains("layer");

std::int64_t parameter_count(const cnn& m, bool body) {
    std::int64_t n = 0;
    for (const auto& p : m->named_parameters())
        if (in_body(p.key()) == body) n += p.value().numel();
    return n;
}

double accuracy(cnn& m, const task_data& d) {
    torch::NoGradGuard no_grad;
    std::int64_t right = 0;
    for (std::int64_t b = 0; b < d.size(); b += 1000) {
        const auto e = std::min(d.size(), b + 1000);
        right += (m->forward(d.x.slice(0, b, e)).argmax(1) == d.y.slice(0, b, e)).sum().item<std::int64_t>();
    }
    return static_cast<double>(right) / static_cast<double>(d.size());
}


// ---- pretraining ------------------------------------------------------------------

constexpr std::int64_t pretrain_batch = 64;
constexpr double pretrain_lr = 1e-3;

//! The cache file of the pretrained weights: every setting that changes them is in its name.
fs::path pretrain_cache(const settings& s, std::int64_t examples) {
    char name[160];
    std::snprintf(name, sizeof name, "pretrained-%s-classes0-4-n%lld-e%d-b%lld-lr%g-seed%llu-t%d.pt",
                  cnn_impl::architecture, static_cast<long long>(examples), s.pretrain_epochs,
                  static_cast<long long>(pretrain_batch), pretrain_lr, static_cast<unsigned long long>(pretrain_seed),
                  s.threads);
    return s.cache / name;
}

//! Dense AdamW on the source task, with a progress line every 100 batches.
void pretrain(cnn& m, const task_data& source, int epochs) {
    torch::optim::AdamW opt(m->parameters(), torch::optim::AdamWOptions(pretrain_lr).weight_decay(0.01));
    rng order(pretrain_seed + 1);
    const auto t0 = std::chrono::steady_clock::now();
    for (int e = 0; e < epochs; ++e) {
        const auto batches = epoch_batches(source.size(), pretrain_batch, order);
        double sum = 0;
        std::size_t since = 0;
        for (std::size_t b = 0; b < batches.size(); ++b) {
            const auto loss = torch::nn::functional::cross_entropy(m->forward(source.x.index_select(0, batches[b])),
                                                                   source.y.index_select(0, batches[b]));
            opt.zero_grad();
            loss.backward();
            opt.step();
            sum += loss.item<double>();
            ++since;
            if ((b + 1) % 100 == 0 || b + 1 == batches.size()) {
                std::printf("  pretraining epoch %d/%d, batch %zu/%zu: loss %.4f (%.0f s)\n", e + 1, epochs, b + 1,
                            batches.size(), sum / static_cast<double>(since), example_stats::seconds_since(t0));
                sum = 0;
                since = 0;
            }
        }
    }
}

// ---- fine-tuning ------------------------------------------------------------------

constexpr std::int64_t finetune_batch = 16;
constexpr double weight_decay = 0.01;

struct batch {
    torch::Tensor x, y;
};

//! The training set in fixed, consecutive batches: what the Fisher pass walks.
std::vector<batch> in_batches(const task_data& d) {
    std::vector<batch> out;
    for (std::int64_t b = 0; b < d.size(); b += finetune_batch) {
        const auto e = std::min(d.size(), b + finetune_batch);
        out.push_back({d.x.slice(0, b, e), d.y.slice(0, b, e)});
    }
    return out;
}

//! The fine-tuning start of a seed: the pretrained body and a head initialised from the seed.
cnn fine_tuning_start(const cnn& pretrained, std::uint64_t head_seed) {
    torch::manual_seed(head_seed);
    cnn m(classes_per_task);
    torch::NoGradGuard no_grad;
    const auto source = pretrained->named_parameters();
    for (auto& p : m->named_parameters())
        if (in_body(p.key())) p.value().copy_(source[p.key()]);
    return m;
}

//! Trains for `epochs` epochs; returns the mean batch loss of the last one.
template <class Optimizer>
double fine_tune(cnn& m, Optimizer& opt, const task_data& train, int epochs, std::uint64_t order_seed) {
    rng order(order_seed);
    double last = 0;
    for (int e = 0; e < epochs; ++e) {
        double sum = 0;
        const auto batches = epoch_batches(train.size(), finetune_batch, order);
        for (const auto& idx : batches) {
            const auto loss = torch::nn::functional::cross_entropy(m->forward(train.x.index_select(0, idx)),
                                                                   train.y.index_select(0, idx));
            opt.zero_grad();
            loss.backward();
            opt.step();
            sum += loss.item<double>();
        }
        last = sum / static_cast<double>(batches.size());
    }
    return last;
}

// ---- data-parallel fine-tuning (--data-parallel, under mpirun) ------------------------

#ifdef FASHION_MNIST_WITH_MPI
using rank_comm = childtune::mpi::communicator;

//! MPI for the length of the program; with --data-parallel only. A rank
//! leaving by an exception aborts the job: MPI_Finalize would wait for ranks
//! that are waiting for this one in a collective.
struct mpi_session {
    explicit mpi_session(int& argc, char**& argv) { MPI_Init(&argc, &argv); }
    ~mpi_session() {
        if (std::uncaught_exceptions() > 0) MPI_Abort(MPI_COMM_WORLD, 1);
        MPI_Finalize();
    }
    mpi_session(const mpi_session&) = delete;
    mpi_session& operator=(const mpi_session&) = delete;
};

//! This rank's contiguous part of a batch (parts differ by at most one image).
torch::Tensor my_part(const rank_comm& comm, const torch::Tensor& batch_indices) {
    const auto part = childtune::shard_of(static_cast<std::uint64_t>(batch_indices.size(0)), comm.size(), comm.rank());
    return batch_indices.slice(0, static_cast<std::int64_t>(part.begin), static_cast<std::int64_t>(part.end));
}

//! As fine_tune(), data-parallel: each rank computes the gradient of its part of
//! every batch (the loss summed over the part and divided by the whole batch's
//! size, so the ranks' sum is the batch mean), the gradients are summed over the
//! ranks in one flat buffer, and the sharded optimizer steps each rank's slice
//! and all-gathers the parameters. Every rank ends with the same model.
//! `state_bytes`, when given, receives every rank's optimizer-state bytes.
double fine_tune_data_parallel(cnn& m, const rank_comm& comm, childtune::any_mask mask, const childtune::adamw::options& o,
                               const task_data& train, int epochs, std::uint64_t order_seed,
                               std::vector<std::uint64_t>* state_bytes = nullptr) {
    std::vector<torch::Tensor> params;
    std::size_t total = 0;
    for (const auto& p : m->named_parameters()) {
        params.push_back(p.value());
        total += static_cast<std::size_t>(p.value().numel());
    }
    std::vector<float> grads(total);
    childtune::sharded_optimizer<childtune::adamw, rank_comm> opt(comm, std::move(mask));
    const auto body = opt.add_group("body", o, /*masked=*/true);
    const auto head = opt.add_group("head", o, /*masked=*/false);
    std::size_t at = 0;
    for (const auto& p : m->named_parameters()) {
        const auto n = static_cast<std::size_t>(p.value().numel());
        opt.add_parameter<float>(in_body(p.key()) ? body : head, p.key(),
                                 childtune::tensor_view<float>(p.value().data_ptr<float>(), n),
                                 childtune::tensor_view<const float>(grads.data() + at, n));
        at += n;
    }
    rng order(order_seed);
    double last = 0;
    for (int e = 0; e < epochs; ++e) {
        double sum = 0;
        const auto batches = epoch_batches(train.size(), finetune_batch, order);
        for (const auto& idx : batches) {
            const auto mine = my_part(comm, idx);
            m->zero_grad();
            double loss[1] = {0};
            if (mine.size(0) > 0) {
                const auto l = torch::nn::functional::cross_entropy(
                                   m->forward(train.x.index_select(0, mine)), train.y.index_select(0, mine),
                                   torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
                               static_cast<double>(idx.size(0));
                l.backward();
                loss[0] = l.item<double>();
            }
            float* flat = grads.data();
            for (const auto& p : params) {
                const auto n = static_cast<std::size_t>(p.numel());
                if (p.grad().defined()) std::copy_n(p.grad().contiguous().data_ptr<float>(), n, flat);
                else std::fill_n(flat, n, 0.0f);
                flat += n;
            }
            comm.all_reduce_sum(std::span<float>(grads));
            comm.all_reduce_sum(std::span<double>(loss));
            opt.step();
            sum += loss[0];
        }
        last = sum / static_cast<double>(batches.size());
    }
    if (state_bytes) *state_bytes = childtune::detail::all_gather_value(comm, opt.state_bytes());
    return last;
}

//! The Child-Tuning_D mask, data-parallel: rank r accumulates the Fisher scores
//! of the batches r, r + N, r + 2N, ... (clipped per tensor, as the reference),
//! the ranks' sums are added, and every rank selects the same global top p_D.
childtune::top_p_result fisher_mask_data_parallel(cnn& m, const rank_comm& comm, const task_data& train, double keep) {
    const auto batches = in_batches(train);
    childtune::fisher_accumulator<float> fisher({.max_grad_norm = 1.0, .num_batches = batches.size()});
    for (const auto& p : m->named_parameters())
        if (in_body(p.key())) fisher.add_tensor(p.key(), static_cast<std::size_t>(p.value().numel()));
    for (std::size_t b = comm.rank(); b < batches.size(); b += comm.size()) {
        m->zero_grad();
        torch::nn::functional::cross_entropy(m->forward(batches[b].x), batches[b].y).backward();
        for (const auto& p : m->named_parameters())
            if (in_body(p.key())) {
                const auto g = p.value().grad().contiguous();
                fisher.accumulate(p.key(), childtune::tensor_view<const float>(g.data_ptr<float>(),
                                                                               static_cast<std::size_t>(g.numel())));
            }
        fisher.end_batch();
    }
    m->zero_grad();
    return childtune::distributed_fisher_select(comm, fisher, keep).selection;
}
#endif


// ---- the methods --------------------------------------------------------------------

//! What a method's mask policy is built from: the run's p, its seed, the model at
//! the start of fine-tuning and the K-shot training set.
struct mask_inputs {
    double p;
    std::uint64_t seed;
    cnn& model;
    const task_data& train;
    bool describe; //!< print what the mask keeps (the first seed)
#ifdef FASHION_MNIST_WITH_MPI
    const rank_comm* comm = nullptr; //!< --data-parallel: the ranks build the mask together
#endif
};

//! One method of the comparison. Every method runs the same optimizer on the
//! same data, head and batch order; only the mask policy of the body differs,
//! so adding a mask policy to the comparison is one entry of methods().
struct method {
    const char* name;    //!< for --methods and the runs log
    const char* tag;     //!< also accepted by --methods; the short column title
    const char* display; //!< the report's row title
    bool in_default;     //!< run without --methods (the paper's three; --methods all: every one)
    bool uses_p;         //!< takes the run's p (--p, or its own flag)
    std::optional<double> settings::*own_p; //!< a flag of its own that overrides --p, or nullptr
    std::function<childtune::any_mask(const mask_inputs&)> mask;
};

//! Optimizer steps per fine-tuning epoch: what the gradient-driven masks'
//! windows and periods are counted in.
std::uint64_t steps_per_epoch(const task_data& train) {
    return static_cast<std::uint64_t>((train.size() + finetune_batch - 1) / finetune_batch);
}

//! Child-Tuning_D: the Fisher information of the start model (pretrained body,
//! this seed's head) on the K-shot training set, each tensor's gradient clipped
//! to norm 1 as in the reference, then the global top p of the body.
childtune::any_mask child_tuning_d_mask(const mask_inputs& in) {
    cnn& m = in.model;
#ifdef FASHION_MNIST_WITH_MPI
    if (in.comm) {
        std::printf("   seed %llu  Child-Tuning_D: Fisher information over %lld training images on %zu ranks\n",
                    static_cast<unsigned long long>(in.seed), static_cast<long long>(in.train.size()), in.comm->size());
        const auto fisher = fisher_mask_data_parallel(m, *in.comm, in.train, in.p);
        if (in.describe) std::printf("   Child-Tuning_D mask: %zu of %zu kept\n", fisher.kept, fisher.masks.total_size());
        return childtune::fixed{fisher.masks};
    }
#endif
    std::printf("   seed %llu  Child-Tuning_D: Fisher information over %lld training images\n",
                static_cast<unsigned long long>(in.seed), static_cast<long long>(in.train.size()));
    const auto fisher = childtune::torch::fisher_mask(
        *m, in_batches(in.train),
        [&](const batch& b) { return torch::nn::functional::cross_entropy(m->forward(b.x), b.y); },
        {.keep = in.p, .max_grad_norm = 1.0, .masked_if = in_body, .progress = true});
    if (in.describe) {
        std::printf("   Child-Tuning_D mask of seed %llu, kept per tensor (%zu of %zu):\n",
                    static_cast<unsigned long long>(in.seed), fisher.kept, fisher.masks.total_size());
        for (const auto& t : fisher.summary)
            std::printf("     %-14s %8zu of %8zu  %5.1f%%\n", t.name.c_str(), t.kept, t.size, 100 * t.kept_fraction());
    }
    return childtune::fixed{fisher.masks};
}

//! The methods the demo compares, in their default order. Vanilla comes first:
//! the others are reported as paired differences to it.
const std::vector<method>& methods() {
    static const std::vector<method> table = {
        {"vanilla", "vanilla", "vanilla AdamW", true, false, nullptr,
         [](const mask_inputs&) { return childtune::any_mask(childtune::dense{}); }},
        // A fresh Bernoulli(p) mask every step, kept gradients x 1/p.
        {"Child-Tuning_F", "CT_F", "Child-Tuning_F", true, true, &settings::p_f,
         [](const mask_inputs& in) { return childtune::any_mask(childtune::bernoulli{in.p, mask_seed_base + in.seed}); }},
        {"Child-Tuning_D", "CT_D", "Child-Tuning_D", true, true, &settings::p_d, child_tuning_d_mask},
        // SIFT: the top p of |gradient| per tensor, summed over the first epoch's
        // steps (dense meanwhile), then fixed.
        {"SIFT", "SIFT", "SIFT", false, true, nullptr,
         [](const mask_inputs& in) {
             return childtune::any_mask(childtune::magnitude{.p = in.p, .window = steps_per_epoch(in.train)});
         }},
        // The top p of |gradient| per tensor, fresh every step (no rescaling).
        {"Magnitude", "MAG", "Magnitude", false, true, nullptr,
         [](const mask_inputs& in) { return childtune::any_mask(childtune::magnitude{.p = in.p, .window = 0}); }},
        // DPS: the top p per tensor of the squared gradients of the last epoch,
        // reselected every epoch after a dense first epoch.
        {"DPS", "DPS", "DPS", false, true, nullptr,
         [](const mask_inputs& in) {
             const auto epoch = steps_per_epoch(in.train);
             return childtune::any_mask(childtune::refreshed_fisher{.p = in.p, .warmup = epoch, .period = epoch});
         }},
    };
    return table;
}

std::optional<std::size_t> find_method(std::string_view name) {
    for (std::size_t k = 0; k < methods().size(); ++k)
        if (name == methods()[k].name || name == methods()[k].tag) return k;
    return std::nullopt;
}

std::string method_names() {
    std::string out;
    for (const auto& m : methods()) out += (out.empty() ? "" : ", ") + std::string(m.name) + " (" + m.tag + ")";
    return out;
}

//! The p a method runs with under settings `s`.
double p_of(const method& m, const settings& s) {
    if (m.own_p && (s.*m.own_p)) return *(s.*m.own_p);
    return s.p;
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
#ifdef FASHION_MNIST_WITH_MPI
    std::optional<mpi_session> mpi;
    std::optional<rank_comm> comm;
    if (s.data_parallel) {
        mpi.emplace(argc, argv);
        comm.emplace();
        // Rank 0 reports; the others' output would repeat it.
        if (comm->rank() != 0 && !std::freopen("/dev/null", "w", stdout)) return 1;
    }
    const bool reporter = !comm || comm->rank() == 0;
#else
    const bool reporter = true;
#endif
    std::setvbuf(stdout, nullptr, _IOLBF, 0); // progress lines show up when piped, too
    const auto t_start = std::chrono::steady_clock::now();
    torch::set_num_threads(s.threads);

    fashion_mnist::split train_split, test_split;
    try {
        train_split = fashion_mnist::load(s.data, "train");
        test_split = fashion_mnist::load(s.data, "t10k");
    } catch (const fashion_mnist::missing_data& e) {
        std::fprintf(stderr,
                     "fashion_mnist_child_tuning: Fashion-MNIST not found (%s).\n"
                     "Install it with: apt-get install dataset-fashion-mnist (or pass --data DIR).\n",
                     e.what());
        return 2;
    }
    fs::create_directories(s.out);
    fs::create_directories(s.cache);

    const task_data source = gather(train_split, task_indices(train_split, source_first_class, s.pretrain_examples),
                                    source_first_class);
    // --test-examples limits both test sets (a smoke run checks the pretrained model on fewer images, too).
    const task_data source_test =
        gather(test_split, task_indices(test_split, source_first_class, s.test_examples), source_first_class);
    const task_data target_test =
        gather(test_split, task_indices(test_split, target_first_class, s.test_examples), target_first_class);

    // ---- 1. pretraining (or the cache) ----
    torch::manual_seed(pretrain_seed);
    cnn pretrained(classes_per_task);
    std::printf("Child-Tuning on Fashion-MNIST: a CNN (%lld body + %lld head parameters), %d thread%s\n",
                static_cast<long long>(parameter_count(pretrained, true)),
                static_cast<long long>(parameter_count(pretrained, false)), s.threads, s.threads == 1 ? "" : "s");
#ifdef FASHION_MNIST_WITH_MPI
    if (comm)
        std::printf("data-parallel over %zu MPI ranks: each batch split, gradients all-reduced, optimizer state "
                    "sharded (ZeRO-1)\n", comm->size());
#endif
    const auto t_pretrain = std::chrono::steady_clock::now();
    const fs::path cache = pretrain_cache(s, source.size());
    bool cached = false;
#ifdef FASHION_MNIST_WITH_MPI
    // Data-parallel: rank 0 pretrains or reads the cache; the others wait for
    // it (a one-byte broadcast) and read the cache it wrote.
    std::byte pretrained_ready{1};
    if (comm && comm->rank() != 0) comm->broadcast(std::span(&pretrained_ready, 1), 0);
#endif
    if (s.pretrain_epochs > 0 && fs::exists(cache)) {
        try {
            torch::load(pretrained, cache.string());
            cached = true;
        } catch (const std::exception& e) {
            std::printf("cannot read the cached weights %s (%s): pretraining again\n", cache.string().c_str(), e.what());
        }
    }
    if (cached) {
        std::printf("1. pretrained weights loaded from the cache %s: pretraining skipped\n", cache.string().c_str());
    } else if (s.pretrain_epochs > 0) {
        std::printf("1. pretraining on classes 0-4: %lld images, %d epoch%s, batch %lld, AdamW lr %g\n",
                    static_cast<long long>(source.size()), s.pretrain_epochs, s.pretrain_epochs == 1 ? "" : "s",
                    static_cast<long long>(pretrain_batch), pretrain_lr);
        pretrain(pretrained, source, s.pretrain_epochs);
        // Written aside and renamed: an interrupted run leaves no half-written cache.
        fs::path partial = cache;
        partial += ".partial";
        torch::save(pretrained, partial.string());
        fs::rename(partial, cache);
        std::printf("   cached in %s\n", cache.string().c_str());
    } else {
        std::printf("1. no pretraining (--pretrain-epochs 0): the body starts at random\n");
    }
#ifdef FASHION_MNIST_WITH_MPI
    if (comm && comm->rank() == 0) comm->broadcast(std::span(&pretrained_ready, 1), 0);
#endif
    const double pretrain_seconds = example_stats::seconds_since(t_pretrain);
    std::printf("   source test accuracy (classes 0-4, %lld images): %.2f%% (%s %.1f s)\n",
                static_cast<long long>(source_test.size()), 100 * accuracy(pretrained, source_test),
                cached ? "loaded in" : "pretrained in", pretrain_seconds);

    // ---- 2. fine-tuning ----
    std::vector<std::size_t> chosen; // entries of methods(), in the order of --methods
    if (s.methods.empty() || s.methods == std::vector<std::string>{"all"}) {
        for (std::size_t k = 0; k < methods().size(); ++k)
            if (!s.methods.empty() || methods()[k].in_default) chosen.push_back(k);
    } else {
        for (const auto& name : s.methods) chosen.push_back(*find_method(name));
    }
    std::string chosen_names;
    for (const auto k : chosen) chosen_names += (chosen_names.empty() ? "" : ", ") + std::string(methods()[k].name);
    std::printf("2. fine-tuning on classes 5-9: K = %d images per class, %d epochs, batch %lld, lr %g, "
                "weight decay %g, %d seed%s; test: %lld images; methods: %s\n",
                s.shots, s.epochs, static_cast<long long>(finetune_batch), s.lr, weight_decay, s.seeds,
                s.seeds == 1 ? "" : "s", static_cast<long long>(target_test.size()), chosen_names.c_str());
    std::vector<fashion_mnist::method_results> results;
    for (const auto k : chosen) {
        const method& m = methods()[k];
        char p_text[16] = "-";
        if (m.uses_p) std::snprintf(p_text, sizeof p_text, "%.2f", p_of(m, s));
        results.push_back({m.display, m.tag, p_text, {}, {}, {}, {}});
    }

    // The runs log: every finished run is appended at once, and a run it already
    // holds is read back instead of trained (a sweep resumes). Its setup is
    // everything besides the key (K, lr, epochs, method, p, seed) that changes the
    // numbers: the pretrained weights (the cache's name), the test set, the threads,
    // and the Bernoulli mask definition (a log of definition 1 runs, written before
    // definition 2 became the default, names none and is not continued by them).
    std::optional<fashion_mnist::runs_log> log;
    if (s.runs_csv) {
        std::string setup = cache.stem().string() + "-test" + std::to_string(target_test.size());
        if (childtune::bernoulli_default_version != 1)
            setup += "-bernoulli" + std::to_string(childtune::bernoulli_default_version);
        if (s.state_8bit) setup += "-state8bit";
        log.emplace(*s.runs_csv, setup);
    }

    // The reference's optimizer: legacy (HF-style) AdamW; the "layer*" body is
    // the masked group, the head the dense one. Vanilla is the same optimizer
    // with the dense mode, so only the mask differs between the methods.
    childtune::torch::ChildTuningAdamWOptions options(s.lr);
    options.weight_decay(weight_decay).flavour(childtune::adamw_flavour::legacy);
    childtune::optimizer_options core_options;
    if (s.state_8bit) {
        core_options.storage = childtune::state_storage::blockwise8;
        std::printf("   optimizer state: 8-bit blockwise (both moments as byte codes, a float scale per 256 elements)\n");
    }

    const int runs = s.seeds * static_cast<int>(chosen.size());
    const int width = static_cast<int>(std::to_string(runs).size());
    int run = 0, trained = 0;
    const auto t_finetune = std::chrono::steady_clock::now();
    for (int seed = 0; seed < s.seeds; ++seed) {
        const auto seed64 = static_cast<std::uint64_t>(seed);
        const task_data train =
            gather(train_split, few_shot_indices(train_split, s.shots, sample_seed_base + seed64), target_first_class);
        for (std::size_t j = 0; j < chosen.size(); ++j) {
            const method& meth = methods()[chosen[j]];
            auto& r = results[j];
            const double p = p_of(meth, s);
            fashion_mnist::run_row row;
            row.shots = s.shots;
            row.lr = fashion_mnist::key_number(s.lr);
            row.epochs = s.epochs;
            row.method = meth.name;
            row.p = meth.uses_p ? fashion_mnist::key_number(p) : "";
            row.seed = seed;
            ++run;
            if (const auto done = log ? log->find(row) : std::nullopt) {
                r.seeds.push_back(seed);
                r.accuracy.push_back(done->test_accuracy);
                r.train_loss.push_back(done->train_loss);
                r.seconds.push_back(done->seconds);
                std::printf("   [%*d/%d] seed %d  %-15s test accuracy %6.2f%%  train loss %.4f  (runs log)\n", width,
                            run, runs, seed, r.name.c_str(), 100 * done->test_accuracy, done->train_loss);
                continue;
            }
            const auto t0 = std::chrono::steady_clock::now();
            cnn m = fine_tuning_start(pretrained, head_seed_base + seed64);
            mask_inputs in{p, seed64, m, train, seed == 0};
#ifdef FASHION_MNIST_WITH_MPI
            in.comm = comm ? &*comm : nullptr;
#endif
            childtune::any_mask mask = meth.mask(in);
            double loss = 0;
#ifdef FASHION_MNIST_WITH_MPI
            if (comm) {
                std::vector<std::uint64_t> state;
                loss = fine_tune_data_parallel(m, *comm, std::move(mask), options.to_core(), train, s.epochs,
                                               order_seed_base + seed64, &state);
                if (seed == 0 && !meth.uses_p) {
                    // AdamW with fp32 state: 8 bytes per parameter in all, 1/N of them per rank.
                    unsigned long long total = 0;
                    std::printf("   optimizer state per rank (bytes):");
                    for (const auto b : state) {
                        std::printf(" %llu", static_cast<unsigned long long>(b));
                        total += b;
                    }
                    std::printf(" (all ranks: %llu for %lld parameters)\n", total,
                                static_cast<long long>(parameter_count(m, true) + parameter_count(m, false)));
                }
            } else
#endif
            {
                childtune::torch::ChildTuningAdamW opt(m->named_parameters(), options, std::move(mask), in_body,
                                                       core_options);
                loss = fine_tune(m, opt, train, s.epochs, order_seed_base + seed64);
                if (s.state_8bit && seed == 0 && j == 0) {
                    const auto params = parameter_count(m, true) + parameter_count(m, false);
                    const std::size_t bytes = opt.core().state_bytes();
                    std::printf("   optimizer state after seed 0's %s: %zu bytes for %lld parameters (%.2f per parameter)\n",
                                r.name.c_str(), bytes, static_cast<long long>(params),
                                static_cast<double>(bytes) / static_cast<double>(params));
                }
            }
            const double acc = accuracy(m, target_test);
            r.seeds.push_back(seed);
            r.accuracy.push_back(acc);
            r.train_loss.push_back(loss);
            r.seconds.push_back(example_stats::seconds_since(t0));
            ++trained;
            std::printf("   [%*d/%d] seed %d  %-15s test accuracy %6.2f%%  train loss %.4f  (%.1f s)\n", width, run,
                        runs, seed, r.name.c_str(), 100 * acc, loss, r.seconds.back());
            if (log) {
                row.test_accuracy = acc;
                row.train_loss = loss;
                row.seconds = r.seconds.back();
                log->append(row);
            }
        }
    }
    const double finetune_seconds = example_stats::seconds_since(t_finetune);

    // ---- 3. results ----
    std::printf("\n%s", fashion_mnist::format_table(results).c_str());
    if (!reporter) return 0; // the files are rank 0's
    const fs::path csv = s.out / "fashion_mnist_results.csv";
    fashion_mnist::write_csv(csv, results);
    std::printf("\nper-seed results: %s\n", csv.string().c_str());
    char title[160];
    std::snprintf(title, sizeof title, "Fashion-MNIST 5-9, K = %d per class, %d seeds", s.shots, s.seeds);
    std::printf("%s\n", fashion_mnist::plot(s.out / "fashion_mnist_accuracy.png", results, title).c_str());
    if (log) std::printf("runs log: %s (%d of %d runs trained now, the others read back)\n", log->path().string().c_str(),
                         trained, runs);
    std::printf("time: pretraining %.1f s%s, fine-tuning %.1f s (%.1f s per seed), total %.1f s\n", pretrain_seconds,
                cached ? " (cache)" : "", finetune_seconds, finetune_seconds / s.seeds, example_stats::seconds_since(t_start));
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "fashion_mnist_child_tuning: %s\n", e.what());
    return 1;
}

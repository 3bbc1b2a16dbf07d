//! \file
//! Low-resource transfer with Child-Tuning on an Eigen MLP.
//!
//! Child-Tuning (Xu et al., EMNLP 2021) was proposed for fine-tuning a large
//! pretrained model on a small task: only a child network of the pretrained
//! weights is updated, by masking the gradient inside the optimizer step.
//! This program reproduces that setting at toy scale, with Eigen only and a
//! hand-written forward/backward pass:
//!
//!  1. A synthetic "world": inputs x ~ N(0, I), hidden features z = tanh(A x + c)
//!     shared by every task, and tasks that label x by argmax(U z).
//!  2. Pretraining: an MLP (two ReLU layers + head) learns a source task with
//!     plenty of data.
//!  3. Fine-tuning: a related target task (its readout U_t mixes the source
//!     readout with new directions) with a few examples per class. The hidden
//!     layers start from the pretrained weights, the head is fresh.
//!  4. Three optimizers fine-tune from the same start, for several seeds:
//!     vanilla AdamW, Child-Tuning_F (fresh Bernoulli(p_F) gradient mask each
//!     step, kept gradients scaled by 1/p_F) and Child-Tuning_D (fixed mask of
//!     the top p_D of parameters by Fisher information on the target's training
//!     set). As in the reference, the hidden layers form the masked group and the
//!     new head the dense group. A model trained on the target alone, from a
//!     random start, shows what pretraining is worth.
//!
//! Output: per method, the target test accuracy (mean ± std over seeds), the
//! paired difference to vanilla AdamW (mean ± standard error; every method sees
//! the same data, head and batch order for a seed), the number of seeds on which
//! it beat vanilla, the final training loss and the time per seed. The numbers
//! are a function of the flags only: the same command prints them again, with
//! any --threads.
//!
//!     eigen_child_tuning [--seeds 10] [--shots 8] [--epochs 100] [--pF 0.3] [--pD 0.3]
//!     eigen_child_tuning --smoke        # a fraction of a second, for CI

#include "common/cli.hpp"
#include "common/stats.hpp"

#include <childtune/childtune.hpp>
#include <childtune/eigen.hpp>
#include <childtune/mask/fisher.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <numeric>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace {

using matrix = Eigen::MatrixXf;
using vector = Eigen::VectorXf;

// ---- command line ---------------------------------------------------------------

struct settings {
    int seeds = 10;
    int shots = 8;        //!< training examples per target class
    int epochs = 100;     //!< fine-tuning epochs
    double p_f = 0.3;     //!< Child-Tuning_F keep probability
    double p_d = 0.3;     //!< Child-Tuning_D kept fraction
    double lr = 1e-3;     //!< fine-tuning learning rate (all methods)
    int pretrain_examples = 20000;
    int pretrain_epochs = 15;
    int test_examples = 5000;
    std::uint64_t world_seed = 2021; //!< the synthetic world and the pretrained model
    int threads = 1;
};

constexpr const char* usage_text =
    "usage: eigen_child_tuning [options]\n"
    "  Pretrains an MLP on a synthetic source task, then fine-tunes it on a related\n"
    "  few-shot target task with vanilla AdamW, Child-Tuning_F and Child-Tuning_D,\n"
    "  and prints the target test accuracy (mean +- std over seeds).\n"
    "options (a value follows the flag or '='):\n"
    "  --seeds N        fine-tuning seeds per method (default 10)\n"
    "  --shots N        training examples per target class (default 8)\n"
    "  --epochs N       fine-tuning epochs (default 100)\n"
    "  --pF P           Child-Tuning_F keep probability, in (0, 1] (default 0.3)\n"
    "  --pD P           Child-Tuning_D kept fraction, in (0, 1] (default 0.3)\n"
    "  --lr X           fine-tuning learning rate (default 1e-3)\n"
    "  --pretrain-examples N (20000), --pretrain-epochs N (15), --test-examples N (5000),\n"
    "  --world-seed N (2021)   the synthetic world and the pretraining run\n"
    "  --threads N      threads for Eigen and the optimizer (default 1: the model is\n"
    "                   small, and spinning OpenMP threads slow down on a busy machine)\n"
    "  --smoke          a run of a fraction of a second for CI (2 seeds, small data);\n"
    "                   flags after it override its values\n"
    "  --help           this text\n";

settings parse(int argc, char** argv) {
    settings s;
    example_cli::arguments args(argc, argv, "eigen_child_tuning", usage_text);
    while (args.next()) {
        if (args.is("--smoke")) {
            s.seeds = 2;
            s.epochs = 20;
            s.pretrain_examples = 3000;
            s.pretrain_epochs = 2;
            s.test_examples = 1000;
        } else if (args.is("--seeds")) s.seeds = args.number<int>();
        else if (args.is("--shots")) s.shots = args.number<int>();
        else if (args.is("--epochs")) s.epochs = args.number<int>();
        else if (args.is("--pF")) s.p_f = args.number<double>();
        else if (args.is("--pD")) s.p_d = args.number<double>();
        else if (args.is("--lr")) s.lr = args.number<double>();
        else if (args.is("--pretrain-examples")) s.pretrain_examples = args.number<int>();
        else if (args.is("--pretrain-epochs")) s.pretrain_epochs = args.number<int>();
        else if (args.is("--test-examples")) s.test_examples = args.number<int>();
        else if (args.is("--world-seed")) s.world_seed = args.number<std::uint64_t>();
        else if (args.is("--threads")) s.threads = args.number<int>();
        else args.unknown();
    }
    const auto usage_error = [&](const std::string& message) { args.fail(message); };
    if (s.seeds < 1) usage_error("--seeds must be >= 1");
    if (s.shots < 1) usage_error("--shots must be >= 1");
    if (s.epochs < 1 || s.pretrain_epochs < 0) usage_error("--epochs must be >= 1, --pretrain-epochs >= 0");
    if (!(s.p_f > 0 && s.p_f <= 1) || !(s.p_d > 0 && s.p_d <= 1)) usage_error("--pF and --pD must be in (0, 1]");
    if (!(s.lr > 0) || !std::isfinite(s.lr)) usage_error("--lr must be > 0");
    if (s.pretrain_examples < 1 || s.test_examples < 1) usage_error("example counts must be >= 1");
    if (s.threads < 1) usage_error("--threads must be >= 1");
    return s;
}

// ---- randomness -------------------------------------------------------------------

//! std::normal_distribution is implementation-defined; Box–Muller on mt19937_64
//! (whose output the standard fixes) keeps the numbers the same across standard
//! libraries.
class rng {
public:
    explicit rng(std::uint64_t seed) : engine_(seed) {}
    double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
    float normal() {
        if (spare_) {
            const double s = *spare_;
            spare_.reset();
            return static_cast<float>(s);
        }
        const double u1 = 1.0 - uniform(), u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
        spare_ = r * std::sin(t);
        return static_cast<float>(r * std::cos(t));
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(uniform() * static_cast<double>(n)); }
    matrix normal_matrix(Eigen::Index rows, Eigen::Index cols, float scale) {
        matrix m(rows, cols);
        for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = scale * normal();
        return m;
    }
    template <class T>
    void shuffle(std::vector<T>& v) {
        for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }

private:
    std::mt19937_64 engine_;
    std::optional<double> spare_;
};

// ---- the synthetic world ----------------------------------------------------------

constexpr Eigen::Index input_dim = 32, latent_dim = 24, hidden_dim = 128;
constexpr Eigen::Index source_classes = 8, target_classes = 5;

//! Tasks share the hidden features z = tanh(A x + c) and differ in the readout U.
struct world {
    matrix a;
    vector c;
    matrix source_readout, target_readout;

    explicit world(std::uint64_t seed) {
        rng r(seed);
        a = r.normal_matrix(latent_dim, input_dim, 1.0f / std::sqrt(float(input_dim)));
        c = r.normal_matrix(latent_dim, 1, 0.5f);
        source_readout = r.normal_matrix(source_classes, latent_dim, 1.0f);
        // Related, not identical: each target class mixes source classes and new directions.
        const matrix mix = r.normal_matrix(target_classes, source_classes, 1.0f / std::sqrt(float(source_classes)));
        target_readout = 0.8f * mix * source_readout + 0.6f * r.normal_matrix(target_classes, latent_dim, 1.0f);
    }
    int label(const matrix& readout, const Eigen::Ref<const vector>& x) const {
        const vector z = (a * x + c).array().tanh().matrix();
        Eigen::Index k = 0;
        (readout * z).maxCoeff(&k);
        return static_cast<int>(k);
    }
};

struct dataset {
    matrix x; //!< one example per column
    std::vector<int> y;
    std::size_t size() const { return y.size(); }
};

dataset sample(const world& w, const matrix& readout, int n, rng& r) {
    dataset d{r.normal_matrix(input_dim, n, 1.0f), std::vector<int>(static_cast<std::size_t>(n))};
    for (int i = 0; i < n; ++i) d.y[static_cast<std::size_t>(i)] = w.label(readout, d.x.col(i));
    return d;
}

//! `shots` examples of every class, drawn from the natural input distribution.
dataset sample_few_shot(const world& w, const matrix& readout, int shots, rng& r) {
    const auto classes = static_cast<std::size_t>(readout.rows());
    std::vector<int> have(classes, 0);
    dataset d{matrix(input_dim, static_cast<Eigen::Index>(classes) * shots), {}};
    for (long tries = 0; d.size() < classes * static_cast<std::size_t>(shots); ++tries) {
        if (tries > 10'000'000) throw std::runtime_error("a target class is too rare to sample");
        const vector x = r.normal_matrix(input_dim, 1, 1.0f);
        const int k = w.label(readout, x);
        if (have[static_cast<std::size_t>(k)] == shots) continue;
        ++have[static_cast<std::size_t>(k)];
        d.x.col(static_cast<Eigen::Index>(d.size())) = x;
        d.y.push_back(k);
    }
    return d;
}

// ---- the model --------------------------------------------------------------------

//! A two-hidden-layer ReLU MLP. Parameters and gradients are Eigen objects that
//! the optimizer views in place: they are assigned to (same size, same buffer),
//! never resized or moved, while an optimizer holds them.
struct mlp {
    matrix w1, w2, w3;
    vector b1, b2, b3;
};

mlp init_mlp(Eigen::Index classes, rng& r) {
    // He initialisation for the ReLU layers, a small head.
    return {r.normal_matrix(hidden_dim, input_dim, std::sqrt(2.0f / float(input_dim))),
            r.normal_matrix(hidden_dim, hidden_dim, std::sqrt(2.0f / float(hidden_dim))),
            r.normal_matrix(classes, hidden_dim, 1.0f / std::sqrt(float(hidden_dim))),
            vector::Zero(hidden_dim), vector::Zero(hidden_dim), vector::Zero(classes)};
}

mlp zeros_like(const mlp& m) {
    return {matrix::Zero(m.w1.rows(), m.w1.cols()), matrix::Zero(m.w2.rows(), m.w2.cols()),
            matrix::Zero(m.w3.rows(), m.w3.cols()), vector::Zero(m.b1.size()),
            vector::Zero(m.b2.size()), vector::Zero(m.b3.size())};
}

matrix logits(const mlp& m, const matrix& x) {
    const matrix h1 = ((m.w1 * x).colwise() + m.b1).cwiseMax(0.0f);
    const matrix h2 = ((m.w2 * h1).colwise() + m.b2).cwiseMax(0.0f);
    return (m.w3 * h2).colwise() + m.b3;
}

//! Mean softmax cross-entropy of the batch; writes d(loss)/d(parameter) into g.
float forward_backward(const mlp& m, const matrix& x, const std::vector<int>& y, mlp& g) {
    const auto n = x.cols();
    const matrix z1 = (m.w1 * x).colwise() + m.b1;
    const matrix h1 = z1.cwiseMax(0.0f);
    const matrix z2 = (m.w2 * h1).colwise() + m.b2;
    const matrix h2 = z2.cwiseMax(0.0f);
    matrix p = (m.w3 * h2).colwise() + m.b3;
    float loss = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
        auto col = p.col(j);
        col.array() -= col.maxCoeff();
        col = col.array().exp().matrix();
        col /= col.sum();
        loss -= std::log(std::max(col(y[static_cast<std::size_t>(j)]), 1e-30f));
        col(y[static_cast<std::size_t>(j)]) -= 1.0f;
    }
    const float inv_n = 1.0f / static_cast<float>(n);
    p *= inv_n; // d loss / d logits
    g.w3.noalias() = p * h2.transpose();
    g.b3 = p.rowwise().sum();
    const matrix d2 = (m.w3.transpose() * p).cwiseProduct((z2.array() > 0.0f).cast<float>().matrix());
    g.w2.noalias() = d2 * h1.transpose();
    g.b2 = d2.rowwise().sum();
    const matrix d1 = (m.w2.transpose() * d2).cwiseProduct((z1.array() > 0.0f).cast<float>().matrix());
    g.w1.noalias() = d1 * x.transpose();
    g.b1 = d1.rowwise().sum();
    return loss * inv_n;
}

double accuracy(const mlp& m, const dataset& d) {
    const matrix out = logits(m, d.x);
    std::size_t right = 0;
    for (std::size_t j = 0; j < d.size(); ++j) {
        Eigen::Index k = 0;
        out.col(static_cast<Eigen::Index>(j)).maxCoeff(&k);
        right += static_cast<int>(k) == d.y[j];
    }
    return static_cast<double>(right) / static_cast<double>(d.size());
}

//! The batches of one epoch: a fresh permutation cut into pieces of `batch`.
std::vector<std::vector<std::size_t>> batches(std::size_t n, std::size_t batch, rng& r) {
    std::vector<std::size_t> order(n);
    std::iota(order.begin(), order.end(), std::size_t{0});
    r.shuffle(order);
    std::vector<std::vector<std::size_t>> out;
    for (std::size_t b = 0; b < n; b += batch)
        out.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(b),
                         order.begin() + static_cast<std::ptrdiff_t>(std::min(n, b + batch)));
    return out;
}

void gather(const dataset& d, const std::vector<std::size_t>& idx, matrix& x, std::vector<int>& y) {
    x.resize(d.x.rows(), static_cast<Eigen::Index>(idx.size()));
    y.resize(idx.size());
    for (std::size_t j = 0; j < idx.size(); ++j) {
        x.col(static_cast<Eigen::Index>(j)) = d.x.col(static_cast<Eigen::Index>(idx[j]));
        y[j] = d.y[idx[j]];
    }
}

//! Hidden layers: the child network Child-Tuning masks (the reference masks the
//! encoder layers). The head: trained densely.
constexpr const char* hidden_names[] = {"hidden.0.weight", "hidden.0.bias", "hidden.1.weight", "hidden.1.bias"};

template <class F>
void for_each_hidden(mlp& m, mlp& g, F f) {
    f(hidden_names[0], m.w1, g.w1);
    f(hidden_names[1], m.b1, g.b1);
    f(hidden_names[2], m.w2, g.w2);
    f(hidden_names[3], m.b2, g.b2);
}

//! Registers the model with the optimizer in the reference's two groups.
void register_model(childtune::optimizer<childtune::adamw>& opt, const childtune::adamw::options& o, mlp& m, mlp& g) {
    const auto hidden = opt.add_group("hidden", o, /*masked=*/true);
    const auto head = opt.add_group("head", o, /*masked=*/false);
    for_each_hidden(m, g, [&](const char* name, auto& p, auto& grad) {
        childtune::eigen::add_parameter(opt, hidden, name, p, grad);
    });
    childtune::eigen::add_parameter(opt, head, "head.weight", m.w3, g.w3);
    childtune::eigen::add_parameter(opt, head, "head.bias", m.b3, g.b3);
}

//! Trains for `epochs` epochs; returns the mean batch loss of the last one.
float train(childtune::optimizer<childtune::adamw>& opt, mlp& m, mlp& g, const dataset& d, int epochs,
            std::size_t batch, const childtune::openmp_backend& exec, rng& r) {
    matrix x;
    std::vector<int> y;
    float last = 0;
    for (int e = 0; e < epochs; ++e) {
        float sum = 0;
        const auto epoch = batches(d.size(), batch, r);
        for (const auto& idx : epoch) {
            gather(d, idx, x, y);
            sum += forward_backward(m, x, y, g);
            opt.step(exec);
        }
        last = sum / static_cast<float>(epoch.size());
    }
    return last;
}

//! The Child-Tuning_D mask: Fisher information of the hidden parameters on the
//! target's training set, at the start of fine-tuning (pretrained hidden layers,
//! fresh head), accumulated as the reference does (per-tensor gradient clipping
//! to 1, g^2 / number of batches), then the global top p_D.
childtune::mask_set fisher_mask(const mlp& start, const dataset& d, std::size_t batch, double p_d) {
    mlp m = start, g = zeros_like(start);
    const std::size_t n_batches = (d.size() + batch - 1) / batch;
    childtune::fisher_accumulator<float> fisher({/*max_grad_norm=*/1.0, /*num_batches=*/n_batches});
    for_each_hidden(m, g, [&](const char* name, auto& p, auto&) { fisher.add_tensor(name, static_cast<std::size_t>(p.size())); });
    matrix x;
    std::vector<int> y;
    std::vector<std::size_t> idx;
    for (std::size_t b = 0; b < d.size(); b += batch) {
        idx.resize(std::min(d.size(), b + batch) - b);
        std::iota(idx.begin(), idx.end(), b);
        gather(d, idx, x, y);
        forward_backward(m, x, y, g);
        for_each_hidden(m, g, [&](const char* name, auto&, auto& grad) {
            fisher.accumulate(name, childtune::eigen::const_view(grad, name));
        });
        fisher.end_batch();
    }
    return fisher.select(p_d).masks;
}

} // namespace

int main(int argc, char** argv) try {
    const settings s = parse(argc, argv);
    const auto t_start = std::chrono::steady_clock::now();
    Eigen::setNbThreads(s.threads);
    const childtune::openmp_backend exec{s.threads};

    // Pretraining: the source task with plenty of data, dense AdamW.
    const world w(s.world_seed);
    rng world_rng(s.world_seed + 1);
    const dataset source = sample(w, w.source_readout, s.pretrain_examples, world_rng);
    const dataset source_test = sample(w, w.source_readout, s.test_examples, world_rng);
    const dataset target_test = sample(w, w.target_readout, s.test_examples, world_rng);
    mlp pretrained = init_mlp(source_classes, world_rng);
    {
        mlp g = zeros_like(pretrained);
        childtune::adamw::options o;
        o.lr = 2e-3;
        o.flavour = childtune::adamw_flavour::legacy;
        childtune::optimizer<childtune::adamw> opt; // dense mask: plain AdamW
        register_model(opt, o, pretrained, g);
        train(opt, pretrained, g, source, s.pretrain_epochs, 64, exec, world_rng);
    }
    const double t_pretrain = example_stats::seconds_since(t_start);

    std::printf("Child-Tuning on an Eigen MLP %ld-%ld-%ld (%ld hidden + %ld head parameters)\n", long(input_dim),
                long(hidden_dim), long(hidden_dim), long(hidden_dim * (input_dim + hidden_dim + 2)),
                long(target_classes * (hidden_dim + 1)));
    std::printf("pretrained on %d source examples (%ld classes): source test accuracy %.2f%% (%.2f s)\n",
                s.pretrain_examples, long(source_classes), 100 * accuracy(pretrained, source_test), t_pretrain);
    std::printf("fine-tuning on %d shots x %ld target classes, %d epochs, lr %g, %d seeds; %d test examples\n",
                s.shots, long(target_classes), s.epochs, s.lr, s.seeds, s.test_examples);

    // Fine-tuning: the same start for every method; seeds vary the few-shot
    // sample, the fresh head, the batch order and the Bernoulli masks.
    enum method { vanilla, child_f, child_d, scratch, method_count };
    const char* method_names[method_count] = {"vanilla AdamW", "Child-Tuning_F", "Child-Tuning_D", "from scratch"};
    std::vector<double> acc[method_count], loss[method_count];
    double train_seconds[method_count] = {};
    double fisher_seconds = 0;
    std::string mask_report;

    childtune::adamw::options o;
    o.lr = s.lr;
    o.weight_decay = 0.01;
    o.flavour = childtune::adamw_flavour::legacy; // the optimizer the published Child-Tuning code builds on
    const std::size_t batch = 8;

    for (int seed = 0; seed < s.seeds; ++seed) {
        const auto seed64 = static_cast<std::uint64_t>(seed);
        rng data_rng(1000 + seed64);
        const dataset train_set = sample_few_shot(w, w.target_readout, s.shots, data_rng);
        mlp start = pretrained;
        {
            rng head_rng(2000 + seed64);
            const mlp fresh = init_mlp(target_classes, head_rng);
            start.w3 = fresh.w3;
            start.b3 = fresh.b3;
        }

        const auto t_fisher = std::chrono::steady_clock::now();
        const childtune::mask_set masks = fisher_mask(start, train_set, batch, s.p_d);
        fisher_seconds += example_stats::seconds_since(t_fisher);
        if (seed == 0)
            for (const auto& t : masks.summary())
                mask_report += "  " + t.name + " " + std::to_string(std::lround(100 * t.kept_fraction())) + "%";

        for (int k = 0; k < method_count; ++k) {
            const auto t0 = std::chrono::steady_clock::now();
            mlp m = start;
            if (k == scratch) {
                rng init_rng(5000 + seed64);
                m = init_mlp(target_classes, init_rng);
            }
            mlp g = zeros_like(m);
            childtune::mask_mode mode = childtune::dense{};
            if (k == child_f) mode = childtune::bernoulli{s.p_f, 3000 + seed64};
            if (k == child_d) mode = childtune::fixed{masks};
            childtune::optimizer<childtune::adamw> opt(mode);
            register_model(opt, o, m, g);
            rng order_rng(4000 + seed64);
            loss[k].push_back(train(opt, m, g, train_set, s.epochs, batch, exec, order_rng));
            acc[k].push_back(accuracy(m, target_test));
            train_seconds[k] += example_stats::seconds_since(t0);
        }
    }

    std::printf("Child-Tuning_D mask of seed 0, kept per tensor:%s\n\n", mask_report.c_str());
    std::printf("%-15s %-5s %-20s %-22s %-6s %-10s %s\n", "method", "p", "test accuracy (%)", "vs vanilla (paired)",
                "better", "train loss", "time/seed");
    for (int k = 0; k < method_count; ++k) {
        const example_stats::mean_std a = example_stats::summarize(acc[k]);
        const example_stats::mean_std l = example_stats::summarize(loss[k]);
        char p[16] = "-", delta[64] = "", better[48] = "";
        if (k == child_f) std::snprintf(p, sizeof p, "%.2f", s.p_f);
        if (k == child_d) std::snprintf(p, sizeof p, "%.2f", s.p_d);
        if (k != vanilla) {
            const auto d = example_stats::paired_differences(acc[k], acc[vanilla]);
            const example_stats::mean_std ds = example_stats::summarize(d);
            // standard error of the mean paired difference
            std::snprintf(delta, sizeof delta, "%+6.2f +- %.2f", 100 * ds.mean,
                          100 * ds.std / std::sqrt(static_cast<double>(d.size())));
            std::snprintf(better, sizeof better, "%ld/%d",
                          static_cast<long>(std::count_if(d.begin(), d.end(), [](double x) { return x > 0; })),
                          s.seeds);
        }
        std::printf("%-15s %-5s %6.2f +- %-10.2f %-22s %-6s %-10.4f %.3f s\n", method_names[k], p, 100 * a.mean,
                    100 * a.std, delta, better, l.mean, train_seconds[k] / s.seeds);
    }
    std::printf("\n+- after an accuracy: std over seeds; after a paired difference: its standard error.\n");
    std::printf("Fisher scores + top-p selection: %.4f s per seed. Total %.2f s (%d thread%s).\n",
                fisher_seconds / s.seeds, example_stats::seconds_since(t_start), s.threads, s.threads == 1 ? "" : "s");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "eigen_child_tuning: %s\n", e.what());
    return 1;
}

#pragma once
// Naive, element-by-element transcriptions of the published update rules, used
// as the independent reference of the update tests. They follow the Python
// sources line by line (torch.optim.AdamW/Adam/SGD of LibTorch 1.13 and the
// ChildTuningAdamW of the Child-Tuning repository), keep every quantity in the
// state type S, and take the keep decisions as plain booleans.

#include <cmath>
#include <cstddef>
#include <vector>

namespace reference {

struct masking {
    bool mask_update = false;   // false: mask the gradient (the reference)
    bool decay_masked = true;   // decay entries whose mask is 0
};

// ChildTuningAdamW.step() of the Child-Tuning repository (HF AdamW, correct_bias).
template <class S>
struct legacy_adamw {
    double lr, beta1, beta2, eps, weight_decay;
    std::vector<S> m{}, v{};
    long step = 0;

    legacy_adamw(double lr_, double beta1_, double beta2_, double eps_, double weight_decay_)
        : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {}

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p, masking mk) {
        if (m.empty()) m.assign(p.size(), S(0)), v.assign(p.size(), S(0));
        ++step;
        const double bc1 = 1.0 - std::pow(beta1, double(step));
        const double bc2 = 1.0 - std::pow(beta2, double(step));
        const S step_size = S(lr * std::sqrt(bc2) / bc1);
        for (std::size_t i = 0; i < p.size(); ++i) {
            S grad = g[i];
            if (!mk.mask_update) grad = keep[i] ? grad / S(keep_p) : S(0); // grad *= mask; grad /= p
            m[i] = m[i] * S(beta1) + S(1.0 - beta1) * grad;
            v[i] = v[i] * S(beta2) + S(1.0 - beta2) * grad * grad;
            const S denom = std::sqrt(v[i]) + S(eps);
            S delta = -step_size * m[i] / denom;
            if (mk.mask_update) delta = keep[i] ? delta / S(keep_p) : S(0);
            if (!mk.mask_update || keep[i]) p[i] = p[i] + delta;
            if (weight_decay > 0.0 && (mk.decay_masked || keep[i])) p[i] = p[i] + S(-lr * weight_decay) * p[i];
        }
    }
};

// torch.optim.AdamW (decoupled decay first, bias correction inside the denominator).
template <class S>
struct torch_adamw {
    double lr, beta1, beta2, eps, weight_decay;
    std::vector<S> m{}, v{};
    long step = 0;

    torch_adamw(double lr_, double beta1_, double beta2_, double eps_, double weight_decay_)
        : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {}

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p, masking mk) {
        if (m.empty()) m.assign(p.size(), S(0)), v.assign(p.size(), S(0));
        ++step;
        const double bc1 = 1.0 - std::pow(beta1, double(step));
        const double bc2 = 1.0 - std::pow(beta2, double(step));
        for (std::size_t i = 0; i < p.size(); ++i) {
            if (weight_decay != 0.0 && (mk.decay_masked || keep[i])) p[i] = p[i] * S(1.0 - lr * weight_decay);
            S grad = g[i];
            if (!mk.mask_update) grad = keep[i] ? grad / S(keep_p) : S(0);
            m[i] = m[i] * S(beta1) + S(1.0 - beta1) * grad;
            v[i] = v[i] * S(beta2) + S(1.0 - beta2) * grad * grad;
            const S denom = std::sqrt(v[i]) / S(std::sqrt(bc2)) + S(eps);
            S delta = S(-lr / bc1) * m[i] / denom;
            if (mk.mask_update) delta = keep[i] ? delta / S(keep_p) : S(0);
            p[i] = p[i] + delta;
        }
    }
};

// torch.optim.Adam with L2 weight decay added to the (masked) gradient.
template <class S>
struct torch_adam {
    double lr, beta1, beta2, eps, weight_decay;
    std::vector<S> m{}, v{};
    long step = 0;

    torch_adam(double lr_, double beta1_, double beta2_, double eps_, double weight_decay_)
        : lr(lr_), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {}

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p, masking mk) {
        if (m.empty()) m.assign(p.size(), S(0)), v.assign(p.size(), S(0));
        ++step;
        const double bc1 = 1.0 - std::pow(beta1, double(step));
        const double bc2 = 1.0 - std::pow(beta2, double(step));
        for (std::size_t i = 0; i < p.size(); ++i) {
            S grad = g[i];
            if (!mk.mask_update) grad = keep[i] ? grad / S(keep_p) : S(0);
            if (weight_decay != 0.0 && (mk.decay_masked || keep[i])) grad = grad + S(weight_decay) * p[i];
            m[i] = m[i] * S(beta1) + S(1.0 - beta1) * grad;
            v[i] = v[i] * S(beta2) + S(1.0 - beta2) * grad * grad;
            const S denom = std::sqrt(v[i]) / S(std::sqrt(bc2)) + S(eps);
            S delta = S(-lr / bc1) * m[i] / denom;
            if (mk.mask_update) delta = keep[i] ? delta / S(keep_p) : S(0);
            p[i] = p[i] + delta;
        }
    }
};

// torch.optim.SGD: L2 decay, momentum buffer cloned on its first use, Nesterov.
template <class S>
struct torch_sgd {
    double lr, momentum, dampening, weight_decay;
    bool nesterov;
    std::vector<S> buf{};

    torch_sgd(double lr_, double momentum_, double dampening_, double weight_decay_, bool nesterov_)
        : lr(lr_), momentum(momentum_), dampening(dampening_), weight_decay(weight_decay_), nesterov(nesterov_) {}

    void apply(std::vector<S>& p, const std::vector<S>& g, const std::vector<bool>& keep, double keep_p, masking mk) {
        const bool first = buf.empty();
        if (momentum != 0.0 && first) buf.assign(p.size(), S(0));
        for (std::size_t i = 0; i < p.size(); ++i) {
            S d = g[i];
            if (!mk.mask_update) d = keep[i] ? d / S(keep_p) : S(0);
            if (weight_decay != 0.0 && (mk.decay_masked || keep[i])) d = d + S(weight_decay) * p[i];
            if (momentum != 0.0) {
                buf[i] = first ? d : buf[i] * S(momentum) + S(1.0 - dampening) * d;
                d = nesterov ? d + S(momentum) * buf[i] : buf[i];
            }
            S delta = S(-lr) * d;
            if (mk.mask_update) delta = keep[i] ? delta / S(keep_p) : S(0);
            p[i] = p[i] + delta;
        }
    }
};

} // namespace reference

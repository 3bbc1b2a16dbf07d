// Harness of README.md's Child-Tuning_F fragment: the buffers, data and
// forward_backward() it assumes; runs three steps and saves the state.
#include <vector>

int main() {
    std::vector<float> w0(64, 0.5f), grad_w0(64), wc(10, 0.1f), grad_wc(10);
    const std::vector<int> data = {1, 2, 3};
    const auto forward_backward = [&](int batch) {
        for (std::size_t i = 0; i < w0.size(); ++i) grad_w0[i] = w0[i] * static_cast<float>(batch);
        for (std::size_t i = 0; i < wc.size(); ++i) grad_wc[i] = 1.0f - wc[i];
    };
// FRAGMENT
    return opt.step_count() == 3 ? 0 : 1;
}

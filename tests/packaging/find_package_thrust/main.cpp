// One Child-Tuning_F AdamW step and one Fisher selection through the installed
// Thrust adapter, on the OpenMP system.
#include <childtune/mask/bernoulli.hpp>
#include <childtune/thrust.hpp>
#include <childtune/update/adamw.hpp>

#include <thrust/device_vector.h>
#include <thrust/execution_policy.h>

#include <cstdio>
#include <vector>

int main() {
    ::thrust::device_vector<float> w(1000, 1.0f), g(1000, 0.5f), m(1000, 0.0f), v(1000, 0.0f);
    const childtune::bernoulli ct_f{0.3, 42};
    const auto t = childtune::thrust::make_tensor_step("w", w, g, m, v, ct_f.view(childtune::stable_tensor_key("w"), 0),
                                                       1, true);
    childtune::thrust::step<childtune::adamw>(::thrust::device, childtune::adamw::options{}, {}, std::vector{t});

    childtune::thrust::fisher_accumulator<float> fisher({.num_batches = 1});
    fisher.add_tensor("w", w.size());
    fisher.accumulate(::thrust::device, "w", ::thrust::raw_pointer_cast(w.data()), w.size());
    fisher.end_batch();
    const auto mask = fisher.select(::thrust::device, 0.5);
    std::printf("kept %llu of %zu\n", static_cast<unsigned long long>(mask.kept), w.size());
    return mask.kept > 0 ? 0 : 1;
}

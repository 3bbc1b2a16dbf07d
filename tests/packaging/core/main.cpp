// The smallest childtune consumer: one Child-Tuning_F AdamW step on a plain
// buffer, through the core alone (no adapter). Exits 0 only if the step changed
// the parameter and, where the build says which version it expects
// (CHILDTUNE_EXPECT_VERSION, e.g. from pkg-config --modversion), the headers are
// that version.
#include <childtune/mask/bernoulli.hpp>
#include <childtune/optimizer.hpp>
#include <childtune/update/adamw.hpp>

#include <cstdio>
#include <cstring>
#include <vector>

int main() {
    char version[32];
    std::snprintf(version, sizeof version, "%d.%d.%d", CHILDTUNE_VERSION_MAJOR, CHILDTUNE_VERSION_MINOR,
                  CHILDTUNE_VERSION_PATCH);
#ifdef CHILDTUNE_EXPECT_VERSION
    if (std::strcmp(version, CHILDTUNE_EXPECT_VERSION) != 0) {
        std::printf("the headers are childtune %s, the package says %s\n", version, CHILDTUNE_EXPECT_VERSION);
        return 2;
    }
#endif

    std::vector<float> w(64, 1.0f), g(64, 0.5f);
    childtune::adamw::options options;
    options.weight_decay = 0; // any change must come from the masked gradient
    childtune::optimizer<childtune::adamw> opt(childtune::bernoulli{0.5, 1});
    opt.add_parameter(opt.add_group("encoder", options), "w", w, g);
    opt.step();

    int changed = 0;
    for (const float x : w) changed += x != 1.0f;
    std::printf("childtune %s: %d of %zu elements changed\n", version, changed, w.size());
    return changed > 0 ? 0 : 1;
}

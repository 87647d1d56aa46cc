// C++17 caller of libeplb through the raw C header (see wrapper_example.cpp for include/eplb.hpp):
// plans a small workload with the refined and the DeepSeek algorithm, checks every invariant of the
// plans, shows an error path and prints the plan. Exits 0 when every check passes, 1 otherwise.
//
// Build (shared):  c++ -std=c++17 -Iinclude examples/cpp/example.cpp -Ltarget/release -leplb
// Build (static):  c++ -std=c++17 -Iinclude examples/cpp/example.cpp target/release/libeplb.a
//                     -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
// Run by tests/c_callers.rs (shared, static, sanitizers, valgrind).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "eplb.h"

namespace {

constexpr std::size_t kLayers = 2, kExperts = 16, kReplicas = 24, kGroups = 4, kNodes = 2,
                      kGpus = 4, kWidth = kReplicas - kExperts + 1;

int failures = 0;

void check(bool ok, const std::string &what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
        ++failures;
    }
}

std::string last_error() {
    // Ask for the length (without the NUL), then copy into a buffer one byte larger.
    std::vector<char> buf(eplb_last_error_message(nullptr, 0) + 1);
    eplb_last_error_message(buf.data(), buf.size());
    return std::string(buf.data());
}

struct Plan {
    std::vector<std::int64_t> phy2log = std::vector<std::int64_t>(kLayers * kReplicas);
    std::vector<std::int64_t> logcnt = std::vector<std::int64_t>(kLayers * kExperts);
    std::vector<std::int64_t> log2phy = std::vector<std::int64_t>(kLayers * kExperts * kWidth);
};

void check_plan(const char *name, const Plan &p) {
    const std::string n(name);
    const std::size_t per_gpu = kReplicas / kGpus;
    for (std::size_t l = 0; l < kLayers; ++l) {
        const std::int64_t *p2l = &p.phy2log[l * kReplicas];
        const std::int64_t *cnt = &p.logcnt[l * kExperts];
        const std::int64_t *l2p = &p.log2phy[l * kExperts * kWidth];
        const std::string at = n + " layer " + std::to_string(l);
        std::int64_t sum = 0;
        std::vector<std::int64_t> seen(kExperts, 0);
        std::vector<std::size_t> on_gpu(kGpus, 0);
        for (std::size_t e = 0; e < kExperts; ++e) {
            check(cnt[e] >= 1, at + ": expert without a replica");
            check(static_cast<std::size_t>(cnt[e]) <= kWidth, at + ": count above width");
            sum += cnt[e];
        }
        check(sum == static_cast<std::int64_t>(kReplicas), at + ": logcnt does not sum to R");
        for (std::size_t s = 0; s < kReplicas; ++s) {
            const std::int64_t x = p2l[s];
            const bool valid = x >= 0 && x < static_cast<std::int64_t>(kExperts);
            check(valid, at + ": phy2log out of range");
            if (valid) ++seen[static_cast<std::size_t>(x)];
            ++on_gpu[s / per_gpu];
        }
        for (std::size_t e = 0; e < kExperts; ++e) {
            const std::string ex = at + " expert " + std::to_string(e);
            check(seen[e] == cnt[e], ex + ": phy2log disagrees with logcnt");
            for (std::size_t k = 0; k < kWidth; ++k) {
                const std::int64_t slot = l2p[e * kWidth + k];
                if (static_cast<std::int64_t>(k) < cnt[e]) {
                    const bool valid = slot >= 0 && slot < static_cast<std::int64_t>(kReplicas);
                    check(valid, ex + ": log2phy slot out of range");
                    if (valid) {
                        check(p2l[slot] == static_cast<std::int64_t>(e),
                              ex + ": log2phy disagrees with phy2log");
                    }
                    if (k > 0) check(slot > l2p[e * kWidth + k - 1], ex + ": not ascending");
                } else {
                    check(slot == -1, ex + ": log2phy not padded with -1");
                }
            }
        }
        for (std::size_t g = 0; g < kGpus; ++g) {
            check(on_gpu[g] == per_gpu, at + ": GPU slot count");
        }
    }
}

void print_plan(const char *name, const Plan &p) {
    std::printf("%s plan\n", name);
    for (std::size_t l = 0; l < kLayers; ++l) {
        std::printf("  layer %zu phy2log:", l);
        for (std::size_t s = 0; s < kReplicas; ++s) {
            std::printf("%s%lld", s % (kReplicas / kGpus) == 0 ? " | " : " ",
                        static_cast<long long>(p.phy2log[l * kReplicas + s]));
        }
        std::printf(" |\n  layer %zu logcnt: ", l);
        for (std::size_t e = 0; e < kExperts; ++e) {
            std::printf(" %lld", static_cast<long long>(p.logcnt[l * kExperts + e]));
        }
        std::printf("\n");
    }
}

}  // namespace

int main() {
    std::printf("eplb %s\n", eplb_version());
    std::vector<float> weight(kLayers * kExperts);
    std::vector<std::int64_t> load(kLayers * kExperts);
    for (std::size_t i = 0; i < weight.size(); ++i) {
        load[i] = static_cast<std::int64_t>(10 + (i * 37) % 23 + (i % 5 == 0 ? 60 : 0));
        weight[i] = static_cast<float>(load[i]);
    }

    // Refined plan, default options.
    Plan refined;
    eplb_status st = eplb_rebalance_experts(weight.data(), kLayers, kExperts, kReplicas, kGroups,
                                            kNodes, kGpus, nullptr, refined.phy2log.data(),
                                            refined.log2phy.data(), kWidth, refined.logcnt.data());
    check(st == EPLB_STATUS_OK, std::string("rebalance: ") + eplb_status_str(st));
    if (st == EPLB_STATUS_OK) {
        check_plan("refined", refined);
        print_plan("refined", refined);
    }

    // DeepSeek's algorithm on integer loads.
    eplb_options opts;
    eplb_options_init(&opts);
    opts.algorithm = EPLB_ALGORITHM_DEEPSEEK;
    Plan deepseek;
    st = eplb_rebalance_experts_i64(load.data(), kLayers, kExperts, kReplicas, kGroups, kNodes,
                                    kGpus, &opts, deepseek.phy2log.data(), deepseek.log2phy.data(),
                                    kWidth, deepseek.logcnt.data());
    check(st == EPLB_STATUS_OK, std::string("deepseek: ") + eplb_status_str(st));
    if (st == EPLB_STATUS_OK) {
        check_plan("deepseek", deepseek);
        print_plan("deepseek", deepseek);
    }

    // Evaluate the refined plan.
    eplb_plan_stats stats{};
    stats.struct_size = sizeof stats;
    std::vector<eplb_layer_stats> per_layer(kLayers);
    st = eplb_evaluate_plan(weight.data(), kLayers, kExperts, kReplicas, kGroups, kNodes, kGpus,
                            refined.phy2log.data(), refined.logcnt.data(), nullptr,
                            deepseek.phy2log.data(), &stats, per_layer.data());
    check(st == EPLB_STATUS_OK, std::string("evaluate: ") + eplb_status_str(st));
    check(stats.balancedness > 0.0 && stats.balancedness <= 1.0, "balancedness in (0, 1]");
    std::printf(
        "refined: balancedness %.4f (worst layer %zu: %.4f), %zu weights differ from "
        "the deepseek plan\n",
        stats.balancedness, stats.worst_layer, stats.worst_layer_balancedness, stats.weights_moved);

    // Error path: a log2phy width below the largest replica count. Outputs stay untouched.
    Plan untouched;
    untouched.phy2log.assign(untouched.phy2log.size(), 777);
    st = eplb_rebalance_experts(weight.data(), kLayers, kExperts, kReplicas, kGroups, kNodes, kGpus,
                                nullptr, untouched.phy2log.data(), untouched.log2phy.data(), 1,
                                untouched.logcnt.data());
    check(st == EPLB_STATUS_WIDTH_TOO_SMALL, "width 1 accepted");
    const std::string msg = last_error();
    check(!msg.empty(), "empty error message");
    std::printf("expected error: status %d (%s): %s\n", static_cast<int>(st), eplb_status_str(st),
                msg.c_str());
    for (std::int64_t v : untouched.phy2log) check(v == 777, "output written on error");

    if (failures != 0) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}

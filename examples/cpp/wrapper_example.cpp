// C++17 caller of libeplb through the header-only wrapper include/eplb.hpp: plans, re-plans,
// evaluates, packs and replicates with owned results and exceptions, and checks the results.
// Exits 0 when every check passes, 1 otherwise.
//
// Build (shared):  c++ -std=c++17 -Iinclude examples/cpp/wrapper_example.cpp
//                     -Ltarget/release -leplb
// Run by tests/c_callers.rs (shared, static, sanitizers, valgrind).
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "eplb.hpp"

namespace {

int failures = 0;

void check(bool ok, const std::string &what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
        ++failures;
    }
}

// The plan invariants of DESIGN.md, through the Plan accessors.
void check_plan(const std::string &name, const eplb::Plan &plan) {
    const std::size_t per_gpu = plan.slots_per_gpu();
    check(per_gpu * plan.num_gpus() == plan.num_replicas(), name + ": slots per GPU");
    check(plan.log2phy().size() == plan.num_layers() * plan.num_logical() * plan.log2phy_width(),
          name + ": log2phy size");
    std::int64_t widest = 0;
    for (std::size_t l = 0; l < plan.num_layers(); ++l) {
        std::int64_t sum = 0;
        std::vector<std::int64_t> seen(plan.num_logical(), 0);
        std::vector<std::size_t> on_gpu(plan.num_gpus(), 0);
        for (std::size_t s = 0; s < plan.num_replicas(); ++s) {
            const std::int64_t e = plan.phy2log(l, s);
            check(e >= 0 && e < static_cast<std::int64_t>(plan.num_logical()), name + ": id");
            ++seen.at(static_cast<std::size_t>(e));
            ++on_gpu.at(plan.gpu_of_slot(s));
        }
        for (std::size_t e = 0; e < plan.num_logical(); ++e) {
            const std::int64_t cnt = plan.logcnt(l, e);
            check(cnt >= 1, name + ": expert without replica");
            check(cnt == seen[e], name + ": logcnt disagrees with phy2log");
            sum += cnt;
            widest = cnt > widest ? cnt : widest;
            for (std::size_t k = 0; k < plan.log2phy_width(); ++k) {
                const std::int64_t slot = plan.log2phy(l, e, k);
                if (static_cast<std::int64_t>(k) < cnt) {
                    check(plan.phy2log(l, static_cast<std::size_t>(slot)) ==
                              static_cast<std::int64_t>(e),
                          name + ": log2phy disagrees with phy2log");
                    if (k > 0) check(slot > plan.log2phy(l, e, k - 1), name + ": not ascending");
                } else {
                    check(slot == -1, name + ": log2phy padding");
                }
            }
        }
        check(sum == static_cast<std::int64_t>(plan.num_replicas()), name + ": logcnt sum");
        for (std::size_t count : on_gpu) check(count == per_gpu, name + ": slots on a GPU");
    }
    check(widest == static_cast<std::int64_t>(plan.log2phy_width()), name + ": width");
}

}  // namespace

int main() {
    constexpr std::size_t layers = 2, experts = 16, replicas = 24, groups = 4, nodes = 2, gpus = 4;
    std::printf("eplb %s via eplb.hpp\n", eplb::version());
    std::vector<float> weight(layers * experts);
    std::vector<std::int64_t> load(layers * experts);
    for (std::size_t i = 0; i < weight.size(); ++i) {
        load[i] = static_cast<std::int64_t>(10 + (i * 37) % 23 + (i % 5 == 0 ? 60 : 0));
        weight[i] = static_cast<float>(load[i]);
    }

    try {
        // From scratch, float and integer loads, refined and DeepSeek.
        const eplb::Plan refined =
            eplb::rebalance_experts(weight, layers, experts, replicas, groups, nodes, gpus);
        check_plan("refined", refined);
        const eplb::Plan refined_i64 =
            eplb::rebalance_experts(load, layers, experts, replicas, groups, nodes, gpus);
        check(refined_i64.phy2log() == refined.phy2log(), "float and int64 loads agree");
        const eplb::Plan deepseek =
            eplb::rebalance_experts(load.data(), layers, experts, replicas, groups, nodes, gpus,
                                    eplb::Options().algorithm(eplb::Algorithm::DeepSeek));
        check_plan("deepseek", deepseek);

        // Evaluate: refined is never worse than DeepSeek on any layer.
        const eplb::Evaluation ev_refined = eplb::evaluate_plan(weight, refined);
        const eplb::Evaluation ev_deepseek = eplb::evaluate_plan(weight, deepseek);
        check(ev_refined.layers.size() == layers, "one LayerStats per layer");
        for (std::size_t l = 0; l < layers; ++l) {
            check(ev_refined.layers[l].max_gpu_load <=
                      ev_deepseek.layers[l].max_gpu_load * (1 + 1e-6),
                  "refined worse than deepseek on a layer");
        }
        std::printf("balancedness: refined %.4f, deepseek %.4f\n", ev_refined.stats.balancedness,
                    ev_deepseek.stats.balancedness);

        // Re-plan from the DeepSeek plan, allowing 5% balance loss to move fewer weights.
        const eplb::Replan replan = eplb::replan_experts(
            weight, deepseek, eplb::Options().effort(eplb::Effort::High).max_balance_loss(0.05));
        check_plan("replan", replan.plan);
        check(replan.migration.weights_moved <= replan.migration.weights_total, "moved <= total");
        const eplb::Evaluation ev_replan = eplb::evaluate_plan(weight, replan.plan, &deepseek);
        check(ev_replan.stats.weights_moved == replan.migration.weights_moved,
              "evaluate_plan and replan_experts agree on weights moved");
        std::printf("replan: moves %zu of %zu weights, balancedness %.4f\n",
                    replan.migration.weights_moved, replan.migration.weights_total,
                    ev_replan.stats.balancedness);

        // The building blocks.
        const eplb::Packing packing = eplb::balanced_packing(weight, layers, experts, gpus);
        for (std::size_t l = 0; l < layers; ++l) {
            std::vector<std::size_t> per_pack(gpus, 0);
            for (std::size_t i = 0; i < experts; ++i) {
                ++per_pack.at(static_cast<std::size_t>(packing.pack_index[l * experts + i]));
            }
            for (std::size_t n : per_pack) check(n == experts / gpus, "pack sizes");
        }
        const eplb::Replication rep = eplb::replicate_experts(weight, layers, experts, replicas);
        for (std::size_t l = 0; l < layers; ++l) {
            std::int64_t sum = 0;
            for (std::size_t e = 0; e < experts; ++e) sum += rep.logcnt[l * experts + e];
            check(sum == static_cast<std::int64_t>(replicas), "replication counts");
        }
    } catch (const std::exception &e) {
        check(false, std::string("unexpected exception: ") + e.what());
    }

    // The exception path: 24 slots on 5 GPUs.
    try {
        const eplb::Plan bad =
            eplb::rebalance_experts(weight, layers, experts, replicas, groups, nodes, 5);
        check(false, "24 slots on 5 GPUs accepted");
    } catch (const eplb::Error &e) {
        check(e.status() == EPLB_STATUS_NOT_DIVISIBLE, "status NOT_DIVISIBLE");
        check(!e.message().empty(), "library message");
        check(e.message() == eplb::last_error_message(), "message is the thread's last error");
        std::printf("expected eplb::Error: status %d, what(): %s\n", static_cast<int>(e.status()),
                    e.what());
    }
    // Out-of-range options are the library's to reject (raw() reaches the C struct).
    try {
        eplb::Options opts;
        opts.raw().algorithm = 7;
        const eplb::Plan bad =
            eplb::rebalance_experts(weight, layers, experts, replicas, groups, nodes, gpus, opts);
        check(false, "algorithm 7 accepted");
    } catch (const eplb::Error &e) {
        check(e.status() == EPLB_STATUS_INVALID_OPTIONS, "status INVALID_OPTIONS");
        std::printf("expected eplb::Error: %s\n", e.what());
    }
    // A vector that disagrees with the shape never reaches the library.
    try {
        const eplb::Plan bad =
            eplb::rebalance_experts(weight, layers + 1, experts, replicas, groups, nodes, gpus);
        check(false, "short load vector accepted");
    } catch (const std::invalid_argument &e) {
        std::printf("expected std::invalid_argument: %s\n", e.what());
    }

    if (failures != 0) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("all checks passed\n");
    return 0;
}

/*
 * eplb.hpp: header-only C++17 wrapper over the C API of include/eplb.h.
 *
 * - Every failing call throws eplb::Error (a std::runtime_error) carrying the eplb_status and the
 *   library's detailed message; std::vector overloads whose sizes disagree with the shape
 *   arguments throw std::invalid_argument before calling the library.
 * - Results are owned values (eplb::Plan, eplb::Replan, eplb::Packing, eplb::Replication,
 *   eplb::Evaluation) holding row-major std::vector<int64_t> buffers.
 * - Loads are float or int64_t (the *_i64 C functions); balanced_packing and replicate_experts
 *   take float loads only, as the C API does.
 * - Like the C API, everything is reentrant and thread-safe; the wrapper adds no state.
 *
 * Link exactly as for the C API: -leplb (shared), or libeplb.a plus
 * -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc (static).
 */
#ifndef EPLB_HPP
#define EPLB_HPP

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "eplb.h"

namespace eplb {

/** The calling thread's last error message from the library ("" before the first failure). */
inline std::string last_error_message() {
    std::vector<char> buf(eplb_last_error_message(nullptr, 0) + 1);
    eplb_last_error_message(buf.data(), buf.size());
    return std::string(buf.data());
}

/** A failed library call: `status()` is the eplb_status, `message()` the library's message. */
class Error : public std::runtime_error {
public:
    Error(eplb_status status, std::string message)
        : std::runtime_error(std::string("eplb: ") + eplb_status_str(status) + ": " + message),
          status_(status),
          message_(std::move(message)) {}

    /** The status code (never EPLB_STATUS_OK). */
    eplb_status status() const noexcept { return status_; }
    /** The library's detailed message (which argument, which constraint, which value). */
    const std::string &message() const noexcept { return message_; }

private:
    eplb_status status_;
    std::string message_;
};

namespace detail {

inline void check(eplb_status status) {
    if (status != EPLB_STATUS_OK) {
        throw Error(status, last_error_message());
    }
}

inline std::size_t product(std::size_t a, std::size_t b) {
    if (a != 0 && b > SIZE_MAX / a) {
        throw Error(EPLB_STATUS_SIZE_OVERFLOW, "a buffer size overflows size_t");
    }
    return a * b;
}

template <typename T>
inline const T *data_or_null(const std::vector<T> &v) {
    return v.empty() ? nullptr : v.data();
}

inline void expect_size(const char *what, std::size_t got, std::size_t want) {
    if (got != want) {
        throw std::invalid_argument(std::string("eplb: ") + what + " has " + std::to_string(got) +
                                    " elements, the shape needs " + std::to_string(want));
    }
}

}  // namespace detail

/** The library version, "MAJOR.MINOR.PATCH". */
inline const char *version() noexcept {
    return eplb_version();
}

/** `eplb_options.algorithm`. */
enum class Algorithm : std::int32_t {
    DeepSeek = EPLB_ALGORITHM_DEEPSEEK,
    Refined = EPLB_ALGORITHM_REFINED,
};

/** `eplb_options.effort`. */
enum class Effort : std::int32_t {
    Fast = EPLB_EFFORT_FAST,
    Default = EPLB_EFFORT_DEFAULT,
    High = EPLB_EFFORT_HIGH,
    Max = EPLB_EFFORT_MAX,
};

/**
 * Builder over eplb_options, starting from the library defaults (eplb_options_init):
 *   eplb::Options().algorithm(eplb::Algorithm::DeepSeek)
 * Values are range-checked by the library at the call (EPLB_STATUS_INVALID_OPTIONS).
 */
class Options {
public:
    Options() noexcept { eplb_options_init(&raw_); }

    Options &algorithm(Algorithm a) noexcept {
        raw_.algorithm = static_cast<std::int32_t>(a);
        return *this;
    }
    Options &effort(Effort e) noexcept {
        raw_.effort = static_cast<std::int32_t>(e);
        return *this;
    }
    /** Re-planning only: accepted max GPU load increase to move fewer weights (0.01 = 1%). */
    Options &max_balance_loss(double fraction) noexcept {
        raw_.max_balance_loss = fraction;
        return *this;
    }
    /** Hierarchical policy only: load share replicas outside their home node may carry. */
    Options &max_off_home_share(double share) noexcept {
        raw_.max_off_home_share = share;
        return *this;
    }

    Algorithm algorithm() const noexcept { return static_cast<Algorithm>(raw_.algorithm); }
    Effort effort() const noexcept { return static_cast<Effort>(raw_.effort); }
    double max_balance_loss() const noexcept { return raw_.max_balance_loss; }
    double max_off_home_share() const noexcept { return raw_.max_off_home_share; }

    /** The underlying C struct (for fields this wrapper does not name yet). */
    eplb_options &raw() noexcept { return raw_; }
    const eplb_options &raw() const noexcept { return raw_; }

private:
    eplb_options raw_;
};

using MigrationStats = eplb_migration_stats;
using PlanStats = eplb_plan_stats;
using LayerStats = eplb_layer_stats;

class Plan;

namespace detail {
template <typename Load>
inline Plan plan_impl(const Load *load, std::size_t num_layers, std::size_t num_logical,
                      std::size_t num_replicas, std::size_t num_groups, std::size_t num_nodes,
                      std::size_t num_gpus, const Options &opts, const std::int64_t *old_phy2log,
                      MigrationStats *migration);
}  // namespace detail

/**
 * A placement plan: phy2log [layers][replicas], logcnt [layers][logical], log2phy
 * [layers][logical][log2phy_width] (slots ascending, padded with -1; the width is the largest
 * replica count), group_node [layers][groups] (home node of each group, -1 under the global
 * policy).
 */
class Plan {
public:
    Plan() = default;

    std::size_t num_layers() const noexcept { return num_layers_; }
    std::size_t num_logical() const noexcept { return num_logical_; }
    std::size_t num_replicas() const noexcept { return num_replicas_; }
    std::size_t num_groups() const noexcept { return num_groups_; }
    std::size_t num_nodes() const noexcept { return num_nodes_; }
    std::size_t num_gpus() const noexcept { return num_gpus_; }
    std::size_t log2phy_width() const noexcept { return width_; }
    std::size_t slots_per_gpu() const noexcept { return num_gpus_ ? num_replicas_ / num_gpus_ : 0; }
    /** The GPU holding physical slot `slot`. */
    std::size_t gpu_of_slot(std::size_t slot) const noexcept { return slot / slots_per_gpu(); }

    const std::vector<std::int64_t> &phy2log() const noexcept { return phy2log_; }
    const std::vector<std::int64_t> &logcnt() const noexcept { return logcnt_; }
    const std::vector<std::int64_t> &log2phy() const noexcept { return log2phy_; }
    const std::vector<std::int64_t> &group_node() const noexcept { return group_node_; }

    std::int64_t phy2log(std::size_t layer, std::size_t slot) const {
        return phy2log_.at(layer * num_replicas_ + slot);
    }
    std::int64_t logcnt(std::size_t layer, std::size_t expert) const {
        return logcnt_.at(layer * num_logical_ + expert);
    }
    /** The k-th slot of `expert` (ascending), or -1 when k >= logcnt(layer, expert). */
    std::int64_t log2phy(std::size_t layer, std::size_t expert, std::size_t k) const {
        return log2phy_.at((layer * num_logical_ + expert) * width_ + k);
    }

private:
    template <typename Load>
    friend Plan detail::plan_impl(const Load *, std::size_t, std::size_t, std::size_t, std::size_t,
                                  std::size_t, std::size_t, const Options &, const std::int64_t *,
                                  MigrationStats *);

    std::size_t num_layers_ = 0, num_logical_ = 0, num_replicas_ = 0, num_groups_ = 0,
                num_nodes_ = 0, num_gpus_ = 0, width_ = 0;
    std::vector<std::int64_t> phy2log_, logcnt_, log2phy_, group_node_;
};

/** A re-plan: the new plan and what replacing the old one moves. */
struct Replan {
    Plan plan;
    MigrationStats migration;
};

/** balanced_packing result: pack_index and rank_in_pack, both [layers][items]. */
struct Packing {
    std::size_t num_layers = 0, num_items = 0, num_packs = 0;
    std::vector<std::int64_t> pack_index, rank_in_pack;
};

/** replicate_experts result: phy2log, replica_rank [layers][physical]; logcnt [layers][logical]. */
struct Replication {
    std::size_t num_layers = 0, num_logical = 0, num_physical = 0;
    std::vector<std::int64_t> phy2log, replica_rank, logcnt;
};

/** evaluate_plan result: the summary and one LayerStats per layer. */
struct Evaluation {
    PlanStats stats;
    std::vector<LayerStats> layers;
};

namespace detail {

inline eplb_status plan_call(const float *w, std::size_t l, std::size_t e, std::size_t r,
                             std::size_t g, std::size_t n, std::size_t p, const eplb_options *o,
                             const std::int64_t *old, std::int64_t *p2l, std::int64_t *cnt,
                             std::int64_t *gn, eplb_migration_stats *st) {
    return eplb_plan_experts(w, l, e, r, g, n, p, o, old, p2l, nullptr, 0, cnt, gn, st);
}
inline eplb_status plan_call(const std::int64_t *w, std::size_t l, std::size_t e, std::size_t r,
                             std::size_t g, std::size_t n, std::size_t p, const eplb_options *o,
                             const std::int64_t *old, std::int64_t *p2l, std::int64_t *cnt,
                             std::int64_t *gn, eplb_migration_stats *st) {
    return eplb_plan_experts_i64(w, l, e, r, g, n, p, o, old, p2l, nullptr, 0, cnt, gn, st);
}
inline eplb_status evaluate_call(const float *w, std::size_t l, std::size_t e, std::size_t r,
                                 std::size_t g, std::size_t n, std::size_t p,
                                 const std::int64_t *p2l, const std::int64_t *cnt,
                                 const std::int64_t *gn, const std::int64_t *old,
                                 eplb_plan_stats *st, eplb_layer_stats *ls) {
    return eplb_evaluate_plan(w, l, e, r, g, n, p, p2l, cnt, gn, old, st, ls);
}
inline eplb_status evaluate_call(const std::int64_t *w, std::size_t l, std::size_t e, std::size_t r,
                                 std::size_t g, std::size_t n, std::size_t p,
                                 const std::int64_t *p2l, const std::int64_t *cnt,
                                 const std::int64_t *gn, const std::int64_t *old,
                                 eplb_plan_stats *st, eplb_layer_stats *ls) {
    return eplb_evaluate_plan_i64(w, l, e, r, g, n, p, p2l, cnt, gn, old, st, ls);
}

/** Plans through eplb_plan_experts(_i64), then builds log2phy at the tightest width. */
template <typename Load>
inline Plan plan_impl(const Load *load, std::size_t num_layers, std::size_t num_logical,
                      std::size_t num_replicas, std::size_t num_groups, std::size_t num_nodes,
                      std::size_t num_gpus, const Options &opts, const std::int64_t *old_phy2log,
                      MigrationStats *migration) {
    Plan plan;
    plan.phy2log_.resize(detail::product(num_layers, num_replicas));
    plan.logcnt_.resize(detail::product(num_layers, num_logical));
    plan.group_node_.resize(detail::product(num_layers, num_groups));
    detail::check(detail::plan_call(load, num_layers, num_logical, num_replicas, num_groups,
                                    num_nodes, num_gpus, &opts.raw(), old_phy2log,
                                    plan.phy2log_.data(), plan.logcnt_.data(),
                                    plan.group_node_.data(), migration));
    plan.num_layers_ = num_layers;
    plan.num_logical_ = num_logical;
    plan.num_replicas_ = num_replicas;
    plan.num_groups_ = num_groups;
    plan.num_nodes_ = num_nodes;
    plan.num_gpus_ = num_gpus;
    std::int64_t width = 0;
    for (std::int64_t c : plan.logcnt_) width = std::max(width, c);
    plan.width_ = static_cast<std::size_t>(width);
    plan.log2phy_.assign(detail::product(plan.logcnt_.size(), plan.width_), -1);
    std::vector<std::size_t> filled(num_logical);
    for (std::size_t l = 0; l < num_layers; ++l) {
        std::fill(filled.begin(), filled.end(), 0);
        for (std::size_t s = 0; s < num_replicas; ++s) {
            const auto e = static_cast<std::size_t>(plan.phy2log_[l * num_replicas + s]);
            plan.log2phy_[(l * num_logical + e) * plan.width_ + filled[e]++] =
                static_cast<std::int64_t>(s);
        }
    }
    return plan;
}

}  // namespace detail

// ---- rebalance_experts: a plan from scratch ----

/** eplb_rebalance_experts: `weight` is [num_layers][num_logical]. Throws eplb::Error. */
[[nodiscard]] inline Plan rebalance_experts(const float *weight, std::size_t num_layers,
                                            std::size_t num_logical, std::size_t num_replicas,
                                            std::size_t num_groups, std::size_t num_nodes,
                                            std::size_t num_gpus, const Options &opts = Options()) {
    return detail::plan_impl(weight, num_layers, num_logical, num_replicas, num_groups, num_nodes,
                             num_gpus, opts, nullptr, nullptr);
}
/** eplb_rebalance_experts_i64. */
[[nodiscard]] inline Plan rebalance_experts(const std::int64_t *load, std::size_t num_layers,
                                            std::size_t num_logical, std::size_t num_replicas,
                                            std::size_t num_groups, std::size_t num_nodes,
                                            std::size_t num_gpus, const Options &opts = Options()) {
    return detail::plan_impl(load, num_layers, num_logical, num_replicas, num_groups, num_nodes,
                             num_gpus, opts, nullptr, nullptr);
}
template <typename Load>
[[nodiscard]] inline Plan rebalance_experts(const std::vector<Load> &load, std::size_t num_layers,
                                            std::size_t num_logical, std::size_t num_replicas,
                                            std::size_t num_groups, std::size_t num_nodes,
                                            std::size_t num_gpus, const Options &opts = Options()) {
    detail::expect_size("load", load.size(), detail::product(num_layers, num_logical));
    return rebalance_experts(detail::data_or_null(load), num_layers, num_logical, num_replicas,
                             num_groups, num_nodes, num_gpus, opts);
}

// ---- replan_experts: a plan that moves few weights away from `old_phy2log` ----

/** eplb_replan_experts: `old_phy2log` is [num_layers][num_replicas]. */
[[nodiscard]] inline Replan replan_experts(const float *weight, std::size_t num_layers,
                                           std::size_t num_logical, std::size_t num_replicas,
                                           std::size_t num_groups, std::size_t num_nodes,
                                           std::size_t num_gpus, const std::int64_t *old_phy2log,
                                           const Options &opts = Options()) {
    Replan r{};
    r.migration.struct_size = sizeof(MigrationStats);
    r.plan = detail::plan_impl(weight, num_layers, num_logical, num_replicas, num_groups, num_nodes,
                               num_gpus, opts, old_phy2log, &r.migration);
    return r;
}
/** eplb_replan_experts_i64. */
[[nodiscard]] inline Replan replan_experts(const std::int64_t *load, std::size_t num_layers,
                                           std::size_t num_logical, std::size_t num_replicas,
                                           std::size_t num_groups, std::size_t num_nodes,
                                           std::size_t num_gpus, const std::int64_t *old_phy2log,
                                           const Options &opts = Options()) {
    Replan r{};
    r.migration.struct_size = sizeof(MigrationStats);
    r.plan = detail::plan_impl(load, num_layers, num_logical, num_replicas, num_groups, num_nodes,
                               num_gpus, opts, old_phy2log, &r.migration);
    return r;
}
template <typename Load>
[[nodiscard]] inline Replan replan_experts(const std::vector<Load> &load, std::size_t num_layers,
                                           std::size_t num_logical, std::size_t num_replicas,
                                           std::size_t num_groups, std::size_t num_nodes,
                                           std::size_t num_gpus,
                                           const std::vector<std::int64_t> &old_phy2log,
                                           const Options &opts = Options()) {
    detail::expect_size("load", load.size(), detail::product(num_layers, num_logical));
    detail::expect_size("old_phy2log", old_phy2log.size(),
                        detail::product(num_layers, num_replicas));
    return replan_experts(detail::data_or_null(load), num_layers, num_logical, num_replicas,
                          num_groups, num_nodes, num_gpus, detail::data_or_null(old_phy2log), opts);
}
/** Re-plans from `old` with its own shape. */
template <typename Load>
[[nodiscard]] inline Replan replan_experts(const std::vector<Load> &load, const Plan &old,
                                           const Options &opts = Options()) {
    return replan_experts(load, old.num_layers(), old.num_logical(), old.num_replicas(),
                          old.num_groups(), old.num_nodes(), old.num_gpus(), old.phy2log(), opts);
}

// ---- balanced_packing and replicate_experts (the DeepSeek building blocks) ----

/** eplb_balanced_packing: `weight` is [num_layers][num_items]. */
[[nodiscard]] inline Packing balanced_packing(const float *weight, std::size_t num_layers,
                                              std::size_t num_items, std::size_t num_packs,
                                              const Options &opts = Options()) {
    Packing p;
    p.pack_index.resize(detail::product(num_layers, num_items));
    p.rank_in_pack.resize(p.pack_index.size());
    detail::check(eplb_balanced_packing(weight, num_layers, num_items, num_packs, &opts.raw(),
                                        p.pack_index.data(), p.rank_in_pack.data()));
    p.num_layers = num_layers;
    p.num_items = num_items;
    p.num_packs = num_packs;
    return p;
}
[[nodiscard]] inline Packing balanced_packing(const std::vector<float> &weight,
                                              std::size_t num_layers, std::size_t num_items,
                                              std::size_t num_packs,
                                              const Options &opts = Options()) {
    detail::expect_size("weight", weight.size(), detail::product(num_layers, num_items));
    return balanced_packing(detail::data_or_null(weight), num_layers, num_items, num_packs, opts);
}

/** eplb_replicate_experts (DeepSeek's replication, bit-exact). */
[[nodiscard]] inline Replication replicate_experts(const float *weight, std::size_t num_layers,
                                                   std::size_t num_logical,
                                                   std::size_t num_physical) {
    Replication r;
    r.phy2log.resize(detail::product(num_layers, num_physical));
    r.replica_rank.resize(r.phy2log.size());
    r.logcnt.resize(detail::product(num_layers, num_logical));
    detail::check(eplb_replicate_experts(weight, num_layers, num_logical, num_physical,
                                         r.phy2log.data(), r.replica_rank.data(), r.logcnt.data()));
    r.num_layers = num_layers;
    r.num_logical = num_logical;
    r.num_physical = num_physical;
    return r;
}
[[nodiscard]] inline Replication replicate_experts(const std::vector<float> &weight,
                                                   std::size_t num_layers, std::size_t num_logical,
                                                   std::size_t num_physical) {
    detail::expect_size("weight", weight.size(), detail::product(num_layers, num_logical));
    return replicate_experts(detail::data_or_null(weight), num_layers, num_logical, num_physical);
}

// ---- evaluate_plan ----

/**
 * eplb_evaluate_plan(_i64): statistics of `phy2log` for `load`. Optional (nullptr allowed):
 * `logcnt` (checked against phy2log), `group_node` (inferred when null), `old_phy2log` (migration
 * figures).
 */
template <typename Load>
[[nodiscard]] inline Evaluation evaluate_plan(const Load *load, std::size_t num_layers,
                                              std::size_t num_logical, std::size_t num_replicas,
                                              std::size_t num_groups, std::size_t num_nodes,
                                              std::size_t num_gpus, const std::int64_t *phy2log,
                                              const std::int64_t *logcnt = nullptr,
                                              const std::int64_t *group_node = nullptr,
                                              const std::int64_t *old_phy2log = nullptr) {
    Evaluation ev{};
    ev.stats.struct_size = sizeof(PlanStats);
    ev.layers.resize(num_layers);
    detail::check(detail::evaluate_call(load, num_layers, num_logical, num_replicas, num_groups,
                                        num_nodes, num_gpus, phy2log, logcnt, group_node,
                                        old_phy2log, &ev.stats,
                                        ev.layers.empty() ? nullptr : ev.layers.data()));
    return ev;
}
/** Statistics of `plan` for `load` ([layers][logical]); with `old`, what replacing it moves. */
template <typename Load>
[[nodiscard]] inline Evaluation evaluate_plan(const std::vector<Load> &load, const Plan &plan,
                                              const Plan *old = nullptr) {
    detail::expect_size("load", load.size(),
                        detail::product(plan.num_layers(), plan.num_logical()));
    if (old != nullptr) {
        detail::expect_size("old plan", old->phy2log().size(), plan.phy2log().size());
    }
    return evaluate_plan(detail::data_or_null(load), plan.num_layers(), plan.num_logical(),
                         plan.num_replicas(), plan.num_groups(), plan.num_nodes(), plan.num_gpus(),
                         detail::data_or_null(plan.phy2log()), detail::data_or_null(plan.logcnt()),
                         detail::data_or_null(plan.group_node()),
                         old ? detail::data_or_null(old->phy2log()) : nullptr);
}

}  // namespace eplb

#endif /* EPLB_HPP */

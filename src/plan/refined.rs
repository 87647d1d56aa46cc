//! The refined planner: DeepSeek's pipeline with every step improved, and DeepSeek's own plan as a
//! safety net so that no layer is ever worse.
//!
//! 1. Groups to nodes: the refined packer (exact for small group counts) on f64 group loads,
//!    started from DeepSeek's greedy split.
//! 2. Nodes heaviest first. The heaviest node starts from DeepSeek's own plan of the same groups and
//!    local search only improves it (so it is never worse than DeepSeek's node). Every lighter node
//!    only has to stay below the maximum reached so far: DeepSeek's replica rule capped at one
//!    replica per GPU, the replicas sorted once and placed in rotated rounds, kept when that is
//!    below the bar; otherwise dealt in rounds (no GPU gets two replicas of one expert when that
//!    can be avoided) and the same local search until it is below that bar.
//!    With two slots per GPU, replica counts are chosen together with the pairing
//!    ([`super::counts`]).
//! 3. Never worse than DeepSeek, checked per layer without planning DeepSeek's whole layer: the
//!    heaviest GPU is on a node started from DeepSeek's plan, or below DeepSeek's heaviest node
//!    spread over its GPUs (a lower bound on DeepSeek's maximum), or DeepSeek's plan of that node
//!    has a GPU at least as heavy; otherwise that node is planned again from DeepSeek's plan. Only
//!    when none of this applies is DeepSeek's whole plan computed and, polished by the same local
//!    search, taken where it has the lower GPU maximum.

use crate::load::{Load, row_to_f64};
use crate::metrics::max_gpu_load;
use crate::options::{Effort, Options};
use crate::packing::exact::{self, ExactScratch};
use crate::packing::greedy::{
    GreedyScratch, RoundsScratch, deal_rounds, greedy_pack, greedy_rounds, rotated_rounds,
};
use crate::packing::local_search::{
    SearchBudget, SearchScratch, improve, improve_with_hint, pair_partners, repair_duplicates,
};
use crate::packing::state::PackState;
use crate::packing::weight::{
    Weight, rounded_descending_keys, sort_descending, sort_rounded_descending,
};
use crate::packing::{Packer, Start};
use crate::shape::Shape;

use super::counts::CountPlanner;
use super::deepseek::{DeepSeekPlanner, NodePlan};
use super::locality::{Baseline, BudgetScratch, budget_applies, spend_budget};

/// Relative slack under which two GPU maxima count as equal (f64 summation noise).
pub(crate) const LOAD_TOLERANCE: f64 = 1e-12;

/// Group counts up to which the split of groups onto nodes is solved exactly.
const EXACT_SPLIT_GROUPS: usize = 16;
/// Node budget of that exact search (the incumbent is kept if it runs out).
const EXACT_SPLIT_NODES: usize = 200_000;

/// Below the high effort levels, a node's search stops within this fraction of the node's lower
/// bound (its load over its GPUs): the last hundredth of a percent costs more than it is worth.
const GOOD_ENOUGH_SLACK: f64 = 1e-4;

/// Reusable buffers of the refined planner.
#[derive(Debug, Default)]
pub struct RefinedPlanner {
    deepseek: DeepSeekPlanner,
    ds_phy2log: Vec<i64>,
    ds_logcnt: Vec<i64>,
    ds_group_node: Vec<i64>,
    row: Vec<f64>,
    group_loads: Vec<f64>,
    group_loads_f32: Vec<f32>,
    group_pack: Vec<u32>,
    group_rank: Vec<u32>,
    ds_group_pack: Vec<u32>,
    ds_group_rank: Vec<u32>,
    pack_loads_f32: Vec<f32>,
    node_experts: Vec<u32>,
    node_order: Vec<usize>,
    node_totals: Vec<f64>,
    node_loads: Vec<f64>,
    counts: Vec<u32>,
    items: Vec<f64>,
    colors: Vec<u32>,
    experts: Vec<u32>,
    node_covered: Vec<bool>,
    seen: Vec<u32>,
    gpu_of: Vec<u32>,
    scratch: Vec<f64>,
    greedy: GreedyScratch<f32>,
    packer: Packer,
    count_planner: CountPlanner,
    polish_state: PackState,
    sort_keys: Vec<u128>,
    order: Vec<u32>,
    split_state: PackState,
    exact: ExactScratch,
    search: SearchScratch,
    rounds: RoundsScratch,
    node_keys: Vec<u64>,
    hot_items: Vec<(f64, u32)>,
    single_items: Vec<(f64, u32)>,
    hot_per: Vec<f64>,
    /// The layer's GPU loads, node by node, as planned so far.
    gpu_loads: Vec<f64>,
    /// The items of a node loaded from DeepSeek's plan in its packing order (weight descending).
    deepseek_order: Vec<u32>,
    /// Slots per node of the layer being planned.
    slots_per_node: usize,
    /// Buffers of the locality budget's pass.
    budget: BudgetScratch,
    /// Each node's experts heaviest first, node after node (the budget pass's member order).
    members_by_load: Vec<u32>,
    /// Replica count of each expert in the strict counts of [`RefinedPlanner::plan_within_budget`].
    strict_counts: Vec<u32>,
}

impl RefinedPlanner {
    /// Plans one layer (see [`DeepSeekPlanner::plan_layer`] for the buffers).
    pub fn plan_layer<L: Load>(
        &mut self,
        loads: &[L],
        shape: &Shape,
        options: &Options,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
        group_node: &mut [i64],
    ) {
        row_to_f64(loads, &mut self.row);
        self.split_groups(shape, options, group_node);
        // Locality budget (issue 6): may trade `max_off_home_share` of the load for balance;
        // planned from the strict replica counts where that provably beats the strict plan,
        // else on top of the strict plan.
        if self.plan_within_budget(shape, options, phy2log, logcnt, group_node) {
            return;
        }
        self.plan_strict(loads, shape, options, phy2log, logcnt, group_node);
        spend_budget(
            &self.row,
            shape,
            options,
            group_node,
            (phy2log, logcnt),
            &mut self.budget,
            Baseline::StrictPlan,
        );
    }

    /// A layer with a locality budget planned without its strict packing, after
    /// [`RefinedPlanner::split_groups`]: each node's replicas counted by DeepSeek's rule capped
    /// at one per GPU (as the strict plan's lighter nodes), then the budget pass from
    /// [`Baseline::StrictCounts`]. `false` where that does not apply (no budget to spend, one GPU
    /// per node, count search shapes, a split of groups other than DeepSeek's) or does not beat
    /// the strict plan's lower bound; the outputs are then overwritten by the caller's strict plan.
    fn plan_within_budget(
        &mut self,
        shape: &Shape,
        options: &Options,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
        group_node: &[i64],
    ) -> bool {
        if !budget_applies(shape, options) {
            return false;
        }
        let n = shape.num_nodes;
        let experts_per_node = shape.num_logical / n;
        let slots_per_node = shape.num_replicas / n;
        let gpus_per_node = shape.num_gpus / n;
        let extra = slots_per_node - experts_per_node;
        if gpus_per_node < 2
            || extra >= experts_per_node
            || CountPlanner::searches(
                experts_per_node,
                slots_per_node,
                gpus_per_node,
                options.effort,
            )
        {
            return false;
        }
        if self.group_pack != self.ds_group_pack {
            // The strict plan may fall back to DeepSeek's whole plan, homes included: only when
            // both splits agree are the homes the strict plan's whichever plan it keeps.
            return false;
        }
        let mut experts = std::mem::take(&mut self.experts);
        self.members_by_load.clear();
        self.strict_counts.clear();
        self.strict_counts.resize(shape.num_logical, 1);
        for node in 0..n {
            experts.clear();
            experts.extend_from_slice(
                &self.node_experts[node * experts_per_node..(node + 1) * experts_per_node],
            );
            self.node_loads.clear();
            self.node_loads
                .extend(experts.iter().map(|&x| self.row[x as usize]));
            // Fully sorted: the budget pass's moves walk each node's experts heaviest first.
            self.count_hot(extra, gpus_per_node as u32, true);
            self.members_by_load.extend(
                self.node_keys
                    .iter()
                    .map(|&key| experts[f32::key_index(key) as usize]),
            );
            // Only the hot experts have more than one replica.
            for &key in &self.node_keys[..extra] {
                let j = f32::key_index(key) as usize;
                self.strict_counts[experts[j] as usize] = self.counts[j];
            }
        }
        self.experts = experts;
        spend_budget(
            &self.row,
            shape,
            options,
            group_node,
            (phy2log, logcnt),
            &mut self.budget,
            Baseline::StrictCounts {
                members: &self.members_by_load,
                counts: &self.strict_counts,
            },
        )
    }

    /// The strict plan (every replica in its group's home node under the hierarchical policy),
    /// after [`RefinedPlanner::split_groups`].
    fn plan_strict<L: Load>(
        &mut self,
        loads: &[L],
        shape: &Shape,
        options: &Options,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
        group_node: &mut [i64],
    ) {
        let k = shape.slots_per_gpu();
        // DeepSeek's heaviest node (its greedy split of `split_groups`, in f32).
        let ds_node_max = self.pack_loads_f32.iter().copied().fold(0.0f32, f32::max);
        self.deepseek.set_row(loads);
        self.plan_nodes(shape, options, phy2log, logcnt);
        let (_, n) = shape.effective_groups_nodes();
        let gpus_per_node = shape.num_gpus / n;
        let ds_lower_bound = f64::from(ds_node_max) / gpus_per_node as f64;
        // Never worse than DeepSeek: certain when our heaviest GPU is on a node that started from
        // DeepSeek's plan for the same groups, or when it is below DeepSeek's heaviest node spread
        // over its GPUs (a lower bound on DeepSeek's maximum), or when DeepSeek's plan of the
        // bottleneck node (same groups) has a GPU at least as heavy. Otherwise that node is planned
        // again from DeepSeek's plan, and as a last resort the whole layer is compared.
        let mut ours;
        let mut rechecked = 0;
        loop {
            // Each node's GPU loads as its planning left them (the sums of its slots' loads).
            ours = self.gpu_loads.iter().copied().fold(0.0, f64::max);
            let bottleneck = self
                .gpu_loads
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0;
            let node = bottleneck / gpus_per_node;
            if self.node_covered[node] || ours <= ds_lower_bound * (1.0 - LOAD_TOLERANCE) {
                return;
            }
            if rechecked == n {
                break;
            }
            rechecked += 1;
            match self.recheck_node(shape, options, node, ours, phy2log, logcnt) {
                Recheck::Certified => return,
                Recheck::Replanned => continue,
                Recheck::Unavailable => break,
            }
        }
        self.ds_phy2log.resize(phy2log.len(), 0);
        self.ds_logcnt.resize(logcnt.len(), 0);
        self.ds_group_node.resize(group_node.len(), 0);
        self.deepseek.plan_layer(
            loads,
            shape,
            &mut self.ds_phy2log,
            &mut self.ds_logcnt,
            &mut self.ds_group_node,
        );
        let theirs = max_gpu_load(
            &self.row,
            &self.ds_phy2log,
            &self.ds_logcnt,
            k,
            &mut self.scratch,
        );
        if ours <= theirs * (1.0 + LOAD_TOLERANCE) {
            return;
        }
        // Rare: DeepSeek's plan is better here. Take it and polish its packing.
        phy2log.copy_from_slice(&self.ds_phy2log);
        logcnt.copy_from_slice(&self.ds_logcnt);
        group_node.copy_from_slice(&self.ds_group_node);
        polish_packing(
            &self.row,
            phy2log,
            logcnt,
            k,
            gpus_per_node,
            options,
            &mut self.polish_state,
            &mut self.items,
            &mut self.colors,
            &mut self.search,
        );
    }

    /// Step 1: fills `node_experts` (node-major expert ids) and `group_node`, and leaves
    /// DeepSeek's greedy split's node loads (f32) in `pack_loads_f32` for the safety-net bound.
    fn split_groups(&mut self, shape: &Shape, options: &Options, group_node: &mut [i64]) {
        let e = shape.num_logical;
        let (g, n) = shape.effective_groups_nodes();
        let group_size = e / g;
        self.group_loads.clear();
        self.group_loads.extend(
            self.row
                .chunks_exact(group_size)
                .map(|c| c.iter().sum::<f64>()),
        );
        self.group_loads_f32.clear();
        self.group_loads_f32
            .extend(self.group_loads.iter().map(|&v| v as f32));
        self.group_pack.resize(g, 0);
        self.group_rank.resize(g, 0);
        greedy_pack(
            &self.group_loads_f32,
            n,
            &mut self.greedy,
            &mut self.pack_loads_f32,
            &mut self.group_pack,
            &mut self.group_rank,
        );
        self.ds_group_pack.clone_from(&self.group_pack);
        self.ds_group_rank.clone_from(&self.group_rank);
        if n > 1 {
            if g <= EXACT_SPLIT_GROUPS {
                // Small: branch and bound from DeepSeek's split finds the optimum.
                self.split_state
                    .assign_from(&self.group_pack, &self.group_loads, n);
                exact::solve(
                    &mut self.split_state,
                    &self.group_loads,
                    EXACT_SPLIT_NODES,
                    &mut self.exact,
                );
                self.split_state
                    .write_assignment(&mut self.group_pack, &mut self.group_rank);
            } else {
                let start = Start {
                    pack_of: &self.group_pack,
                    descending: self.greedy.order(),
                };
                let state =
                    self.packer
                        .pack(&self.group_loads, n, None, options.effort, Some(start));
                state.write_assignment(&mut self.group_pack, &mut self.group_rank);
            }
        }
        if shape.num_groups % shape.num_nodes == 0 {
            for (dst, &p) in group_node.iter_mut().zip(&self.group_pack) {
                *dst = i64::from(p);
            }
        } else {
            group_node.fill(-1);
        }
        // Experts of each node, groups in ascending id order.
        self.node_experts.clear();
        for node in 0..n as u32 {
            for group in 0..g {
                if self.group_pack[group] == node {
                    self.node_experts
                        .extend((group * group_size..(group + 1) * group_size).map(|x| x as u32));
                }
            }
        }
    }

    /// DeepSeek's expert order for the node holding our node `node`'s groups, when DeepSeek put
    /// exactly the same groups on one node.
    fn deepseek_order(&self, shape: &Shape, node: u32, out: &mut Vec<u32>) -> bool {
        let (g, _) = shape.effective_groups_nodes();
        let group_size = shape.num_logical / g;
        let Some(first) = (0..g).find(|&x| self.group_pack[x] == node) else {
            return false;
        };
        let ds_node = self.ds_group_pack[first];
        if (0..g).any(|x| (self.group_pack[x] == node) != (self.ds_group_pack[x] == ds_node)) {
            return false;
        }
        // DeepSeek's order: the node's groups by their rank in its greedy split.
        out.clear();
        let groups_per_node = g / shape.effective_groups_nodes().1;
        for rank in 0..groups_per_node as u32 {
            if let Some(x) =
                (0..g).find(|&x| self.ds_group_pack[x] == ds_node && self.ds_group_rank[x] == rank)
            {
                out.extend((x * group_size..(x + 1) * group_size).map(|e| e as u32));
            }
        }
        true
    }

    /// Step 2 for every node, heaviest node first (the lighter ones then only need to stay below
    /// its maximum). A node started from DeepSeek's own plan of the same groups is never worse
    /// than DeepSeek's node (`node_covered`).
    fn plan_nodes(
        &mut self,
        shape: &Shape,
        options: &Options,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
    ) {
        let (_, n) = shape.effective_groups_nodes();
        let experts_per_node = shape.num_logical / n;
        let slots_per_node = shape.num_replicas / n;
        self.slots_per_node = slots_per_node;
        let gpus_per_node = shape.num_gpus / n;
        let k = shape.slots_per_gpu();
        // Each node's load: the sum of its groups' loads (from `split_groups`).
        let mut node_totals = std::mem::take(&mut self.node_totals);
        node_totals.clear();
        node_totals.resize(n, 0.0);
        for (&node, &load) in self.group_pack.iter().zip(&self.group_loads) {
            node_totals[node as usize] += load;
        }
        let node_loads = &node_totals;
        self.node_order.clear();
        self.node_order.extend(0..n);
        self.node_order
            .sort_by(|&a, &b| node_loads[b].total_cmp(&node_loads[a]).then(a.cmp(&b)));
        self.node_covered.clear();
        self.node_covered.resize(n, false);
        self.gpu_loads.clear();
        self.gpu_loads.resize(shape.num_gpus, 0.0);
        let searches = CountPlanner::searches(
            experts_per_node,
            slots_per_node,
            gpus_per_node,
            options.effort,
        );
        let mut layer_max = 0.0f64;
        let mut experts = std::mem::take(&mut self.experts);
        for idx in 0..n {
            let node = self.node_order[idx];
            // Stop at the layer maximum reached so far, or close enough to this node's bound.
            let slack = if options.effort >= Effort::High {
                0.0
            } else {
                GOOD_ENOUGH_SLACK
            };
            let good_enough =
                layer_max.max(node_loads[node] / gpus_per_node as f64 * (1.0 + slack));
            let budget = SearchBudget {
                max_rounds: 8 * slots_per_node,
                pair_swap_partners: pair_partners(options.effort),
                good_enough,
                balance_sweeps: 0,
            };
            if idx > 0 && !searches {
                // A lighter node only needs to stay below the layer maximum: a cheap start and the
                // local search. Should it hold the layer's maximum in the end, `plan_strict`
                // checks it against DeepSeek's plan of the same node.
                experts.clear();
                experts.extend_from_slice(
                    &self.node_experts[node * experts_per_node..(node + 1) * experts_per_node],
                );
                let node_max = self.plan_node_cheaply(&experts, gpus_per_node, options, budget);
                layer_max = layer_max.max(node_max);
                self.record_node(node, &experts, phy2log, logcnt);
                continue;
            }
            let start = if !searches && self.deepseek_order(shape, node as u32, &mut experts) {
                let slot_base = node * slots_per_node;
                self.start_from_deepseek(
                    &experts,
                    gpus_per_node,
                    good_enough,
                    &mut phy2log[slot_base..slot_base + slots_per_node],
                    k,
                )
            } else {
                DeepSeekStart::Unusable
            };
            if let DeepSeekStart::Kept(node_max) = start {
                // DeepSeek's node plan already meets the bar: it is the node's plan.
                self.node_covered[node] = true;
                layer_max = layer_max.max(node_max);
                self.gpu_loads[node * gpus_per_node..(node + 1) * gpus_per_node]
                    .copy_from_slice(&self.scratch[..gpus_per_node]);
                self.write_counts(&experts, logcnt);
                continue;
            }
            let node_max = if start == DeepSeekStart::Loaded {
                self.node_covered[node] = true;
                if self.polish_state.duplicates(&self.colors, &mut self.seen) > 0 {
                    repair_duplicates(&mut self.polish_state, &self.items, &self.colors, true);
                }
                improve_with_hint(
                    &mut self.polish_state,
                    &self.items,
                    Some(&self.colors),
                    budget,
                    &mut self.search,
                    &self.deepseek_order,
                );
                self.polish_state.max_load()
            } else {
                experts.clear();
                experts.extend_from_slice(
                    &self.node_experts[node * experts_per_node..(node + 1) * experts_per_node],
                );
                self.node_loads.clear();
                self.node_loads
                    .extend(experts.iter().map(|&x| self.row[x as usize]));
                self.count_node_items(slots_per_node, gpus_per_node, options);
                self.gpu_of.resize(self.items.len(), 0);
                if searches {
                    // Two slots per GPU: the heaviest replica with the lightest is optimal for
                    // these counts (what the count search measured); then remove duplicates.
                    sort_descending(&self.items, &mut self.sort_keys, &mut self.order);
                    let n_items = self.items.len();
                    for i in 0..n_items / 2 {
                        self.gpu_of[self.order[i] as usize] = i as u32;
                        self.gpu_of[self.order[n_items - 1 - i] as usize] = i as u32;
                    }
                    let state = &mut self.polish_state;
                    state.assign_from(&self.gpu_of, &self.items, gpus_per_node);
                    if state.duplicates(&self.colors, &mut self.seen) > 0 {
                        repair_duplicates(state, &self.items, &self.colors, false);
                        improve(
                            state,
                            &self.items,
                            Some(&self.colors),
                            budget,
                            &mut self.search,
                        );
                    }
                    state.max_load()
                } else {
                    let state = self.packer.pack_until(
                        &self.items,
                        gpus_per_node,
                        Some(&self.colors),
                        options.effort,
                        None,
                        good_enough,
                    );
                    // Rare (counts above the GPUs of a node): the plan moves to `polish_state`.
                    self.polish_state.clone_from(state);
                    self.polish_state.max_load()
                }
            };
            layer_max = layer_max.max(node_max);
            self.record_node(node, &experts, phy2log, logcnt);
        }
        self.experts = experts;
        self.node_totals = node_totals;
    }

    /// Checks the bottleneck `node` (not started from DeepSeek) against DeepSeek's plan of the same
    /// groups: `Certified` when that plan has a GPU at least as heavy as `layer_max` (ours), else
    /// the node is planned again from it (`Replanned`, then covered). `Unavailable` when DeepSeek
    /// has no node with the same groups or its plan of it cannot start ours.
    fn recheck_node(
        &mut self,
        shape: &Shape,
        options: &Options,
        node: usize,
        layer_max: f64,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
    ) -> Recheck {
        let (_, n) = shape.effective_groups_nodes();
        let (slots_per_node, gpus_per_node) = (shape.num_replicas / n, shape.num_gpus / n);
        let k = shape.slots_per_gpu();
        if CountPlanner::searches(
            shape.num_logical / n,
            slots_per_node,
            gpus_per_node,
            options.effort,
        ) {
            return Recheck::Unavailable;
        }
        // The heaviest GPU of the other nodes: the bar of a new plan of this one.
        let others_max = self
            .gpu_loads
            .chunks_exact(gpus_per_node)
            .enumerate()
            .filter(|&(m, _)| m != node)
            .flat_map(|(_, gpus)| gpus.iter().copied())
            .fold(0.0, f64::max);
        let mut experts = std::mem::take(&mut self.experts);
        let slot_base = node * slots_per_node;
        let outcome = if !self.deepseek_order(shape, node as u32, &mut experts) {
            Recheck::Unavailable
        } else {
            match self.start_from_deepseek(
                &experts,
                gpus_per_node,
                f64::NEG_INFINITY,
                &mut phy2log[slot_base..slot_base + slots_per_node],
                k,
            ) {
                DeepSeekStart::Loaded
                    if layer_max <= self.polish_state.max_load() * (1.0 + LOAD_TOLERANCE) =>
                {
                    Recheck::Certified
                }
                DeepSeekStart::Loaded => {
                    let budget = SearchBudget {
                        max_rounds: 8 * slots_per_node,
                        pair_swap_partners: pair_partners(options.effort),
                        good_enough: others_max,
                        balance_sweeps: 0,
                    };
                    let state = &mut self.polish_state;
                    if state.duplicates(&self.colors, &mut self.seen) > 0 {
                        repair_duplicates(state, &self.items, &self.colors, true);
                    }
                    improve_with_hint(
                        state,
                        &self.items,
                        Some(&self.colors),
                        budget,
                        &mut self.search,
                        &self.deepseek_order,
                    );
                    self.record_node(node, &experts, phy2log, logcnt);
                    self.node_covered[node] = true;
                    Recheck::Replanned
                }
                DeepSeekStart::Kept(_) | DeepSeekStart::Unusable => Recheck::Unavailable,
            }
        };
        self.experts = experts;
        outcome
    }

    /// A node plan from DeepSeek's replica counts (capped at one replica per GPU): the rotated
    /// rounds when they already stay within `budget.good_enough`, else the dealt rounds and the
    /// local search within `budget`; leaves it in `polish_state`, `items`, `colors` and `counts`
    /// and returns its heaviest GPU.
    fn plan_node_cheaply(
        &mut self,
        experts: &[u32],
        gpus_per_node: usize,
        options: &Options,
        budget: SearchBudget,
    ) -> f64 {
        self.node_loads.clear();
        self.node_loads
            .extend(experts.iter().map(|&x| self.row[x as usize]));
        let extra = self.slots_per_node - experts.len();
        let clean = if gpus_per_node > 1 && extra < experts.len() {
            self.sorted_node_items(extra, gpus_per_node as u32);
            // The rotation ignores loads (cheap) and, as replicas of one expert are adjacent in
            // `items`, can put two of them on one GPU only when an expert has a replica per GPU.
            let may_clash = self.counts.iter().any(|&c| c as usize >= gpus_per_node);
            if !may_clash {
                let max = rotated_rounds(&self.items, gpus_per_node, &mut self.polish_state);
                if max <= budget.good_enough {
                    return max;
                }
            }
            deal_rounds(
                &self.items,
                Some(&self.colors),
                gpus_per_node,
                &mut self.rounds,
                &mut self.polish_state,
            )
        } else {
            self.count_node_items(self.slots_per_node, gpus_per_node, options);
            greedy_rounds(
                &self.items,
                Some(&self.colors),
                gpus_per_node,
                &mut self.rounds,
                &mut self.polish_state,
            )
        };
        let state = &mut self.polish_state;
        if !clean && state.duplicates(&self.colors, &mut self.seen) > 0 {
            repair_duplicates(state, &self.items, &self.colors, false);
        }
        improve(
            state,
            &self.items,
            Some(&self.colors),
            budget,
            &mut self.search,
        );
        state.max_load()
    }

    /// The node's replica counts from the count planner (loads in `node_loads`) into `counts`, and
    /// its replicas (each carrying `load / count`) into `items` and `colors`, expert by expert.
    fn count_node_items(&mut self, slots_per_node: usize, gpus_per_node: usize, options: &Options) {
        self.count_planner.choose(
            &self.node_loads,
            slots_per_node,
            gpus_per_node,
            options.effort,
            &mut self.counts,
        );
        self.items.clear();
        self.colors.clear();
        for (j, &c) in self.counts.iter().enumerate() {
            let per_replica = self.node_loads[j] / f64::from(c);
            for _ in 0..c {
                self.items.push(per_replica);
                self.colors.push(j as u32);
            }
        }
    }

    /// The node's replica counts (loads in `node_loads`) into `counts`: DeepSeek's rule (each
    /// redundant slot to the largest load per replica) capped at `cap` replicas, over the `extra`
    /// heaviest experts only (an expert behind them would get a slot only after each of them took
    /// one, and `extra` slots run out first). The experts are ordered on f32-rounded loads (a
    /// heuristic order: deterministic); `node_keys` keeps their keys, the `extra` heaviest first in
    /// descending order, then the others, in descending order too with `sort_rest`.
    /// Precondition: `0 < extra < node_loads.len()`.
    fn count_hot(&mut self, extra: usize, cap: u32, sort_rest: bool) {
        let loads = &self.node_loads;
        let keys = &mut self.node_keys;
        if sort_rest {
            sort_rounded_descending(loads, keys);
        } else {
            rounded_descending_keys(loads, keys);
            keys.select_nth_unstable(extra);
            keys[..extra].sort_unstable();
        }
        self.counts.clear();
        self.counts.resize(loads.len(), 1);
        let hot = &keys[..extra];
        // Load per replica of each hot expert (below the cap), or -1 once at the cap.
        let per = &mut self.hot_per;
        per.clear();
        per.extend(hot.iter().map(|&key| loads[f32::key_index(key) as usize]));
        for _ in 0..extra {
            // The largest load per replica, first on ties (the hot experts can take
            // `extra * (cap - 1) >= extra` slots in all, so one is below the cap).
            let (mut best, mut top) = (0, per[0]);
            for (i, &v) in per.iter().enumerate() {
                // Selects, not a branch: which expert leads is unpredictable.
                let larger = v > top;
                best = if larger { i } else { best };
                top = if larger { v } else { top };
            }
            let j = f32::key_index(hot[best]) as usize;
            self.counts[j] += 1;
            let c = self.counts[j];
            per[best] = if c < cap {
                loads[j] / f64::from(c)
            } else {
                -1.0
            };
        }
    }

    /// The node's replicas (loads in `node_loads`) in descending order into `items` and `colors`,
    /// with replica counts in `counts` ([`RefinedPlanner::count_hot`]); the replicas of the
    /// replicated experts are merged into the experts' order.
    fn sorted_node_items(&mut self, extra: usize, cap: u32) {
        self.count_hot(extra, cap, true);
        let loads = &self.node_loads;
        let keys = &self.node_keys;
        let hot = &keys[..extra];
        // Replicas of the hot experts, descending; then merged with the other experts.
        let replicas = &mut self.hot_items;
        replicas.clear();
        for &key in hot {
            let j = f32::key_index(key);
            let c = self.counts[j as usize];
            let per = if c == 1 {
                loads[j as usize]
            } else {
                loads[j as usize] / f64::from(c)
            };
            replicas.extend(std::iter::repeat_n((per, j), c as usize));
        }
        replicas.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let singles = &mut self.single_items;
        singles.clear();
        singles.extend(keys[extra..].iter().map(|&key| {
            let j = f32::key_index(key);
            (loads[j as usize], j)
        }));
        // Merged, hot replicas first on ties. The singles lighter than every hot replica come after
        // all of them: only the head before them is merged, the rest copied. A sentinel below
        // every load ends each merged list, so the merge picks by a comparison (a select, not an
        // unpredictable branch).
        let total = replicas.len() + singles.len();
        let lightest_hot = replicas.last().map_or(f64::INFINITY, |hot| hot.0);
        let head = singles.partition_point(|single| single.0 > lightest_hot);
        let merged = replicas.len() + head;
        const END: (f64, u32) = (-1.0, u32::MAX);
        replicas.push(END);
        self.items.resize(total, 0.0);
        self.colors.resize(total, 0);
        let (mut h, mut r) = (0, 0);
        for (w, j) in self.items[..merged]
            .iter_mut()
            .zip(self.colors[..merged].iter_mut())
        {
            let (hot, single) = (replicas[h], if r < head { singles[r] } else { END });
            let take_hot = hot.0 >= single.0;
            (*w, *j) = [single, hot][usize::from(take_hot)];
            h += usize::from(take_hot);
            r += usize::from(!take_hot);
        }
        for ((w, j), &(load, expert)) in self.items[merged..]
            .iter_mut()
            .zip(self.colors[merged..].iter_mut())
            .zip(&singles[head..])
        {
            (*w, *j) = (load, expert);
        }
    }

    /// Records the node plan held in `polish_state` (items are positions in `colors`, packs are
    /// the node's GPUs in slot order) and `counts`: its slots in `phy2log`, its experts' counts in
    /// `logcnt`, its GPU loads in `gpu_loads`.
    fn record_node(
        &mut self,
        node: usize,
        experts: &[u32],
        phy2log: &mut [i64],
        logcnt: &mut [i64],
    ) {
        let state = &self.polish_state;
        let base = node * self.slots_per_node;
        for (dst, &item) in phy2log[base..base + state.slots.len()]
            .iter_mut()
            .zip(&state.slots)
        {
            *dst = i64::from(experts[self.colors[item as usize] as usize]);
        }
        let gpus = state.loads.len();
        self.gpu_loads[node * gpus..(node + 1) * gpus].copy_from_slice(&state.loads);
        self.write_counts(experts, logcnt);
    }

    /// Writes `counts` (one per expert of the node, in `experts` order) into `logcnt`.
    fn write_counts(&self, experts: &[u32], logcnt: &mut [i64]) {
        for (&x, &c) in experts.iter().zip(&self.counts) {
            logcnt[x as usize] = i64::from(c);
        }
    }

    /// DeepSeek's plan of one node as the start of its search. When it needs more replicas of an
    /// expert than the node has GPUs, our own capped counts are the better start (`Unusable`).
    /// When its heaviest GPU is at most `good_enough` and no GPU holds two replicas of one expert,
    /// it is written to `node_phy2log` (the node's slots, `k` per GPU) as it is (`Kept`, with its
    /// heaviest GPU; `counts` filled). Otherwise it is loaded into `polish_state`, `items`,
    /// `colors`, `counts` and `deepseek_order` (`Loaded`).
    fn start_from_deepseek(
        &mut self,
        experts: &[u32],
        gpus_per_node: usize,
        good_enough: f64,
        node_phy2log: &mut [i64],
        k: usize,
    ) -> DeepSeekStart {
        let slots_per_node = node_phy2log.len();
        let plan = self
            .deepseek
            .plan_single_node(experts, slots_per_node, gpus_per_node);
        if plan.mlogcnt.iter().any(|&c| c as usize > gpus_per_node) {
            return DeepSeekStart::Unusable;
        }
        self.counts.clear();
        self.counts.extend_from_slice(plan.mlogcnt);
        // Each expert's replica load once, then every slot's item and its GPU's load.
        self.node_loads.clear();
        self.node_loads
            .extend(experts.iter().zip(plan.mlogcnt).map(|(&x, &c)| {
                let load = self.row[x as usize];
                if c == 1 { load } else { load / f64::from(c) }
            }));
        self.items.clear();
        self.items
            .extend(plan.phy2mlog.iter().map(|&j| self.node_loads[j as usize]));
        self.colors.clear();
        self.colors.extend_from_slice(plan.phy2mlog);
        self.scratch.clear();
        self.scratch.resize(gpus_per_node, 0.0);
        for (&item, &gpu) in self.items.iter().zip(plan.gpu_of) {
            self.scratch[gpu as usize] += item;
        }
        let node_max = self.scratch.iter().copied().fold(0.0, f64::max);
        if node_max <= good_enough && !has_duplicates(plan, &mut self.sort_keys) {
            for (i, &j) in plan.phy2mlog.iter().enumerate() {
                let slot = plan.gpu_of[i] as usize * k + plan.rank_in_gpu[i] as usize;
                node_phy2log[slot] = i64::from(experts[j as usize]);
            }
            return DeepSeekStart::Kept(node_max);
        }
        self.polish_state
            .assign_from(plan.gpu_of, &self.items, gpus_per_node);
        self.deepseek_order.clear();
        self.deepseek_order.extend_from_slice(plan.by_weight);
        DeepSeekStart::Loaded
    }
}

/// What [`RefinedPlanner::recheck_node`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recheck {
    Certified,
    Replanned,
    Unavailable,
}

/// What [`RefinedPlanner::start_from_deepseek`] made of DeepSeek's node plan.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DeepSeekStart {
    Unusable,
    Loaded,
    Kept(f64),
}

/// Whether a DeepSeek node plan puts two replicas of one expert on one GPU. Only the few experts
/// with several replicas can: their (expert, GPU) pairs are sorted into `keys` and compared.
fn has_duplicates(plan: NodePlan<'_>, keys: &mut Vec<u128>) -> bool {
    keys.clear();
    keys.extend(
        plan.phy2mlog
            .iter()
            .zip(plan.gpu_of)
            .filter(|&(&j, _)| plan.mlogcnt[j as usize] > 1)
            .map(|(&j, &gpu)| (u128::from(j) << 32) | u128::from(gpu)),
    );
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// Improves the GPU packing of an existing plan row in place, node by node (`gpus_per_node` GPUs of
/// `k` slots each), without changing replica counts, raising any GPU maximum or adding a duplicate.
#[allow(clippy::too_many_arguments)]
pub(crate) fn polish_packing(
    loads: &[f64],
    phy2log: &mut [i64],
    logcnt: &[i64],
    k: usize,
    gpus_per_node: usize,
    options: &Options,
    state: &mut PackState,
    items: &mut Vec<f64>,
    colors: &mut Vec<u32>,
    search: &mut SearchScratch,
) {
    let slots_per_node = gpus_per_node * k;
    let budget = SearchBudget {
        max_rounds: 8 * slots_per_node,
        pair_swap_partners: pair_partners(options.effort),
        good_enough: 0.0,
        balance_sweeps: 0,
    };
    let mut pack_of = Vec::with_capacity(slots_per_node);
    for node_slots in phy2log.chunks_exact_mut(slots_per_node) {
        items.clear();
        colors.clear();
        for &x in node_slots.iter() {
            items.push(loads[x as usize] / logcnt[x as usize] as f64);
            colors.push(x as u32);
        }
        pack_of.clear();
        pack_of.extend((0..slots_per_node).map(|i| (i / k) as u32));
        state.assign_from(&pack_of, items, gpus_per_node);
        repair_duplicates(state, items, colors, true);
        improve(state, items, Some(colors), budget, search);
        let experts: Vec<i64> = state
            .slots
            .iter()
            .map(|&i| i64::from(colors[i as usize]))
            .collect();
        node_slots.copy_from_slice(&experts);
    }
}

//! The node-locality budget (issue 6): hierarchical plans that may spend a bounded share of each
//! layer's load on replicas outside their expert's home node.
//!
//! The strict hierarchical plan keeps every replica on the home node of its expert's group, so the
//! heaviest node bounds the layer: its GPUs carry at least `node load / GPUs per node`. With a
//! budget `b` (`Options::max_off_home_share`), the budget pass starts from the strict plan's
//! replicas:
//!
//! 1. **Target.** Water-fill the node loads: the heaviest nodes may shed `b * total` together, so
//!    the best reachable heaviest node is the level `h` with `sum max(0, node - h) = b * total`
//!    ([`water_level`]). The target GPU load is `max(h / GPUs per node, total / GPUs)`.
//! 2. **Moves.** While the node with the highest estimated GPU maximum (`max(node load / GPUs per
//!    node, largest replica)`) is above the target, one of its experts gets one more replica, placed
//!    in a lighter node: the lighter node gives up a redundant replica of one of its own experts
//!    (the one whose remaining replicas grow least), so its own load is unchanged. Adding a replica
//!    to expert `x` (load `w`, `c` replicas, `a` of them at home) moves `w a / (c (c + 1))` off its
//!    home node, which is exactly what the move costs from the budget. The move chosen brings the
//!    pair of nodes lowest, stopping at the target, and among moves that reach the target the
//!    cheapest one, so the budget goes where the water-filling puts it.
//! 3. **Packing.** Every node that changed is packed onto its GPUs by the refined packer's pieces
//!    (experts as colors, so no GPU holds two replicas of one expert when that can be avoided):
//!    a fresh start ([`greedy_rounds`]: with 8 GPUs, the replicas' rows merged by balanced largest
//!    differencing) and local search, the previous packing or the full packer when that does
//!    better.
//! 4. **Safety net.** The new plan replaces the strict one only when its GPU maximum is lower, its
//!    off-home share (as [`crate::metrics::off_home_share`] measures it) is within the budget and
//!    it has no more duplicated replicas.
//!
//! The pass starts from one of two baselines (`Baseline`). From the strict plan's replica counts,
//! before any node is packed, each node is packed once, after the moves, and the result must beat
//! the strict plan's lower bound (the heaviest node over its GPUs), which certifies it without
//! planning the strict layer. Where that does not apply or misses, the pass rewrites the finished
//! strict plan. Every expert keeps at least one replica on its home node;
//! `group_node` is not changed. [`water_filling_bound`] is the bound of the issue, for measuring
//! how much of the budget's promise a plan keeps.

use crate::metrics::{duplicated_replicas, max_gpu_load, min_max_replica_load};
use crate::options::{Effort, Options};
use crate::packing::exact::{self, ExactScratch};
use crate::packing::greedy::{RoundsScratch, greedy_rounds};
use crate::packing::local_search::{
    SearchBudget, SearchScratch, improve, improve_with_hint, pair_partners,
};
use crate::packing::weight::{Weight, larger};
use crate::packing::{PackState, Packer, Start};
use crate::shape::{Policy, Shape};
use std::cell::OnceCell;

use super::refined::LOAD_TOLERANCE;

/// Relative margin a move must gain, so that rounding noise never drives the loop.
const MIN_GAIN: f64 = 1e-9;

/// Relative slack of the repacking at `effort`: a node's packing search stops once its heaviest
/// GPU is within this of the layer's estimated maximum (a lower bound). Most of the search goes
/// into the last permille: at the default 1.5e-3, the 20%-budget DeepSeek-V3 prefill plan has a
/// balancedness 0.06% below the one with 5e-4 and takes 10% less time; `High` and `Max` spend
/// that time, and more, for plans above it.
fn pack_slack(effort: Effort) -> f64 {
    match effort {
        Effort::Fast => 3e-3,
        Effort::Default => 1.5e-3,
        Effort::High => 2e-4,
        Effort::Max => 5e-5,
    }
}

/// The full packer runs after the local search only when that search ends this far (relative)
/// above the level it aims at.
const FALLBACK_MISS: f64 = 3e-3;

/// From [`Baseline::StrictCounts`] the pass runs only when the budget's target is at least this
/// far (relative) below the strict plan's lower bound; closer, the result would too often miss the
/// bound.
const DIRECT_MARGIN: f64 = 1e-3;

/// Exchanges the repacking search may apply, per replica of the node.
const SEARCH_ROUNDS_PER_ITEM: usize = 8;

/// Up to this many slots per GPU minus one, the smallest replicas are kept in a fixed array.
const SMALL_FILL: usize = 16;

/// Values a node's refresh of its smallest replicas may collect below its hint.
const FILTER: usize = 2 * SMALL_FILL;

/// The lowest level `h >= mean` such that the loads above it sum to at most `shed`:
/// `sum_i max(0, node_loads[i] - h) <= shed`. With `shed = 0` this is the heaviest load.
pub fn water_level(node_loads: &[f64], shed: f64) -> f64 {
    let n = node_loads.len();
    if n == 0 {
        return 0.0;
    }
    let mut sorted = node_loads.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let shed = shed.max(0.0);
    let mut prefix = 0.0;
    for j in 0..n {
        prefix += sorted[j];
        // The j + 1 heaviest nodes lowered to one common level.
        let level = (prefix - shed) / (j + 1) as f64;
        if j + 1 == n || level >= sorted[j + 1] {
            return level.max(mean);
        }
    }
    mean
}

/// The node loads of the best strict split of groups onto `num_nodes` nodes (equal group counts):
/// the refined packer, then the exact search (optimal when it completes within its budget).
pub fn best_split_node_loads(group_loads: &[f64], num_nodes: usize) -> Vec<f64> {
    let mut packer = Packer::default();
    let mut state = packer
        .pack(group_loads, num_nodes, None, Effort::Default, None)
        .clone();
    if group_loads.len() <= 32 {
        exact::solve(
            &mut state,
            group_loads,
            2_000_000,
            &mut ExactScratch::default(),
        );
    }
    state.loads
}

/// The water-filling bound of issue 6 on one layer's max GPU load with a locality budget of
/// `max_off_home_share` (in `[0, 1]`).
///
/// Take the best strict split of groups onto nodes ([`best_split_node_loads`]); at most
/// `max_off_home_share * total` can leave its home node, so the heaviest node is at least the water
/// level `h` of [`water_level`], and the GPU maximum at least `h / GPUs per node`. It is also at
/// least the global policy's bounds `total / GPUs` and `m*` (the smallest possible largest replica
/// with `num_replicas` slots). Under the global policy (or one node) only those apply.
///
/// The bound ignores that foreign replicas need redundant slots: each node can host at most
/// `(num_replicas - num_logical) / num_nodes` of them, which can keep a plan above it when few
/// redundant slots per node meet a large node imbalance (8 nodes x 4 GPUs, for example).
pub fn water_filling_bound(loads: &[f64], shape: &Shape, max_off_home_share: f64) -> f64 {
    let total: f64 = loads.iter().sum();
    if total <= 0.0 || loads.is_empty() {
        return 0.0;
    }
    let global =
        (total / shape.num_gpus as f64).max(min_max_replica_load(loads, shape.num_replicas));
    if shape.policy() != Policy::Hierarchical || shape.num_nodes < 2 {
        return global;
    }
    let group_size = shape.num_logical / shape.num_groups;
    let groups: Vec<f64> = loads
        .chunks_exact(group_size)
        .map(|c| c.iter().sum())
        .collect();
    let nodes = best_split_node_loads(&groups, shape.num_nodes);
    let level = water_level(&nodes, max_off_home_share.clamp(0.0, 1.0) * total);
    global.max(level / shape.gpus_per_node() as f64)
}

/// The share of the total that must leave the heaviest of `node_loads` for a perfect node balance
/// (every node at the mean): `sum max(0, node - mean) / total`.
pub fn share_for_node_balance(node_loads: &[f64]) -> f64 {
    let total: f64 = node_loads.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mean = total / node_loads.len() as f64;
    node_loads.iter().map(|&v| (v - mean).max(0.0)).sum::<f64>() / total
}

/// Whether `options` give a locality budget that `shape` can spend: a positive
/// `max_off_home_share`, the hierarchical policy on two nodes or more, and redundant slots.
pub(crate) fn budget_applies(shape: &Shape, options: &Options) -> bool {
    options.max_off_home_share > 0.0
        && shape.policy() == Policy::Hierarchical
        && shape.num_nodes >= 2
        && shape.num_replicas > shape.num_logical
}

/// What the budget pass starts from, and so what its result must beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Baseline<'a> {
    /// The finished strict plan: the result needs a lower GPU maximum and no more duplicated
    /// replicas.
    StrictPlan,
    /// The strict plan's replicas before they are packed: `counts` gives each expert's replica
    /// count (at least one, every replica on the expert's home node; each node's counts add up to
    /// its slots). The strict packing is never computed: the result needs a GPU maximum below
    /// the strict plan's lower bound (the heaviest node spread over its GPUs), so below the
    /// strict plan whatever its packing, and no duplicated replica. Every node is packed once,
    /// after the moves. The plan row passed to [`spend_budget`] is output only.
    StrictCounts {
        /// Each node's home experts heaviest first (loads rounded to `f32`, ties by id), node
        /// after node, as the counts were made (the moves need that order).
        members: &'a [u32],
        counts: &'a [u32],
    },
}

/// Spends the layer's locality budget (see the module documentation) from `baseline`:
/// `phy2log` and `logcnt` are the layer's plan row (with [`Baseline::StrictPlan`], the strict
/// plan), rewritten in place when a plan within the budget beats the baseline; `group_node` gives
/// each group's home node and is not changed. Returns `true` when it rewrote the row; with
/// `false` the row is as it was (with [`Baseline::StrictCounts`], the caller then plans the
/// strict layer and spends on it). Does nothing where the budget does not apply
/// ([`budget_applies`]), nor, from the strict counts, when the target is not clearly below the
/// strict plan's lower bound. `scratch` holds the buffers between calls (any earlier content is
/// ignored).
pub(crate) fn spend_budget(
    loads: &[f64],
    shape: &Shape,
    options: &Options,
    group_node: &[i64],
    (phy2log, logcnt): (&mut [i64], &mut [i64]),
    scratch: &mut BudgetScratch,
    baseline: Baseline<'_>,
) -> bool {
    let budget = options.max_off_home_share;
    let (e, r, g, n, p) = (
        shape.num_logical,
        shape.num_replicas,
        shape.num_groups,
        shape.num_nodes,
        shape.num_gpus,
    );
    // The row as the baseline gives it (checked only where the budget applies).
    let row_ok = || match baseline {
        Baseline::StrictPlan => phy2log.iter().all(|&x| x >= 0 && (x as usize) < e),
        Baseline::StrictCounts { members, counts } => {
            members.len() == e && counts.len() == e && !counts.contains(&0)
        }
    };
    if !budget_applies(shape, options)
        || loads.len() != e
        || phy2log.len() != r
        || logcnt.len() != e
        || group_node.len() != g
        || group_node.iter().any(|&h| h < 0 || h as usize >= n)
        || !row_ok()
    {
        return false;
    }
    let total: f64 = loads.iter().sum();
    if !total.is_finite() || total <= 0.0 {
        return false;
    }
    let k = shape.slots_per_gpu();
    let BudgetScratch {
        layer,
        repack,
        gpu_loads,
        last_gpu,
    } = scratch;
    let sorted_members = match baseline {
        Baseline::StrictPlan => None,
        Baseline::StrictCounts { members, .. } => Some(members),
    };
    layer.prepare(loads, shape, group_node, sorted_members);
    let off_home = match baseline {
        Baseline::StrictPlan => layer.reset(phy2log, logcnt),
        Baseline::StrictCounts { counts, .. } => match layer.reset_to_counts(counts, group_node) {
            Some(off_home) => off_home,
            None => return false,
        },
    };
    let left = budget * total - off_home;
    if left <= 0.0 {
        return false;
    }
    let target = (water_level(&layer.node_load, left) / layer.q as f64).max(total / p as f64);
    // The maximum to beat, and the level below which trying pays.
    let (to_beat, worth_below) = match baseline {
        Baseline::StrictPlan => {
            let old_max = max_gpu_load(loads, phy2log, logcnt, k, gpu_loads);
            (old_max, old_max * (1.0 - MIN_GAIN))
        }
        Baseline::StrictCounts { .. } => {
            // Home replicas only: each node's load is its groups' load.
            let bound = layer.node_load.iter().copied().fold(0.0, f64::max) / layer.q as f64;
            (bound * (1.0 - MIN_GAIN), bound * (1.0 - DIRECT_MARGIN))
        }
    };
    if target >= worth_below {
        return false;
    }
    if layer.run_moves(target, left) == 0 {
        return false;
    }
    let packed = baseline == Baseline::StrictPlan;
    if !packed {
        // No node is packed yet.
        layer.changed.fill(true);
    }
    layer.repack(options.effort, packed, repack);
    let (new_max, off_home, new_duplicates) = layer.measure(last_gpu);
    let beaten = match baseline {
        Baseline::StrictPlan => new_max < to_beat * (1.0 - LOAD_TOLERANCE),
        Baseline::StrictCounts { .. } => new_max < to_beat,
    };
    if !beaten || off_home / total > budget {
        return false;
    }
    // A plan without duplicates has no more than the strict one (the usual case: no count).
    if new_duplicates > 0
        && (baseline != Baseline::StrictPlan || new_duplicates > duplicated_replicas(phy2log, k))
    {
        return false;
    }
    for (dst, &x) in phy2log.iter_mut().zip(&layer.slots) {
        *dst = i64::from(x);
    }
    for (dst, &c) in logcnt.iter_mut().zip(&layer.cnt) {
        *dst = i64::from(c);
    }
    true
}

/// Reusable buffers of [`spend_budget`]: one per planner, not shared between threads.
#[derive(Debug, Default)]
pub(crate) struct BudgetScratch {
    layer: Layer,
    repack: RepackScratch,
    gpu_loads: Vec<f64>,
    last_gpu: Vec<u32>,
}

/// Buffers of [`Layer::repack`].
#[derive(Debug, Default)]
struct RepackScratch {
    packer: Packer,
    search_state: PackState,
    dealt: PackState,
    search: SearchScratch,
    rounds: RoundsScratch,
    items: Vec<f64>,
    colors: Vec<u32>,
    start: Vec<u32>,
    pack_of: Vec<u32>,
    rank: Vec<u32>,
    order: Vec<usize>,
}

/// How a move sheds load from its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One more replica of the expert, abroad.
    Add,
    /// One home replica of the expert moves abroad; its slot goes to another home expert.
    Relocate,
    /// A foreign replica moves on to another node; its slot goes to a home expert.
    Forward,
}

/// One step: a replica of `expert` leaves node `from` (or is added) for node `to`.
#[derive(Debug, Clone, Copy)]
struct Move {
    kind: Kind,
    expert: u32,
    from: usize,
    to: usize,
    /// With [`Kind::Relocate`] and [`Kind::Forward`]: the expert of `from` taking the freed slot.
    taker: u32,
    /// Load moved off home (the budget spent).
    shed: f64,
}

/// A node that can take a foreign replica, as seen by one search for a move.
#[derive(Debug, Clone, Copy)]
struct Receiver {
    node: usize,
    load: f64,
    /// Largest replica after giving up the victim's slot, and the `k - 1` smallest replicas.
    peak: f64,
    fill: f64,
}

impl Receiver {
    /// The receiver's estimated maximum after taking a foreign replica of load `carried`: never
    /// lower for a larger `carried` (`carried >= 0`).
    #[inline(always)]
    fn est(&self, carried: f64, per_gpu: PerGpu) -> f64 {
        larger(
            per_gpu.of(self.load + carried),
            larger(self.peak, carried) + self.fill,
        )
    }

    /// A replica load from which on the receiver ends at or above `limit` (so, by
    /// [`Receiver::est`], also with any heavier replica): infinite when none is found. Checked
    /// near where each term of the estimate reaches the limit, so it lies within rounding of the
    /// least such load.
    fn refuses_from(&self, limit: f64, per_gpu: PerGpu) -> f64 {
        let load_at_limit = limit * per_gpu.q;
        // The two terms reach the limit near these loads (the peak is below the limit).
        let near = (load_at_limit - self.load).min(limit - self.fill).max(0.0);
        let scale = load_at_limit.max(self.load.abs()).max(limit);
        let margin = 8.0 * (f64::EPSILON * scale).max(f64::MIN_POSITIVE);
        let from = near + margin;
        if self.est(from, per_gpu) >= limit {
            from
        } else {
            f64::INFINITY
        }
    }
}

/// A node load spread over the node's `q` GPUs: `load / q`, bit for bit (the default, before a
/// layer is prepared, has no GPUs).
#[derive(Debug, Default, Clone, Copy)]
struct PerGpu {
    q: f64,
    /// `1 / q` when `q` is a power of two: then `load * inv` is `load / q` exactly (both round
    /// the same real number), and a multiplication is cheaper.
    inv: Option<f64>,
}

impl PerGpu {
    fn new(q: usize) -> Self {
        let qf = q as f64;
        PerGpu {
            q: qf,
            inv: q.is_power_of_two().then(|| 1.0 / qf),
        }
    }

    /// `load / q`.
    #[inline(always)]
    fn of(self, load: f64) -> f64 {
        match self.inv {
            Some(inv) => load * inv,
            None => load / self.q,
        }
    }
}

/// Keeps `top` as the largest `(value, expert)` pairs, descending.
fn insert_top(top: &mut [(f64, u32)], value: f64, expert: u32) {
    let mut i = top.len();
    while i > 0 && value > top[i - 1].0 {
        if i < top.len() {
            top[i] = top[i - 1];
        }
        i -= 1;
    }
    if i < top.len() {
        top[i] = (value, expert);
    }
}

/// The `fill` smallest of the values pushed (`0 < fill <= SMALL_FILL`), ascending.
struct Smallest {
    small: [f64; SMALL_FILL],
    fill: usize,
    /// Values kept so far (at most `fill`).
    len: usize,
}

impl Smallest {
    fn new(fill: usize) -> Self {
        Smallest {
            small: [f64::INFINITY; SMALL_FILL],
            fill,
            len: 0,
        }
    }

    #[inline]
    fn push(&mut self, v: f64) {
        let (fill, len) = (self.fill, self.len);
        let small = &mut self.small;
        if len < fill && (len == 0 || v >= small[len - 1]) {
            // Not below any kept value, and room left: it goes last (values pushed ascending,
            // as a node's lightest members).
            small[len] = v;
            self.len = len + 1;
        } else if v < small[fill - 1] {
            self.len = (len + 1).min(fill);
            // By selects (where `v` goes is unpredictable): each kept value above `v` moves up.
            for i in (1..fill).rev() {
                let (below, here) = (small[i - 1], small[i]);
                let kept = if here > v { v } else { here };
                small[i] = if below > v { below } else { kept };
            }
            small[0] = if small[0] > v { v } else { small[0] };
        }
    }

    /// The largest value kept (infinite while fewer than `fill` were pushed).
    fn largest(&self) -> f64 {
        self.small[self.fill - 1]
    }

    /// The sum of the values kept, ascending (the same for any push order).
    fn sum(&self) -> f64 {
        self.small[..self.fill].iter().sum()
    }
}

/// A layer's plan being rewritten: slots, counts and per-node figures. Its buffers are reused from
/// layer to layer ([`Layer::prepare`]).
#[derive(Debug, Default)]
struct Layer {
    loads: Vec<f64>,
    /// Nodes, slots per node, GPUs per node, slots per GPU.
    n: usize,
    s: usize,
    q: usize,
    k: usize,
    /// Node loads over `q`.
    per_gpu: PerGpu,
    /// Expert of each slot.
    slots: Vec<u32>,
    /// Home node of each expert.
    home_of: Vec<u32>,
    /// Replicas per expert, the load of each, and how many of them are on the expert's home node.
    cnt: Vec<u32>,
    rep: Vec<f64>,
    home_cnt: Vec<u32>,
    /// Replicas of each expert on each node: `on_node[expert * n + node]`.
    on_node: Vec<u16>,
    /// Replicas of other nodes' experts on each node.
    foreign: Vec<u32>,
    /// Per node, its home experts that have had two replicas or more (the only possible
    /// victims), in member order then in the order they got there.
    multi: Vec<Vec<u32>>,
    /// Home experts of each node: `members[member_start[m]..member_start[m + 1]]`, heaviest first
    /// once `sorted[m]`.
    members: Vec<u32>,
    member_start: Vec<usize>,
    sorted: Vec<bool>,
    keys: Vec<u64>,
    node_load: Vec<f64>,
    node_maxrep: Vec<f64>,
    /// Whether a move may have removed the node's largest replica ([`Layer::settle_node`]).
    maxrep_stale: Vec<bool>,
    /// Sum of the `k - 1` smallest replica loads of each node, and the largest of them.
    node_fill: Vec<f64>,
    node_fill_max: Vec<f64>,
    /// Per node: cheapest redundant home replica to give up (expert, its replicas' load after).
    victim: Vec<Option<(u32, f64)>>,
    exporter: Vec<bool>,
    changed: Vec<bool>,
    values: Vec<f64>,
    receivers: Vec<Receiver>,
}

/// The best candidate so far: its key (see [`Layer::best_move`]) and the move.
type Best = Option<((f64, f64, f64), Move)>;

/// One search for a move out of node `a` ([`Layer::best_move`]): the figures its candidates are
/// compared by.
struct Search<'a> {
    layer: &'a Layer,
    receivers: &'a [Receiver],
    per_gpu: PerGpu,
    a: usize,
    /// The two largest replicas of `a` of distinct experts ([`Layer::top_replicas`]), found when
    /// first needed.
    top: OnceCell<[(f64, u32); 2]>,
    load_a: f64,
    fill_a: f64,
    /// The node's largest replica (`node_maxrep`: never below any replica of the node).
    maxrep_a: f64,
    est_a: f64,
    /// Both nodes of a move must end below this.
    limit: f64,
    /// No receiver takes a replica this heavy or heavier below the limit.
    refused: f64,
    target: f64,
    /// Budget left.
    left: f64,
}

impl Search<'_> {
    /// The largest replica of `a` of an expert other than `skip` (0 without one).
    fn largest_without(&self, skip: u32) -> f64 {
        self.top
            .get_or_init(|| self.layer.top_replicas(self.a))
            .iter()
            .find(|&&(_, x)| x != skip)
            .map_or(0.0, |&(v, _)| v)
    }

    /// Keeps in `best` the better of it and move `m` to the best receiver: `leaving` is the load
    /// leaving `a`, `carried` the load of the new foreign replica; the largest replica left on `a`
    /// is the largest of an expert other than `skip`, or `grown`. Inlined: it runs for most
    /// members of `a`.
    #[inline(always)]
    fn consider(
        &self,
        best: &mut Best,
        m: Move,
        (leaving, carried): (f64, f64),
        (skip, grown): (u32, f64),
    ) {
        if carried >= self.refused || m.shed > self.left {
            return;
        }
        let layer = self.layer;
        // A node whose estimate is its largest replica (plus the smallest others on that GPU)
        // may need several of its largest experts split before it gets lower: adding a
        // replica to one of them counts when it keeps the estimate and lowers the load.
        let plateau = m.kind == Kind::Add && layer.rep[m.expert as usize] >= self.maxrep_a;
        let spread_load = self.per_gpu.of(self.load_a - leaving);
        // The largest replica left on `a` is at most its largest now or `grown`: when that is
        // not above the spread load, the estimate is the spread load (and a peak at the limit
        // would put it there too).
        let est_a_new = if self.maxrep_a.max(grown) + self.fill_a <= spread_load {
            spread_load
        } else {
            let a_peak = self.largest_without(skip).max(grown) + self.fill_a;
            if a_peak >= self.limit && !plateau {
                return;
            }
            larger(spread_load, a_peak)
        };
        if est_a_new >= self.limit && !(plateau && est_a_new <= self.est_a) {
            return;
        }
        if let Some(((key, _, _), _)) = *best {
            if larger(est_a_new, self.target) > key {
                return;
            }
        }
        // An expert with all replicas at home has none on a receiver.
        let x = m.expert as usize;
        let spread = layer.cnt[x] != layer.home_cnt[x];
        for rc in self.receivers {
            if (m.kind == Kind::Forward && rc.node == layer.home(m.expert))
                || (spread && layer.count_on(m.expert, rc.node) >= layer.q)
            {
                continue;
            }
            let est_b_new = rc.est(carried, self.per_gpu);
            if est_b_new >= self.limit {
                continue;
            }
            let key = (
                larger(larger(est_a_new, est_b_new), self.target),
                m.shed,
                est_b_new,
            );
            if best.as_ref().is_none_or(|(k0, _)| key < *k0) {
                *best = Some((key, Move { to: rc.node, ..m }));
            }
        }
    }
}

impl Layer {
    /// Sizes the buffers for `shape` and takes the layer's loads and homes; `sorted_members`, when
    /// given, are each node's home experts heaviest first, node after node (as
    /// [`Layer::sort_members`] orders them).
    fn prepare(
        &mut self,
        loads: &[f64],
        shape: &Shape,
        group_node: &[i64],
        sorted_members: Option<&[u32]>,
    ) {
        let (e, r, n) = (shape.num_logical, shape.num_replicas, shape.num_nodes);
        let group_size = e / shape.num_groups;
        self.n = n;
        self.s = r / n;
        self.q = shape.num_gpus / n;
        self.per_gpu = PerGpu::new(self.q);
        self.k = shape.slots_per_gpu();
        self.loads.clear();
        self.loads.extend_from_slice(loads);
        self.member_start.clear();
        self.members.clear();
        if let Some(sorted) = sorted_members {
            // Every node is home to `e / n` experts (the groups split evenly).
            self.members.extend_from_slice(sorted);
            self.member_start.extend((0..=n).map(|node| node * (e / n)));
        } else {
            for node in 0..n {
                self.member_start.push(self.members.len());
                for (group, &home) in group_node.iter().enumerate() {
                    if home as usize == node {
                        self.members.extend(
                            (group * group_size..(group + 1) * group_size).map(|x| x as u32),
                        );
                    }
                }
            }
            self.member_start.push(self.members.len());
        }
        self.home_of.resize(e, 0);
        for (experts, &home) in self.home_of.chunks_exact_mut(group_size).zip(group_node) {
            experts.fill(home as u32);
        }
        for v in [
            &mut self.node_load,
            &mut self.node_maxrep,
            &mut self.node_fill,
            &mut self.node_fill_max,
        ] {
            v.clear();
            v.resize(n, 0.0);
        }
        self.sorted.clear();
        self.sorted.resize(n, sorted_members.is_some());
        self.victim.clear();
        self.victim.resize(n, None);
        self.exporter.clear();
        self.exporter.resize(n, false);
        self.changed.clear();
        self.changed.resize(n, false);
        self.maxrep_stale.clear();
        self.maxrep_stale.resize(n, false);
    }

    /// Starts over from the plan row `phy2log` / `logcnt`; returns the load carried by replicas
    /// outside their home node.
    fn reset(&mut self, phy2log: &[i64], logcnt: &[i64]) -> f64 {
        self.slots.clear();
        self.slots.extend(phy2log.iter().map(|&x| x as u32));
        self.cnt.clear();
        self.cnt.extend(logcnt.iter().map(|&c| c as u32));
        self.start_counts();
        let mut off_home = 0.0;
        for node in 0..self.n {
            for &x in &self.slots[node * self.s..(node + 1) * self.s] {
                self.on_node[x as usize * self.n + node] += 1;
                if self.home_of[x as usize] as usize == node {
                    self.home_cnt[x as usize] += 1;
                } else {
                    self.foreign[node] += 1;
                    off_home += self.rep[x as usize];
                }
            }
        }
        self.refresh_all();
        off_home
    }

    /// Starts over from strict replica counts ([`Baseline::StrictCounts`]): each node's slots
    /// hold its home experts' replicas, groups in ascending id order (`group_node` gives their
    /// homes), `counts[x] > 0` replicas of expert `x`. Returns the load outside home nodes (none),
    /// or `None` when a node's counts do not fill exactly its slots.
    fn reset_to_counts(&mut self, counts: &[u32], group_node: &[i64]) -> Option<f64> {
        let (n, s) = (self.n, self.s);
        let group_size = counts.len() / group_node.len().max(1);
        // Each expert's first slot first, then the others copy the slot before them (most experts
        // have one replica: no branch per expert).
        const UNSET: u32 = u32::MAX;
        self.slots.clear();
        self.slots.resize(n * s, UNSET);
        let slots = &mut self.slots[..];
        let mut slot = 0;
        for node in 0..n {
            let end = (node + 1) * s;
            for (group, _) in (group_node.iter().enumerate()).filter(|&(_, &h)| h as usize == node)
            {
                let first = group * group_size;
                for (x, &c) in (first as u32..).zip(&counts[first..first + group_size]) {
                    if slot >= end {
                        return None;
                    }
                    slots[slot] = x;
                    slot += c as usize;
                }
            }
            if slot != end {
                return None;
            }
        }
        let mut last = UNSET;
        for x in slots.iter_mut() {
            last = if *x == UNSET { last } else { *x };
            *x = last;
        }
        self.cnt.clear();
        self.cnt.extend_from_slice(counts);
        self.start_counts();
        // Every replica is on its expert's home node.
        self.home_cnt.copy_from_slice(counts);
        for ((on_node, &home), &c) in self
            .on_node
            .chunks_exact_mut(n)
            .zip(&self.home_of)
            .zip(counts)
        {
            on_node[home as usize] = c as u16;
        }
        self.refresh_all();
        Some(0.0)
    }

    /// With `slots` and `cnt` set: each replica's load, and the other per-expert and per-node
    /// counts cleared (`home_cnt`, `on_node`, `foreign`) or rebuilt (`multi`).
    fn start_counts(&mut self) {
        self.rep.clear();
        // One replica (most experts): its load, with no division.
        self.rep.extend(
            self.loads.iter().zip(&self.cnt).map(
                |(&w, &c)| {
                    if c == 1 { w } else { w / f64::from(c) }
                },
            ),
        );
        let e = self.cnt.len();
        self.home_cnt.clear();
        self.home_cnt.resize(e, 0);
        self.on_node.clear();
        self.on_node.resize(e * self.n, 0);
        self.foreign.clear();
        self.foreign.resize(self.n, 0);
        self.multi.resize_with(self.n, Vec::new);
        for node in 0..self.n {
            let members = &self.members[self.member_start[node]..self.member_start[node + 1]];
            // Each member written, kept by advancing past it when replicated (few are: no
            // branch per member).
            let multi = &mut self.multi[node];
            multi.clear();
            multi.resize(members.len(), 0);
            let mut kept = 0;
            for &y in members {
                multi[kept] = y;
                kept += usize::from(self.cnt[y as usize] >= 2);
            }
            multi.truncate(kept);
        }
    }

    /// With the counts indexed: every node's load, largest and smallest replicas and victim, no
    /// node an exporter or changed yet.
    fn refresh_all(&mut self) {
        self.exporter.fill(false);
        self.changed.fill(false);
        for node in 0..self.n {
            self.refresh_node(node);
            self.refresh_victim(node);
        }
    }

    /// The home experts of `node` (heaviest first once `sorted[node]`).
    fn members_of(&self, node: usize) -> &[u32] {
        &self.members[self.member_start[node]..self.member_start[node + 1]]
    }

    /// The experts in the slots of `node`.
    fn node_slots(&self, node: usize) -> &[u32] {
        &self.slots[node * self.s..(node + 1) * self.s]
    }

    fn home(&self, x: u32) -> usize {
        self.home_of[x as usize] as usize
    }

    fn rep(&self, x: u32) -> f64 {
        self.rep[x as usize]
    }

    /// Changes the replica count of `x` by `delta`, and the load and largest replica of every
    /// node holding `x` with it ([`Layer::replaced`]); with `at_home`, only its home node holds
    /// it.
    fn recount(&mut self, x: u32, delta: i32, at_home: bool) {
        let c = &mut self.cnt[x as usize];
        *c = c.wrapping_add_signed(delta);
        let old = self.rep[x as usize];
        let new = self.loads[x as usize] / f64::from(*c);
        self.rep[x as usize] = new;
        let nodes = if at_home {
            let home = self.home(x);
            home..home + 1
        } else {
            0..self.n
        };
        for node in nodes {
            let on = self.count_on(x, node);
            if on > 0 {
                self.node_load[node] += on as f64 * (new - old);
                self.replaced(node, old, new, true);
            }
        }
    }

    /// Keeps the largest replica of `node` when replicas of load `old` became `new` (`gone`: no
    /// replica of load `old` is left of that expert): marks it stale when the largest may be gone.
    fn replaced(&mut self, node: usize, old: f64, new: f64, gone: bool) {
        let maxrep = &mut self.node_maxrep[node];
        if gone && old >= *maxrep && new < old {
            self.maxrep_stale[node] = true;
        }
        *maxrep = larger(new, *maxrep);
    }

    /// Orders the home experts of `node` heaviest first (lowest id on ties), so that the search
    /// for a move can stop early. The order is on loads rounded to `f32` (exact for `f32` loads;
    /// ties by id), a cheaper key than the exact one and as deterministic.
    fn sort_members(&mut self, node: usize) {
        let members = &mut self.members[self.member_start[node]..self.member_start[node + 1]];
        self.keys.clear();
        self.keys.extend(
            members
                .iter()
                .map(|&x| (self.loads[x as usize] as f32).descending_key(x)),
        );
        self.keys.sort_unstable();
        for (dst, &key) in members.iter_mut().zip(&self.keys) {
            *dst = f32::key_index(key);
        }
        self.sorted[node] = true;
    }

    /// Replicas of `x` on `node`.
    fn count_on(&self, x: u32, node: usize) -> usize {
        usize::from(self.on_node[x as usize * self.n + node])
    }

    /// Puts `new` in place of `old` in the flat `slot` of `node`, updating the node's load (by
    /// the difference: rounding drifts, deterministically) and largest replica.
    fn replace(&mut self, slot: usize, node: usize, old: u32, new: u32) {
        self.slots[slot] = new;
        self.on_node[old as usize * self.n + node] -= 1;
        self.on_node[new as usize * self.n + node] += 1;
        let (v_old, v_new) = (self.rep(old), self.rep(new));
        self.node_load[node] += v_new - v_old;
        let gone = self.count_on(old, node) == 0;
        self.replaced(node, v_old, v_new, gone);
        self.foreign[node] -= u32::from(self.home(old) != node);
        self.foreign[node] += u32::from(self.home(new) != node);
    }

    /// A lower estimate of the node's heaviest GPU after packing.
    fn est(&self, node: usize) -> f64 {
        larger(
            self.per_gpu.of(self.node_load[node]),
            self.node_maxrep[node] + self.node_fill[node],
        )
    }

    fn max_est(&self) -> f64 {
        (0..self.n).map(|m| self.est(m)).fold(0.0, f64::max)
    }

    /// The plan as it stands, measured in one pass over its slots: its largest GPU load, its
    /// load outside home nodes and its duplicated replicas, as [`max_gpu_load`],
    /// [`crate::metrics::off_home_share`] (times the total) and [`duplicated_replicas`]
    /// measure a plan row: the same sums in the same order (each slot's `load / count`), so the
    /// same figures, without building the row. `last_gpu` is scratch.
    fn measure(&self, last_gpu: &mut Vec<u32>) -> (f64, f64, usize) {
        last_gpu.clear();
        last_gpu.resize(self.cnt.len(), u32::MAX);
        let (mut max, mut off, mut duplicates) = (0.0f64, 0.0, 0);
        for (gpu, slots) in (0u32..).zip(self.slots.chunks_exact(self.k)) {
            let node = gpu as usize / self.q;
            let mut load = 0.0;
            for &x in slots {
                let v = self.rep(x);
                load += v;
                if self.home(x) != node {
                    off += v;
                }
                let seen = &mut last_gpu[x as usize];
                duplicates += usize::from(*seen == gpu);
                *seen = gpu;
            }
            max = larger(load, max);
        }
        (max, off, duplicates)
    }

    /// Recomputes the node's load, largest replica and `k - 1` smallest replicas.
    fn refresh_node(&mut self, node: usize) {
        let node_slots = self.node_slots(node);
        let (mut load, mut maxrep) = (0.0, 0.0f64);
        for &x in node_slots {
            let v = self.rep[x as usize];
            load += v;
            maxrep = larger(v, maxrep);
        }
        self.node_load[node] = load;
        self.node_maxrep[node] = maxrep;
        self.maxrep_stale[node] = false;
        self.refresh_fill(node, f64::INFINITY);
    }

    /// After a move kept the node's load and largest replica ([`Layer::replace`],
    /// [`Layer::recount`]): recomputes the largest replica where it is stale, and with `fill` the
    /// `k - 1` smallest replicas (needed only when a replica at or below the largest of them
    /// changed).
    fn settle_node(&mut self, node: usize, fill: bool) {
        if self.maxrep_stale[node] {
            let node_slots = self.node_slots(node);
            self.node_maxrep[node] = node_slots
                .iter()
                .fold(0.0, |m, &x| larger(self.rep[x as usize], m));
            self.maxrep_stale[node] = false;
        }
        if fill {
            self.refresh_fill(node, self.node_fill_max[node]);
        }
    }

    /// Recomputes the sum of the node's `k - 1` smallest replicas and the largest of them;
    /// `hint` is a guess of that largest (the one before a move; infinite without a guess).
    fn refresh_fill(&mut self, node: usize, hint: f64) {
        let node_slots = &self.slots[node * self.s..(node + 1) * self.s];
        // The GPU holding the largest replica also holds `k - 1` others, at least the smallest.
        let fill = self.k - 1;
        self.node_fill[node] = if fill == 0 {
            self.node_fill_max[node] = f64::NEG_INFINITY;
            0.0
        } else if fill <= SMALL_FILL {
            let mut small = Smallest::new(fill);
            // Home replicas only, members heaviest first, every replicated member in `multi` (so
            // from the strict counts until the node exports): the lightest unreplicated members
            // from the end, then the replicated ones.
            if self.sorted[node] && self.foreign[node] == 0 && !self.exporter[node] {
                let members = self.members_of(node);
                for &x in members.iter().rev() {
                    let w = self.loads[x as usize];
                    if self.cnt[x as usize] != 1 || self.count_on(x, node) == 0 {
                        continue;
                    }
                    // Earlier members round to at least as much: heavier than every kept value.
                    if (w as f32) > (small.largest() as f32) {
                        break;
                    }
                    small.push(w);
                }
                for &y in &self.multi[node] {
                    if self.cnt[y as usize] != 1 {
                        for _ in 0..self.count_on(y, node).min(fill) {
                            small.push(self.rep[y as usize]);
                        }
                    }
                }
            } else {
                // The values at or below `hint`: when there are `fill` of them or more (and fewer
                // than the buffer holds), the kept ones are among them.
                let mut below = [0.0; FILTER];
                let mut m = 0;
                if hint < f64::INFINITY {
                    for &x in node_slots {
                        let v = self.rep[x as usize];
                        below[m.min(FILTER - 1)] = v;
                        m += usize::from(v <= hint);
                    }
                }
                if (fill..FILTER).contains(&m) {
                    for &v in &below[..m] {
                        small.push(v);
                    }
                } else {
                    // Backwards: where a node's replicas come heaviest first (as each GPU's after
                    // a deal), ascending values are rarely inserted (any order, same result).
                    for &x in node_slots.iter().rev() {
                        small.push(self.rep[x as usize]);
                    }
                }
            }
            self.node_fill_max[node] = small.largest();
            small.sum()
        } else {
            self.values.clear();
            self.values
                .extend(node_slots.iter().map(|&x| self.rep[x as usize]));
            self.values.select_nth_unstable_by(fill - 1, f64::total_cmp);
            self.node_fill_max[node] = self.values[fill - 1];
            self.values[..fill].iter().sum()
        };
    }

    /// The home expert of `node` whose replicas grow least when it gives up one, among experts with
    /// at least two replicas, all of them at home (so the node's load does not change).
    fn refresh_victim(&mut self, node: usize) {
        let mut best: Option<(u32, f64)> = None;
        for &y in &self.multi[node] {
            let (c, a) = (self.cnt[y as usize], self.home_cnt[y as usize]);
            if a < 2 || c != a {
                continue;
            }
            // Compare loads per replica after giving up one (w / (c - 1)) without dividing.
            let w = self.loads[y as usize];
            if best.is_none_or(|(z, _)| {
                w * f64::from(self.cnt[z as usize] - 1) < self.loads[z as usize] * f64::from(c - 1)
            }) {
                best = Some((y, 0.0));
            }
        }
        if let Some((y, _)) = best {
            best = Some((
                y,
                self.loads[y as usize] / f64::from(self.cnt[y as usize] - 1),
            ));
        }
        self.victim[node] = best;
    }

    /// Applies moves until the heaviest node reaches `target`, no move lowers it or the budget
    /// (`left`, in load) runs out. Returns the number of moves.
    fn run_moves(&mut self, target: f64, mut left: f64) -> usize {
        let mut moves = 0;
        // Every move lowers the sorted vector of node (estimate, load) pairs, so the loop ends;
        // the cap only guards against estimates that a move changes differently than predicted.
        let max_moves = 4 * self.slots.len();
        while moves < max_moves {
            let (mut a, mut est_a) = (0, self.est(0));
            for node in 1..self.n {
                let est = self.est(node);
                if est > est_a {
                    (a, est_a) = (node, est);
                }
            }
            if est_a <= target * (1.0 + MIN_GAIN) {
                break;
            }
            let Some(m) = self.best_move(a, est_a, target, left) else {
                break;
            };
            self.apply(m);
            left -= m.shed;
            moves += 1;
        }
        moves
    }

    /// The best move out of node `a`, or `None` when no move within `left` lowers it.
    ///
    /// A candidate leaves `a` and the receiver at estimated maxima `est_a'` and `est_b'`; it counts
    /// when both are below `est_a` (or, for a replica added to one of `a`'s largest experts, when
    /// `est_a'` stays at `est_a` and `a` gets lighter). The best has the lowest
    /// `max(est_a', est_b', target)` (lower the pair, but no further than the target), then spends
    /// the least budget, then has the lightest receiver.
    fn best_move(&mut self, a: usize, est_a: f64, target: f64, left: f64) -> Option<Move> {
        let per_gpu = self.per_gpu;
        let limit = est_a * (1.0 - MIN_GAIN);
        // A receiver's estimate only grows with the load it takes: one already at the limit
        // before taking any never counts, and without receivers there is no move.
        let mut receivers = std::mem::take(&mut self.receivers);
        receivers.clear();
        for b in 0..self.n {
            if b == a || self.exporter[b] {
                continue;
            }
            if let Some((_, grown)) = self.victim[b] {
                let rc = Receiver {
                    node: b,
                    load: self.node_load[b],
                    peak: self.node_maxrep[b].max(grown),
                    fill: self.node_fill[b],
                };
                if rc.est(0.0, per_gpu) < limit {
                    receivers.push(rc);
                }
            }
        }
        if receivers.is_empty() {
            self.receivers = receivers;
            return None;
        }
        if !self.sorted[a] {
            self.sort_members(a);
        }
        // The heaviest taker ([`Layer::taker`]) with its replicas' load once it takes a slot, and
        // for that taker itself the next one, each found when first needed (a foreign expert is
        // no taker of `a`).
        let taker = |skip: u32| {
            let z = self.taker(a, skip).1;
            (z != u32::MAX).then(|| {
                (
                    z,
                    self.loads[z as usize] / f64::from(self.cnt[z as usize] + 1),
                )
            })
        };
        let (mut first_taker, mut next_taker) = (None, None);
        let foreign_here = self.foreign[a] > 0;
        let (load_a, fill_a) = (self.node_load[a], self.node_fill[a]);
        let mut best = None;
        let maxrep_a = self.node_maxrep[a];
        let search = Search {
            layer: self,
            receivers: &receivers,
            a,
            top: OnceCell::new(),
            refused: receivers
                .iter()
                .map(|rc| rc.refuses_from(limit, per_gpu))
                .fold(0.0, f64::max),
            per_gpu,
            load_a,
            fill_a,
            maxrep_a,
            est_a,
            limit,
            target,
            left,
        };
        for &x in self.members_of(a) {
            let w = self.loads[x as usize];
            if w <= 0.0 {
                break;
            }
            // Every move of `x` takes at most `w / 2` off `a`; members come heaviest first.
            if let Some(((key, _, _), _)) = best {
                if larger(per_gpu.of(load_a - 0.5 * w), target) > key {
                    break;
                }
            }
            let (ci, hi) = (self.cnt[x as usize], self.home_cnt[x as usize]);
            let (c, h) = (f64::from(ci), f64::from(hi));
            // One more replica of `x`, abroad. A relocated replica is heavier (`w / c`): when no
            // receiver takes the added one, none takes that either.
            let added = w / (c + 1.0);
            if added >= search.refused {
                continue;
            }
            let base = Move {
                kind: Kind::Add,
                expert: x,
                from: a,
                to: a,
                taker: u32::MAX,
                shed: w * h / (c * (c + 1.0)),
            };
            search.consider(&mut best, base, (base.shed, added), (x, added));
            // One home replica of `x` moves abroad; its slot goes to another expert of `a`.
            // `rep` is `w / c`.
            let moved = self.rep(x);
            if hi >= 2 && moved < search.refused {
                let taker_for_x = match *first_taker.get_or_insert_with(|| taker(u32::MAX)) {
                    Some((z, _)) if z == x => *next_taker.get_or_insert_with(|| taker(x)),
                    first => first,
                };
                if let Some((z, grown)) = taker_for_x {
                    let m = Move {
                        kind: Kind::Relocate,
                        taker: z,
                        shed: moved,
                        ..base
                    };
                    search.consider(&mut best, m, (moved, moved), (z, grown));
                }
            }
        }
        if foreign_here {
            // A foreign replica held here moves on to another node; its slot goes to an expert
            // of `a`. The budget does not change.
            let node_slots = self.node_slots(a);
            for (i, &x) in node_slots.iter().enumerate() {
                if self.home(x) == a || node_slots[..i].contains(&x) {
                    continue;
                }
                let carried = self.rep(x);
                if carried >= search.refused {
                    continue;
                }
                if let Some((z, grown)) = *first_taker.get_or_insert_with(|| taker(u32::MAX)) {
                    let m = Move {
                        kind: Kind::Forward,
                        expert: x,
                        from: a,
                        to: a,
                        taker: z,
                        shed: 0.0,
                    };
                    search.consider(&mut best, m, (carried, carried), (z, grown));
                }
            }
        }
        self.receivers = receivers;
        best.map(|(_, m)| m)
    }

    /// Whether home expert `x` can take a freed slot of its node: all its replicas at home, fewer
    /// than `q` of them.
    fn can_take(&self, x: u32) -> bool {
        let (c, h) = (self.cnt[x as usize], self.home_cnt[x as usize]);
        c == h && (c as usize) < self.q
    }

    /// The heaviest replica of a home expert of `a` other than `skip` that can take a freed slot
    /// ([`Layer::can_take`]), and its expert: the first member (heaviest first) of the largest
    /// such replica load, or `(0, u32::MAX)` when none is positive. Needs `a`'s members sorted.
    fn taker(&self, a: usize, skip: u32) -> (f64, u32) {
        let mut taker = (0.0f64, u32::MAX);
        for &x in self.members_of(a) {
            // Members come heaviest first on f32-rounded loads (rounding keeps the order), and a
            // replica is at most its expert's load: once a load rounds below the taker's, no
            // later replica is heavier.
            if (self.loads[x as usize] as f32) < (taker.0 as f32) {
                break;
            }
            let v = self.rep(x);
            if v > taker.0 && x != skip && self.can_take(x) {
                taker = (v, x);
            }
        }
        taker
    }

    /// The two largest replicas of `a` of distinct experts (enough for the largest without any
    /// one expert), descending, the first in member then slot order among equal ones; `(0,
    /// u32::MAX)` for a missing one. Needs `a`'s members sorted.
    fn top_replicas(&self, a: usize) -> [(f64, u32); 2] {
        let mut top = [(0.0f64, u32::MAX); 2];
        for &x in self.members_of(a) {
            // As in `Layer::taker`.
            if (self.loads[x as usize] as f32) < (top[1].0 as f32) {
                break;
            }
            insert_top(&mut top, self.rep(x), x);
        }
        if self.foreign[a] > 0 {
            for &x in self.node_slots(a) {
                if self.home(x) != a && !top.iter().any(|&(_, t)| t == x) {
                    insert_top(&mut top, self.rep(x), x);
                }
            }
        }
        top
    }

    /// Applies a move: the receiver's victim gives its slot to a replica of the expert; with a
    /// taker, one replica of the expert on `from` gives its slot to the taker.
    fn apply(&mut self, m: Move) {
        let (x, a, b) = (m.expert, m.from, m.to);
        let (y, _) = self.victim[b].expect("a receiver has a victim");
        let spread_before = self.cnt[x as usize] != self.home_cnt[x as usize];
        // The smallest replica load that changes: the fill of a node needs recomputing only when
        // it is at or below the node's largest fill replica.
        let mut lowest = self.rep(x).min(self.rep(y));
        if m.kind != Kind::Add {
            lowest = lowest.min(self.rep(m.taker));
        }
        let slot = self.pick_slot(b, y, x);
        self.replace(slot, b, y, x);
        // The victim's and the taker's replicas are all at home.
        self.recount(y, -1, true);
        self.home_cnt[y as usize] -= 1;
        if m.kind == Kind::Add {
            self.recount(x, 1, false);
        } else {
            let z = m.taker;
            let slot = self.pick_slot(a, x, z);
            self.replace(slot, a, x, z);
            self.recount(z, 1, true);
            self.home_cnt[z as usize] += 1;
            if self.cnt[z as usize] == 2 {
                self.multi[a].push(z);
            }
            if m.kind == Kind::Relocate {
                self.home_cnt[x as usize] -= 1;
            }
        }
        if m.kind != Kind::Forward {
            self.exporter[a] = true;
        }
        self.changed[a] = true;
        self.changed[b] = true;
        lowest = lowest.min(self.rep(x)).min(self.rep(y));
        if m.kind != Kind::Add {
            lowest = lowest.min(self.rep(m.taker));
        }
        if spread_before && m.kind == Kind::Add {
            // The expert's replicas elsewhere got lighter too (nodes without one are unchanged).
            for node in 0..self.n {
                if node == a || node == b || self.count_on(x, node) > 0 {
                    self.settle_node(node, lowest <= self.node_fill_max[node]);
                }
            }
        } else {
            self.settle_node(a, lowest <= self.node_fill_max[a]);
            self.settle_node(b, lowest <= self.node_fill_max[b]);
        }
        if !self.exporter[a] {
            // An exporter never receives: its victim is not needed.
            self.refresh_victim(a);
        }
        self.refresh_victim(b);
    }

    /// A slot of `node` holding `old`, preferably on a GPU without `new`.
    fn pick_slot(&self, node: usize, old: u32, new: u32) -> usize {
        let (s, k) = (self.s, self.k);
        let slots = self.node_slots(node);
        let first_in = |gpu: &[u32]| gpu.iter().position(|&v| v == old);
        if self.count_on(new, node) == 0 {
            // No GPU of the node holds `new`: the first slot holding `old`.
            return node * s + first_in(slots).expect("the node holds the replica");
        }
        let mut pick = None;
        for (g, gpu) in slots.chunks_exact(k).enumerate() {
            // Whole GPUs compared without branches (where the experts are is unpredictable).
            let (has_old, has_new) = gpu.iter().fold((false, false), |(o, n), &v| {
                (o | (v == old), n | (v == new))
            });
            if has_old {
                let slot = node * s + g * k + first_in(gpu).unwrap_or(0);
                if !has_new {
                    return slot;
                }
                pick.get_or_insert(slot);
            }
        }
        pick.expect("the node holds the replica")
    }

    /// Packs the replicas of every changed node onto its GPUs again, unless the current packing
    /// is already within the layer's estimated maximum and has no duplicate; then also every other
    /// node whose heaviest GPU is above the changed nodes' (the strict planner may leave lighter
    /// nodes loosely packed below its old maximum).
    ///
    /// A node gets a fresh start ([`greedy_rounds`]) improved by local search; when that ends more
    /// than [`pack_slack`] above the level, the search also runs from the current packing (with
    /// `packed`: the slots are a packing, not just each node's replicas) and the better result
    /// counts, and the full packer is the last resort.
    fn repack(&mut self, effort: Effort, packed: bool, scratch: &mut RepackScratch) {
        let slack = pack_slack(effort);
        let level = self.max_est() * (1.0 + slack);
        let RepackScratch {
            packer,
            search_state,
            dealt,
            search,
            rounds,
            items,
            colors,
            start,
            pack_of,
            rank,
            order,
        } = scratch;
        start.clear();
        start.extend((0..self.s).map(|i| (i / self.k) as u32));
        pack_of.resize(self.s, 0);
        rank.resize(self.s, 0);
        let mut bar = 0.0f64;
        // Changed nodes heaviest first: the first one sets the bar the others only need to meet.
        order.clear();
        order.extend(0..self.n);
        order.sort_by(|&a, &b| self.est(b).total_cmp(&self.est(a)).then(a.cmp(&b)));
        for pass in 0..2 {
            for &node in order.iter() {
                if self.changed[node] != (pass == 0) {
                    continue;
                }
                let base = node * self.s;
                let node_slots = &self.slots[base..base + self.s];
                // An unpacked node has no packing to keep or to search from.
                let clean = packed
                    && node_slots
                        .chunks_exact(self.k)
                        .all(|gpu| (1..gpu.len()).all(|i| !gpu[..i].contains(&gpu[i])));
                let gpu_max = if clean {
                    node_slots
                        .chunks_exact(self.k)
                        .map(|gpu| gpu.iter().map(|&x| self.rep[x as usize]).sum::<f64>())
                        .fold(0.0, f64::max)
                } else {
                    f64::INFINITY
                };
                if clean && gpu_max <= level.max(bar) {
                    bar = bar.max(gpu_max);
                    continue;
                }
                items.clear();
                items.extend(node_slots.iter().map(|&x| self.rep[x as usize]));
                colors.clear();
                colors.extend_from_slice(node_slots);
                let good_enough = level.max(bar);
                let budget = SearchBudget {
                    max_rounds: SEARCH_ROUNDS_PER_ITEM * self.s,
                    pair_swap_partners: pair_partners(effort),
                    good_enough,
                    balance_sweeps: 0,
                };
                // A fresh start first (the node's load usually changed too much for its old
                // packing to be a good start: about half the search rounds), then the current
                // packing when that misses the level by more than the slack.
                let dealt_clean =
                    greedy_rounds(items, Some(colors.as_slice()), self.q, rounds, dealt);
                if dealt_clean {
                    improve_with_hint(
                        dealt,
                        items,
                        Some(colors.as_slice()),
                        budget,
                        search,
                        rounds.order(),
                    );
                }
                let mut state = None;
                if dealt_clean && dealt.max_load() <= good_enough * (1.0 + slack) {
                    state = Some(&*dealt);
                } else if clean {
                    search_state.assign_from(start, items, self.q);
                    improve(search_state, items, Some(colors.as_slice()), budget, search);
                    if dealt_clean && dealt.max_load() < search_state.max_load() {
                        std::mem::swap(dealt, search_state);
                    }
                    if search_state.max_load() <= good_enough * (1.0 + FALLBACK_MISS) {
                        state = Some(&*search_state);
                    }
                }
                let state = match state {
                    Some(state) => state,
                    None => {
                        // Started from the best clean search result when there is one (never
                        // worse then); fast effort: this node's estimate may be out of reach for
                        // any packing.
                        let searched = if clean {
                            Some(&*search_state)
                        } else if dealt_clean {
                            Some(&*dealt)
                        } else {
                            None
                        };
                        let from = match searched {
                            Some(searched) => {
                                searched.write_assignment(pack_of, rank);
                                pack_of.as_slice()
                            }
                            None => start.as_slice(),
                        };
                        let full = packer.pack_until(
                            items,
                            self.q,
                            Some(colors.as_slice()),
                            effort.min(Effort::Fast),
                            Some(Start {
                                pack_of: from,
                                descending: &[],
                            }),
                            good_enough,
                        );
                        match searched {
                            Some(searched) if searched.max_load() < full.max_load() => searched,
                            _ => full,
                        }
                    }
                };
                bar = bar.max(state.max_load());
                for (slot, &item) in self.slots[base..base + self.s].iter_mut().zip(&state.slots) {
                    *slot = colors[item as usize];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::XorShift;

    /// A load of one of many magnitudes (zero and subnormal ones included).
    fn load(rng: &mut XorShift) -> f64 {
        const SCALES: [f64; 7] = [0.0, 1e-310, 1e-3, 1.0, 37.0, 1e4, 3e7];
        rng.next_f64() * SCALES[(rng.next_u64() % 7) as usize]
    }

    #[test]
    fn strict_counts_fill_each_node_in_group_order() {
        // 16 experts in 4 groups of 4, 2 nodes of 2 GPUs with 12 slots each.
        let shape = Shape::new(1, 16, 24, 4, 2, 4).unwrap();
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut layer = Layer::default();
        for _ in 0..500 {
            let mut group_node = vec![0i64, 0, 1, 1];
            for i in (1..4).rev() {
                group_node.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let home = |x: usize| group_node[x / 4] as usize;
            // One replica each, and each node's 4 redundant slots to random home experts.
            let mut counts = vec![1u32; 16];
            for node in 0..2 {
                let experts: Vec<usize> = (0..16).filter(|&x| home(x) == node).collect();
                for _ in 0..4 {
                    counts[experts[(rng.next_u64() % 8) as usize]] += 1;
                }
            }
            let loads: Vec<f64> = (0..16).map(|_| load(&mut rng)).collect();
            layer.prepare(&loads, &shape, &group_node, None);
            assert_eq!(layer.reset_to_counts(&counts, &group_node), Some(0.0));
            for node in 0..2 {
                let expected: Vec<u32> = (0..16u32)
                    .filter(|&x| home(x as usize) == node)
                    .flat_map(|x| std::iter::repeat_n(x, counts[x as usize] as usize))
                    .collect();
                assert_eq!(
                    layer.node_slots(node),
                    expected,
                    "{group_node:?} {counts:?}"
                );
            }
            assert_eq!(layer.home_cnt, counts);
            for (x, &c) in counts.iter().enumerate() {
                for node in 0..2 {
                    let on = if node == home(x) { c } else { 0 };
                    assert_eq!(layer.count_on(x as u32, node), on as usize);
                }
            }
            // One replica too many on a node, or one moved to the other node: refused.
            let x = (rng.next_u64() % 16) as usize;
            let mut more = counts.clone();
            more[x] += 1;
            assert_eq!(layer.reset_to_counts(&more, &group_node), None);
            if let Some(y) = (0..16).find(|&y| home(y) != home(x) && counts[y] > 1) {
                more[y] -= 1;
                assert_eq!(layer.reset_to_counts(&more, &group_node), None);
            }
        }
    }

    #[test]
    fn smallest_keeps_the_smallest_ascending_in_any_push_order() {
        let mut rng = XorShift(0x1405_7b7e_f767_814f);
        for case in 0..5000 {
            let fill = 1 + case % SMALL_FILL;
            let len = (rng.next_u64() % 40) as usize;
            // Ascending runs (appended) mixed with repeats and random values.
            let mut values: Vec<f64> = (0..len)
                .map(|_| (rng.next_u64() % 50) as f64 * 0.5)
                .collect();
            if case % 3 == 0 {
                values.sort_by(f64::total_cmp);
            }
            let mut small = Smallest::new(fill);
            for &v in &values {
                small.push(v);
            }
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            sorted.resize(sorted.len().max(fill), f64::INFINITY);
            assert_eq!(small.small[..fill], sorted[..fill], "{values:?}");
            assert_eq!(small.largest(), sorted[fill - 1]);
        }
    }

    #[test]
    fn per_gpu_is_the_division_bit_for_bit() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for q in 1..=20 {
            let per_gpu = PerGpu::new(q);
            for _ in 0..5000 {
                let v = load(&mut rng);
                assert_eq!(
                    per_gpu.of(v).to_bits(),
                    (v / q as f64).to_bits(),
                    "{v} / {q}"
                );
            }
        }
    }

    #[test]
    fn receivers_refuse_from_near_the_least_refused_load() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for case in 0..20_000 {
            let q = [1, 3, 4, 8, 18][case % 5];
            let per_gpu = PerGpu::new(q);
            let rc = Receiver {
                node: 0,
                load: load(&mut rng) * q as f64,
                peak: load(&mut rng),
                fill: load(&mut rng),
            };
            let limit = rc.est(0.0, per_gpu) * (1.0 + rng.next_f64()) + load(&mut rng);
            if rc.est(0.0, per_gpu) >= limit {
                continue;
            }
            // The estimate never drops as the replica grows.
            let (c1, c2) = (load(&mut rng), load(&mut rng));
            let (lo, hi) = (c1.min(c2), c1.max(c2));
            assert!(rc.est(lo, per_gpu) <= rc.est(hi, per_gpu));
            let from = rc.refuses_from(limit, per_gpu);
            assert!(from.is_finite(), "{rc:?} {limit}");
            assert!(rc.est(from, per_gpu) >= limit);
            // The least refused load, by bisection on the bits of non-negative loads.
            let (mut ok, mut refused) = (0u64, from.to_bits());
            while refused - ok > 1 {
                let mid = ok + (refused - ok) / 2;
                if rc.est(f64::from_bits(mid), per_gpu) >= limit {
                    refused = mid;
                } else {
                    ok = mid;
                }
            }
            let least = f64::from_bits(refused);
            let scale = (limit * q as f64).max(rc.load);
            let tolerance = 16.0 * (f64::EPSILON * scale).max(f64::MIN_POSITIVE);
            assert!(from - least <= tolerance, "{from} {least}");
        }
    }

    /// [`Layer::best_move`] without its shortcuts: every member scanned for the three largest
    /// replicas and the two heaviest takers, every receiver kept, every candidate's figures
    /// computed (by division), no candidate skipped before its checks.
    fn reference_best_move(
        layer: &mut Layer,
        a: usize,
        est_a: f64,
        target: f64,
        left: f64,
    ) -> Option<Move> {
        if !layer.sorted[a] {
            layer.sort_members(a);
        }
        let layer = &*layer;
        let q = layer.q as f64;
        let mut top = [(0.0f64, u32::MAX); 3];
        let mut takers = [(0.0f64, u32::MAX); 2];
        for &x in layer.members_of(a) {
            let v = layer.rep(x);
            insert_top(&mut top, v, x);
            let (c, h) = (layer.cnt[x as usize], layer.home_cnt[x as usize]);
            if c == h && (c as usize) < layer.q {
                insert_top(&mut takers, v, x);
            }
        }
        for &x in layer.node_slots(a) {
            if layer.home(x) != a && !top.iter().any(|&(_, t)| t == x) {
                insert_top(&mut top, layer.rep(x), x);
            }
        }
        let receivers: Vec<Receiver> = (0..layer.n)
            .filter(|&b| b != a && !layer.exporter[b])
            .filter_map(|b| {
                layer.victim[b].map(|(_, grown)| Receiver {
                    node: b,
                    load: layer.node_load[b],
                    peak: layer.node_maxrep[b].max(grown),
                    fill: layer.node_fill[b],
                })
            })
            .collect();
        let largest_without = |skip: u32| {
            top.iter()
                .find(|&&(_, x)| x != skip)
                .map_or(0.0, |&(v, _)| v)
        };
        let taker_for = |x: u32| {
            takers
                .iter()
                .find(|&&(_, z)| z != x && z != u32::MAX)
                .map(|&(_, z)| z)
        };
        let (load_a, fill_a, maxrep_a) =
            (layer.node_load[a], layer.node_fill[a], layer.node_maxrep[a]);
        let limit = est_a * (1.0 - MIN_GAIN);
        let consider = |best: &mut Best, m: Move, leaving: f64, carried: f64, a_maxrep: f64| {
            let plateau = m.kind == Kind::Add && layer.rep(m.expert) >= maxrep_a;
            let a_peak = a_maxrep + fill_a;
            if m.shed > left || (a_peak >= limit && !plateau) {
                return;
            }
            let est_a_new = larger((load_a - leaving) / q, a_peak);
            if est_a_new >= limit && !(plateau && est_a_new <= est_a) {
                return;
            }
            let spread = layer.cnt[m.expert as usize] != layer.home_cnt[m.expert as usize];
            for rc in &receivers {
                if (m.kind == Kind::Forward && rc.node == layer.home(m.expert))
                    || (spread && layer.count_on(m.expert, rc.node) >= layer.q)
                {
                    continue;
                }
                let est_b_new = larger((rc.load + carried) / q, larger(rc.peak, carried) + rc.fill);
                if est_b_new >= limit {
                    continue;
                }
                let key = (
                    larger(larger(est_a_new, est_b_new), target),
                    m.shed,
                    est_b_new,
                );
                if best.as_ref().is_none_or(|(k0, _)| key < *k0) {
                    *best = Some((key, Move { to: rc.node, ..m }));
                }
            }
        };
        let mut best = None;
        for &x in layer.members_of(a) {
            let w = layer.loads[x as usize];
            if w <= 0.0 {
                break;
            }
            if let Some(((key, _, _), _)) = best {
                if larger((load_a - 0.5 * w) / q, target) > key {
                    break;
                }
            }
            let (ci, hi) = (layer.cnt[x as usize], layer.home_cnt[x as usize]);
            let (c, h) = (f64::from(ci), f64::from(hi));
            let base = Move {
                kind: Kind::Add,
                expert: x,
                from: a,
                to: a,
                taker: u32::MAX,
                shed: w * h / (c * (c + 1.0)),
            };
            let rest = largest_without(x).max(w / (c + 1.0));
            consider(&mut best, base, base.shed, w / (c + 1.0), rest);
            if hi >= 2 {
                if let Some(z) = taker_for(x) {
                    let grown = layer.loads[z as usize] / f64::from(layer.cnt[z as usize] + 1);
                    let m = Move {
                        kind: Kind::Relocate,
                        taker: z,
                        shed: w / c,
                        ..base
                    };
                    consider(&mut best, m, w / c, w / c, largest_without(z).max(grown));
                }
            }
        }
        let node_slots = layer.node_slots(a);
        for (i, &x) in node_slots.iter().enumerate() {
            if layer.home(x) == a || node_slots[..i].contains(&x) {
                continue;
            }
            if let Some(z) = taker_for(x) {
                let grown = layer.loads[z as usize] / f64::from(layer.cnt[z as usize] + 1);
                let carried = layer.rep(x);
                let m = Move {
                    kind: Kind::Forward,
                    expert: x,
                    from: a,
                    to: a,
                    taker: z,
                    shed: 0.0,
                };
                consider(
                    &mut best,
                    m,
                    carried,
                    carried,
                    largest_without(z).max(grown),
                );
            }
        }
        best.map(|(_, m)| m)
    }

    /// The fields of a move, its load as bits.
    fn fields(m: Option<Move>) -> Option<(Kind, u32, usize, usize, u32, u64)> {
        m.map(|m| (m.kind, m.expert, m.from, m.to, m.taker, m.shed.to_bits()))
    }

    #[test]
    fn moves_are_those_of_the_unpruned_search() {
        let mut rng = XorShift(0x5851_f42d_4c95_7f2d);
        let (mut moves, mut peaked, mut forwarded) = (0, 0, 0);
        for case in 0..1000 {
            let n = 2 + (rng.next_u64() % 3) as usize;
            let q = 1 + (rng.next_u64() % 8) as usize;
            let groups = n * (1 + (rng.next_u64() % 2) as usize);
            let e = groups * (1 + (rng.next_u64() % 6) as usize);
            let k = e.div_ceil(n * q) + 1 + (rng.next_u64() % 3) as usize;
            let shape = Shape::new(1, e, n * q * k, groups, n, n * q).unwrap();
            // Skewed loads, now and then a few giant experts (a node whose estimate is its peak).
            // Rounded to integers in every other case: many ties.
            let mut weights: Vec<f32> = (0..e)
                .map(|_| ((8.0 * rng.next_f64()).exp() * rng.next_f64()) as f32)
                .map(|w| if case % 2 == 0 { w.round() } else { w })
                .collect();
            let scale = [0.0, 0.2, 1.0, 5.0][case % 4] * e as f64;
            for _ in 0..1 + case % 5 {
                let x = (rng.next_u64() % e as u64) as usize;
                weights[x] *= (1.0 + scale * rng.next_f64()) as f32;
            }
            let plan = crate::rebalance_experts(&weights, &shape, &Options::default()).unwrap();
            let loads: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
            let mut layer = Layer::default();
            layer.prepare(&loads, &shape, &plan.group_node, None);
            let total: f64 = loads.iter().sum();
            let budget = [0.05, 0.2, 0.6][case % 3];
            let mut left = budget * total - layer.reset(&plan.phy2log, &plan.logcnt);
            if left <= 0.0 {
                continue;
            }
            let target =
                (water_level(&layer.node_load, left) / q as f64).max(total / (n * q) as f64);
            for _ in 0..4 * layer.slots.len() {
                let a = (0..n).fold(0, |a, m| if layer.est(m) > layer.est(a) { m } else { a });
                let est_a = layer.est(a);
                if est_a <= target * (1.0 + MIN_GAIN) {
                    break;
                }
                peaked += usize::from(
                    layer.node_maxrep[a] + layer.node_fill[a] >= layer.node_load[a] / q as f64,
                );
                let want = reference_best_move(&mut layer, a, est_a, target, left);
                let got = layer.best_move(a, est_a, target, left);
                assert_eq!(fields(got), fields(want), "case {case}");
                let Some(m) = got else {
                    break;
                };
                forwarded += usize::from(m.kind == Kind::Forward);
                layer.apply(m);
                // Every node's figures follow its replicas (the load up to rounding drift).
                for node in 0..n {
                    let reps = layer.node_slots(node).iter().map(|&x| layer.rep(x));
                    let exact: f64 = reps.clone().sum();
                    assert!(
                        (layer.node_load[node] - exact).abs() <= 1e-9 * total,
                        "case {case}"
                    );
                    assert_eq!(
                        layer.node_maxrep[node],
                        reps.fold(0.0, f64::max),
                        "case {case}"
                    );
                }
                left -= m.shed;
                moves += 1;
            }
        }
        // The cases reach every kind of figure.
        assert!(
            moves > 1000 && peaked > 50 && forwarded > 5,
            "{moves} {peaked} {forwarded}"
        );
    }
}

//! Exact packing for small instances by branch and bound (for example groups onto nodes).
//!
//! Items are placed heaviest first; a branch is cut when a pack would reach the best max found so
//! far, packs in the same state (same item count and load) are tried once, and the search stops
//! early when the best equals the lower bound `max(total / packs, heaviest item)`. A node budget keeps
//! the cost bounded; the result is never worse than the incumbent it starts from.

use super::state::PackState;
use super::weight::sort_descending;

/// Reusable buffers of [`solve`].
#[derive(Debug, Default)]
pub struct ExactScratch {
    keys: Vec<u128>,
    order: Vec<u32>,
    loads: Vec<f64>,
    counts: Vec<usize>,
    current: Vec<u32>,
    best: Vec<u32>,
}

struct Search<'a> {
    weights: &'a [f64],
    order: &'a [u32],
    per_pack: usize,
    loads: &'a mut [f64],
    counts: &'a mut [usize],
    current: &'a mut [u32],
    best: &'a mut [u32],
    best_max: f64,
    lower_bound: f64,
    nodes_left: usize,
    improved: bool,
}

impl Search<'_> {
    fn done(&self) -> bool {
        self.nodes_left == 0 || self.best_max <= self.lower_bound
    }

    fn descend(&mut self, depth: usize, current_max: f64) {
        if depth == self.order.len() {
            if current_max < self.best_max {
                self.best_max = current_max;
                self.best.copy_from_slice(self.current);
                self.improved = true;
            }
            return;
        }
        let item = self.order[depth] as usize;
        let w = self.weights[item];
        let m = self.loads.len();
        for p in 0..m {
            if self.done() {
                return;
            }
            if self.counts[p] == self.per_pack {
                continue;
            }
            let new_load = self.loads[p] + w;
            if new_load >= self.best_max {
                continue;
            }
            // Symmetry: an earlier pack in the same state was already tried.
            if (0..p).any(|q| self.counts[q] == self.counts[p] && self.loads[q] == self.loads[p]) {
                continue;
            }
            self.nodes_left -= 1;
            let old_load = self.loads[p];
            self.loads[p] = new_load;
            self.counts[p] += 1;
            self.current[item] = p as u32;
            self.descend(depth + 1, current_max.max(new_load));
            self.counts[p] -= 1;
            self.loads[p] = old_load;
        }
    }
}

/// Tries to beat `state` (a valid packing of `weights`) exactly; rewrites `state` when it finds a
/// packing with a strictly lower max. Returns whether the result is proven optimal.
pub fn solve(
    state: &mut PackState,
    weights: &[f64],
    node_budget: usize,
    scratch: &mut ExactScratch,
) -> bool {
    let m = state.num_packs();
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    let heaviest = weights.iter().copied().fold(0.0, f64::max);
    let lower_bound = (total / m as f64).max(heaviest);
    let incumbent = state.max_load();
    if incumbent <= lower_bound * (1.0 + 1e-12) {
        return true;
    }
    if state.per_pack == 2 {
        // Two items per pack: pairing the i-th heaviest with the i-th lightest is optimal.
        sort_descending(weights, &mut scratch.keys, &mut scratch.order);
        let pairing = (0..n / 2)
            .map(|i| {
                weights[scratch.order[i] as usize] + weights[scratch.order[n - 1 - i] as usize]
            })
            .fold(0.0, f64::max);
        if pairing < incumbent {
            scratch.best.clear();
            scratch.best.resize(n, 0);
            for i in 0..n / 2 {
                scratch.best[scratch.order[i] as usize] = i as u32;
                scratch.best[scratch.order[n - 1 - i] as usize] = i as u32;
            }
            let best = std::mem::take(&mut scratch.best);
            state.assign_from(&best, weights, m);
            scratch.best = best;
        }
        return true;
    }
    sort_descending(weights, &mut scratch.keys, &mut scratch.order);
    scratch.loads.clear();
    scratch.loads.resize(m, 0.0);
    scratch.counts.clear();
    scratch.counts.resize(m, 0);
    scratch.current.clear();
    scratch.current.resize(n, 0);
    scratch.best.clear();
    scratch.best.resize(n, 0);
    let mut search = Search {
        weights,
        order: &scratch.order,
        per_pack: state.per_pack,
        loads: &mut scratch.loads,
        counts: &mut scratch.counts,
        current: &mut scratch.current,
        best: &mut scratch.best,
        best_max: incumbent * (1.0 - 1e-12),
        lower_bound: lower_bound * (1.0 + 1e-12),
        nodes_left: node_budget,
        improved: false,
    };
    search.descend(0, 0.0);
    let proven = search.nodes_left > 0;
    if search.improved {
        let best = scratch.best.clone();
        state.assign_from(&best, weights, m);
    }
    proven
}

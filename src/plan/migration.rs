//! Migration-aware re-planning: plans as balanced as the from-scratch plan that move far fewer
//! expert weights away from the current placement (`old_phy2log`).
//!
//! Per layer, with `T` = the from-scratch plan's max GPU load times `1 + max_balance_loss` (times
//! `1 + 1e-13`, so that a different summation order never disqualifies a plan):
//!
//! 1. **Zero-loss relabelling** (candidate `R0`, always valid). Node blocks, GPU rows inside a node,
//!    slots inside a GPU and replicas with equal per-replica loads can be permuted without changing
//!    any GPU load. Node blocks and GPU rows are matched to the old ones by exact maximum-weight
//!    assignments (Hungarian algorithm, `O(n^3)`): one of `gpus_per_node` GPUs per pair of (new
//!    node, old node), then one over nodes with those optima as weights; under the global policy one
//!    over all GPUs, solved per connected component of the positive weights (exact; the overlap
//!    graph is sparse). The weight of a GPU pair is the copies it keeps when equal-load replicas are
//!    interchangeable, then the copies it keeps as it is. Then, per class of equal per-replica loads
//!    and node, the class's slots are reassigned to its experts by an exact maximum b-matching of
//!    (expert, GPU that held it) pairs (`ClassAssign`; greedy completion when an expert already
//!    has two replicas on one GPU), and every expert that stays on a GPU keeps its old slot index.
//! 2. **Search from the old placement** (candidates `S2`, then `S1`). Groups keep the old plan's node
//!    split (`S2`, when it differs from the from-scratch one and its node loads allow `T`, swapping
//!    groups between nodes if they do not) or take the from-scratch split (`S1`, node blocks
//!    matched by expert overlap). Inside each node the old rows are kept; replica counts become the
//!    old counts (repaired: every expert at least one replica, at most one per GPU, none too heavy
//!    for `T`) or the target counts (from-scratch plan's, or the count planner's for `S2`); surplus
//!    replicas leave the heaviest GPUs, missing ones go to the lightest; swaps chosen by migration
//!    cost bring every GPU down to `T` (the packer's local search with two-for-two swaps takes over
//!    when they stall), and a last pass sends moved replicas back where that stays within `T`. A
//!    node whose search cannot reach `T` takes the relabelled from-scratch block (`S1`, polished by
//!    the same last pass) or a freshly planned one (`S2`).
//!
//! The candidate with the fewest moved weights wins (ties: the lower max GPU load); bounds skip
//! candidates that cannot win. Every candidate is a valid plan, strictly hierarchical under the
//! hierarchical policy (`group_node` reports its node blocks), with no GPU holding two replicas of
//! one expert unless the from-scratch plan has one, and with every GPU at most `T`. Layers whose
//! from-scratch plan places replicas off their home node (`max_off_home_share > 0`) and the
//! DeepSeek algorithm only get `R0`, which keeps the from-scratch plan's GPU loads and off-home
//! share.

use crate::metrics::{infer_group_nodes, max_gpu_load};
use crate::options::{Algorithm, Options};
use crate::packing::Packer;
use crate::packing::local_search::{SearchBudget, SearchScratch, improve};
use crate::packing::state::PackState;
use crate::shape::{Policy, Shape};

use super::counts::CountPlanner;

/// Relative slack for GPU loads that differ from the target only by summation order: the limit
/// every GPU must meet is the from-scratch maximum times `1 + max_balance_loss` times `1 + this`.
const ACCEPT_SLACK: f64 = 1e-13;

/// Swaps the repair may make that bring no GPU within the limit before the packer's local search
/// takes over.
const LAST_RESORTS: usize = 4;

// ------------------------------------------------------------------------------------------------
// Assignment

/// Exact maximum-weight assignment: the Hungarian method as successive shortest augmenting paths
/// (Dijkstra with column potentials) over the positive entries only, plus one shared zero-cost
/// "unmatched" column of unlimited capacity (a row there takes a leftover column at the end; zero
/// entries add nothing). Rows start on their best column when it is free, so only conflicts
/// augment. `O(n^3)` in the worst case, near-linear on the sparse matrices of kept copies.
#[derive(Debug, Default)]
pub(crate) struct Assignment {
    start: Vec<usize>,
    cols: Vec<u32>,
    costs: Vec<i64>,
    pi: Vec<i64>,
    dist: Vec<i64>,
    pred: Vec<u32>,
    done: Vec<bool>,
    col_match: Vec<u32>,
    row_match: Vec<u32>,
    touched: Vec<u32>,
    finalized: Vec<u32>,
    queue: Queue,
    col_used: Vec<bool>,
}

/// A monotone priority queue of (distance, column) for Dijkstra with small integer distances:
/// buckets for distances below `BUCKETS`, a binary heap above (lowest column first on ties).
#[derive(Debug, Default)]
struct Queue {
    buckets: Vec<Vec<u32>>,
    current: usize,
    len: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(i64, u32)>>,
}

const BUCKETS: usize = 64;

impl Queue {
    fn clear(&mut self) {
        self.buckets.resize_with(BUCKETS, Vec::new);
        for b in &mut self.buckets {
            b.clear();
        }
        self.current = 0;
        self.len = 0;
        self.heap.clear();
    }

    /// Distances pushed must not be below the last popped one.
    fn push(&mut self, d: i64, j: u32) {
        match usize::try_from(d) {
            Ok(b) if b < BUCKETS => {
                self.buckets[b].push(j);
                self.len += 1;
            }
            _ => self.heap.push(std::cmp::Reverse((d, j))),
        }
    }

    fn pop(&mut self) -> Option<(i64, u32)> {
        while self.len > 0 {
            if let Some(j) = self.buckets[self.current].pop() {
                self.len -= 1;
                return Some((self.current as i64, j));
            }
            self.current += 1;
        }
        self.heap.pop().map(|std::cmp::Reverse(x)| x)
    }
}

impl Assignment {
    /// Maximum-weight assignment of an `n x n` matrix of non-negative weights (`out[i]`: the column
    /// of row `i`; a permutation). Returns the optimum.
    pub(crate) fn max_assignment(&mut self, n: usize, weight: &[i32], out: &mut Vec<usize>) -> i64 {
        const INF: i64 = i64::MAX / 4;
        // When every row's largest entry (first on ties) is in a different column, the sum of row
        // maxima, an upper bound, is reached.
        out.clear();
        self.col_used.clear();
        self.col_used.resize(n, false);
        let mut total = 0i64;
        let mut distinct = true;
        for row in weight.chunks_exact(n.max(1)).take(n) {
            let (mut best, mut bw) = (0, 0);
            for (j, &w) in row.iter().enumerate() {
                if w > bw {
                    (best, bw) = (j, w);
                }
            }
            if bw > 0 {
                if self.col_used[best] {
                    distinct = false;
                    break;
                }
                self.col_used[best] = true;
            }
            out.push(if bw > 0 { best } else { usize::MAX });
            total += i64::from(bw);
        }
        if distinct {
            let mut next = 0;
            for slot in out.iter_mut().filter(|c| **c == usize::MAX) {
                while self.col_used[next] {
                    next += 1;
                }
                *slot = next;
                self.col_used[next] = true;
            }
            return total;
        }
        // Positive entries by row, cost = -weight; column n is the shared "unmatched" column.
        self.start.clear();
        self.cols.clear();
        self.costs.clear();
        for i in 0..n {
            self.start.push(self.cols.len());
            for (j, &w) in weight[i * n..(i + 1) * n].iter().enumerate() {
                if w > 0 {
                    self.cols.push(j as u32);
                    self.costs.push(-i64::from(w));
                }
            }
            self.cols.push(n as u32);
            self.costs.push(0);
        }
        self.start.push(self.cols.len());
        let m = n + 1;
        self.pi.clear();
        self.pi.resize(m, 0);
        self.dist.clear();
        self.dist.resize(m, INF);
        self.pred.clear();
        self.pred.resize(m, NONE);
        self.done.clear();
        self.done.resize(m, false);
        self.col_match.clear();
        self.col_match.resize(m, NONE);
        self.row_match.clear();
        self.row_match.resize(n, NONE);
        let cost = |i: usize, j: usize| -> i64 {
            if j >= n {
                0
            } else {
                -i64::from(weight[i * n + j])
            }
        };
        // Start: each row on its cheapest column when that is free (with zero potentials every
        // matched edge is then tight and no reduced cost negative).
        for r in 0..n {
            let e = (self.start[r]..self.start[r + 1])
                .min_by_key(|&e| (self.costs[e], self.cols[e]))
                .expect("the unmatched column");
            let j = self.cols[e] as usize;
            if j == n || self.col_match[j] == NONE {
                if j < n {
                    self.col_match[j] = r as u32;
                }
                self.row_match[r] = j as u32;
            }
        }
        for r in 0..n {
            if self.row_match[r] != NONE {
                continue;
            }
            self.queue.clear();
            self.touched.clear();
            self.finalized.clear();
            let edges = self.start[r]..self.start[r + 1];
            let ur = edges
                .clone()
                .map(|e| self.costs[e] - self.pi[self.cols[e] as usize])
                .min()
                .expect("the unmatched column");
            for e in edges {
                let j = self.cols[e] as usize;
                let d = self.costs[e] - self.pi[j] - ur;
                if d < self.dist[j] {
                    if self.dist[j] == INF {
                        self.touched.push(j as u32);
                    }
                    self.dist[j] = d;
                    self.pred[j] = r as u32;
                    self.queue.push(d, j as u32);
                }
            }
            let (free, reach) = loop {
                let (d, j) = self.queue.pop().expect("the unmatched column is reachable");
                let j = j as usize;
                if self.done[j] || d > self.dist[j] {
                    continue;
                }
                self.done[j] = true;
                self.finalized.push(j as u32);
                if j == n || self.col_match[j] == NONE {
                    break (j, d);
                }
                let i = self.col_match[j] as usize;
                let ui = cost(i, j) - self.pi[j];
                for e in self.start[i]..self.start[i + 1] {
                    let j2 = self.cols[e] as usize;
                    if self.done[j2] {
                        continue;
                    }
                    let nd = d + self.costs[e] - self.pi[j2] - ui;
                    if nd < self.dist[j2] {
                        if self.dist[j2] == INF {
                            self.touched.push(j2 as u32);
                        }
                        self.dist[j2] = nd;
                        self.pred[j2] = i as u32;
                        self.queue.push(nd, j2 as u32);
                    }
                }
            };
            for &j in &self.finalized {
                let j = j as usize;
                self.pi[j] += self.dist[j] - reach;
            }
            // Augment along the predecessors.
            let mut j = free;
            loop {
                let i = self.pred[j] as usize;
                let previous = self.row_match[i];
                if j < n {
                    self.col_match[j] = i as u32;
                }
                self.row_match[i] = j as u32;
                if i == r {
                    break;
                }
                j = previous as usize;
            }
            for &j in &self.touched {
                let j = j as usize;
                self.dist[j] = INF;
                self.pred[j] = NONE;
                self.done[j] = false;
            }
        }
        out.clear();
        out.resize(n, usize::MAX);
        self.col_used.clear();
        self.col_used.resize(n, false);
        let mut total = 0i64;
        for i in 0..n {
            let j = self.row_match[i] as usize;
            if j < n {
                out[i] = j;
                self.col_used[j] = true;
                total += i64::from(weight[i * n + j]);
            }
        }
        let mut next = 0;
        for slot in out.iter_mut().filter(|c| **c == usize::MAX) {
            while self.col_used[next] {
                next += 1;
            }
            *slot = next;
            self.col_used[next] = true;
        }
        total
    }
}

// ------------------------------------------------------------------------------------------------
// The old placement

/// For each expert, the old GPUs holding it (ascending, each once).
#[derive(Debug, Default)]
struct OldIndex {
    start: Vec<u32>,
    gpus: Vec<u32>,
}

impl OldIndex {
    fn build(&mut self, old_row: &[i64], k: usize, e: usize) {
        self.start.clear();
        self.start.resize(e + 1, 0);
        for gpu in old_row.chunks_exact(k) {
            for (i, &x) in gpu.iter().enumerate() {
                if !gpu[..i].contains(&x) {
                    self.start[x as usize + 1] += 1;
                }
            }
        }
        for x in 0..e {
            self.start[x + 1] += self.start[x];
        }
        self.gpus.clear();
        self.gpus.resize(self.start[e] as usize, 0);
        let mut fill: Vec<u32> = self.start[..e].to_vec();
        for (g, gpu) in old_row.chunks_exact(k).enumerate() {
            for (i, &x) in gpu.iter().enumerate() {
                if !gpu[..i].contains(&x) {
                    let f = &mut fill[x as usize];
                    self.gpus[*f as usize] = g as u32;
                    *f += 1;
                }
            }
        }
    }

    fn of(&self, x: usize) -> &[u32] {
        &self.gpus[self.start[x] as usize..self.start[x + 1] as usize]
    }
}

/// Kept copies between the new GPUs `new_gpus` (rows of `k` slots) and the old GPUs
/// `old_base..old_base + m`: `out[i * m + j]` = distinct experts of new GPU `i` that old GPU
/// `old_base + j` holds.
fn overlap(
    new_gpus: &[i64],
    k: usize,
    index: &OldIndex,
    old_base: usize,
    m: usize,
    out: &mut Vec<i32>,
) {
    let rows = new_gpus.len() / k;
    out.clear();
    out.resize(rows * m, 0);
    for (i, gpu) in new_gpus.chunks_exact(k).enumerate() {
        for (s, &x) in gpu.iter().enumerate() {
            if gpu[..s].contains(&x) {
                continue;
            }
            for &j in index.of(x as usize) {
                let j = j as usize;
                if j >= old_base && j < old_base + m {
                    out[i * m + j - old_base] += 1;
                }
            }
        }
    }
}

/// Weights `new` moves against `old` (same layout, GPUs of `k` slots): distinct (GPU, expert)
/// pairs of `new` absent from `old` (as `metrics::weights_moved`).
fn moved(new: &[i64], old: &[i64], k: usize) -> usize {
    new.chunks_exact(k)
        .zip(old.chunks_exact(k))
        .map(|(n, o)| {
            (0..k)
                .filter(|&i| !o.contains(&n[i]) && !n[..i].contains(&n[i]))
                .count()
        })
        .sum()
}

/// Sorts one GPU's slot ids by their weight (ascending, then slot id): insertion sort, as GPUs are
/// small and nearly sorted after a swap.
fn sort_gpu(ids: &mut [u32], w: &[f64]) {
    for i in 1..ids.len() {
        let mut j = i;
        while j > 0 {
            let (a, b) = (ids[j - 1] as usize, ids[j] as usize);
            if w[a].total_cmp(&w[b]).then(a.cmp(&b)).is_gt() {
                ids.swap(j - 1, j);
                j -= 1;
            } else {
                break;
            }
        }
    }
}

/// Whether GPU `g` (rows of `k`) of `row` holds `x`.
fn holds(row: &[i64], k: usize, g: usize, x: i64) -> bool {
    row[g * k..(g + 1) * k].contains(&x)
}

/// Slots inside each GPU: an expert the old row had on this GPU goes back to its old slot.
fn order_slots(
    row: &mut [i64],
    old_row: &[i64],
    k: usize,
    tmp: &mut Vec<i64>,
    used: &mut Vec<bool>,
) {
    tmp.clear();
    tmp.resize(k, -1);
    used.clear();
    used.resize(k, false);
    for (new, old) in row.chunks_exact_mut(k).zip(old_row.chunks_exact(k)) {
        if new == old {
            continue;
        }
        tmp.fill(-1);
        used.fill(false);
        for (pos, &x) in old.iter().enumerate() {
            if let Some(i) = (0..k).find(|&i| !used[i] && new[i] == x) {
                tmp[pos] = x;
                used[i] = true;
            }
        }
        let mut next = 0;
        for i in 0..k {
            if used[i] {
                continue;
            }
            while tmp[next] != -1 {
                next += 1;
            }
            tmp[next] = new[i];
        }
        new.copy_from_slice(tmp);
    }
}

/// Groups experts by bit-identical per-replica load (`per`): `class_of[x]` is the first expert
/// with `x`'s value, `shared[x]` whether another expert has it. Returns how many experts share.
/// `table` is scratch space (an open-addressing set of the values).
fn equal_classes(
    per: &[f64],
    table: &mut Vec<(u64, u32)>,
    class_of: &mut Vec<u32>,
    shared: &mut Vec<bool>,
) -> usize {
    let size = (2 * per.len()).next_power_of_two().max(16);
    let shift = 64 - size.trailing_zeros();
    table.clear();
    table.resize(size, (0, u32::MAX));
    class_of.clear();
    shared.clear();
    shared.resize(per.len(), false);
    let mut marked = 0;
    for (x, v) in per.iter().enumerate() {
        let bits = v.to_bits();
        let mut i = (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize;
        loop {
            let (key, first) = table[i];
            if first == u32::MAX {
                table[i] = (bits, x as u32);
                class_of.push(x as u32);
                break;
            }
            if key == bits {
                if !shared[first as usize] {
                    shared[first as usize] = true;
                    marked += 1;
                }
                shared[x] = true;
                marked += 1;
                class_of.push(first);
                break;
            }
            i = (i + 1) & (size - 1);
        }
    }
    marked
}

/// A small max-flow (Edmonds-Karp) for the class assignment.
#[derive(Debug, Default)]
struct Flow {
    head: Vec<u32>,
    next: Vec<u32>,
    to: Vec<u32>,
    cap: Vec<i32>,
    pred: Vec<u32>,
    queue: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Flow {
    fn reset(&mut self, nodes: usize) {
        self.head.clear();
        self.head.resize(nodes, NONE);
        self.next.clear();
        self.to.clear();
        self.cap.clear();
    }

    /// Adds `u -> v` with capacity `c`; returns the edge (its flow is the reverse edge's capacity).
    fn add(&mut self, u: usize, v: usize, c: i32) -> usize {
        let e = self.to.len();
        for (from, dst, cap) in [(u, v, c), (v, u, 0)] {
            self.to.push(dst as u32);
            self.cap.push(cap);
            self.next.push(self.head[from]);
            self.head[from] = self.to.len() as u32 - 1;
        }
        e
    }

    fn flow_on(&self, e: usize) -> i32 {
        self.cap[e ^ 1]
    }

    fn max_flow(&mut self, s: usize, t: usize) {
        loop {
            self.pred.clear();
            self.pred.resize(self.head.len(), NONE);
            self.queue.clear();
            self.queue.push(s as u32);
            let mut qi = 0;
            while qi < self.queue.len() && self.pred[t] == NONE {
                let u = self.queue[qi] as usize;
                qi += 1;
                let mut e = self.head[u];
                while e != NONE {
                    let v = self.to[e as usize] as usize;
                    if self.cap[e as usize] > 0 && v != s && self.pred[v] == NONE {
                        self.pred[v] = e;
                        self.queue.push(v as u32);
                    }
                    e = self.next[e as usize];
                }
            }
            if self.pred[t] == NONE {
                return;
            }
            let mut push = i32::MAX;
            let mut v = t;
            while v != s {
                let e = self.pred[v] as usize;
                push = push.min(self.cap[e]);
                v = self.to[e ^ 1] as usize;
            }
            let mut v = t;
            while v != s {
                let e = self.pred[v] as usize;
                self.cap[e] -= push;
                self.cap[e ^ 1] += push;
                v = self.to[e ^ 1] as usize;
            }
        }
    }
}

/// Exchanges of replicas with bit-identical per-replica loads inside node blocks: a zero-loss
/// relabelling. Per class of equal loads and per block, the class's slots on each GPU are
/// reassigned to the class's experts (each keeping its replica count in the block) so that the
/// most replicas sit on GPUs that held their expert: a maximum b-matching of (expert, old GPU)
/// pairs, exact, then the remaining replicas on the remaining slots without putting two replicas
/// of one expert on a GPU (the class is left as it is when that completion fails).
#[derive(Debug, Default)]
struct ClassAssign {
    positions: Vec<(u32, u32)>,
    experts: Vec<(u32, u32)>,
    gpus: Vec<(u32, u32)>,
    edges: Vec<(u32, u32, usize)>,
    kept: Vec<(u32, u32)>,
    need: Vec<u32>,
    room: Vec<u32>,
    placed: Vec<(u32, u32)>,
    saved: Vec<i64>,
    flow: Flow,
}

impl ClassAssign {
    fn run(
        &mut self,
        row: &mut [i64],
        old_row: &[i64],
        k: usize,
        block: usize,
        class_of: &[u32],
        shared: &[bool],
    ) {
        for (blk, old) in row.chunks_exact_mut(block).zip(old_row.chunks_exact(block)) {
            self.positions.clear();
            self.positions.extend(
                (0..block as u32)
                    .filter(|&s| shared[blk[s as usize] as usize])
                    .map(|s| (class_of[blk[s as usize] as usize], s)),
            );
            self.positions.sort_unstable();
            let mut start = 0;
            while start < self.positions.len() {
                let class = self.positions[start].0;
                let end = start + self.positions[start..].partition_point(|&(c, _)| c == class);
                let range = start..end;
                start = end;
                self.assign_class(blk, old, k, range);
            }
        }
    }

    fn assign_class(
        &mut self,
        blk: &mut [i64],
        old: &[i64],
        k: usize,
        range: std::ops::Range<usize>,
    ) {
        let slots = &self.positions[range];
        if slots.len() < 2 {
            return;
        }
        // Experts with their replica counts, GPUs with their class slots.
        self.experts.clear();
        self.gpus.clear();
        for &(_, s) in slots {
            let (x, g) = (blk[s as usize] as u32, s / k as u32);
            match self.experts.iter_mut().find(|(e, _)| *e == x) {
                Some(entry) => entry.1 += 1,
                None => self.experts.push((x, 1)),
            }
            match self.gpus.last_mut() {
                Some(entry) if entry.0 == g => entry.1 += 1,
                _ => self.gpus.push((g, 1)),
            }
        }
        if self.experts.len() < 2 {
            return;
        }
        let (nx, ng) = (self.experts.len(), self.gpus.len());
        let (src, dst) = (0, 1);
        self.flow.reset(2 + nx + ng);
        for (i, &(_, r)) in self.experts.iter().enumerate() {
            self.flow.add(src, 2 + i, r as i32);
        }
        for (j, &(_, n)) in self.gpus.iter().enumerate() {
            self.flow.add(2 + nx + j, dst, n as i32);
        }
        self.edges.clear();
        for (i, &(x, _)) in self.experts.iter().enumerate() {
            for (j, &(g, _)) in self.gpus.iter().enumerate() {
                if holds(old, k, g as usize, i64::from(x)) {
                    let e = self.flow.add(2 + i, 2 + nx + j, 1);
                    self.edges.push((i as u32, j as u32, e));
                }
            }
        }
        self.flow.max_flow(src, dst);
        // Kept pairs, then the rest of each expert's replicas on the remaining slots.
        self.kept.clear();
        self.need.clear();
        self.need.extend(self.experts.iter().map(|&(_, r)| r));
        self.room.clear();
        self.room.extend(self.gpus.iter().map(|&(_, n)| n));
        for &(i, j, e) in &self.edges {
            if self.flow.flow_on(e) > 0 {
                self.kept.push((i, j));
                self.need[i as usize] -= 1;
                self.room[j as usize] -= 1;
            }
        }
        self.placed.clear();
        self.placed.extend_from_slice(&self.kept);
        let mut order: Vec<u32> = (0..nx as u32).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(self.need[i as usize]), i));
        // Two replicas of one expert on a GPU only as often as the class already has that; such a
        // replica moves no weight, so it is preferred while allowed.
        let mut dups_left = slots
            .iter()
            .enumerate()
            .filter(|&(a, &(_, s))| {
                slots[..a].iter().any(|&(_, t)| {
                    t / k as u32 == s / k as u32 && blk[t as usize] == blk[s as usize]
                })
            })
            .count();
        for &i in &order {
            while self.need[i as usize] > 0 {
                let mut best: Option<(bool, u32, usize)> = None;
                for j in 0..ng {
                    if self.room[j] == 0 {
                        continue;
                    }
                    let dup = self.placed.contains(&(i, j as u32));
                    if dup && dups_left == 0 {
                        continue;
                    }
                    let key = (!dup, u32::MAX - self.room[j], j);
                    if best.is_none_or(|b| key < b) {
                        best = Some(key);
                    }
                }
                let Some((not_dup, _, j)) = best else { return };
                dups_left -= usize::from(!not_dup);
                self.placed.push((i, j as u32));
                self.need[i as usize] -= 1;
                self.room[j] -= 1;
            }
        }
        // Write: each GPU's class slots (ascending) take its experts, unless that moves no fewer
        // weights than the current arrangement.
        let gpu_moves = |blk: &[i64]| -> usize {
            self.gpus
                .iter()
                .map(|&(g, _)| {
                    let r = g as usize * k..(g as usize + 1) * k;
                    moved(&blk[r.clone()], &old[r], k)
                })
                .sum()
        };
        let before = gpu_moves(blk);
        self.saved.clear();
        self.saved
            .extend(slots.iter().map(|&(_, s)| blk[s as usize]));
        self.placed.sort_unstable_by_key(|&(i, j)| (j, i));
        let mut next = 0;
        let mut idx = 0;
        while idx < slots.len() {
            let g = slots[idx].1 / k as u32;
            while idx < slots.len() && slots[idx].1 / k as u32 == g {
                let x = self.experts[self.placed[next].0 as usize].0;
                blk[slots[idx].1 as usize] = i64::from(x);
                next += 1;
                idx += 1;
            }
        }
        if gpu_moves(blk) >= before {
            for (&(_, s), &x) in slots.iter().zip(&self.saved) {
                blk[s as usize] = x;
            }
        }
    }
}

/// Replica counts of one row.
fn counts_of(row: &[i64], e: usize, out: &mut Vec<i64>) {
    out.clear();
    out.resize(e, 0);
    for &x in row {
        out[x as usize] += 1;
    }
}

// ------------------------------------------------------------------------------------------------
// Search from the old placement, one block (node) at a time

/// One block's problem: place `experts` with `counts` replicas on the block's GPUs, starting from
/// `old_block`, every GPU at most `limit`.
#[derive(Clone, Copy)]
struct BlockProblem<'a> {
    loads: &'a [f64],
    old_block: &'a [i64],
    /// The layer's old placement index and the block's first GPU in it.
    index: &'a OldIndex,
    gpu_base: usize,
    k: usize,
    experts: &'a [u32],
    counts: &'a [u32],
    limit: f64,
}

#[derive(Debug, Default)]
struct BlockSearch {
    order: Vec<u32>,
    slots: Vec<i64>,
    gpu_loads: Vec<f64>,
    want: Vec<u32>,
    per: Vec<f64>,
    kept: Vec<u32>,
    mark: Vec<u32>,
    epoch: u32,
    weights: Vec<f64>,
    colors: Vec<u32>,
    pack_of: Vec<u32>,
    state: PackState,
    search: SearchScratch,
    old: Vec<i64>,
    k: usize,
    kept_flag: Vec<bool>,
    slot_w: Vec<f64>,
    by_w: Vec<u32>,
}

impl BlockSearch {
    fn prepare_scope(&mut self, loads: &[f64], experts: &[u32], counts: &[u32]) {
        let e = loads.len();
        if self.mark.len() != e {
            self.mark.clear();
            self.mark.resize(e, 0);
            self.epoch = 0;
            self.want.resize(e, 0);
            self.per.resize(e, 0.0);
            self.kept.resize(e, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.iter_mut().for_each(|m| *m = 0);
            self.epoch = 1;
        }
        for (&x, &c) in experts.iter().zip(counts) {
            let x = x as usize;
            self.mark[x] = self.epoch;
            self.want[x] = c;
            self.per[x] = loads[x] / f64::from(c);
            self.kept[x] = 0;
        }
    }

    fn heaviest(&self) -> (usize, f64) {
        let mut best = (0, self.gpu_loads[0]);
        for (g, &l) in self.gpu_loads.iter().enumerate().skip(1) {
            if l > best.1 {
                best = (g, l);
            }
        }
        best
    }

    /// Runs the search; on success writes the block to `out` and returns its moved weights.
    fn run(&mut self, pb: &BlockProblem<'_>, out: &mut Vec<i64>) -> Option<usize> {
        let k = pb.k;
        let m = pb.old_block.len() / k;
        self.prepare_scope(pb.loads, pb.experts, pb.counts);
        self.set_old(pb.old_block, k);
        // A GPU holding the heaviest replica carries at least it and the k - 1 lightest others.
        let (mut heavy, mut light) = (0.0f64, f64::MAX);
        let mut total = 0.0;
        for (&x, &c) in pb.experts.iter().zip(pb.counts) {
            let v = self.per[x as usize];
            heavy = heavy.max(v);
            light = light.min(v);
            total += pb.loads[x as usize];
            let _ = c;
        }
        if heavy + (k - 1) as f64 * light > pb.limit || total / m as f64 > pb.limit {
            return None;
        }
        // Keep every old replica of an expert of this block once per GPU.
        self.slots.clear();
        self.slots.extend_from_slice(pb.old_block);
        for g in 0..m {
            for s in g * k..(g + 1) * k {
                let x = self.slots[s];
                if self.mark[x as usize] != self.epoch || self.slots[g * k..s].contains(&x) {
                    self.slots[s] = -1;
                } else {
                    self.kept[x as usize] += 1;
                }
            }
        }
        self.recompute_loads(k);
        // Surplus replicas leave the heaviest GPUs.
        self.order.clear();
        self.order.extend(
            pb.experts
                .iter()
                .copied()
                .filter(|&x| self.kept[x as usize] > self.want[x as usize]),
        );
        let per = &self.per;
        self.order
            .sort_unstable_by(|&a, &b| per[b as usize].total_cmp(&per[a as usize]).then(a.cmp(&b)));
        for i in 0..self.order.len() {
            let x = self.order[i] as usize;
            while self.kept[x] > self.want[x] {
                let mut best: Option<(usize, f64)> = None;
                for s in 0..m * k {
                    if self.slots[s] == x as i64 {
                        let l = self.gpu_loads[s / k];
                        if best.is_none_or(|(_, bl)| l > bl) {
                            best = Some((s, l));
                        }
                    }
                }
                let (s, _) = best.expect("a kept replica");
                self.slots[s] = -1;
                self.gpu_loads[s / k] -= self.per[x];
                self.kept[x] -= 1;
            }
        }
        // Missing replicas go to the lightest GPUs with a free slot, heaviest replica first.
        let mut forced_dup = false;
        self.order.clear();
        for &x in pb.experts {
            let missing = self.want[x as usize] - self.kept[x as usize].min(self.want[x as usize]);
            for _ in 0..missing {
                self.order.push(x);
            }
        }
        let per = &self.per;
        self.order
            .sort_unstable_by(|&a, &b| per[b as usize].total_cmp(&per[a as usize]).then(a.cmp(&b)));
        for i in 0..self.order.len() {
            let x = self.order[i] as i64;
            let mut best: Option<(usize, bool, f64)> = None;
            for g in 0..m {
                let gpu = &self.slots[g * k..(g + 1) * k];
                if !gpu.contains(&-1) {
                    continue;
                }
                let dup = gpu.contains(&x);
                let l = self.gpu_loads[g];
                if best.is_none_or(|(_, bd, bl)| (dup, l) < (bd, bl)) {
                    best = Some((g, dup, l));
                }
            }
            let (g, dup, _) = best.expect("a free slot for each missing replica");
            let s = (g * k..(g + 1) * k)
                .find(|&s| self.slots[s] == -1)
                .expect("a free slot");
            self.slots[s] = x;
            self.gpu_loads[g] += self.per[x as usize];
            forced_dup |= dup;
        }
        debug_assert!(!self.slots.contains(&-1));
        self.recompute_loads(k);
        if forced_dup {
            self.separate_duplicates(pb, m);
        }
        if self.heaviest().1 > pb.limit {
            self.repair(pb, m);
            self.recompute_loads(k);
        }
        if self.heaviest().1 > pb.limit {
            self.local_search(pb, m);
        }
        if self.heaviest().1 > pb.limit {
            return None;
        }
        self.undo_moves(pb, m);
        self.recompute_loads(k);
        if self.heaviest().1 > pb.limit {
            return None;
        }
        out.clear();
        out.extend_from_slice(&self.slots);
        Some(moved(&self.slots, pb.old_block, k))
    }

    /// Moves the second replica of an expert on a GPU (forced when the only free slot was there)
    /// to another GPU by a swap: within the limit if possible, then cheapest, then lightest.
    fn separate_duplicates(&mut self, pb: &BlockProblem<'_>, m: usize) {
        let k = pb.k;
        let cost = |has: bool| i32::from(!has);
        for s in 0..m * k {
            let g = s / k;
            let x = self.slots[s];
            if !self.slots[g * k..s].contains(&x) {
                continue;
            }
            let mut best: Option<(bool, i32, f64, usize)> = None;
            for t in (0..m * k).filter(|&t| t / k != g) {
                let q = t / k;
                let y = self.slots[t];
                if y == x || holds(&self.slots, k, q, x) || holds(&self.slots, k, g, y) {
                    continue;
                }
                let d = self.per[x as usize] - self.per[y as usize];
                let worst = (self.gpu_loads[g] - d).max(self.gpu_loads[q] + d);
                let c =
                    cost(self.old_has(q, x)) + cost(self.old_has(g, y)) - cost(self.old_has(q, y));
                let key = (worst > pb.limit, c, worst, t);
                if best.is_none_or(|b| (key.0, key.1, key.2) < (b.0, b.1, b.2)) {
                    best = Some(key);
                }
            }
            if let Some((_, _, _, t)) = best {
                let y = self.slots[t];
                let d = self.per[x as usize] - self.per[y as usize];
                self.slots.swap(s, t);
                self.gpu_loads[g] -= d;
                self.gpu_loads[t / k] += d;
            }
        }
    }

    /// Starting from `block` (a valid block within the limit, its counts `pb.counts`), swaps
    /// replicas back to GPUs that held them while every GPU stays within the limit. Writes the
    /// result to `out` and returns its moved weights.
    fn polish(&mut self, pb: &BlockProblem<'_>, block: &[i64], out: &mut Vec<i64>) -> usize {
        let k = pb.k;
        let m = block.len() / k;
        self.prepare_scope(pb.loads, pb.experts, pb.counts);
        self.set_old(pb.old_block, k);
        self.slots.clear();
        self.slots.extend_from_slice(block);
        self.recompute_loads(k);
        let limit = self.heaviest().1.max(pb.limit);
        let pb = BlockProblem { limit, ..*pb };
        self.undo_moves(&pb, m);
        out.clear();
        out.extend_from_slice(&self.slots);
        moved(&self.slots, pb.old_block, k)
    }

    fn recompute_loads(&mut self, k: usize) {
        let per = &self.per;
        self.gpu_loads.clear();
        self.gpu_loads.extend(self.slots.chunks_exact(k).map(|gpu| {
            gpu.iter()
                .filter(|&&x| x >= 0)
                .map(|&x| per[x as usize])
                .sum::<f64>()
        }));
    }

    /// Whether the old block had expert `x` on its GPU `g`.
    fn old_has(&self, g: usize, x: i64) -> bool {
        holds(&self.old, self.k, g, x)
    }

    fn set_old(&mut self, old_block: &[i64], k: usize) {
        self.k = k;
        self.old.clear();
        self.old.extend_from_slice(old_block);
    }

    /// Swaps out of the heaviest GPU until every GPU is within the limit: a swap that brings both
    /// GPUs within it at the lowest migration cost, else the largest cut that keeps the partner
    /// within it, else the swap that lowers the pair's maximum most (the packer's search takes over
    /// when none is left or the budget runs out).
    fn repair(&mut self, pb: &BlockProblem<'_>, m: usize) {
        let k = pb.k;
        let cost = |has: bool| i32::from(!has);
        // Per slot: its replica's load and whether its expert was on its GPU before; per GPU: its
        // slots in ascending load order. All kept up to date across swaps.
        self.kept_flag.clear();
        self.slot_w.clear();
        for (s, &x) in self.slots.iter().enumerate() {
            self.kept_flag.push(holds(&self.old, k, s / k, x));
            self.slot_w.push(self.per[x as usize]);
        }
        self.by_w.clear();
        self.by_w.extend(0..(m * k) as u32);
        for g in 0..m {
            sort_gpu(&mut self.by_w[g * k..(g + 1) * k], &self.slot_w);
        }
        let mut last_resorts = 0;
        for _ in 0..2 * m * k + 16 {
            let (h, high) = self.heaviest();
            if high <= pb.limit || last_resorts > LAST_RESORTS {
                return;
            }
            // Phase 0: swaps that bring both GPUs within the limit (key: cost, pair maximum);
            // phase 1: the largest cut keeping the partner within it (key: -cut, cost); phase 2:
            // the swap lowering the pair's maximum most (key: pair maximum, cost).
            let need = high - pb.limit;
            let mut best: Option<(u8, f64, f64, usize, usize)> = None;
            for phase in 0..3u8 {
                for q in (0..m).filter(|&q| q != h) {
                    let low = self.gpu_loads[q];
                    let slack = pb.limit - low;
                    let usable = match phase {
                        0 => slack >= need * (1.0 - 1e-12),
                        1 => slack > 0.0,
                        _ => true,
                    };
                    if !usable {
                        continue;
                    }
                    let q_sorted = &self.by_w[q * k..(q + 1) * k];
                    for a in h * k..(h + 1) * k {
                        let x = self.slots[a];
                        let wx = self.slot_w[a];
                        // Partners lighter than x; in phases 0 and 1 no lighter than wx - slack.
                        let floor = if phase < 2 { wx - slack } else { f64::MIN };
                        let start = q_sorted.partition_point(|&b| self.slot_w[b as usize] < floor);
                        let mut x_moves: Option<i32> = None;
                        for &b in &q_sorted[start..] {
                            let b = b as usize;
                            let d = wx - self.slot_w[b];
                            if d <= 0.0 {
                                break;
                            }
                            let (new_h, new_q) = (high - d, low + d);
                            let pair_max = new_h.max(new_q);
                            let fits = match phase {
                                0 => new_h <= pb.limit && new_q <= pb.limit,
                                1 => new_q <= pb.limit,
                                _ => pair_max < high - high * 1e-12,
                            };
                            if !fits {
                                continue;
                            }
                            let x_cost = *x_moves.get_or_insert_with(|| {
                                cost(self.old_has(q, x)) - cost(self.kept_flag[a])
                            });
                            let y = self.slots[b];
                            let c = f64::from(
                                x_cost + cost(self.old_has(h, y)) - cost(self.kept_flag[b]),
                            );
                            let key = match phase {
                                0 => (c, pair_max),
                                1 => (-d, c),
                                _ => (pair_max, c),
                            };
                            if best.is_some_and(|(_, p0, s0, _, _)| key >= (p0, s0)) {
                                continue;
                            }
                            if x == y || holds(&self.slots, k, q, x) || holds(&self.slots, k, h, y)
                            {
                                continue;
                            }
                            best = Some((phase, key.0, key.1, a, b));
                        }
                    }
                }
                if best.is_some() {
                    break;
                }
            }
            let Some((category, _, _, a, b)) = best else {
                return;
            };
            last_resorts += usize::from(category == 2);
            let (x, y) = (self.slots[a], self.slots[b]);
            let d = self.slot_w[a] - self.slot_w[b];
            self.slots.swap(a, b);
            self.slot_w.swap(a, b);
            self.gpu_loads[a / k] -= d;
            self.gpu_loads[b / k] += d;
            self.kept_flag[a] = self.old_has(a / k, y);
            self.kept_flag[b] = self.old_has(b / k, x);
            let (ga, gb) = (a / k, b / k);
            sort_gpu(&mut self.by_w[ga * k..(ga + 1) * k], &self.slot_w);
            sort_gpu(&mut self.by_w[gb * k..(gb + 1) * k], &self.slot_w);
        }
    }

    /// The packer's local search (ignores migration cost) when the repair stalls.
    fn local_search(&mut self, pb: &BlockProblem<'_>, m: usize) {
        let k = pb.k;
        self.weights.clear();
        self.weights
            .extend(self.slots.iter().map(|&x| self.per[x as usize]));
        self.colors.clear();
        self.colors.extend(self.slots.iter().map(|&x| x as u32));
        self.pack_of.clear();
        self.pack_of.extend((0..m * k).map(|i| (i / k) as u32));
        self.state.assign_from(&self.pack_of, &self.weights, m);
        let budget = SearchBudget {
            max_rounds: 8 * m * k,
            pair_swap_partners: usize::MAX,
            good_enough: pb.limit,
            balance_sweeps: 0,
        };
        improve(
            &mut self.state,
            &self.weights,
            Some(&self.colors),
            budget,
            &mut self.search,
        );
        for (dst, &item) in self.slots.iter_mut().zip(&self.state.slots) {
            *dst = i64::from(self.colors[item as usize]);
        }
        self.recompute_loads(k);
    }

    /// Swaps that send a moved replica back to a GPU that held its expert, keeping both GPUs within
    /// the limit and creating no duplicate.
    fn undo_moves(&mut self, pb: &BlockProblem<'_>, m: usize) {
        let k = pb.k;
        let old = pb.old_block;
        for _pass in 0..4 {
            let mut improved = false;
            for s in 0..m * k {
                let p = s / k;
                let x = self.slots[s];
                if holds(old, k, p, x) {
                    continue;
                }
                let mut best: Option<(i32, usize)> = None;
                for &j in pb.index.of(x as usize) {
                    let Some(q) = (j as usize).checked_sub(pb.gpu_base).filter(|&q| q < m) else {
                        continue;
                    };
                    if q == p || holds(&self.slots, k, q, x) {
                        continue;
                    }
                    for t in q * k..(q + 1) * k {
                        let y = self.slots[t];
                        let d = self.per[x as usize] - self.per[y as usize];
                        if self.gpu_loads[p] - d > pb.limit || self.gpu_loads[q] + d > pb.limit {
                            continue;
                        }
                        if y == x || holds(&self.slots, k, p, y) {
                            continue;
                        }
                        // x returns to q (an old GPU of x) and was not kept on p.
                        let delta =
                            i32::from(!holds(old, k, p, y)) - 1 - i32::from(!holds(old, k, q, y));
                        if delta < 0 && best.is_none_or(|(bd, _)| delta < bd) {
                            best = Some((delta, t));
                        }
                    }
                }
                if let Some((_, t)) = best {
                    let y = self.slots[t];
                    let d = self.per[x as usize] - self.per[y as usize];
                    self.slots.swap(s, t);
                    self.gpu_loads[p] -= d;
                    self.gpu_loads[t / k] += d;
                    improved = true;
                }
            }
            if !improved {
                break;
            }
            self.recompute_loads(k);
        }
    }
}

/// Replica counts close to the old block's: each expert keeps its old count (distinct GPUs),
/// raised to at least 1 and capped at `m` GPUs; the sum is brought to `slots` by DeepSeek's rule
/// (remove where the per-replica load grows least, add where it is largest) and no replica may
/// be too heavy for `limit` when another expert can spare one.
#[allow(clippy::too_many_arguments)]
fn old_counts(
    loads: &[f64],
    old_block: &[i64],
    k: usize,
    experts: &[u32],
    slots: usize,
    limit: f64,
    position: &mut Vec<u32>,
    out: &mut Vec<u32>,
) {
    let m = old_block.len() / k;
    let cap = m.max(1) as u32;
    position.clear();
    position.resize(loads.len(), u32::MAX);
    for (i, &x) in experts.iter().enumerate() {
        position[x as usize] = i as u32;
    }
    out.clear();
    out.resize(experts.len(), 0);
    for gpu in old_block.chunks_exact(k) {
        for (s, &x) in gpu.iter().enumerate() {
            let i = position[x as usize];
            if i != u32::MAX && !gpu[..s].contains(&x) {
                out[i as usize] += 1;
            }
        }
    }
    for c in out.iter_mut() {
        *c = (*c).clamp(1, cap);
    }
    let w = |i: usize| loads[experts[i] as usize];
    let mut sum: usize = out.iter().map(|&c| c as usize).sum();
    let cap = if slots > experts.len() * cap as usize {
        u32::MAX
    } else {
        cap
    };
    while sum > slots {
        let mut best: Option<(f64, usize)> = None;
        for (i, &c) in out.iter().enumerate() {
            if c > 1 {
                let v = w(i) / f64::from(c - 1);
                if best.is_none_or(|(bv, _)| v < bv) {
                    best = Some((v, i));
                }
            }
        }
        let (_, i) = best.expect("sum above slots implies a count above 1");
        out[i] -= 1;
        sum -= 1;
    }
    while sum < slots {
        let mut best: Option<(f64, usize)> = None;
        for (i, &c) in out.iter().enumerate() {
            if c < cap {
                let v = w(i) / f64::from(c);
                if best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, i));
                }
            }
        }
        let (_, i) = best.expect("room below the cap");
        out[i] += 1;
        sum += 1;
    }
    // No replica too heavy for a GPU (with the lightest replicas beside it) while another expert
    // can give one up.
    for _ in 0..slots {
        let (mut hi, mut hv, mut lv) = (0usize, f64::MIN, f64::MAX);
        for (i, &c) in out.iter().enumerate() {
            let v = w(i) / f64::from(c);
            if v > hv {
                (hi, hv) = (i, v);
            }
            lv = lv.min(v);
        }
        if hv + (k - 1) as f64 * lv <= limit || out[hi] >= cap {
            break;
        }
        let mut best: Option<(f64, usize)> = None;
        for (i, &c) in out.iter().enumerate() {
            if i != hi && c > 1 {
                let v = w(i) / f64::from(c - 1);
                if best.is_none_or(|(bv, _)| v < bv) {
                    best = Some((v, i));
                }
            }
        }
        match best {
            Some((v, i)) if v < hv => {
                out[i] -= 1;
                out[hi] += 1;
            }
            _ => break,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The layer re-planner

/// A finished candidate row.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score {
    moves: usize,
    max: f64,
}

/// Reusable buffers of the re-planner.
#[derive(Debug, Default)]
pub(crate) struct Replanner {
    index: OldIndex,
    assign: Assignment,
    overlap: Vec<i32>,
    sub: Vec<i32>,
    pair_value: Vec<i32>,
    pair_assign: Vec<usize>,
    node_perm: Vec<usize>,
    search_perm: Vec<usize>,
    tmp_assign: Vec<usize>,
    best: Vec<i64>,
    best_home: Vec<i64>,
    cand: Vec<i64>,
    cand_home: Vec<i64>,
    block: Vec<i64>,
    best_block: Vec<i64>,
    fallback: Vec<i64>,
    experts: Vec<u32>,
    target: Vec<u32>,
    counts_a: Vec<u32>,
    position: Vec<u32>,
    search: BlockSearch,
    count_planner: CountPlanner,
    packer: Packer,
    items: Vec<f64>,
    colors: Vec<u32>,
    node_loads: Vec<f64>,
    cnt: Vec<i64>,
    per: Vec<f64>,
    scratch: Vec<f64>,
    tmp: Vec<i64>,
    used: Vec<bool>,
    classes: Vec<(u64, u32)>,
    class_of: Vec<u32>,
    shared: Vec<bool>,
    class_assign: ClassAssign,
    overlap_x: Vec<i32>,
    cls_new: Vec<(u32, u32)>,
    cls_old: Vec<(u32, u32)>,
}

/// One layer's inputs.
pub(crate) struct LayerInput<'a> {
    /// The layer's loads in f64.
    pub loads: &'a [f64],
    /// The from-scratch plan's row.
    pub fresh_phy: &'a [i64],
    /// The from-scratch plan's replica counts.
    pub fresh_cnt: &'a [i64],
    /// The from-scratch plan's group homes (-1 under the global policy).
    pub fresh_home: &'a [i64],
    /// The current placement's row.
    pub old_phy: &'a [i64],
}

/// Sizes of one layer's problem.
#[derive(Debug, Clone, Copy)]
struct Dims {
    e: usize,
    r: usize,
    k: usize,
    /// Effective nodes (1 under the global policy).
    n: usize,
    gpn: usize,
    spn: usize,
    group_size: usize,
    hierarchical: bool,
    limit: f64,
    fresh_dups: bool,
}

impl Replanner {
    /// Re-plans one layer into `phy2log`, `logcnt`, `group_node` (each the layer's row).
    pub(crate) fn replan_layer(
        &mut self,
        input: &LayerInput<'_>,
        shape: &Shape,
        options: &Options,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
        group_node: &mut [i64],
    ) {
        let (e, r, p) = (shape.num_logical, shape.num_replicas, shape.num_gpus);
        let k = shape.slots_per_gpu();
        let (g_eff, n) = shape.effective_groups_nodes();
        let fresh_max = max_gpu_load(
            input.loads,
            input.fresh_phy,
            input.fresh_cnt,
            k,
            &mut self.scratch,
        );
        let d = Dims {
            e,
            r,
            k,
            n,
            gpn: p / n,
            spn: r / n,
            group_size: e / g_eff,
            hierarchical: shape.policy() == Policy::Hierarchical,
            limit: fresh_max * (1.0 + options.max_balance_loss) * (1.0 + ACCEPT_SLACK),
            fresh_dups: crate::metrics::duplicated_replicas(input.fresh_phy, k) > 0,
        };
        let strict =
            n == 1
                || input.fresh_phy.iter().enumerate().all(|(s, &x)| {
                    input.fresh_home[x as usize / d.group_size] == (s / d.spn) as i64
                });
        // The old plan itself, when it already meets every requirement: nothing moves.
        if options.algorithm == Algorithm::Refined && strict && self.old_is_enough(input, &d) {
            phy2log.copy_from_slice(input.old_phy);
            counts_of(input.old_phy, e, &mut self.cnt);
            logcnt.copy_from_slice(&self.cnt);
            group_node.copy_from_slice(&self.best_home);
            return;
        }
        self.index.build(input.old_phy, k, e);
        overlap(input.fresh_phy, k, &self.index, 0, p, &mut self.overlap);
        self.class_overlap(input, &d);
        let mut best: Option<Score> = None;
        if options.algorithm == Algorithm::Refined && strict {
            // S2: the old plan's node split (when it differs from the from-scratch one).
            if d.hierarchical && n > 1 {
                if let Some(score) = self.search_old_split(input, shape, options, &d) {
                    self.consider(score, &mut best);
                }
            }
            // S1: the from-scratch node split, node blocks matched by expert overlap.
            let to_beat = best.map(|b| b.moves);
            if let Some(score) = self.search_fresh_split(input, &d, to_beat) {
                self.consider(score, &mut best);
            }
        }
        // R0: the from-scratch plan relabelled, unless a bound shows it cannot move fewer weights.
        if best.is_none_or(|b| b.moves > self.relabel_lower_bound(input, &d)) {
            self.relabel_fresh(input, &d);
            if let Some(score) = self.accept(input, &d, true) {
                self.consider(score, &mut best);
            }
        }
        debug_assert!(best.is_some());
        phy2log.copy_from_slice(&self.best);
        counts_of(&self.best, e, &mut self.cnt);
        logcnt.copy_from_slice(&self.cnt);
        group_node.copy_from_slice(&self.best_home);
    }

    /// Whether the old row is a valid output as it is: within the limit, no avoidable duplicate
    /// and, under the hierarchical policy, strictly hierarchical with `G / N` groups per node
    /// (their homes left in `best_home`).
    fn old_is_enough(&mut self, input: &LayerInput<'_>, d: &Dims) -> bool {
        counts_of(input.old_phy, d.e, &mut self.cnt);
        if max_gpu_load(
            input.loads,
            input.old_phy,
            &self.cnt,
            d.k,
            &mut self.scratch,
        ) > d.limit
        {
            return false;
        }
        if !d.fresh_dups && crate::metrics::duplicated_replicas(input.old_phy, d.k) > 0 {
            return false;
        }
        self.best_home.clear();
        self.best_home.extend_from_slice(input.fresh_home);
        if !d.hierarchical || d.n == 1 {
            return true;
        }
        self.best_home.iter_mut().for_each(|h| *h = -1);
        for (s, &x) in input.old_phy.iter().enumerate() {
            let (group, node) = (x as usize / d.group_size, (s / d.spn) as i64);
            match self.best_home[group] {
                -1 => self.best_home[group] = node,
                h if h != node => return false,
                _ => {}
            }
        }
        let per_node = self.best_home.len() / d.n;
        (0..d.n as i64).all(|b| self.best_home.iter().filter(|&&h| h == b).count() == per_node)
    }

    /// Takes `cand` when it moves fewer weights (ties: lower max GPU load).
    fn consider(&mut self, score: Score, best: &mut Option<Score>) {
        if best.is_none_or(|b| (score.moves, score.max) < (b.moves, b.max)) {
            std::mem::swap(&mut self.best, &mut self.cand);
            std::mem::swap(&mut self.best_home, &mut self.cand_home);
            *best = Some(score);
        }
    }

    /// Finishes `cand` (equal-load exchanges, slot order) and checks the invariants it must meet to
    /// compete (`always`: the relabelled from-scratch plan, valid by construction).
    fn accept(&mut self, input: &LayerInput<'_>, d: &Dims, always: bool) -> Option<Score> {
        let e = d.e;
        counts_of(&self.cand, e, &mut self.cnt);
        self.per.clear();
        self.per
            .extend((0..e).map(|x| input.loads[x] / self.cnt[x] as f64));
        if equal_classes(
            &self.per,
            &mut self.classes,
            &mut self.class_of,
            &mut self.shared,
        ) > 0
        {
            self.class_assign.run(
                &mut self.cand,
                input.old_phy,
                d.k,
                d.spn,
                &self.class_of,
                &self.shared,
            );
        }
        order_slots(
            &mut self.cand,
            input.old_phy,
            d.k,
            &mut self.tmp,
            &mut self.used,
        );
        let score = Score {
            moves: moved(&self.cand, input.old_phy, d.k),
            max: max_gpu_load(input.loads, &self.cand, &self.cnt, d.k, &mut self.scratch),
        };
        if always {
            return Some(score);
        }
        let dups_ok = d.fresh_dups || crate::metrics::duplicated_replicas(&self.cand, d.k) == 0;
        (score.max <= d.limit && dups_ok).then_some(score)
    }

    /// A lower bound on the weights the relabelled from-scratch plan moves: its copies minus, per
    /// new GPU, the most copies any old GPU shares with it, minus the replicas that an equal-load
    /// exchange could still place.
    fn relabel_lower_bound(&mut self, input: &LayerInput<'_>, d: &Dims) -> usize {
        let p = d.n * d.gpn;
        let mut total = 0usize;
        for gpu in input.fresh_phy.chunks_exact(d.k) {
            total += (0..d.k).filter(|&i| !gpu[..i].contains(&gpu[i])).count();
        }
        let kept: usize = self
            .overlap_x
            .chunks_exact(p)
            .map(|row| row.iter().copied().max().unwrap_or(0) as usize)
            .sum();
        total.saturating_sub(kept)
    }

    /// `overlap_x`: kept copies between new and old GPUs when replicas with equal per-replica
    /// loads (under the fresh counts) are interchangeable: per class of equal loads, the smaller of
    /// the class's distinct experts on the new GPU and on the old GPU (`overlap` for classes of
    /// one expert). An upper bound on the copies a GPU pair keeps after equal-load exchanges.
    fn class_overlap(&mut self, input: &LayerInput<'_>, d: &Dims) {
        let (e, k, p) = (d.e, d.k, d.n * d.gpn);
        self.overlap_x.clear();
        self.overlap_x.extend_from_slice(&self.overlap);
        self.per.clear();
        self.per
            .extend((0..e).map(|x| input.loads[x] / input.fresh_cnt[x] as f64));
        if equal_classes(
            &self.per,
            &mut self.classes,
            &mut self.class_of,
            &mut self.shared,
        ) == 0
        {
            return;
        }
        // (class, GPU) of every distinct shared expert on a new and on an old GPU.
        let mut new_cls = std::mem::take(&mut self.cls_new);
        let mut old_cls = std::mem::take(&mut self.cls_old);
        new_cls.clear();
        old_cls.clear();
        for (rows, out) in [
            (input.fresh_phy, &mut new_cls),
            (input.old_phy, &mut old_cls),
        ] {
            for (g, gpu) in rows.chunks_exact(k).enumerate() {
                for (i, &x) in gpu.iter().enumerate() {
                    if self.shared[x as usize] && !gpu[..i].contains(&x) {
                        out.push((self.class_of[x as usize], g as u32));
                    }
                }
            }
        }
        // Remove the exact matches of shared experts, then add the class-level matches.
        for (g, gpu) in input.fresh_phy.chunks_exact(k).enumerate() {
            for (i, &x) in gpu.iter().enumerate() {
                if self.shared[x as usize] && !gpu[..i].contains(&x) {
                    for &j in self.index.of(x as usize) {
                        self.overlap_x[g * p + j as usize] -= 1;
                    }
                }
            }
        }
        new_cls.sort_unstable();
        old_cls.sort_unstable();
        let runs = |v: &[(u32, u32)], at: usize| -> (u32, u32, u32, usize) {
            let (c, g) = v[at];
            let len = v[at..].iter().take_while(|&&y| y == (c, g)).count();
            (c, g, len as u32, at + len)
        };
        let (mut a, mut b) = (0, 0);
        while a < new_cls.len() {
            let class = new_cls[a].0;
            let a_end = a + new_cls[a..].partition_point(|&(c, _)| c == class);
            while b < old_cls.len() && old_cls[b].0 < class {
                b += 1;
            }
            let b_end = b + old_cls[b..].partition_point(|&(c, _)| c == class);
            let mut i = a;
            while i < a_end {
                let (_, g, n, next_i) = runs(&new_cls, i);
                let mut j = b;
                while j < b_end {
                    let (_, h, m, next_j) = runs(&old_cls, j);
                    self.overlap_x[g as usize * p + h as usize] += n.min(m) as i32;
                    j = next_j;
                }
                i = next_i;
            }
            a = a_end;
            b = b_end;
        }
        self.cls_new = new_cls;
        self.cls_old = old_cls;
    }

    /// The GPU sub-matrix between new node `a` and old node `b`: the matching weight (`matching`:
    /// kept copies after equal-load exchanges first, kept copies second) or `overlap_x`.
    fn pair_matrix(&mut self, d: &Dims, a: usize, b: usize, matching: bool) {
        let p = d.n * d.gpn;
        let scale = d.k as i32 + 1;
        self.sub.clear();
        for i in a * d.gpn..(a + 1) * d.gpn {
            let cols = i * p + b * d.gpn..i * p + (b + 1) * d.gpn;
            if matching {
                self.sub.extend(
                    self.overlap_x[cols.clone()]
                        .iter()
                        .zip(&self.overlap[cols])
                        .map(|(&x, &w)| x * scale + w),
                );
            } else {
                self.sub.extend_from_slice(&self.overlap_x[cols]);
            }
        }
    }

    /// Fresh node block `a` with its GPUs matched exactly to old node block `b`, into `block`.
    fn pair_block(&mut self, fresh: &[i64], d: &Dims, a: usize, b: usize) {
        self.pair_matrix(d, a, b, true);
        let sub = std::mem::take(&mut self.sub);
        self.assign
            .max_assignment(d.gpn, &sub, &mut self.tmp_assign);
        self.sub = sub;
        self.place_block(fresh, d, a);
    }

    /// Fresh node block `a` with its GPUs placed as `tmp_assign` says, into `block`.
    fn place_block(&mut self, fresh: &[i64], d: &Dims, a: usize) {
        let (k, spn) = (d.k, d.spn);
        self.block.clear();
        self.block.resize(spn, 0);
        for (li, &lj) in self.tmp_assign.iter().enumerate() {
            let src = a * spn + li * k;
            self.block[lj * k..(lj + 1) * k].copy_from_slice(&fresh[src..src + k]);
        }
    }

    /// R0 into `cand` / `cand_home`: exact node and GPU matching of the from-scratch plan.
    fn relabel_fresh(&mut self, input: &LayerInput<'_>, d: &Dims) {
        let n = d.n;
        self.pair_value.clear();
        self.pair_value.resize(n * n, 0);
        self.pair_assign.clear();
        if n > 1 {
            for a in 0..n {
                for b in 0..n {
                    self.pair_matrix(d, a, b, true);
                    let sub = std::mem::take(&mut self.sub);
                    let value = self
                        .assign
                        .max_assignment(d.gpn, &sub, &mut self.tmp_assign);
                    self.sub = sub;
                    self.pair_value[a * n + b] = value as i32;
                    self.pair_assign.extend_from_slice(&self.tmp_assign);
                }
            }
        }
        let values = std::mem::take(&mut self.pair_value);
        self.assign.max_assignment(n, &values, &mut self.node_perm);
        self.pair_value = values;
        self.cand.clear();
        self.cand.resize(d.r, 0);
        for a in 0..n {
            let b = self.node_perm[a];
            if n > 1 {
                let at = (a * n + b) * d.gpn;
                self.tmp_assign.clear();
                self.tmp_assign
                    .extend_from_slice(&self.pair_assign[at..at + d.gpn]);
                self.place_block(input.fresh_phy, d, a);
            } else {
                self.pair_block(input.fresh_phy, d, a, b);
            }
            self.cand[b * d.spn..(b + 1) * d.spn].copy_from_slice(&self.block);
        }
        self.cand_home.clear();
        self.cand_home.extend(input.fresh_home.iter().map(|&h| {
            if d.hierarchical && h >= 0 {
                self.node_perm[h as usize] as i64
            } else {
                h
            }
        }));
    }

    /// Searches block `b` from the old placement with the old counts, and with `target` when that
    /// fails; leaves the result in `best_block` and returns its moves.
    fn search_block(&mut self, input: &LayerInput<'_>, d: &Dims, b: usize) -> Option<usize> {
        let (k, spn) = (d.k, d.spn);
        let old_block = &input.old_phy[b * spn..(b + 1) * spn];
        old_counts(
            input.loads,
            old_block,
            k,
            &self.experts,
            spn,
            d.limit,
            &mut self.position,
            &mut self.counts_a,
        );
        let same = self.counts_a == self.target;
        let mut best: Option<(usize, f64)> = None;
        let options_counts: [&[u32]; 2] = [&self.counts_a, &self.target];
        for (i, counts) in options_counts.into_iter().enumerate() {
            if i == 1 && (same || best.is_some()) {
                break;
            }
            let pb = BlockProblem {
                loads: input.loads,
                old_block,
                index: &self.index,
                gpu_base: b * d.gpn,
                k,
                experts: &self.experts,
                counts,
                limit: d.limit,
            };
            let res = self.search.run(&pb, &mut self.block);
            if let Some(moves) = res {
                let mx = self.search.heaviest().1;
                if best.is_none_or(|(bm, bx)| (moves, mx) < (bm, bx)) {
                    best = Some((moves, mx));
                    std::mem::swap(&mut self.best_block, &mut self.block);
                }
            }
        }
        best.map(|(m, _)| m)
    }

    /// Polishes the block in `block` (for old block `b`, counts from it) in place; returns its
    /// moved weights.
    fn polish_block(&mut self, input: &LayerInput<'_>, d: &Dims, b: usize) -> usize {
        let (k, spn) = (d.k, d.spn);
        counts_of(&self.block, d.e, &mut self.cnt);
        self.experts.clear();
        self.target.clear();
        for (x, &c) in self.cnt.iter().enumerate() {
            if c > 0 {
                self.experts.push(x as u32);
                self.target.push(c as u32);
            }
        }
        let pb = BlockProblem {
            loads: input.loads,
            old_block: &input.old_phy[b * spn..(b + 1) * spn],
            index: &self.index,
            gpu_base: b * d.gpn,
            k,
            experts: &self.experts,
            counts: &self.target,
            limit: d.limit,
        };
        let block = std::mem::take(&mut self.block);
        let mut out = std::mem::take(&mut self.fallback);
        let moves = self.search.polish(&pb, &block, &mut out);
        self.block = out;
        self.fallback = block;
        moves
    }

    /// Candidate S1 into `cand` / `cand_home`; `None` also when a bound shows it cannot move fewer
    /// weights than `to_beat`.
    fn search_fresh_split(
        &mut self,
        input: &LayerInput<'_>,
        d: &Dims,
        to_beat: Option<usize>,
    ) -> Option<Score> {
        let (n, gpn, spn, k) = (d.n, d.gpn, d.spn, d.k);
        let home_of = |x: usize| -> usize {
            if n == 1 {
                0
            } else {
                input.fresh_home[x / d.group_size] as usize
            }
        };
        // Node blocks matched by overlap of experts.
        self.search_perm.clear();
        if n == 1 {
            self.search_perm.push(0);
        } else {
            self.sub.clear();
            self.sub.resize(n * n, 0);
            for (j, gpu) in input.old_phy.chunks_exact(k).enumerate() {
                let b = j / gpn;
                for (s, &x) in gpu.iter().enumerate() {
                    if !gpu[..s].contains(&x) {
                        self.sub[home_of(x as usize) * n + b] += 1;
                    }
                }
            }
            let sub = std::mem::take(&mut self.sub);
            let mut perm = std::mem::take(&mut self.search_perm);
            self.assign.max_assignment(n, &sub, &mut perm);
            self.sub = sub;
            self.search_perm = perm;
        }
        // Every expert missing from its target block costs at least one move.
        if let Some(bound) = to_beat {
            let missing = (0..d.e)
                .filter(|&x| {
                    let b = self.search_perm[home_of(x)];
                    !self.index.of(x).iter().any(|&j| j as usize / gpn == b)
                })
                .count();
            if missing >= bound {
                return None;
            }
        }
        self.cand.clear();
        self.cand.resize(d.r, 0);
        for a in 0..n {
            let b = self.search_perm[a];
            self.experts.clear();
            self.experts
                .extend((0..d.e as u32).filter(|&x| home_of(x as usize) == a));
            self.target.clear();
            self.target.extend(
                self.experts
                    .iter()
                    .map(|&x| input.fresh_cnt[x as usize] as u32),
            );
            let found = self.search_block(input, d, b);
            // The relabelled from-scratch block, unless a bound shows it cannot move fewer.
            let need_fallback = match found {
                None => true,
                Some(moves) => {
                    self.pair_matrix(d, a, b, false);
                    let mut copies = 0usize;
                    for gpu in input.fresh_phy[a * spn..(a + 1) * spn].chunks_exact(k) {
                        copies += (0..k).filter(|&i| !gpu[..i].contains(&gpu[i])).count();
                    }
                    let kept: usize = self
                        .sub
                        .chunks_exact(gpn)
                        .map(|row| row.iter().copied().max().unwrap_or(0) as usize)
                        .sum();
                    moves > copies.saturating_sub(kept)
                }
            };
            if need_fallback {
                self.pair_block(input.fresh_phy, d, a, b);
                let old_block = &input.old_phy[b * spn..(b + 1) * spn];
                let mut moves = moved(&self.block, old_block, k);
                if found.is_none_or(|m| moves < m) {
                    moves = self.polish_block(input, d, b);
                    if found.is_none_or(|m| moves < m) {
                        std::mem::swap(&mut self.best_block, &mut self.block);
                    }
                }
            }
            self.cand[b * spn..(b + 1) * spn].copy_from_slice(&self.best_block);
        }
        self.cand_home.clear();
        self.cand_home.extend(input.fresh_home.iter().map(|&h| {
            if d.hierarchical && h >= 0 {
                self.search_perm[h as usize] as i64
            } else {
                h
            }
        }));
        self.accept(input, d, false)
    }

    /// Candidate S2 (the old plan's group split) into `cand` / `cand_home`.
    fn search_old_split(
        &mut self,
        input: &LayerInput<'_>,
        shape: &Shape,
        options: &Options,
        d: &Dims,
    ) -> Option<Score> {
        let (g, n) = (shape.num_groups, shape.num_nodes);
        let (k, gpn, spn, group_size) = (d.k, d.gpn, d.spn, d.group_size);
        counts_of(input.old_phy, d.e, &mut self.cnt);
        let mut homes = infer_group_nodes(input.loads, input.old_phy, &self.cnt, shape);
        let mut per_node = vec![0usize; n];
        for &h in &homes {
            per_node[h as usize] += 1;
        }
        if per_node.iter().any(|&c| c != g / n) {
            return None;
        }
        // The same partition as the fresh split is candidate S1's business.
        let canon = |h: &[i64]| -> Vec<usize> {
            (0..g)
                .map(|x| (0..g).find(|&y| h[y] == h[x]).expect("itself"))
                .collect()
        };
        if canon(&homes) == canon(input.fresh_home) {
            return None;
        }
        let group_loads: Vec<f64> = input
            .loads
            .chunks_exact(group_size)
            .map(|c| c.iter().sum())
            .collect();
        // Lower the heaviest node by group swaps while the node bound exceeds the limit.
        for _ in 0..=g {
            self.node_loads.clear();
            self.node_loads.resize(n, 0.0);
            for (x, &h) in homes.iter().enumerate() {
                self.node_loads[h as usize] += group_loads[x];
            }
            let (mut hn, mut hl) = (0, self.node_loads[0]);
            for (i, &l) in self.node_loads.iter().enumerate() {
                if l > hl {
                    (hn, hl) = (i, l);
                }
            }
            if hl / gpn as f64 <= d.limit {
                break;
            }
            let mut best: Option<(f64, usize, usize)> = None;
            for ga in (0..g).filter(|&x| homes[x] as usize == hn) {
                for gb in (0..g).filter(|&x| homes[x] as usize != hn) {
                    let delta = group_loads[ga] - group_loads[gb];
                    if delta <= 0.0 {
                        continue;
                    }
                    let other = self.node_loads[homes[gb] as usize] + delta;
                    let new_max = (hl - delta).max(other);
                    if new_max < hl && best.is_none_or(|(bm, _, _)| new_max < bm) {
                        best = Some((new_max, ga, gb));
                    }
                }
            }
            let (_, ga, gb) = best?;
            homes.swap(ga, gb);
        }
        self.node_loads.clear();
        self.node_loads.resize(n, 0.0);
        for (x, &h) in homes.iter().enumerate() {
            self.node_loads[h as usize] += group_loads[x];
        }
        if self.node_loads.iter().copied().fold(0.0, f64::max) / gpn as f64 > d.limit {
            return None;
        }
        self.cand.clear();
        self.cand.resize(d.r, 0);
        for b in 0..n {
            self.experts.clear();
            self.experts
                .extend((0..d.e as u32).filter(|&x| homes[x as usize / group_size] as usize == b));
            self.node_loads.clear();
            self.node_loads
                .extend(self.experts.iter().map(|&x| input.loads[x as usize]));
            self.count_planner
                .choose(&self.node_loads, spn, gpn, options.effort, &mut self.target);
            if self.search_block(input, d, b).is_none() {
                // A fresh plan of this node (the refined planner's counts and packer), its GPUs
                // matched to the old block's.
                self.items.clear();
                self.colors.clear();
                for (j, &c) in self.target.iter().enumerate() {
                    for _ in 0..c {
                        self.items.push(self.node_loads[j] / f64::from(c));
                        self.colors.push(j as u32);
                    }
                }
                let state =
                    self.packer
                        .pack(&self.items, gpn, Some(&self.colors), options.effort, None);
                if state.max_load() > d.limit {
                    return None;
                }
                self.block.clear();
                self.block.extend(
                    state
                        .slots
                        .iter()
                        .map(|&i| i64::from(self.experts[self.colors[i as usize] as usize])),
                );
                overlap(&self.block, k, &self.index, b * gpn, gpn, &mut self.sub);
                let sub = std::mem::take(&mut self.sub);
                self.assign.max_assignment(gpn, &sub, &mut self.tmp_assign);
                self.sub = sub;
                self.best_block.clear();
                self.best_block.resize(spn, 0);
                for (li, &lj) in self.tmp_assign.iter().enumerate() {
                    self.best_block[lj * k..(lj + 1) * k]
                        .copy_from_slice(&self.block[li * k..(li + 1) * k]);
                }
                std::mem::swap(&mut self.block, &mut self.best_block);
                self.polish_block(input, d, b);
                std::mem::swap(&mut self.block, &mut self.best_block);
            }
            self.cand[b * spn..(b + 1) * spn].copy_from_slice(&self.best_block);
        }
        self.cand_home.clear();
        self.cand_home.extend_from_slice(&homes);
        self.accept(input, d, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(n: usize, w: &[i32]) -> i64 {
        fn go(row: usize, n: usize, w: &[i32], used: &mut Vec<bool>) -> i64 {
            if row == n {
                return 0;
            }
            let mut best = i64::MIN;
            for j in 0..n {
                if !used[j] {
                    used[j] = true;
                    best = best.max(i64::from(w[row * n + j]) + go(row + 1, n, w, used));
                    used[j] = false;
                }
            }
            best
        }
        go(0, n, w, &mut vec![false; n])
    }

    #[test]
    fn assignment_is_optimal_on_small_matrices() {
        let mut rng = crate::test_rng::XorShift(12345u64);
        let mut next = || rng.next_u64();
        let mut assign = Assignment::default();
        let mut out = Vec::new();
        for case in 0..3000 {
            let n = (next() % 7) as usize;
            let density = next() % 4;
            let w: Vec<i32> = (0..n * n)
                .map(|_| {
                    if next() % 4 < density {
                        (next() % 5) as i32
                    } else {
                        0
                    }
                })
                .collect();
            let value = assign.max_assignment(n, &w, &mut out);
            assert_eq!(value, brute_force(n, &w), "case {case}: {w:?}");
            let mut seen = vec![false; n];
            let mut total = 0;
            for (i, &j) in out.iter().enumerate() {
                assert!(!seen[j], "case {case}: not a permutation {out:?}");
                seen[j] = true;
                total += i64::from(w[i * n + j]);
            }
            assert_eq!(total, value, "case {case}");
        }
    }

    /// The textbook dense Hungarian algorithm (e-maxx), as a reference for larger matrices.
    fn dense_reference(n: usize, w: &[i32]) -> i64 {
        const INF: i64 = i64::MAX / 4;
        let (mut u, mut v) = (vec![0i64; n + 1], vec![0i64; n + 1]);
        let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
        for i in 1..=n {
            p[0] = i;
            let mut j0 = 0;
            let mut minv = vec![INF; n + 1];
            let mut used = vec![false; n + 1];
            loop {
                used[j0] = true;
                let (i0, mut delta, mut j1) = (p[j0], INF, 0);
                for j in 1..=n {
                    if !used[j] {
                        let cur = -i64::from(w[(i0 - 1) * n + j - 1]) - u[i0] - v[j];
                        if cur < minv[j] {
                            minv[j] = cur;
                            way[j] = j0;
                        }
                        if minv[j] < delta {
                            delta = minv[j];
                            j1 = j;
                        }
                    }
                }
                for j in 0..=n {
                    if used[j] {
                        u[p[j]] += delta;
                        v[j] -= delta;
                    } else {
                        minv[j] -= delta;
                    }
                }
                j0 = j1;
                if p[j0] == 0 {
                    break;
                }
            }
            loop {
                let j1 = way[j0];
                p[j0] = p[j1];
                j0 = j1;
                if j0 == 0 {
                    break;
                }
            }
        }
        (1..=n).map(|j| i64::from(w[(p[j] - 1) * n + j - 1])).sum()
    }

    #[test]
    fn assignment_matches_the_dense_hungarian_on_larger_matrices() {
        let mut rng = crate::test_rng::XorShift(777u64);
        let mut next = || rng.next_u64();
        let mut assign = Assignment::default();
        let mut out = Vec::new();
        for case in 0..400 {
            let n = 1 + (next() % 60) as usize;
            let density = 1 + next() % 20;
            let max_w = 1 + next() % 40;
            let w: Vec<i32> = (0..n * n)
                .map(|_| {
                    if next() % 100 < density {
                        (next() % max_w) as i32
                    } else {
                        0
                    }
                })
                .collect();
            let value = assign.max_assignment(n, &w, &mut out);
            assert_eq!(value, dense_reference(n, &w), "case {case}");
            let total: i64 = out
                .iter()
                .enumerate()
                .map(|(i, &j)| i64::from(w[i * n + j]))
                .sum();
            assert_eq!(total, value, "case {case}");
            let mut seen = out.clone();
            seen.sort_unstable();
            assert!(seen.iter().enumerate().all(|(i, &j)| i == j), "case {case}");
        }
    }

    #[test]
    fn class_assignment_keeps_what_a_permutation_moved() {
        // Three experts with equal loads rotated over three GPUs: the class assignment puts each
        // back where the old row had it.
        let old = vec![0i64, 3, 1, 4, 2, 5];
        let mut row = vec![1i64, 3, 2, 4, 0, 5];
        let class_of = vec![0u32, 0, 0, 3, 4, 5];
        let shared = vec![true, true, true, false, false, false];
        ClassAssign::default().run(&mut row, &old, 2, 6, &class_of, &shared);
        assert_eq!(moved(&row, &old, 2), 0, "{row:?}");
    }
}

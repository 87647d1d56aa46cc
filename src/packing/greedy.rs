//! DeepSeek's greedy `balanced_packing`, bit-exact: items in stable descending order, each to the
//! lightest pack that is not yet full (lowest index on ties), weights accumulated in `W`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::weight::{Weight, sort_descending};

/// Reusable buffers of [`greedy_pack`].
#[derive(Debug, Default)]
pub struct GreedyScratch<W: Weight> {
    keys: Vec<W::Key>,
    order: Vec<u32>,
    heap: BinaryHeap<Reverse<W::Key>>,
    counts: Vec<u32>,
    open: Vec<W::Key>,
}

/// Below this many packs a scan of the open packs beats a heap.
const SCAN_LIMIT: usize = 24;

/// Packs `weights` into `num_packs` packs of `weights.len() / num_packs` items each. Writes each
/// item's pack to `pack_of`, its insertion rank to `rank`, and the pack sums to `pack_weights`.
/// Precondition: `num_packs > 0` divides `weights.len()`; weights are finite and `>= 0`.
pub fn greedy_pack<W: Weight>(
    weights: &[W],
    num_packs: usize,
    scratch: &mut GreedyScratch<W>,
    pack_weights: &mut Vec<W>,
    pack_of: &mut [u32],
    rank: &mut [u32],
) {
    let n = weights.len();
    let per_pack = (n / num_packs) as u32;
    pack_weights.clear();
    pack_weights.resize(num_packs, W::default());
    if per_pack == 1 {
        for i in 0..n {
            pack_of[i] = i as u32;
            rank[i] = 0;
            pack_weights[i] = weights[i];
        }
        return;
    }
    sort_descending(weights, &mut scratch.keys, &mut scratch.order);
    let counts = &mut scratch.counts;
    counts.clear();
    counts.resize(num_packs, 0);
    if num_packs <= SCAN_LIMIT {
        // Each open pack as its ascending key (weight, then index), a full pack as a key above all
        // of them: the smallest key is the lightest open pack, lowest index on ties.
        let open = &mut scratch.open;
        open.clear();
        open.extend((0..num_packs as u32).map(|p| W::default().ascending_key(p)));
        for &item in &scratch.order {
            let best = W::key_index(min_key(open)) as usize;
            let item = item as usize;
            pack_of[item] = best as u32;
            rank[item] = counts[best];
            counts[best] += 1;
            pack_weights[best] += weights[item];
            open[best] = if counts[best] == per_pack {
                W::MAX_KEY
            } else {
                pack_weights[best].ascending_key(best as u32)
            };
        }
    } else {
        let heap = &mut scratch.heap;
        heap.clear();
        heap.extend((0..num_packs as u32).map(|p| Reverse(W::default().ascending_key(p))));
        for &item in &scratch.order {
            let Reverse(key) = heap.pop().expect("a pack that is not full remains");
            let p = W::key_index(key) as usize;
            let item = item as usize;
            pack_of[item] = p as u32;
            rank[item] = counts[p];
            counts[p] += 1;
            pack_weights[p] += weights[item];
            if counts[p] < per_pack {
                heap.push(Reverse(pack_weights[p].ascending_key(p as u32)));
            }
        }
    }
}

/// The smallest of `keys` (not empty), with four independent running minima so the comparison
/// chain is a quarter as deep as a linear scan (this scan is the greedy's inner loop).
fn min_key<K: Ord + Copy>(keys: &[K]) -> K {
    let mut acc = [keys[0]; 4];
    let chunks = keys.chunks_exact(4);
    for &key in chunks.remainder() {
        acc[0] = acc[0].min(key);
    }
    for chunk in chunks {
        for (a, &key) in acc.iter_mut().zip(chunk) {
            *a = (*a).min(key);
        }
    }
    acc[0].min(acc[1]).min(acc[2].min(acc[3]))
}

/// Reusable buffers of [`greedy_colored`].
#[derive(Debug, Default)]
pub struct ColoredScratch {
    keys: Vec<u64>,
    order: Vec<u32>,
    loads: Vec<f64>,
    counts: Vec<u32>,
    heap: BinaryHeap<Reverse<u128>>,
    skipped: Vec<Reverse<u128>>,
    run_packs: Vec<u32>,
}

/// Greedy start of the refined packer: items by weight descending (ties by index; the order is
/// computed on f32-rounded keys, which is only a heuristic order and stays deterministic), each to
/// the lightest pack that is not full and, with `colors`, holds no item of its color placed just
/// before it (replicas of one expert are adjacent in that order); the lightest non-full pack when
/// every candidate has the color. Writes each item's pack to `pack_of`.
pub fn greedy_colored(
    weights: &[f64],
    colors: Option<&[u32]>,
    num_packs: usize,
    scratch: &mut ColoredScratch,
    pack_of: &mut [u32],
) {
    let n = weights.len();
    let per_pack = (n / num_packs) as u32;
    scratch.keys.clear();
    scratch.keys.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (w as f32).descending_key(i as u32)),
    );
    scratch.keys.sort_unstable();
    scratch.order.clear();
    scratch
        .order
        .extend(scratch.keys.iter().map(|&k| f32::key_index(k)));
    scratch.loads.clear();
    scratch.loads.resize(num_packs, 0.0);
    scratch.counts.clear();
    scratch.counts.resize(num_packs, 0);
    scratch.run_packs.clear();
    let mut run_color = u32::MAX;
    let mut run_mask = 0u64;
    let use_scan = num_packs <= SCAN_LIMIT;
    if !use_scan {
        scratch.heap.clear();
        scratch
            .heap
            .extend((0..num_packs as u32).map(|p| Reverse(0.0f64.ascending_key(p))));
    }
    for idx in 0..n {
        let item = scratch.order[idx] as usize;
        let color = colors.map_or(u32::MAX, |c| c[item]);
        if color != run_color || colors.is_none() {
            run_color = color;
            scratch.run_packs.clear();
            run_mask = 0;
        }
        let pack = if use_scan {
            // Packs in the current color run as a bit mask (num_packs <= SCAN_LIMIT < 64).
            let mut best = usize::MAX;
            let mut best_load = f64::INFINITY;
            let mut fallback = usize::MAX;
            let mut fallback_load = f64::INFINITY;
            for (p, (&load, &count)) in scratch.loads.iter().zip(&scratch.counts).enumerate() {
                if count == per_pack {
                    continue;
                }
                if load < fallback_load {
                    fallback = p;
                    fallback_load = load;
                }
                if run_mask & (1u64 << p) == 0 && load < best_load {
                    best = p;
                    best_load = load;
                }
            }
            if best == usize::MAX { fallback } else { best }
        } else {
            scratch.skipped.clear();
            let mut chosen = None;
            while let Some(top) = scratch.heap.pop() {
                let p = f64::key_index(top.0);
                if scratch.run_packs.contains(&p) {
                    scratch.skipped.push(top);
                } else {
                    chosen = Some(p);
                    break;
                }
            }
            let p = match chosen {
                Some(p) => p,
                None => {
                    // Every open pack holds the color: take the lightest anyway.
                    scratch.skipped.sort_unstable();
                    let top = scratch.skipped.pop().expect("an open pack");
                    f64::key_index(top.0)
                }
            };
            scratch.heap.extend(scratch.skipped.drain(..));
            p as usize
        };
        pack_of[item] = pack as u32;
        scratch.counts[pack] += 1;
        scratch.loads[pack] += weights[item];
        scratch.run_packs.push(pack as u32);
        if use_scan {
            run_mask |= 1u64 << pack;
        }
        if !use_scan && scratch.counts[pack] < per_pack {
            scratch
                .heap
                .push(Reverse(scratch.loads[pack].ascending_key(pack as u32)));
        }
    }
}

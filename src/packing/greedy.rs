//! DeepSeek's greedy `balanced_packing`, bit-exact: items in stable descending order, each to the
//! lightest pack that is not yet full (lowest index on ties), weights accumulated in `W`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::weight::{Weight, sort_descending};

/// Reusable buffers of [`greedy_pack`].
#[derive(Debug, Default)]
pub struct GreedyScratch {
    keys: Vec<(u64, u32)>,
    order: Vec<u32>,
    heap: BinaryHeap<Reverse<(u64, u32)>>,
    counts: Vec<u32>,
}

/// Below this many packs a linear scan for the lightest pack beats a heap.
const SCAN_LIMIT: usize = 16;

/// Packs `weights` into `num_packs` packs of `weights.len() / num_packs` items each.
/// Writes each item's pack to `pack_of` and its insertion rank to `rank`; returns nothing else.
/// Precondition: `num_packs > 0` divides `weights.len()`, weights are finite and `>= 0`.
pub fn greedy_pack<W: Weight>(
    weights: &[W],
    num_packs: usize,
    scratch: &mut GreedyScratch,
    pack_weights: &mut Vec<W>,
    pack_of: &mut [u32],
    rank: &mut [u32],
) {
    let n = weights.len();
    let per_pack = n / num_packs;
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
    scratch.counts.clear();
    scratch.counts.resize(num_packs, 0);
    let order = std::mem::take(&mut scratch.order);
    if num_packs <= SCAN_LIMIT {
        for &item in &order {
            let mut best = usize::MAX;
            for p in 0..num_packs {
                if (scratch.counts[p] as usize) < per_pack
                    && (best == usize::MAX || pack_weights[p] < pack_weights[best])
                {
                    best = p;
                }
            }
            place(item, best, weights, scratch, pack_weights, pack_of, rank);
        }
    } else {
        scratch.heap.clear();
        scratch
            .heap
            .extend((0..num_packs as u32).map(|p| Reverse((0u64, p))));
        for &item in &order {
            let Reverse((_, p)) = scratch.heap.pop().expect("a non-full pack remains");
            let p = p as usize;
            place(item, p, weights, scratch, pack_weights, pack_of, rank);
            if (scratch.counts[p] as usize) < per_pack {
                scratch
                    .heap
                    .push(Reverse((pack_weights[p].order_key(), p as u32)));
            }
        }
    }
    scratch.order = order;
}

fn place<W: Weight>(
    item: u32,
    pack: usize,
    weights: &[W],
    scratch: &mut GreedyScratch,
    pack_weights: &mut [W],
    pack_of: &mut [u32],
    rank: &mut [u32],
) {
    let item = item as usize;
    pack_of[item] = pack as u32;
    rank[item] = scratch.counts[pack];
    scratch.counts[pack] += 1;
    pack_weights[pack] += weights[item];
}

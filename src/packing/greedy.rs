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
    open: Vec<u32>,
    counts: Vec<u32>,
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
        // Open packs in ascending index order: the first strict minimum is the lowest index.
        let open = &mut scratch.open;
        open.clear();
        open.extend(0..num_packs as u32);
        for &item in &scratch.order {
            let mut best_pos = 0;
            let mut best_weight = pack_weights[open[0] as usize];
            for (pos, &p) in open.iter().enumerate().skip(1) {
                let w = pack_weights[p as usize];
                if w < best_weight {
                    best_weight = w;
                    best_pos = pos;
                }
            }
            let p = open[best_pos] as usize;
            let item = item as usize;
            pack_of[item] = p as u32;
            rank[item] = counts[p];
            counts[p] += 1;
            pack_weights[p] += weights[item];
            if counts[p] == per_pack {
                open.remove(best_pos);
            }
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

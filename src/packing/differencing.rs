//! Balanced largest differencing (Karmarkar-Karp for packs of equal item counts).
//!
//! Items sorted descending are cut into rows of `num_packs`; each row is a partial solution with one
//! item per pack. Repeatedly the two partial solutions with the largest spread (max - min) are merged,
//! the heaviest subset of one joined with the lightest of the other. Every pack ends with exactly one
//! item per row, so pack sizes are exact.

use std::collections::BinaryHeap;

use super::weight::sort_descending;

/// Reusable buffers of [`balanced_differencing`].
#[derive(Debug, Default)]
pub struct DifferencingScratch {
    keys: Vec<u128>,
    order: Vec<u32>,
    parent: Vec<u32>,
    entries: Vec<(f64, u32)>,
    merged: Vec<(f64, u32)>,
    heap: BinaryHeap<(u64, u32)>,
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let up = parent[parent[x as usize] as usize];
        parent[x as usize] = up;
        x = up;
    }
    x
}

fn spread(row: &[(f64, u32)]) -> u64 {
    (row[0].0 - row[row.len() - 1].0).max(0.0).to_bits()
}

/// Writes each item's pack to `pack_of`. Precondition: `num_packs > 0` divides `weights.len()`.
pub fn balanced_differencing(
    weights: &[f64],
    num_packs: usize,
    scratch: &mut DifferencingScratch,
    pack_of: &mut [u32],
) {
    let n = weights.len();
    let m = num_packs;
    let rows = n / m;
    sort_descending(weights, &mut scratch.keys, &mut scratch.order);
    scratch.parent.clear();
    scratch.parent.extend(0..n as u32);
    scratch.entries.clear();
    scratch.entries.extend(
        scratch
            .order
            .iter()
            .map(|&item| (weights[item as usize], item)),
    );
    scratch.heap.clear();
    for r in 0..rows {
        scratch
            .heap
            .push((spread(&scratch.entries[r * m..(r + 1) * m]), r as u32));
    }
    while scratch.heap.len() > 1 {
        let (_, a) = scratch.heap.pop().expect("two partial solutions");
        let (_, b) = scratch.heap.pop().expect("two partial solutions");
        let (a, b) = (a as usize, b as usize);
        scratch.merged.clear();
        for i in 0..m {
            let (sa, ra) = scratch.entries[a * m + i];
            let (sb, rb) = scratch.entries[b * m + (m - 1 - i)];
            scratch.parent[rb as usize] = ra;
            scratch.merged.push((sa + sb, ra));
        }
        scratch
            .merged
            .sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        scratch.entries[a * m..(a + 1) * m].copy_from_slice(&scratch.merged);
        scratch
            .heap
            .push((spread(&scratch.entries[a * m..(a + 1) * m]), a as u32));
    }
    let (_, last) = scratch.heap.pop().expect("one partial solution");
    let last = last as usize;
    // Map each final subset (its root item) to a pack index.
    for p in 0..m {
        let root = scratch.entries[last * m + p].1;
        pack_of[root as usize] = p as u32;
    }
    for item in 0..n as u32 {
        let root = find(&mut scratch.parent, item);
        pack_of[item as usize] = pack_of[root as usize];
    }
}

//! Pack weights: `f32` for DeepSeek's f32 accumulation, `f64` for the refined planner.
//!
//! Orders are computed on integer keys that pack the weight's bits with an item index, so sorts and
//! heaps compare one integer and ties always break by index, deterministically.

use std::ops::{Add, AddAssign};

/// A non-negative, finite weight that packs accumulate.
pub trait Weight:
    Copy + PartialOrd + Add<Output = Self> + AddAssign + Default + Send + Sync
{
    /// A key above every [`Weight::ascending_key`], even of an infinite weight.
    const MAX_KEY: Self::Key;
    /// An integer key packing the weight and an index.
    type Key: Ord + Copy + Send + Sync + std::fmt::Debug;
    /// Ascending keys = ascending weight, then ascending index.
    fn ascending_key(self, index: u32) -> Self::Key;
    /// Ascending keys = descending weight, then ascending index.
    fn descending_key(self, index: u32) -> Self::Key;
    /// Largest key = largest weight, then smallest index (for max-heaps).
    fn max_first_key(self, index: u32) -> Self::Key;
    /// The index packed in a key.
    fn key_index(key: Self::Key) -> u32;
    /// The weight packed in an [`Weight::ascending_key`].
    fn key_weight(key: Self::Key) -> Self;
    /// The value in f64.
    fn as_f64(self) -> f64;
}

impl Weight for f32 {
    const MAX_KEY: u64 = u64::MAX;
    type Key = u64;
    fn ascending_key(self, index: u32) -> u64 {
        (u64::from((self + 0.0).to_bits()) << 32) | u64::from(index)
    }
    fn descending_key(self, index: u32) -> u64 {
        (u64::from(!(self + 0.0).to_bits()) << 32) | u64::from(index)
    }
    fn max_first_key(self, index: u32) -> u64 {
        (u64::from((self + 0.0).to_bits()) << 32) | u64::from(!index)
    }
    fn key_index(key: u64) -> u32 {
        key as u32
    }
    fn key_weight(key: u64) -> Self {
        f32::from_bits((key >> 32) as u32)
    }
    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Weight for f64 {
    const MAX_KEY: u128 = u128::MAX;
    type Key = u128;
    fn ascending_key(self, index: u32) -> u128 {
        (u128::from((self + 0.0).to_bits()) << 32) | u128::from(index)
    }
    fn descending_key(self, index: u32) -> u128 {
        (u128::from(!(self + 0.0).to_bits()) << 32) | u128::from(index)
    }
    fn max_first_key(self, index: u32) -> u128 {
        (u128::from((self + 0.0).to_bits()) << 32) | u128::from(!index)
    }
    fn key_index(key: u128) -> u32 {
        key as u32
    }
    fn key_weight(key: u128) -> Self {
        f64::from_bits((key >> 32) as u64)
    }
    fn as_f64(self) -> f64 {
        self
    }
}

/// Fills `order` with item indices sorted by weight descending; equal weights keep ascending index
/// order (a stable descending sort, as DESIGN.md requires).
pub fn sort_descending<W: Weight>(weights: &[W], keys: &mut Vec<W::Key>, order: &mut Vec<u32>) {
    keys.clear();
    keys.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| w.descending_key(i as u32)),
    );
    keys.sort_unstable();
    order.clear();
    order.extend(keys.iter().map(|&k| W::key_index(k)));
}

/// Fills `keys` with f64 weights' descending keys on their f32-rounded values (ties by index),
/// sorted: a heuristic order, cheaper than exact f64 keys and deterministic. `f32::key_index`
/// gives each key's item.
pub fn sort_rounded_descending(weights: &[f64], keys: &mut Vec<u64>) {
    rounded_descending_keys(weights, keys);
    keys.sort_unstable();
}

/// Fills `keys` with the unsorted keys of [`sort_rounded_descending`].
pub fn rounded_descending_keys(weights: &[f64], keys: &mut Vec<u64>) {
    keys.clear();
    keys.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (w as f32).descending_key(i as u32)),
    );
}

/// Sorts distinct keys by insertion: cheap when `keys` is nearly sorted.
pub fn insertion_sort<K: Ord + Copy>(keys: &mut [K]) {
    for i in 1..keys.len() {
        let key = keys[i];
        let mut j = i;
        while j > 0 && keys[j - 1] > key {
            keys[j] = keys[j - 1];
            j -= 1;
        }
        keys[j] = key;
    }
}

/// Sorts distinct keys that are nearly sorted in reverse (the packs of a round of
/// `greedy::deal`): eight keys by a sorting network (19 compare-exchanges, no branch), others by
/// reversal and insertion sort.
pub fn sort_reversed<K: Ord + Copy>(keys: &mut [K]) {
    if let Ok(keys) = <&mut [K; 8]>::try_from(&mut *keys) {
        let mut exchange = |i: usize, j: usize| {
            let (a, b) = (keys[i], keys[j]);
            keys[i] = a.min(b);
            keys[j] = a.max(b);
        };
        for (i, j) in [
            (0, 2),
            (1, 3),
            (4, 6),
            (5, 7),
            (0, 4),
            (1, 5),
            (2, 6),
            (3, 7),
        ] {
            exchange(i, j);
        }
        for (i, j) in [
            (0, 1),
            (2, 3),
            (4, 5),
            (6, 7),
            (2, 4),
            (3, 5),
            (1, 4),
            (3, 6),
        ] {
            exchange(i, j);
        }
        for (i, j) in [(1, 2), (3, 4), (5, 6)] {
            exchange(i, j);
        }
    } else {
        keys.reverse();
        insertion_sort(keys);
    }
}

/// Sorts distinct keys in any order: eight by the network of [`sort_reversed`], others by
/// `sort_unstable`.
pub fn sort_small<K: Ord + Copy>(keys: &mut [K]) {
    if keys.len() == 8 {
        sort_reversed(keys);
    } else {
        keys.sort_unstable();
    }
}

/// The larger of two loads, by a select: loads are never NaN, so this is `f64::max` without
/// its NaN handling, a few instructions less in hot loops.
#[inline]
pub fn larger(a: f64, b: f64) -> f64 {
    if a > b { a } else { b }
}

/// The smaller of two loads, by a select (see [`larger`]).
#[inline]
pub fn smaller(a: f64, b: f64) -> f64 {
    if a < b { a } else { b }
}

/// Division of a load by a replica count, in the weight's own precision.
pub trait PerReplica: Weight {
    /// `self / count`, rounded as the type rounds.
    fn per_replica(self, count: u32) -> Self;
}

impl PerReplica for f32 {
    fn per_replica(self, count: u32) -> Self {
        self / count as f32
    }
}

impl PerReplica for f64 {
    fn per_replica(self, count: u32) -> Self {
        self / f64::from(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_reversed_sorts_every_order_of_eight() {
        // A network sorts every input iff it sorts every 0-1 input; distinct keys as (bit, index).
        for bits in 0u32..256 {
            let mut keys: Vec<(u32, usize)> = (0..8).map(|i| ((bits >> i) & 1, i)).collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            sort_reversed(&mut keys);
            assert_eq!(keys, expected, "{bits:08b}");
        }
        for n in [0, 1, 5, 9] {
            let mut keys: Vec<u32> = (0..n).map(|i| (i * 7) % 11).collect();
            sort_reversed(&mut keys);
            assert!(keys.is_sorted());
        }
    }
}

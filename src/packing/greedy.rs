//! DeepSeek's greedy `balanced_packing`, bit-exact: items in stable descending order, each to the
//! lightest pack that is not yet full (lowest index on ties), weights accumulated in `W`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::state::PackState;
use super::weight::{
    Weight, larger, smaller, sort_descending, sort_reversed, sort_rounded_descending, sort_small,
};

/// Reusable buffers of [`greedy_pack`].
#[derive(Debug, Default)]
pub struct GreedyScratch<W: Weight> {
    keys: Vec<W::Key>,
    order: Vec<u32>,
    heap: BinaryHeap<Reverse<W::Key>>,
    counts: Vec<u32>,
}

impl<W: Weight> GreedyScratch<W> {
    /// The items of the last [`greedy_pack`] by weight descending (its packing order); empty when
    /// it had one item per pack (no order needed).
    pub fn order(&self) -> &[u32] {
        &self.order
    }
}

/// Up to this many packs a scan of the open packs beats a heap (the greedy of [`greedy_pack`]).
const SCAN_LIMIT: usize = 32;

/// The same for [`greedy_colored`], whose scan also skips the packs of the color run.
const COLORED_SCAN_LIMIT: usize = 24;

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
        scratch.order.clear();
        for i in 0..n {
            pack_of[i] = i as u32;
            rank[i] = 0;
            pack_weights[i] = weights[i];
        }
        return;
    }
    sort_descending(weights, &mut scratch.keys, &mut scratch.order);
    if num_packs <= SCAN_LIMIT && per_pack < 1 << COUNT_BITS {
        let scan = Scan {
            order: &scratch.order,
            weights,
            per_pack,
        };
        match num_packs {
            0..=4 => scan.run::<4, 1>(num_packs, pack_weights, pack_of, rank),
            5..=8 => scan.run::<8, 1>(num_packs, pack_weights, pack_of, rank),
            9..=16 => scan.run::<8, 2>(num_packs, pack_weights, pack_of, rank),
            _ => scan.run::<8, 4>(num_packs, pack_weights, pack_of, rank),
        }
    } else {
        heap_pack(weights, per_pack, scratch, pack_weights, pack_of, rank);
    }
}

/// The heap form of [`greedy_pack`], for any number of packs: items in `scratch.order`.
fn heap_pack<W: Weight>(
    weights: &[W],
    per_pack: u32,
    scratch: &mut GreedyScratch<W>,
    pack_weights: &mut [W],
    pack_of: &mut [u32],
    rank: &mut [u32],
) {
    let num_packs = pack_weights.len();
    let counts = &mut scratch.counts;
    counts.clear();
    counts.resize(num_packs, 0);
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

/// The scan form of [`greedy_pack`] for few packs: items in `order`, packs of `per_pack` items.
struct Scan<'a, W: Weight> {
    order: &'a [u32],
    weights: &'a [W],
    per_pack: u32,
}

/// Bits of a scan key's index field below the pack: the pack's item count (see [`Scan::run`]).
const COUNT_BITS: u32 = 16;

impl<W: Weight> Scan<'_, W> {
    /// Runs the greedy with the open packs held in `N` fixed groups of `G` keys (`G * N >=
    /// num_packs`, `G` a power of two): each open pack as its ascending key (weight, then index), a
    /// full or missing pack as a key above all of them, so the smallest key is the lightest open
    /// pack, lowest index on ties. Each group's smallest key is kept, so an item's step is the
    /// minimum of `N` keys, one store, and the minimum of the changed group (balanced trees of
    /// comparisons): a short dependency chain with no branch. A key's index field holds the pack
    /// above [`COUNT_BITS`] and its item count below (the order is unchanged: packs differ), so the
    /// step needs no count from memory. Precondition: `per_pack < 2^COUNT_BITS`.
    fn run<const G: usize, const N: usize>(
        &self,
        num_packs: usize,
        pack_weights: &mut [W],
        pack_of: &mut [u32],
        rank: &mut [u32],
    ) {
        let mut open = [[W::MAX_KEY; G]; N];
        for p in 0..num_packs {
            open[p / G][p % G] = W::default().ascending_key((p as u32) << COUNT_BITS);
        }
        let mut lightest: [W::Key; N] = std::array::from_fn(|g| min_of(&open[g]));
        for &item in self.order {
            // One group: its minimum directly (the step's chain is then one tree of comparisons).
            let key = if N == 1 {
                min_of(&open[0])
            } else {
                min_of(&lightest)
            };
            let field = W::key_index(key);
            let (best, count) = (
                (field >> COUNT_BITS) as usize,
                field & ((1 << COUNT_BITS) - 1),
            );
            let item = item as usize;
            // The key holds the pack's weight exactly (its bits).
            let weight = W::key_weight(key) + self.weights[item];
            pack_of[item] = best as u32;
            rank[item] = count;
            pack_weights[best] = weight;
            let new_key = if count + 1 == self.per_pack {
                W::MAX_KEY
            } else {
                weight.ascending_key(((best as u32) << COUNT_BITS) | (count + 1))
            };
            let group = &mut open[best / G];
            // A select over the group, not an indexed store: the keys stay in registers (a store
            // and its reload would sit on the step's dependency chain).
            for (p, slot) in group.iter_mut().enumerate() {
                if p == best % G {
                    *slot = new_key;
                }
            }
            if N > 1 {
                let group_min = min_of(group);
                for (g, min) in lightest.iter_mut().enumerate() {
                    if g == best / G {
                        *min = group_min;
                    }
                }
            }
        }
    }
}

/// The smallest of `P` keys (`P` a power of two), by halving.
fn min_of<K: Ord + Copy, const P: usize>(keys: &[K; P]) -> K {
    let mut v = *keys;
    let mut width = P;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            v[i] = v[i].min(v[i + width]);
        }
    }
    v[0]
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
    sort_rounded_descending(weights, &mut scratch.keys);
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
    let use_scan = num_packs <= COLORED_SCAN_LIMIT;
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
            // Packs in the current color run as a bit mask (num_packs <= COLORED_SCAN_LIMIT < 64).
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

/// Reusable buffers of [`greedy_rounds`].
#[derive(Debug, Default)]
pub struct RoundsScratch {
    keys: Vec<u64>,
    pack_keys: Vec<u64>,
    last_color: Vec<u32>,
    order: Vec<u32>,
    /// The partial packings of [`merge_rows`], the unmerged ones by spread, their subsets (each
    /// partial's in one block of `num_packs`; a merge writes a new block), and the next item of
    /// each item's subset.
    partials: Vec<Partial>,
    ranked: Vec<u32>,
    subsets: Vec<Subset>,
    next: Vec<u32>,
}

impl RoundsScratch {
    /// The items of the last [`greedy_rounds`] in their dealing order: by weight descending (on
    /// f32-rounded weights, so nearly the exact order; a hint for the local search's index).
    pub fn order(&mut self) -> &[u32] {
        self.order.clear();
        self.order
            .extend(self.keys.iter().map(|&key| f32::key_index(key)));
        &self.order
    }
}

/// A subset of items while [`merge_rows`] merges partial packings: its load, its items' colors as
/// a [`color_bit`] mask, and its items as a list (first and last item, linked through
/// `RoundsScratch::next`). Aligned to 32 bytes: a gathered subset never straddles a cache line.
#[derive(Debug, Default, Clone, Copy)]
#[repr(align(32))]
struct Subset {
    load: f64,
    mask: u64,
    head: u32,
    tail: u32,
}

/// A partial packing of [`merge_rows`]: its spread (heaviest minus lightest subset), its items'
/// colors, its block of subsets, and whether they are heaviest first.
#[derive(Debug, Default, Clone, Copy)]
struct Partial {
    spread: f64,
    colors: ColorSet,
    block: u32,
    descending: bool,
}

/// A set of colors as bits `color % 256`: a superset of the colors (exact below 256 colors).
#[derive(Debug, Default, Clone, Copy)]
struct ColorSet([u64; 4]);

impl ColorSet {
    fn insert(&mut self, color: u32) {
        let bit = color % 256;
        self.0[(bit / 64) as usize] |= 1u64 << (bit % 64);
    }

    fn union(self, other: ColorSet) -> ColorSet {
        ColorSet(std::array::from_fn(|w| self.0[w] | other.0[w]))
    }

    /// Whether the sets share a bit (sets that do not share no color).
    fn meets(&self, other: &ColorSet) -> bool {
        (self.0.iter().zip(&other.0)).fold(0, |any, (&x, &y)| any | (x & y)) != 0
    }
}

/// A color's bit in a subset's mask: subsets whose masks share no bit share no color.
fn color_bit(color: u32) -> u64 {
    1u64 << (color % 64)
}

/// No next item in a subset's list.
const END: u32 = u32::MAX;

/// The items of the subset whose list starts at `head`.
fn subset_items(next: &[u32], head: u32) -> impl Iterator<Item = u32> + '_ {
    std::iter::successors(Some(head), |&item| {
        Some(next[item as usize]).filter(|&n| n != END)
    })
}

/// The largest minus the smallest of `P` loads (`P` a power of two), by halving.
fn spread_of<const P: usize>(loads: &[f64; P]) -> f64 {
    const { assert!(P.is_power_of_two()) };
    let (mut high, mut low) = (*loads, *loads);
    let mut width = P;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            high[i] = larger(high[i], high[i + width]);
            low[i] = smaller(low[i], low[i + width]);
        }
    }
    high[0] - low[0]
}

/// Whether partial `p` merges before partial `q`: larger spread, the first one on ties.
fn merges_before(partials: &[Partial], p: u32, q: u32) -> bool {
    let (sp, sq) = (partials[p as usize].spread, partials[q as usize].spread);
    (sp > sq) | ((sp == sq) & (p < q))
}

/// Balanced largest differencing on the rows of `keys` (items by weight descending, `M` a row;
/// each row a partial packing of one item per pack): the two partial packings with the largest
/// spread (heaviest minus lightest subset; the first ones on ties) are merged, the heaviest subset
/// of one with the lightest of the other, until one is left: its subsets are the packs, each with
/// one item of every row. With `colors`, a subset pair sharing a color trades partners with another
/// pair where that clears both; returns `false` when a clash may remain (or without `colors`).
/// Precondition: `M`, a power of two, divides `weights.len()`.
fn merge_rows<const M: usize>(
    weights: &[f64],
    colors: Option<&[u32]>,
    scratch: &mut RoundsScratch,
    state: &mut PackState,
) -> bool {
    let n = weights.len();
    state.reset(n, M);
    let RoundsScratch {
        keys,
        partials,
        ranked,
        subsets,
        next,
        ..
    } = scratch;
    let rows = n / M;
    if rows == 0 {
        return false;
    }
    next.clear();
    next.resize(n, END);
    // The rows' blocks, then one per merge (every subset is written before it is read).
    if subsets.len() < (2 * rows - 1) * M {
        subsets.resize((2 * rows - 1) * M, Subset::default());
    }
    partials.clear();
    partials.resize(rows, Partial::default());
    for ((row, block), partial) in (keys.chunks_exact(M))
        .zip(subsets.chunks_exact_mut(M))
        .zip(partials.iter_mut())
    {
        for (subset, &key) in block.iter_mut().zip(row) {
            let item = f32::key_index(key);
            let color = colors.map_or(0, |colors| colors[item as usize]);
            *subset = Subset {
                load: weights[item as usize],
                mask: colors.map_or(0, |_| color_bit(color)),
                head: item,
                tail: item,
            };
            partial.colors.insert(color);
        }
        partial.spread = block[0].load - block[M - 1].load;
        partial.descending = true;
    }
    for (r, partial) in (0u32..).zip(partials.iter_mut()) {
        partial.block = r;
    }
    // The partials not yet merged away, the next to merge first, from `ranked[start]` on.
    ranked.clear();
    ranked.extend(0..rows as u32);
    // In merge order ([`merges_before`]): spreads are never NaN.
    ranked.sort_unstable_by(|&p, &q| {
        let spread = |r: u32| partials[r as usize].spread;
        spread(q).total_cmp(&spread(p)).then(p.cmp(&q))
    });
    let mut clean = true;
    for start in 0..rows - 1 {
        let (a, b) = (ranked[start] as usize, ranked[start + 1] as usize);
        let (pa, pb) = (partials[a], partials[b]);
        let target = rows + start;
        let (sources, merged) = subsets.split_at_mut(target * M);
        let block = |partial: Partial| -> &[Subset; M] {
            let first = partial.block as usize * M;
            sources[first..first + M].try_into().expect("a block of M")
        };
        let (sa, sb) = (block(pa), block(pb));
        // A key's index is a place in its block (`% M`, here and where places index a block,
        // only spares the bounds checks).
        let place = |key: u64| f32::key_index(key) as usize % M;
        // The places of partial `a` heaviest first, of `b` lightest first (f32-rounded loads,
        // ties by place; a row is heaviest first already, and reversed for `b`).
        let heavy: [usize; M] = if pa.descending {
            std::array::from_fn(|i| i)
        } else {
            let mut keys = std::array::from_fn(|i| (sa[i].load as f32).descending_key(i as u32));
            sort_small(&mut keys);
            keys.map(place)
        };
        let mut light: [usize; M] = if pb.descending {
            std::array::from_fn(|i| M - 1 - i)
        } else {
            let mut keys = std::array::from_fn(|i| (sb[i].load as f32).ascending_key(i as u32));
            sort_small(&mut keys);
            keys.map(place)
        };
        // Only partials whose color sets meet, and there subsets whose masks do, can share a
        // color.
        if let Some(colors) = colors.filter(|_| pa.colors.meets(&pb.colors)) {
            let next = &*next;
            let clash = |x: usize, y: usize| {
                let (x, y) = (sa[x % M], sb[y % M]);
                let shared = x.mask & y.mask;
                shared != 0
                    && subset_items(next, x.head).any(|p| {
                        let c = colors[p as usize];
                        shared & color_bit(c) != 0
                            && subset_items(next, y.head).any(|q| colors[q as usize] == c)
                    })
            };
            for i in 0..M {
                if !clash(heavy[i], light[i]) {
                    continue;
                }
                match (0..M)
                    .find(|&j| j != i && !clash(heavy[i], light[j]) && !clash(heavy[j], light[i]))
                {
                    Some(j) => light.swap(i, j),
                    None => clean = false,
                }
            }
        }
        let merged: &mut [Subset; M] = (&mut merged[..M]).try_into().expect("a block of M");
        let mut loads = [0.0; M];
        for ((subset, load), (&h, &l)) in
            (merged.iter_mut().zip(&mut loads)).zip(heavy.iter().zip(&light))
        {
            let (x, y) = (sa[h % M], sb[l % M]);
            next[x.tail as usize] = y.head;
            *load = x.load + y.load;
            *subset = Subset {
                load: *load,
                mask: x.mask | y.mask,
                head: x.head,
                tail: y.tail,
            };
        }
        partials[a] = Partial {
            spread: spread_of(&loads),
            colors: pa.colors.union(pb.colors),
            block: target as u32,
            descending: false,
        };
        // `a` back among the others after `b`'s place: those that merge before it move up one (a
        // loop, not a branch-free count: predicted, it lets the next merge start early).
        let rest = &mut ranked[start + 1..];
        let a = a as u32;
        let mut j = 0;
        while j + 1 < rest.len() && merges_before(partials, rest[j + 1], a) {
            rest[j] = rest[j + 1];
            j += 1;
        }
        rest[j] = a;
    }
    let last = partials[ranked[rows - 1] as usize].block as usize;
    let per_pack = state.per_pack;
    for ((subset, slots), load) in (subsets[last * M..(last + 1) * M].iter())
        .zip(state.slots.chunks_exact_mut(per_pack))
        .zip(&mut state.loads)
    {
        let mut item = subset.head;
        for slot in slots {
            *slot = item;
            item = next[item as usize];
        }
        *load = subset.load;
    }
    clean && colors.is_some()
}

/// A cheap start for the local search: items by weight descending (ordered on f32-rounded keys,
/// ties by index: a heuristic order, deterministic), cut into rows of `num_packs`; every pack
/// receives exactly one item of each row. For 8 packs (a node's GPUs) the rows are merged by
/// balanced largest differencing (`merge_rows`: closer to balanced than dealing, so the search
/// after it needs fewer exchanges); for other counts they are dealt in rounds, the heaviest item
/// of a round to the lightest pack (lowest index on ties), the next to the next lightest, round
/// `r` filling position `r` of every pack. The result is written to `state`.
///
/// With `colors`, pairs of items or subsets that would share a color trade partners with another
/// pair of the same round or merge where that clears both; items of one color (equal weights,
/// adjacent indices) are adjacent in the order, so with at most `num_packs` of them a clash
/// rarely remains. Returns `false` when a clash may remain (check with [`PackState::duplicates`]).
/// Precondition: `num_packs > 0` divides `weights.len()`.
pub fn greedy_rounds(
    weights: &[f64],
    colors: Option<&[u32]>,
    num_packs: usize,
    scratch: &mut RoundsScratch,
    state: &mut PackState,
) -> bool {
    sort_rounded_descending(weights, &mut scratch.keys);
    if num_packs == 8 {
        merge_rows::<8>(weights, colors, scratch, state)
    } else {
        deal(weights, colors, num_packs, scratch, state)
    }
}

/// Items already in descending weight order (item ids are positions) dealt in rounds as
/// [`greedy_rounds`] deals them, for any number of packs.
pub fn deal_rounds(
    weights: &[f64],
    colors: Option<&[u32]>,
    num_packs: usize,
    scratch: &mut RoundsScratch,
    state: &mut PackState,
) -> bool {
    scratch.keys.clear();
    // A key's low 32 bits are its item (see `Weight::key_index`).
    scratch.keys.extend(0..weights.len() as u64);
    deal(weights, colors, num_packs, scratch, state)
}

/// Items already in descending weight order dealt in rounds of `num_packs` without looking at
/// loads: item `i` of round `r` goes to pack `(i + r) % num_packs`, so over `num_packs` rounds every
/// pack receives each position of a round once. Cheaper than [`deal_rounds`] (no pack ordering) and
/// a little less balanced. Two consecutive items never share a pack, except the two ends of a run of
/// `num_packs` consecutive items that straddles a round. Returns the heaviest pack's load.
/// Precondition: `num_packs > 0` divides `weights.len()`.
pub fn rotated_rounds(weights: &[f64], num_packs: usize, state: &mut PackState) -> f64 {
    state.reset(weights.len(), num_packs);
    let per_pack = state.per_pack;
    let slots = &mut state.slots[..];
    let loads = &mut state.loads[..];
    for (r, round) in weights.chunks_exact(num_packs).enumerate() {
        let first = r % num_packs;
        for (i, &w) in round.iter().enumerate() {
            // (i + first) mod num_packs, without a branch that would mispredict once a round.
            let wrapped = i + first;
            let p = wrapped - num_packs * usize::from(wrapped >= num_packs);
            slots[p * per_pack + r] = (r * num_packs + i) as u32;
            loads[p] += w;
        }
    }
    state.loads.iter().copied().fold(0.0, f64::max)
}

/// The dealing of [`greedy_rounds`] in the order of `scratch.keys`.
fn deal(
    weights: &[f64],
    colors: Option<&[u32]>,
    num_packs: usize,
    scratch: &mut RoundsScratch,
    state: &mut PackState,
) -> bool {
    state.reset(weights.len(), num_packs);
    let per_pack = state.per_pack;
    let (slots, loads) = (&mut state.slots[..], &mut state.loads[..]);
    scratch.last_color.clear();
    scratch.last_color.resize(num_packs, u32::MAX);
    let last = &mut scratch.last_color[..];
    let mut clean = true;
    // Packs by load ascending (f32-rounded, lowest index on ties), as integer keys. All loads start
    // at zero, so index order.
    let packs = &mut scratch.pack_keys;
    packs.clear();
    packs.extend((0..num_packs as u32).map(|p| 0.0f32.ascending_key(p)));
    let packs = &mut packs[..];
    let pack = |key: u64| f32::key_index(key) as usize;
    for (r, round) in scratch.keys.chunks_exact(num_packs).enumerate() {
        if r > 0 {
            // The heaviest items went to the lightest packs, so with fresh loads the order mostly
            // flips.
            for key in packs.iter_mut() {
                let p = f32::key_index(*key);
                *key = (loads[p as usize] as f32).ascending_key(p);
            }
            sort_reversed(packs);
        }
        if let Some(colors) = colors {
            let color = |i: usize| colors[f32::key_index(round[i]) as usize];
            // Most rounds have no clash: one branch-free check settles them.
            let clash =
                (0..num_packs).fold(false, |clash, i| clash | (last[pack(packs[i])] == color(i)));
            if clash {
                for i in 0..num_packs {
                    if last[pack(packs[i])] != color(i) {
                        continue;
                    }
                    match (i + 1..num_packs).find(|&j| {
                        last[pack(packs[j])] != color(i) && last[pack(packs[i])] != color(j)
                    }) {
                        Some(j) => packs.swap(i, j),
                        None => clean = false,
                    }
                }
            }
            for (&key, &p) in round.iter().zip(packs.iter()) {
                last[pack(p)] = colors[f32::key_index(key) as usize];
            }
        }
        for (&key, &p) in round.iter().zip(packs.iter()) {
            let (item, p) = (f32::key_index(key), pack(p));
            slots[p * per_pack + r] = item;
            loads[p] += weights[item as usize];
        }
    }
    clean && colors.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Descending weights with runs of equal weights (one color per run), as a node's replicas.
    fn replicas(runs: &[(f64, usize)]) -> (Vec<f64>, Vec<u32>) {
        let (mut weights, mut colors) = (Vec::new(), Vec::new());
        for (color, &(w, n)) in runs.iter().enumerate() {
            weights.extend(std::iter::repeat_n(w, n));
            colors.extend(std::iter::repeat_n(color as u32, n));
        }
        (weights, colors)
    }

    fn check_packing(state: &PackState, weights: &[f64], num_packs: usize) {
        let mut seen = vec![false; weights.len()];
        for p in 0..num_packs {
            let items = state.items(p);
            assert_eq!(items.len(), weights.len() / num_packs);
            let sum: f64 = items.iter().map(|&i| weights[i as usize]).sum();
            assert!((sum - state.loads[p]).abs() <= 1e-9 * sum.max(1.0));
            for &i in items {
                assert!(!seen[i as usize], "item {i} placed twice");
                seen[i as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn scan_matches_heap() {
        // Every scan size, with ties (small integer weights) and zeros, against the heap form.
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut scratch = GreedyScratch::<f32>::default();
        for num_packs in 1..=SCAN_LIMIT {
            for per_pack in [2, 3, 9] {
                let n = num_packs * per_pack;
                let weights: Vec<f32> = (0..n).map(|_| (rng.next_u64() % 12) as f32).collect();
                let (mut scan, mut heap) = (vec![0u32; 2 * n], vec![0u32; 2 * n]);
                let (mut scan_sums, mut heap_sums) = (Vec::new(), Vec::new());
                let (pack_of, rank) = scan.split_at_mut(n);
                greedy_pack(
                    &weights,
                    num_packs,
                    &mut scratch,
                    &mut scan_sums,
                    pack_of,
                    rank,
                );
                heap_sums.resize(num_packs, 0.0);
                let (pack_of, rank) = heap.split_at_mut(n);
                heap_pack(
                    &weights,
                    per_pack as u32,
                    &mut scratch,
                    &mut heap_sums,
                    pack_of,
                    rank,
                );
                assert_eq!(scan, heap, "{num_packs} packs of {per_pack}");
                assert_eq!(scan_sums, heap_sums);
            }
        }
    }

    #[test]
    fn rotated_rounds_give_each_pack_every_position_once() {
        // 4 packs, 4 rounds of weights 8, 4, 2, 1: every pack gets one of each, so all equal.
        let weights: Vec<f64> = (0..4).flat_map(|_| [8.0, 4.0, 2.0, 1.0]).collect();
        let mut state = PackState::default();
        let max = rotated_rounds(&weights, 4, &mut state);
        check_packing(&state, &weights, 4);
        assert_eq!(max, 15.0);
        assert!(state.loads.iter().all(|&l| l == 15.0));
    }

    #[test]
    fn rotated_rounds_keep_short_runs_apart() {
        // Runs shorter than the pack count straddle rounds, the full one starts a round: no pack
        // gets two of a color.
        let (weights, colors) =
            replicas(&[(9.0, 3), (8.0, 2), (7.0, 3), (6.0, 1), (5.0, 3), (4.0, 4)]);
        let mut state = PackState::default();
        let max = rotated_rounds(&weights, 4, &mut state);
        check_packing(&state, &weights, 4);
        assert_eq!(max, state.max_load());
        assert_eq!(state.duplicates(&colors, &mut Vec::new()), 0);
    }

    #[test]
    fn merged_rows_keep_the_spread_of_a_row() {
        // Without colors a merge never widens the spread beyond its partials', so the packs end
        // within the widest row's spread of each other.
        let mut rng = crate::test_rng::XorShift(0x5851_f42d_4c95_7f2d);
        let (mut scratch, mut state) = (RoundsScratch::default(), PackState::default());
        for rows in 1..12 {
            let weights: Vec<f64> = (0..8 * rows)
                .map(|_| (rng.next_u64() % 1000) as f64)
                .collect();
            assert!(!greedy_rounds(&weights, None, 8, &mut scratch, &mut state));
            check_packing(&state, &weights, 8);
            let mut sorted = weights.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let widest = (sorted.chunks_exact(8))
                .map(|row| row[0] - row[7])
                .fold(0.0, f64::max);
            let min = state.loads.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(state.max_load() - min <= widest, "{rows} rows");
        }
    }

    #[test]
    fn merged_rows_keep_colors_apart() {
        // Runs of one color (equal weights) that straddle rows, one of eight replicas: clean.
        let runs = [
            (50.0, 3),
            (40.0, 8),
            (30.0, 2),
            (29.0, 5),
            (20.0, 3),
            (19.0, 3),
        ];
        let mut runs = runs.to_vec();
        runs.extend((0..24).map(|i| (10.0 - 0.1 * i as f64, 1)));
        let (weights, colors) = replicas(&runs);
        assert_eq!(weights.len(), 48);
        let mut state = PackState::default();
        let clean = greedy_rounds(
            &weights,
            Some(&colors),
            8,
            &mut RoundsScratch::default(),
            &mut state,
        );
        check_packing(&state, &weights, 8);
        assert!(clean);
        assert_eq!(state.duplicates(&colors, &mut Vec::new()), 0);
        // Random replica counts and weights: a clean result has no duplicate.
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut scratch = RoundsScratch::default();
        for case in 0..300 {
            let mut runs = Vec::new();
            let mut n = 0;
            while n < 72 {
                let count = (1 + rng.next_u64() % 4).min(72 - n as u64) as usize;
                runs.push(((1 + rng.next_u64() % 50) as f64, count));
                n += count;
            }
            let (weights, mut colors) = replicas(&runs);
            // Colors above 256 share color-set bits with others.
            colors.iter_mut().for_each(|c| *c *= 1 + case % 300);
            let clean = greedy_rounds(&weights, Some(&colors), 8, &mut scratch, &mut state);
            check_packing(&state, &weights, 8);
            if clean {
                assert_eq!(state.duplicates(&colors, &mut Vec::new()), 0, "case {case}");
            }
        }
    }

    /// [`merge_rows`] as first written, on plain vectors: the reference its scratch form must
    /// match (packs, loads, return value).
    fn merge_rows_reference(
        weights: &[f64],
        colors: Option<&[u32]>,
        keys: &[u64],
    ) -> (Vec<Vec<u32>>, Vec<f64>, bool) {
        const M: usize = 8;
        struct Rows {
            spread: f64,
            subsets: Vec<(f64, Vec<u32>)>,
            descending: bool,
        }
        let mut partials: Vec<Option<Rows>> = (keys.chunks_exact(M))
            .map(|row| {
                let subsets: Vec<(f64, Vec<u32>)> = (row.iter())
                    .map(|&key| {
                        (
                            weights[f32::key_index(key) as usize],
                            vec![f32::key_index(key)],
                        )
                    })
                    .collect();
                Some(Rows {
                    spread: subsets[0].0 - subsets[M - 1].0,
                    subsets,
                    descending: true,
                })
            })
            .collect();
        let mut clean = true;
        for _ in 1..partials.len() {
            let first_largest = |partials: &[Option<Rows>], skip: usize| {
                let mut best: Option<usize> = None;
                for (r, partial) in partials.iter().enumerate() {
                    if let Some(partial) = partial.as_ref().filter(|_| r != skip) {
                        if best
                            .is_none_or(|b| partial.spread > partials[b].as_ref().unwrap().spread)
                        {
                            best = Some(r);
                        }
                    }
                }
                best.unwrap()
            };
            let a = first_largest(&partials, usize::MAX);
            let b = first_largest(&partials, a);
            let (pa, pb) = (partials[a].take().unwrap(), partials[b].take().unwrap());
            let mut heavy: Vec<usize> = (0..M).collect();
            if !pa.descending {
                heavy.sort_by_key(|&i| (pa.subsets[i].0 as f32).descending_key(i as u32));
            }
            let mut light: Vec<usize> = (0..M).rev().collect();
            if !pb.descending {
                light.sort_by_key(|&i| (pb.subsets[i].0 as f32).ascending_key(i as u32));
            }
            if let Some(colors) = colors {
                let clash = |x: usize, y: usize| {
                    (pa.subsets[x].1.iter()).any(|&p| {
                        (pb.subsets[y].1.iter()).any(|&q| colors[p as usize] == colors[q as usize])
                    })
                };
                for i in 0..M {
                    if clash(heavy[i], light[i]) {
                        match (0..M).find(|&j| {
                            j != i && !clash(heavy[i], light[j]) && !clash(heavy[j], light[i])
                        }) {
                            Some(j) => light.swap(i, j),
                            None => clean = false,
                        }
                    }
                }
            }
            let subsets: Vec<(f64, Vec<u32>)> = (heavy.iter().zip(&light))
                .map(|(&x, &y)| {
                    let (x, y) = (&pa.subsets[x], &pb.subsets[y]);
                    (x.0 + y.0, [&x.1[..], &y.1[..]].concat())
                })
                .collect();
            let high = subsets
                .iter()
                .map(|s| s.0)
                .fold(f64::NEG_INFINITY, f64::max);
            let low = subsets.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
            partials[a] = Some(Rows {
                spread: high - low,
                subsets,
                descending: false,
            });
        }
        let last = partials.into_iter().flatten().next().unwrap();
        let loads = last.subsets.iter().map(|s| s.0).collect();
        let packs = last.subsets.into_iter().map(|s| s.1).collect();
        (packs, loads, clean && colors.is_some())
    }

    #[test]
    fn merged_rows_match_the_reference() {
        // Ties of weights and spreads (small integers), replica runs, colors that share color-set
        // bits (above 256) or mask bits (multiples of 64), with and without colors.
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let (mut scratch, mut state) = (RoundsScratch::default(), PackState::default());
        for case in 0..3000 {
            let rows = 1 + case % 13;
            let n = 8 * rows;
            let mut runs = Vec::new();
            let mut len = 0;
            while len < n {
                let count = (1 + rng.next_u64() % 9).min((n - len) as u64) as usize;
                let weight = match case % 3 {
                    0 => (1 + rng.next_u64() % 6) as f64,
                    1 => (1 + rng.next_u64() % 50) as f64 / 7.0,
                    _ => rng.next_f64() * 100.0,
                };
                runs.push((weight, count));
                len += count;
            }
            let (mut weights, mut colors) = replicas(&runs);
            if case % 5 == 0 {
                // Not grouped: runs of a color scattered, weights shuffled.
                for i in (1..n).rev() {
                    weights.swap(i, rng.next_u64() as usize % (i + 1));
                    colors.swap(i, rng.next_u64() as usize % (i + 1));
                }
            }
            let factor = [1, 64, 256, 257, 1 << 20][case % 5] as u32;
            colors.iter_mut().for_each(|c| *c = c.wrapping_mul(factor));
            let colors = (case % 7 != 0).then_some(&colors[..]);
            let clean = greedy_rounds(&weights, colors, 8, &mut scratch, &mut state);
            let mut keys = Vec::new();
            sort_rounded_descending(&weights, &mut keys);
            let (packs, loads, reference_clean) = merge_rows_reference(&weights, colors, &keys);
            for (p, pack) in packs.iter().enumerate() {
                assert_eq!(state.items(p), &pack[..], "case {case}, pack {p}");
            }
            let bits = |loads: &[f64]| loads.iter().map(|l| l.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&state.loads), bits(&loads), "case {case}");
            assert_eq!(clean, reference_clean, "case {case}");
        }
    }

    #[test]
    fn dealt_rounds_are_clean_and_balanced() {
        let (weights, colors) =
            replicas(&[(9.0, 4), (8.0, 2), (7.0, 3), (6.0, 1), (5.0, 3), (4.0, 3)]);
        let mut state = PackState::default();
        let clean = deal_rounds(
            &weights,
            Some(&colors),
            4,
            &mut RoundsScratch::default(),
            &mut state,
        );
        check_packing(&state, &weights, 4);
        assert!(clean);
        assert_eq!(state.duplicates(&colors, &mut Vec::new()), 0);
        // Greedy rounds: within one item of the mean.
        let mean = weights.iter().sum::<f64>() / 4.0;
        assert!(state.max_load() <= mean + 9.0);
    }
}

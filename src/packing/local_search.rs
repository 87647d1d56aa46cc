//! Local search on a packing with fixed pack sizes: exchanges that lower the heaviest pack.
//!
//! The seed idea swapped one item between the heaviest and the lightest pack. This generalises it:
//! the heaviest pack is paired with every lighter pack, one-for-one swaps are tried and, at higher
//! effort, two-for-two swaps, until no exchange lowers the heaviest pack or the round budget runs
//! out. Every accepted exchange strictly decreases the sorted vector of pack loads, so the search
//! terminates and never worsens the max. With `colors`, an exchange never puts two items of one
//! color in one pack.
//!
//! One-for-one swaps are found through an index of all items by weight: a swap of item `a` of the
//! heaviest pack helps only if the other item is lighter by less than the gap between the two packs,
//! so each item of the heaviest pack looks only at the items in that weight window, found by
//! walking down the index from the item itself. Late in the search the packs are close and the
//! windows hold an item or two, so a round costs a few short walks instead of a sweep over every
//! pack.
//!
//! Where the budget asks for them, sweeps of pairwise balancing (`balance_pairs`) come first,
//! once the heaviest pack turns out to be improvable: they narrow the whole spread at once where the
//! rounds above lower one pack at a time. The search stops at a lower bound on the heaviest pack (no
//! exchange can go below it). Its hot loops decide with selects rather than branches: which
//! candidate helps depends on the data, and a call on new loads finds the branch predictor
//! untrained.

use super::state::PackState;
use super::weight::{Weight, larger, smaller};

/// Relative improvement an exchange must bring, so that rounding noise never cycles.
const MIN_GAIN: f64 = 1e-12;

/// Which exchanges to try and how many to apply at most.
#[derive(Debug, Clone, Copy)]
pub struct SearchBudget {
    /// Exchanges applied at most.
    pub max_rounds: usize,
    /// When no one-for-one swap helps, try two-for-two swaps with this many of the lightest
    /// packs (0: none; `usize::MAX`: every lighter pack).
    pub pair_swap_partners: usize,
    /// Stop once the heaviest pack is at most this (0: search to the end). A caller that only
    /// needs this pack set to stay below a maximum reached elsewhere saves the rest of the search.
    pub good_enough: f64,
    /// Sweeps of pairwise balancing (`balance_pairs`) run once the heaviest pack turns out
    /// to be improvable, before the exchanges around the heaviest pack (0: none).
    pub balance_sweeps: usize,
}

/// Two-for-two partners of the node packings inside plans: every lighter pack from high effort
/// on, none below (they would cost more than the plan's time budget allows).
pub fn pair_partners(effort: crate::options::Effort) -> usize {
    if effort >= crate::options::Effort::High {
        usize::MAX
    } else {
        0
    }
}

/// Reusable buffers of [`improve`].
#[derive(Debug, Default)]
pub struct SearchScratch {
    /// Packs by load: the two-for-two partners, or a balancing sweep's order.
    by_load: Vec<u32>,
    keys: Vec<u128>,
    /// Items by weight ascending (ties by item), and their weights in that order.
    by_weight: Vec<u32>,
    sorted_weights: Vec<f64>,
    /// Each item's place in `by_weight`.
    rank: Vec<u32>,
    /// Each item's flat position in the packing (kept in step with every exchange).
    position: Vec<u32>,
    /// The pack of the item at each place of `by_weight` (kept in step with every exchange), so
    /// a window of the index reads its packs from one contiguous run.
    pack_by_rank: Vec<u32>,
    pairs_h: Vec<(f64, u32, u32)>,
    pairs_b: Vec<(f64, u32, u32)>,
    /// The weights of one pack's items, in slot order.
    gathered: Vec<f64>,
    /// The leftover imbalance of every swap between two packs.
    rests: Vec<f64>,
    /// With colors: per pack, bit `color % 64` of each of its items, and possibly of items that
    /// left it since [`SearchScratch::index`]. A clear bit proves the pack free of that color, so
    /// most color checks need not read the pack.
    color_masks: Vec<u64>,
}

impl SearchScratch {
    /// Indexes the items of `state` by weight and position, and by color with `colors`;
    /// `descending` as in [`improve_with_hint`].
    fn index(
        &mut self,
        state: &PackState,
        weights: &[f64],
        colors: Option<&[u32]>,
        descending: &[u32],
    ) {
        let n = weights.len();
        // Every entry of these is written below: no need to clear them.
        self.by_weight.resize(n, 0);
        self.sorted_weights.resize(n, 0.0);
        self.rank.resize(n, 0);
        self.position.resize(n, 0);
        self.pack_by_rank.resize(n, 0);
        let (by_weight, sorted) = (&mut self.by_weight[..n], &mut self.sorted_weights[..n]);
        if descending.len() == n {
            // Nearly ascending reversed: insertion sort on (weight, item) makes it exact, moving
            // the two arrays together (no keys to build and take apart).
            // The last entry so far (the largest) stays in registers: most items only append.
            let mut last = (f64::NEG_INFINITY, 0);
            for (filled, &item) in descending.iter().rev().enumerate() {
                let w = weights[item as usize] + 0.0;
                if last.0 < w || (last.0 == w && last.1 < item) {
                    sorted[filled] = w;
                    by_weight[filled] = item;
                    last = (w, item);
                    continue;
                }
                let mut j = filled;
                while j > 0
                    && (sorted[j - 1] > w || (sorted[j - 1] == w && by_weight[j - 1] > item))
                {
                    sorted[j] = sorted[j - 1];
                    by_weight[j] = by_weight[j - 1];
                    j -= 1;
                }
                sorted[j] = w;
                by_weight[j] = item;
            }
        } else {
            self.keys.clear();
            self.keys.extend(
                weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| w.ascending_key(i as u32)),
            );
            self.keys.sort_unstable();
            for ((&key, item), w) in self.keys.iter().zip(by_weight).zip(sorted) {
                (*item, *w) = (f64::key_index(key), f64::key_weight(key));
            }
        }
        for (r, &item) in self.by_weight.iter().enumerate() {
            self.rank[item as usize] = r as u32;
        }
        self.color_masks.clear();
        let k = state.per_pack;
        for (p, items) in state.slots.chunks_exact(k).enumerate() {
            let mut mask = 0u64;
            for (j, &item) in items.iter().enumerate() {
                let item = item as usize;
                self.position[item] = (p * k + j) as u32;
                self.pack_by_rank[self.rank[item] as usize] = p as u32;
                if let Some(colors) = colors {
                    mask |= color_bit(colors[item]);
                }
            }
            if colors.is_some() {
                self.color_masks.push(mask);
            }
        }
    }

    /// A lower bound on the heaviest pack of any packing of the indexed items: the mean pack
    /// load, and the heaviest item with the `per_pack - 1` lightest ones.
    fn lower_bound(&self, state: &PackState) -> f64 {
        self.bound_with_sum(state, self.sorted_weights.iter().sum())
    }

    /// At least [`SearchScratch::lower_bound`], and cheaper: its mean from a sum in independent
    /// lanes, raised by far more than the two sums' rounding can differ.
    fn lower_bound_above(&self, state: &PackState) -> f64 {
        let w = &self.sorted_weights;
        if w.len() > 1 << 16 {
            return self.lower_bound(state);
        }
        const LANES: usize = 8;
        let mut lanes = [0.0; LANES];
        let chunks = w.chunks_exact(LANES);
        for (lane, &x) in lanes.iter_mut().zip(chunks.remainder()) {
            *lane += x;
        }
        for chunk in chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += x;
            }
        }
        self.bound_with_sum(state, lanes.iter().sum::<f64>() * (1.0 + 1e-10))
    }

    /// The bound of [`SearchScratch::lower_bound`] with `sum` as the items' total.
    fn bound_with_sum(&self, state: &PackState, sum: f64) -> f64 {
        let w = &self.sorted_weights;
        let (Some(&heaviest), k) = (w.last(), state.per_pack) else {
            return 0.0;
        };
        let mean = sum / state.num_packs() as f64;
        let with_lightest = heaviest + w[..k - 1].iter().sum::<f64>();
        // Rounding may put either sum a little above the exact figure: stay below it.
        mean.max(with_lightest) * (1.0 - 1e-12)
    }

    /// Swaps the items at flat positions `a` and `b` in `state` and in the position index (and
    /// the color masks, with `colors`).
    fn swap(
        &mut self,
        state: &mut PackState,
        a: usize,
        b: usize,
        weights: &[f64],
        colors: Option<&[u32]>,
    ) {
        state.swap_positions(a, b, weights);
        let k = state.per_pack;
        for pos in [a, b] {
            let item = state.slots[pos] as usize;
            self.position[item] = pos as u32;
            self.pack_by_rank[self.rank[item] as usize] = (pos / k) as u32;
            if let Some(colors) = colors {
                // The incoming color's bit; the leaving color's may stay set (a mask may claim
                // more than the pack holds, never less).
                self.color_masks[pos / k] |= color_bit(colors[item]);
            }
        }
    }
}

/// A candidate exchange: flat positions to swap, and the new load of the heavier side.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    new_max: f64,
    first: (usize, usize),
    second: Option<(usize, usize)>,
}

/// The loads around the heaviest pack in one round of the search.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// The heaviest pack (lowest index on ties) and its load.
    heaviest: usize,
    high: f64,
    /// The heaviest and the lightest load among the other packs.
    floor: f64,
    lightest: f64,
}

impl Round {
    fn of(loads: &[f64]) -> Round {
        // Selects only (which pack is heaviest is not predictable; loads are never NaN), in
        // `LANES` independent lanes of the heaviest (first on ties), second heaviest and lightest
        // load, merged at the end: short dependency chains that vectorize.
        const LANES: usize = 4;
        let mut heaviest = [0u64; LANES];
        let mut high = [f64::NEG_INFINITY; LANES];
        let mut floor = [f64::NEG_INFINITY; LANES];
        let mut lightest = [f64::INFINITY; LANES];
        let mut add = |lane: usize, p: usize, load: f64| {
            heaviest[lane] = if load > high[lane] {
                p as u64
            } else {
                heaviest[lane]
            };
            floor[lane] = larger(floor[lane], smaller(load, high[lane]));
            high[lane] = larger(high[lane], load);
            lightest[lane] = smaller(lightest[lane], load);
        };
        let chunks = loads.chunks_exact(LANES);
        let rest = chunks.remainder();
        for (c, chunk) in chunks.enumerate() {
            for (lane, &load) in chunk.iter().enumerate() {
                add(lane, c * LANES + lane, load);
            }
        }
        for (lane, &load) in rest.iter().enumerate() {
            add(lane, loads.len() - rest.len() + lane, load);
        }
        let mut round = Round {
            heaviest: heaviest[0] as usize,
            high: high[0],
            floor: floor[0],
            lightest: lightest[0],
        };
        for lane in 1..LANES {
            let (p, load) = (heaviest[lane] as usize, high[lane]);
            let first = (load > round.high) | ((load == round.high) & (p < round.heaviest));
            round.floor = larger(larger(round.floor, floor[lane]), smaller(round.high, load));
            round.heaviest = if first { p } else { round.heaviest };
            round.high = larger(round.high, load);
            round.lightest = smaller(round.lightest, lightest[lane]);
        }
        round
    }
}

/// Runs the search; returns the number of exchanges applied.
pub fn improve(
    state: &mut PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    budget: SearchBudget,
    scratch: &mut SearchScratch,
) -> usize {
    improve_with_hint(state, weights, colors, budget, scratch, &[])
}

/// [`improve`] given `descending`: every item once, in roughly descending weight order (a greedy
/// start's order), which makes indexing the items cheaper. Any order gives the same search; an
/// empty slice means no hint.
pub fn improve_with_hint(
    state: &mut PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    budget: SearchBudget,
    scratch: &mut SearchScratch,
    descending: &[u32],
) -> usize {
    let m = state.num_packs();
    if m < 2 || state.per_pack == 0 {
        return 0;
    }
    // Every load at most `good_enough`, without a branch per pack.
    let over = |acc: bool, &load: &f64| acc | (load > budget.good_enough);
    if !state.loads.iter().fold(false, over) {
        return 0;
    }
    scratch.index(state, weights, colors, descending);
    // No exchange lowers the heaviest pack below the bound: stop there. The bound's exact sum is
    // long; an estimate above it settles most rounds.
    let above_bound = scratch.lower_bound_above(state);
    let mut bound = None;
    let mut swept = budget.balance_sweeps == 0;
    let mut rounds = 0;
    while rounds < budget.max_rounds {
        let round = Round::of(&state.loads);
        let (h, high) = (round.heaviest, round.high);
        if high <= 0.0 || high <= budget.good_enough {
            break;
        }
        if high <= above_bound && high <= *bound.get_or_insert_with(|| scratch.lower_bound(state)) {
            break;
        }
        let threshold = high - high * MIN_GAIN;
        let mut best = best_single_swap(state, weights, colors, round, threshold, scratch);
        if best.is_some() && !swept {
            // There is work: first contract the whole spread, pair by pair.
            swept = true;
            let sweep_budget = budget.max_rounds - rounds;
            rounds += balance_pairs(
                state,
                weights,
                colors,
                budget.balance_sweeps,
                sweep_budget,
                scratch,
            );
            continue;
        }
        if best.is_none() && budget.pair_swap_partners > 0 {
            // The lightest packs allow the largest exchanges: those first (lowest index on ties).
            let loads = &state.loads;
            let by_load = |a: &u32, b: &u32| {
                loads[*a as usize]
                    .total_cmp(&loads[*b as usize])
                    .then(a.cmp(b))
            };
            let partners = budget.pair_swap_partners.min(m - 1);
            scratch.by_load.clear();
            scratch
                .by_load
                .extend((0..m as u32).filter(|&p| p as usize != h));
            if partners < m - 1 {
                scratch.by_load.select_nth_unstable_by(partners, by_load);
                scratch.by_load.truncate(partners);
            }
            scratch.by_load.sort_unstable_by(by_load);
            best = best_pair_swap(state, weights, colors, h, threshold, scratch);
        }
        let Some(exchange) = best else { break };
        scratch.swap(state, exchange.first.0, exchange.first.1, weights, colors);
        if let Some((a, b)) = exchange.second {
            scratch.swap(state, a, b, weights, colors);
        }
        rounds += 1;
    }
    state.recompute_loads(weights);
    rounds
}

/// Pairs the packs heaviest with lightest, second heaviest with second lightest, and so on, and
/// in each pair makes the one-for-one swap that brings the two loads closest; at most `sweeps`
/// sweeps and `max_swaps` swaps. Returns the swaps made. `scratch` indexes `state` (see
/// [`SearchScratch::index`]) and is kept in step.
///
/// A swap moving `d` with `0 < d < gap` lowers the pair's heavier load and raises the lighter one,
/// so the heaviest pack never rises, and the sum of squared loads falls. Where the exchanges
/// around the heaviest pack lower one pack per exchange, a sweep narrows the whole spread at once.
fn balance_pairs(
    state: &mut PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    sweeps: usize,
    max_swaps: usize,
    scratch: &mut SearchScratch,
) -> usize {
    let m = state.num_packs();
    let mut swaps = 0;
    for _ in 0..sweeps {
        // Packs heaviest first (lowest index on ties), sorted as integer keys.
        scratch.keys.clear();
        scratch.keys.extend(
            (state.loads.iter().enumerate()).map(|(p, &load)| load.descending_key(p as u32)),
        );
        scratch.keys.sort_unstable();
        let order = &mut scratch.by_load;
        order.clear();
        order.extend(scratch.keys.iter().map(|&key| f64::key_index(key)));
        let before = swaps;
        for i in 0..m / 2 {
            let pair = (
                scratch.by_load[i] as usize,
                scratch.by_load[m - 1 - i] as usize,
            );
            let best = match colors {
                None => closest_swap(state, weights, pair, scratch, |_, _| true),
                Some(_) => {
                    let masks = std::mem::take(&mut scratch.color_masks);
                    let best = closest_swap(state, weights, pair, scratch, |pa, pb| {
                        colors_allow(state, colors, &masks, (pa, pair.0), (pb, pair.1))
                    });
                    scratch.color_masks = masks;
                    best
                }
            };
            if let Some((pa, pb)) = best {
                scratch.swap(state, pa, pb, weights, colors);
                swaps += 1;
                if swaps == max_swaps {
                    return swaps;
                }
            }
        }
        if swaps == before {
            break;
        }
    }
    swaps
}

/// The one-for-one swap between heavier pack `a` and lighter pack `b` (flat positions) that
/// brings their loads closest, among the swaps `allow` accepts that move a positive weight and
/// leave the pair's imbalance smaller; the first in position order among equals.
fn closest_swap(
    state: &PackState,
    weights: &[f64],
    (a, b): (usize, usize),
    scratch: &mut SearchScratch,
    allow: impl Fn(usize, usize) -> bool,
) -> Option<(usize, usize)> {
    let k = state.per_pack;
    let gap = state.loads[a] - state.loads[b];
    let (light, rests) = (&mut scratch.gathered, &mut scratch.rests);
    light.clear();
    light.extend(state.items(b).iter().map(|&item| weights[item as usize]));
    // Every swap's leftover imbalance |gap - 2d| (infinite where not allowed) first, then the
    // least and where it is: no chain of dependent selects through the candidates.
    rests.clear();
    rests.resize(k * k, 0.0);
    for (ia, (&item, row)) in state
        .items(a)
        .iter()
        .zip(rests.chunks_exact_mut(k))
        .enumerate()
    {
        let wa = weights[item as usize];
        for (ib, (&wb, rest)) in light.iter().zip(row).enumerate() {
            let d = wa - wb;
            let leftover = (gap - 2.0 * d).abs();
            *rest = if d > 0.0 && allow(a * k + ia, b * k + ib) {
                leftover
            } else {
                f64::INFINITY
            };
        }
    }
    let least = least(rests);
    if least >= gap - gap * MIN_GAIN {
        return None;
    }
    let best = rests.iter().position(|&rest| rest == least)?;
    Some((a * k + best / k, b * k + best % k))
}

/// The least of `values` (never NaN; infinity if empty), in independent lanes.
fn least(values: &[f64]) -> f64 {
    const LANES: usize = 4;
    let mut lanes = [f64::INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            *lane = smaller(*lane, value);
        }
    }
    for (lane, &value) in lanes.iter_mut().zip(rest) {
        *lane = smaller(*lane, value);
    }
    lanes.into_iter().fold(f64::INFINITY, smaller)
}

/// Whether swapping the items at flat positions `a.0` (in pack `a.1`) and `b.0` (in pack `b.1`, a
/// different pack) leaves no pack with two items of one color; `masks` are the packs' color masks
/// ([`SearchScratch::index`]). The masks settle most calls here; the packs are read out of line.
#[inline]
fn colors_allow(
    state: &PackState,
    colors: Option<&[u32]>,
    masks: &[u64],
    (pos_a, pack_a): (usize, usize),
    (pos_b, pack_b): (usize, usize),
) -> bool {
    let Some(colors) = colors else { return true };
    let (ca, cb) = (
        colors[state.slots[pos_a] as usize],
        colors[state.slots[pos_b] as usize],
    );
    let may_hold = |pack: usize, color: u32| masks[pack] & color_bit(color) != 0;
    if ca == cb {
        return false;
    }
    if !may_hold(pack_b, ca) && !may_hold(pack_a, cb) {
        return true;
    }
    !holds_color(state, colors, pack_b, ca, pos_b) && !holds_color(state, colors, pack_a, cb, pos_a)
}

/// The bit of `color` in a pack's color mask ([`SearchScratch::index`]).
fn color_bit(color: u32) -> u64 {
    1 << (color % 64)
}

/// Whether `pack` holds an item of `color` elsewhere than at flat position `leaving`.
#[inline(never)]
fn holds_color(state: &PackState, colors: &[u32], pack: usize, color: u32, leaving: usize) -> bool {
    let leaving = leaving.wrapping_sub(pack * state.per_pack);
    // Every position, no early exit: the loop is then predictable.
    (state.items(pack).iter().enumerate()).fold(false, |found, (j, &item)| {
        found | ((j != leaving) & (colors[item as usize] == color))
    })
}

/// The best one-for-one swap between the heaviest pack and another one. Swapping item `a` (weight
/// `wa`) of the heaviest pack with a lighter item `b` of pack `p` moves `d = wa - wb` and leaves the
/// larger of `high - d` and `load(p) + d`; to beat `best` that needs `wb` in
/// `(wa - (best - lightest), wa - (high - best))`, a window of the weight index that narrows as
/// `best` falls. Stops early at a swap that brings the pair down to the second heaviest pack (no
/// exchange of this round can do better).
fn best_single_swap(
    state: &PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    round: Round,
    threshold: f64,
    scratch: &SearchScratch,
) -> Option<Exchange> {
    let k = state.per_pack;
    let Round {
        heaviest: h,
        high,
        floor,
        lightest,
    } = round;
    let sorted = &scratch.sorted_weights;
    let mut best: Option<Exchange> = None;
    let mut best_max = threshold;
    for pa in h * k..(h + 1) * k {
        let a = state.slots[pa] as usize;
        let wa = weights[a];
        // The window ends below `a` in the index: walk down from `a` to its lower end, then go up
        // through it: largest moves first. Windows are narrow late in the search, where most
        // rounds are: a step or two, cheaper than a gallop and a binary search.
        let lower = wa - (best_max - lightest);
        let top = scratch.rank[a] as usize;
        let mut i = top;
        while i > 0 && sorted[i - 1] > lower {
            i -= 1;
        }
        while i < sorted.len() && sorted[i] < wa - (high - best_max) {
            // One rarely taken branch per candidate: whether it helps is computed without
            // branching (which candidates help is not predictable).
            let p = scratch.pack_by_rank[i] as usize;
            let low = state.loads[p];
            let d = wa - sorted[i];
            let new_max = if high - d > low + d {
                high - d
            } else {
                low + d
            };
            // `new_max < best_max` implies `p != h`, `d > 0` and `d < high - low` (else one of
            // `high - d` and `low + d` is at least `high`, up to a rounding far below
            // `high - best_max`): one test.
            i += 1;
            if new_max >= best_max {
                continue;
            }
            let pb = scratch.position[scratch.by_weight[i - 1] as usize] as usize;
            if colors_allow(state, colors, &scratch.color_masks, (pa, h), (pb, p)) {
                best_max = new_max;
                best = Some(Exchange {
                    new_max,
                    first: (pa, pb),
                    second: None,
                });
                if best_max <= floor {
                    return best;
                }
            }
        }
    }
    best
}

/// The pairs of items of `pack` as (sum, position, position); with `sorted`, by sum ascending
/// (ties by positions), sorted as integer keys (sums are `>= 0`, so their bits order like the
/// sums), else by positions.
fn fill_pairs(
    state: &PackState,
    weights: &[f64],
    pack: usize,
    sorted: bool,
    keys: &mut Vec<u128>,
    out: &mut Vec<(f64, u32, u32)>,
) {
    let k = state.per_pack;
    if !sorted {
        out.clear();
        for i in pack * k..(pack + 1) * k {
            let wi = weights[state.slots[i] as usize];
            for j in i + 1..(pack + 1) * k {
                let sum = wi + weights[state.slots[j] as usize];
                out.push((sum, i as u32, j as u32));
            }
        }
        return;
    }
    keys.clear();
    for i in pack * k..(pack + 1) * k {
        for j in i + 1..(pack + 1) * k {
            let sum = weights[state.slots[i] as usize] + weights[state.slots[j] as usize] + 0.0;
            keys.push((u128::from(sum.to_bits()) << 64) | ((i as u128) << 32) | j as u128);
        }
    }
    keys.sort_unstable();
    out.clear();
    out.extend(keys.iter().map(|&key| {
        (
            f64::from_bits((key >> 64) as u64),
            (key >> 32) as u32,
            key as u32,
        )
    }));
}

fn best_pair_swap(
    state: &PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    h: usize,
    threshold: f64,
    scratch: &mut SearchScratch,
) -> Option<Exchange> {
    if state.per_pack < 2 {
        return None;
    }
    let high = state.loads[h];
    let mut best: Option<Exchange> = None;
    let mut best_max = threshold;
    let mut pairs_h = std::mem::take(&mut scratch.pairs_h);
    let mut pairs_b = std::mem::take(&mut scratch.pairs_b);
    fill_pairs(state, weights, h, false, &mut scratch.keys, &mut pairs_h);
    for &b in &scratch.by_load {
        let b = b as usize;
        let low = state.loads[b];
        if (high + low) * 0.5 >= best_max {
            continue;
        }
        let room = high - low;
        let target = room * 0.5;
        fill_pairs(state, weights, b, true, &mut scratch.keys, &mut pairs_b);
        for &(sa, a1, a2) in &pairs_h {
            // Want sa - sb close to room / 2: sb close to sa - target.
            let want = sa - target;
            let idx = pairs_b.partition_point(|p| p.0 < want);
            for &(sb, b1, b2) in pairs_b[idx.saturating_sub(1)..(idx + 1).min(pairs_b.len())].iter()
            {
                let d = sa - sb;
                if d <= 0.0 || d >= room {
                    continue;
                }
                let new_max = (high - d).max(low + d);
                if new_max >= best_max {
                    continue;
                }
                let (a1, a2, b1, b2) = (a1 as usize, a2 as usize, b1 as usize, b2 as usize);
                if pair_colors_allow(state, colors, (a1, a2), (b1, b2)) {
                    best_max = new_max;
                    best = Some(Exchange {
                        new_max,
                        first: (a1, b1),
                        second: Some((a2, b2)),
                    });
                }
            }
        }
    }
    scratch.pairs_h = pairs_h;
    scratch.pairs_b = pairs_b;
    best.filter(|e| e.new_max < threshold)
}

fn pair_colors_allow(
    state: &PackState,
    colors: Option<&[u32]>,
    a: (usize, usize),
    b: (usize, usize),
) -> bool {
    let Some(colors) = colors else { return true };
    let c = |pos: usize| colors[state.slots[pos] as usize];
    let k = state.per_pack;
    let stays = |pack: usize, leaving: (usize, usize), color: u32| {
        let start = pack * k;
        (start..start + k).any(|pos| pos != leaving.0 && pos != leaving.1 && c(pos) == color)
    };
    let (pa, pb) = (a.0 / k, b.0 / k);
    c(b.0) != c(b.1)
        && c(a.0) != c(a.1)
        && !stays(pa, a, c(b.0))
        && !stays(pa, a, c(b.1))
        && !stays(pb, b, c(a.0))
        && !stays(pb, b, c(a.1))
}

/// Removes items that share a pack with another item of their color, by swaps that raise the
/// larger of the two packs involved as little as possible; with `keep_max`, only by swaps that keep
/// both packs at or below the current heaviest pack. Returns whether no duplicate remains.
pub fn repair_duplicates(
    state: &mut PackState,
    weights: &[f64],
    colors: &[u32],
    keep_max: bool,
) -> bool {
    let k = state.per_pack;
    let m = state.num_packs();
    let limit = if keep_max {
        state.max_load()
    } else {
        f64::INFINITY
    };
    let mut clean = true;
    // `mark[c] == stamp`: color `c` is in the pack being repaired (besides the duplicate).
    let num_colors = colors.iter().copied().max().map_or(0, |c| c as usize + 1);
    let mut mark = vec![0u32; num_colors];
    let mut stamp = 0u32;
    for p in 0..m {
        let mut pos = p * k;
        while pos < (p + 1) * k {
            let color = colors[state.slots[pos] as usize];
            let duplicated = (p * k..pos).any(|q| colors[state.slots[q] as usize] == color);
            if !duplicated {
                pos += 1;
                continue;
            }
            stamp += 1;
            for q in (p * k..(p + 1) * k).filter(|&q| q != pos) {
                mark[colors[state.slots[q] as usize] as usize] = stamp;
            }
            let mut best: Option<(f64, usize)> = None;
            let wa = weights[state.slots[pos] as usize];
            for q in 0..m {
                if q == p || state.has_color(q, color, colors, usize::MAX) {
                    continue;
                }
                for other in q * k..(q + 1) * k {
                    let item = state.slots[other] as usize;
                    if mark[colors[item] as usize] == stamp {
                        continue;
                    }
                    let wb = weights[item];
                    let worst = (state.loads[p] - wa + wb).max(state.loads[q] - wb + wa);
                    if worst <= limit && best.is_none_or(|(w, _)| worst < w) {
                        best = Some((worst, other));
                    }
                }
            }
            match best {
                Some((_, other)) => {
                    state.swap_positions(pos, other, weights);
                    // Re-examine this position: the incoming item may itself be a duplicate.
                }
                None => {
                    clean = false;
                    pos += 1;
                }
            }
        }
    }
    state.recompute_loads(weights);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_of(packs: &[&[f64]]) -> (PackState, Vec<f64>) {
        let weights: Vec<f64> = packs.iter().flat_map(|p| p.iter().copied()).collect();
        let per_pack = packs[0].len();
        let pack_of: Vec<u32> = (0..weights.len()).map(|i| (i / per_pack) as u32).collect();
        let mut state = PackState::default();
        state.assign_from(&pack_of, &weights, packs.len());
        (state, weights)
    }

    fn indexed(state: &PackState, weights: &[f64], colors: Option<&[u32]>) -> SearchScratch {
        let mut scratch = SearchScratch::default();
        scratch.index(state, weights, colors, &[]);
        scratch
    }

    fn sum_of_squares(state: &PackState) -> f64 {
        state.loads.iter().map(|l| l * l).sum()
    }

    /// Every item once, `per_pack` per pack, loads matching the items.
    fn assert_valid(state: &PackState, weights: &[f64]) {
        let mut seen = vec![false; weights.len()];
        for p in 0..state.num_packs() {
            let sum: f64 = state.items(p).iter().map(|&i| weights[i as usize]).sum();
            assert!((sum - state.loads[p]).abs() <= 1e-9 * sum.max(1.0));
            for &i in state.items(p) {
                assert!(!std::mem::replace(&mut seen[i as usize], true));
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    /// [`best_single_swap`] as first written: each window walked down and up, every condition
    /// of a helping swap checked.
    fn best_single_swap_walking(
        state: &PackState,
        weights: &[f64],
        colors: Option<&[u32]>,
        round: Round,
        threshold: f64,
        scratch: &SearchScratch,
    ) -> Option<Exchange> {
        let k = state.per_pack;
        let Round {
            heaviest: h,
            high,
            floor,
            lightest,
        } = round;
        let sorted = &scratch.sorted_weights;
        let mut best: Option<Exchange> = None;
        let mut best_max = threshold;
        for pa in h * k..(h + 1) * k {
            let a = state.slots[pa] as usize;
            let wa = weights[a];
            let lower = wa - (best_max - lightest);
            let mut i = scratch.rank[a] as usize;
            while i > 0 && sorted[i - 1] > lower {
                i -= 1;
            }
            while i < sorted.len() && sorted[i] < wa - (high - best_max) {
                let p = scratch.pack_by_rank[i] as usize;
                let low = state.loads[p];
                let d = wa - sorted[i];
                let new_max = (high - d).max(low + d);
                let helps = (p != h) & (d > 0.0) & (d < high - low) & (new_max < best_max);
                i += 1;
                if !helps {
                    continue;
                }
                let pb = scratch.position[scratch.by_weight[i - 1] as usize] as usize;
                if colors_allow(state, colors, &scratch.color_masks, (pa, h), (pb, p)) {
                    best_max = new_max;
                    best = Some(Exchange {
                        new_max,
                        first: (pa, pb),
                        second: None,
                    });
                    if best_max <= floor {
                        return best;
                    }
                }
            }
        }
        best
    }

    #[test]
    fn single_swaps_match_the_walking_search() {
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut scratch = SearchScratch::default();
        let key = |e: Option<Exchange>| e.map(|e| (e.new_max.to_bits(), e.first, e.second));
        let mut compared = 0;
        for case in 0..600 {
            let (packs, per_pack) = (2 + case % 9, 1 + case % 11);
            let n = packs * per_pack;
            // Small integers (many ties), or weights over a wide range.
            let weights: Vec<f64> = (0..n)
                .map(|_| match case % 3 {
                    0 => (rng.next_u64() % 6) as f64,
                    _ => (5.0 * rng.next_f64()).exp(),
                })
                .collect();
            let colors: Vec<u32> = (0..n)
                .map(|_| (rng.next_u64() % (n as u64 / 2 + 1)) as u32)
                .collect();
            let colored = (case % 2 == 0).then_some(colors.as_slice());
            let pack_of: Vec<u32> = (0..n).map(|i| (i % packs) as u32).collect();
            let mut state = PackState::default();
            state.assign_from(&pack_of, &weights, packs);
            scratch.index(&state, &weights, colored, &[]);
            for _ in 0..4 * n {
                let round = Round::of(&state.loads);
                if round.high <= 0.0 {
                    break;
                }
                let threshold = round.high - round.high * MIN_GAIN;
                let found = best_single_swap(&state, &weights, colored, round, threshold, &scratch);
                let walked =
                    best_single_swap_walking(&state, &weights, colored, round, threshold, &scratch);
                assert_eq!(key(found), key(walked), "case {case}");
                compared += 1;
                let Some(exchange) = found else { break };
                let (a, b) = exchange.first;
                scratch.swap(&mut state, a, b, &weights, colored);
            }
        }
        assert!(compared > 5000, "{compared}");
    }

    #[test]
    fn the_bound_estimate_is_at_least_the_bound_and_close_to_it() {
        let mut rng = crate::test_rng::XorShift(0x0123_4567_89ab_cdef);
        for case in 0..300 {
            let (packs, per_pack) = (1 + case % 13, 1 + case % 29);
            let n = packs * per_pack;
            // Weights over many magnitudes: the sums' rounding differs most.
            let weights: Vec<f64> = (0..n).map(|_| (30.0 * rng.next_f64()).exp()).collect();
            let pack_of: Vec<u32> = (0..n).map(|i| (i % packs) as u32).collect();
            let mut state = PackState::default();
            state.assign_from(&pack_of, &weights, packs);
            let scratch = indexed(&state, &weights, None);
            let (bound, above) = (
                scratch.lower_bound(&state),
                scratch.lower_bound_above(&state),
            );
            assert!(bound <= above, "case {case}");
            assert!(above <= bound * (1.0 + 1e-9), "case {case}");
        }
    }

    #[test]
    fn a_hint_in_any_order_gives_the_same_index() {
        let mut rng = crate::test_rng::XorShift(0x7f4a_7c15_9e37_79b9);
        for case in 0..300 {
            let (packs, per_pack) = (1 + case % 9, 1 + case % 12);
            let n = packs * per_pack;
            // Small integers (many ties) or spread weights.
            let weights: Vec<f64> = (0..n)
                .map(|_| match case % 2 {
                    0 => (rng.next_u64() % 5) as f64,
                    _ => (4.0 * rng.next_f64()).exp(),
                })
                .collect();
            let pack_of: Vec<u32> = (0..n).map(|i| (i % packs) as u32).collect();
            let mut state = PackState::default();
            state.assign_from(&pack_of, &weights, packs);
            let plain = indexed(&state, &weights, None);
            // Descending as a greedy start gives it (f32 keys, ties by item), or shuffled.
            let mut keys = Vec::new();
            crate::packing::weight::sort_rounded_descending(&weights, &mut keys);
            let mut hint: Vec<u32> = keys.iter().map(|&key| f32::key_index(key)).collect();
            if case % 3 == 0 {
                for i in (1..n).rev() {
                    hint.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
            }
            let mut hinted = SearchScratch::default();
            hinted.index(&state, &weights, None, &hint);
            assert_eq!(hinted.by_weight, plain.by_weight, "case {case}");
            assert_eq!(hinted.sorted_weights, plain.sorted_weights, "case {case}");
            assert_eq!(hinted.rank, plain.rank, "case {case}");
            assert_eq!(hinted.pack_by_rank, plain.pack_by_rank, "case {case}");
        }
    }

    #[test]
    fn round_finds_the_first_heaviest_the_second_heaviest_and_the_lightest() {
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9abc_def1);
        for m in 1..40 {
            // Small integers: many ties.
            let loads: Vec<f64> = (0..m).map(|_| (rng.next_u64() % 5) as f64).collect();
            let round = Round::of(&loads);
            let high = loads.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let heaviest = loads.iter().position(|&l| l == high).unwrap();
            let mut others = loads.clone();
            others.remove(heaviest);
            let floor = others.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lightest = loads.iter().copied().fold(f64::INFINITY, f64::min);
            assert_eq!(
                (round.heaviest, round.high, round.floor, round.lightest),
                (heaviest, high, floor, lightest),
                "{loads:?}"
            );
        }
    }

    #[test]
    fn balance_pairs_pairs_heaviest_with_lightest() {
        // Loads 19, 2, 15, 4 pair as (19, 2) and (15, 4). The best moves are 8.5 and 5.5; the
        // closest swaps move 10 - 1 = 9 and 8 - 2 = 6 (the first found among equals).
        let (mut state, weights) = state_of(&[&[10.0, 9.0], &[1.0, 1.0], &[8.0, 7.0], &[2.0, 2.0]]);
        let before = sum_of_squares(&state);
        let mut scratch = indexed(&state, &weights, None);
        let swaps = balance_pairs(&mut state, &weights, None, 1, usize::MAX, &mut scratch);
        assert_eq!(swaps, 2);
        assert_valid(&state, &weights);
        assert_eq!(state.loads, vec![10.0, 11.0, 9.0, 10.0]);
        assert!(sum_of_squares(&state) < before);
    }

    #[test]
    fn color_checks_read_the_pack_where_the_masks_cannot_tell() {
        // Packs {0, 1}, {2, 3}, {4, 5}; positions are items. Colors 3 and 67 share a mask bit.
        let (mut state, weights) = state_of(&[&[4.0, 3.0], &[2.0, 1.0], &[6.0, 5.0]]);
        let colors = [3, 10, 67, 20, 30, 40];
        let mut scratch = indexed(&state, &weights, Some(&colors));
        let allow = |state: &PackState, scratch: &SearchScratch, a: usize, b: usize| {
            colors_allow(
                state,
                Some(&colors),
                &scratch.color_masks,
                (a, a / 2),
                (b, b / 2),
            )
        };
        // 10 <-> 20: no bit in common with the other pack.
        assert!(allow(&state, &scratch, 1, 3));
        // 3 into pack 1 meets 67's bit, but no 3: allowed after reading the pack.
        assert!(allow(&state, &scratch, 0, 3));
        // After 10 <-> 20, pack 0 = {3, 20} keeps the bit of the departed 10: 10 coming back
        // (with 3 going to pack 1, where 67's bit is) is still allowed.
        scratch.swap(&mut state, 1, 3, &weights, Some(&colors));
        assert_eq!(state.slots[..4], [0, 3, 2, 1]);
        assert!(allow(&state, &scratch, 3, 0));
        // A true clash: a second 3 in pack 1.
        let twins = [3, 10, 3, 20, 30, 40];
        let (state, weights) = state_of(&[&[4.0, 3.0], &[2.0, 1.0], &[6.0, 5.0]]);
        let scratch = indexed(&state, &weights, Some(&twins));
        let allow = |a: usize, b: usize| {
            colors_allow(
                &state,
                Some(&twins),
                &scratch.color_masks,
                (a, a / 2),
                (b, b / 2),
            )
        };
        assert!(allow(1, 3));
        assert!(!allow(0, 3), "3 would join the 3 of pack 1");
        assert!(!allow(0, 2), "two items of one color");
        assert!(allow(0, 4), "3 into pack 2, 30 into pack 0");
    }

    #[test]
    fn balance_pairs_respects_colors_and_the_swap_budget() {
        let (mut state, weights) = state_of(&[&[10.0, 9.0], &[1.0, 1.0], &[8.0, 7.0], &[2.0, 2.0]]);
        // Items 0 (10) and 2, 3 (the 1s) share a color: 10 may not join a 1, and a 1 may not
        // join the 10, so the first pair cannot swap; the second can, once (budget of one swap).
        let colors = [0, 1, 0, 0, 2, 3, 4, 5];
        let mut scratch = indexed(&state, &weights, Some(&colors));
        let swaps = balance_pairs(&mut state, &weights, Some(&colors), 4, 1, &mut scratch);
        assert_eq!(swaps, 1);
        assert_valid(&state, &weights);
        assert_eq!(state.loads, vec![19.0, 2.0, 9.0, 10.0]);
    }

    #[test]
    fn search_never_raises_the_heaviest_pack_and_stops_at_the_bound() {
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next_f64();
        let mut scratch = SearchScratch::default();
        for case in 0..200 {
            let (packs, per_pack) = (2 + case % 15, 1 + case % 7);
            let n = packs * per_pack;
            let weights: Vec<f64> = (0..n).map(|_| (4.0 * next()).exp()).collect();
            let colors: Vec<u32> = (0..n).map(|i| (i % (n / 2 + 1)) as u32).collect();
            let pack_of: Vec<u32> = (0..n).map(|i| (i % packs) as u32).collect();
            let mut state = PackState::default();
            state.assign_from(&pack_of, &weights, packs);
            let start = state.max_load();
            let dups = state.duplicates(&colors, &mut Vec::new());
            let budget = SearchBudget {
                max_rounds: 8 * n,
                pair_swap_partners: case % 3,
                good_enough: 0.0,
                balance_sweeps: case % 4,
            };
            let colored = (case % 2 == 0).then_some(colors.as_slice());
            improve(&mut state, &weights, colored, budget, &mut scratch);
            assert_valid(&state, &weights);
            assert!(state.max_load() <= start, "case {case}");
            if colored.is_some() {
                assert!(
                    state.duplicates(&colors, &mut Vec::new()) <= dups,
                    "case {case}"
                );
            }
            // Once at the bound, a second search has nothing to do.
            if state.max_load() <= scratch.lower_bound(&state) {
                assert_eq!(
                    improve(&mut state, &weights, colored, budget, &mut scratch),
                    0
                );
            }
        }
    }
}

//! Local search on a packing with fixed pack sizes: exchanges that lower the heaviest pack.
//!
//! The seed idea swapped one item between the heaviest and the lightest pack. This generalises it:
//! the heaviest pack is paired with every lighter pack (lightest first, pruned by the best result
//! found so far), one-for-one swaps are tried and, at higher effort, two-for-two swaps, until no
//! exchange lowers the heaviest pack or the round budget runs out. Every accepted exchange strictly
//! decreases the sorted vector of pack loads, so the search terminates and never worsens the max.
//! With `colors`, an exchange never puts two items of one color in one pack.

use super::state::PackState;

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
    by_load: Vec<u32>,
    /// The weight at each flat position (kept in step with the sorted packs).
    at: Vec<f64>,
    pairs_h: Vec<(f64, u32, u32)>,
    pairs_b: Vec<(f64, u32, u32)>,
}

/// A candidate exchange: flat positions to swap, and the new load of the heavier side.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    new_max: f64,
    first: (usize, usize),
    second: Option<(usize, usize)>,
}

/// Runs the search; returns the number of exchanges applied.
pub fn improve(
    state: &mut PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    budget: SearchBudget,
    scratch: &mut SearchScratch,
) -> usize {
    let m = state.num_packs();
    if m < 2 || state.per_pack == 0 {
        return 0;
    }
    if state.max_load() <= budget.good_enough {
        return 0;
    }
    scratch.at.clear();
    scratch.at.resize(state.slots.len(), 0.0);
    for p in 0..m {
        sort_pack(state, weights, p, &mut scratch.at);
    }
    let mut rounds = 0;
    while rounds < budget.max_rounds {
        let (h, high) = state.heaviest();
        if high <= 0.0 || high <= budget.good_enough {
            break;
        }
        let threshold = high - high * MIN_GAIN;
        // The lightest pack first (it allows the largest exchanges, so the bound found there prunes
        // most other packs), then the others in index order; sorting every round would cost more
        // than the pruning it adds.
        let lightest = (0..m).filter(|&p| p != h).fold(usize::MAX, |best, p| {
            if best == usize::MAX || state.loads[p] < state.loads[best] {
                p
            } else {
                best
            }
        });
        scratch.by_load.clear();
        scratch.by_load.push(lightest as u32);
        scratch
            .by_load
            .extend((0..m as u32).filter(|&p| p as usize != h && p as usize != lightest));
        let mut best = best_single_swap(state, &scratch.at, colors, h, threshold, &scratch.by_load);
        if best.is_none() && budget.pair_swap_partners > 0 {
            if budget.pair_swap_partners < scratch.by_load.len() {
                // The lightest packs allow the largest exchanges.
                let loads = &state.loads;
                scratch.by_load.sort_unstable_by(|&a, &b| {
                    loads[a as usize]
                        .total_cmp(&loads[b as usize])
                        .then(a.cmp(&b))
                });
                scratch.by_load.truncate(budget.pair_swap_partners);
            }
            best = best_pair_swap(state, weights, colors, h, threshold, scratch);
        }
        let Some(exchange) = best else { break };
        state.swap_positions(exchange.first.0, exchange.first.1, weights);
        if let Some((a, b)) = exchange.second {
            state.swap_positions(a, b, weights);
        }
        let k = state.per_pack;
        if let Some((a, b)) = exchange.second {
            sort_pack(state, weights, a / k, &mut scratch.at);
            sort_pack(state, weights, b / k, &mut scratch.at);
        } else {
            // One item changed in each pack: move just it to its place.
            let (a, b) = exchange.first;
            scratch.at.swap(a, b);
            reinsert(state, &mut scratch.at, a);
            reinsert(state, &mut scratch.at, b);
        }
        rounds += 1;
    }
    state.recompute_loads(weights);
    rounds
}

fn colors_allow(
    state: &PackState,
    colors: Option<&[u32]>,
    pos_a: usize,
    pos_b: usize,
    ignore: (usize, usize),
) -> bool {
    let Some(colors) = colors else { return true };
    let k = state.per_pack;
    let (ca, cb) = (
        colors[state.slots[pos_a] as usize],
        colors[state.slots[pos_b] as usize],
    );
    if ca == cb {
        return false;
    }
    let (pa, pb) = (pos_a / k, pos_b / k);
    let clash = |pack: usize, color: u32, leaving: usize, also_leaving: usize| {
        let start = pack * k;
        (start..start + k).any(|pos| {
            pos != leaving && pos != also_leaving && colors[state.slots[pos] as usize] == color
        })
    };
    !clash(pb, ca, pos_b, ignore.1) && !clash(pa, cb, pos_a, ignore.0)
}

/// Keeps pack `p`'s items in ascending weight order (insertion sort: packs are small and nearly
/// sorted after a swap; a pack filled heaviest first, as greedy starts leave it, is reversed) and
/// `at` (the weight at each flat position) in step.
fn sort_pack(state: &mut PackState, weights: &[f64], p: usize, at: &mut [f64]) {
    let k = state.per_pack;
    let items = &mut state.slots[p * k..(p + 1) * k];
    let at = &mut at[p * k..(p + 1) * k];
    if k > 1 && weights[items[0] as usize] > weights[items[k - 1] as usize] {
        items.reverse();
    }
    for (w, &item) in at.iter_mut().zip(items.iter()) {
        *w = weights[item as usize];
    }
    for i in 1..k {
        let mut j = i;
        while j > 0 && at[j - 1] > at[j] {
            items.swap(j - 1, j);
            at.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Moves the item at flat position `pos` to its place in its (otherwise sorted) pack, keeping
/// `at` in step.
fn reinsert(state: &mut PackState, at: &mut [f64], pos: usize) {
    let k = state.per_pack;
    let (start, end) = (pos / k * k, pos / k * k + k);
    let mut i = pos;
    while i > start && at[i - 1] > at[i] {
        at.swap(i - 1, i);
        state.slots.swap(i - 1, i);
        i -= 1;
    }
    while i + 1 < end && at[i] > at[i + 1] {
        at.swap(i, i + 1);
        state.slots.swap(i, i + 1);
        i += 1;
    }
}

/// The best one-for-one swap between the heaviest pack `h` and a lighter pack. Packs are sorted by
/// weight, so for each item of `h` (ascending) the ideal partner (weight closest to
/// `item - room / 2`) is found by one pointer sweeping the other pack: O(k) per pack pair.
fn best_single_swap(
    state: &PackState,
    at: &[f64],
    colors: Option<&[u32]>,
    h: usize,
    threshold: f64,
    by_load: &[u32],
) -> Option<Exchange> {
    let k = state.per_pack;
    let high = state.loads[h];
    // No exchange can bring the heaviest pack below the second heaviest: a swap reaching that is
    // as good as this round gets, so the scan stops there.
    let floor = by_load
        .iter()
        .map(|&p| state.loads[p as usize])
        .fold(0.0, f64::max);
    let mut best: Option<Exchange> = None;
    let mut best_max = threshold;
    let weight_at = |pos: usize| at[pos];
    for &b in by_load {
        let b = b as usize;
        let low = state.loads[b];
        if (high + low) * 0.5 >= best_max {
            continue; // even a perfect exchange with this pack would not beat the best so far
        }
        let room = high - low;
        let (h0, b0) = (h * k, b * k);
        let mut j = 0;
        for pa in h0..h0 + k {
            let wa = weight_at(pa);
            let target = wa - room * 0.5;
            while j < k && weight_at(b0 + j) < target {
                j += 1;
            }
            // The two items around the ideal partner; two more when colors forbid one of them.
            let mut lo = (b0 + j).saturating_sub(1).max(b0);
            let mut hi = (b0 + j + 1).min(b0 + k);
            let mut widened = false;
            let mut pb = lo;
            while pb < hi {
                let d = wa - weight_at(pb);
                if d > 0.0 && d < room {
                    let new_max = (high - d).max(low + d);
                    if new_max < best_max {
                        if colors_allow(state, colors, pa, pb, (usize::MAX, usize::MAX)) {
                            best_max = new_max;
                            best = Some(Exchange {
                                new_max,
                                first: (pa, pb),
                                second: None,
                            });
                        } else if !widened {
                            widened = true;
                            lo = lo.saturating_sub(1).max(b0);
                            hi = (hi + 1).min(b0 + k);
                            pb = lo;
                            continue;
                        }
                    }
                }
                pb += 1;
            }
            if best_max <= floor {
                return best;
            }
        }
    }
    best
}

fn fill_pairs(state: &PackState, weights: &[f64], pack: usize, out: &mut Vec<(f64, u32, u32)>) {
    let k = state.per_pack;
    out.clear();
    for i in pack * k..(pack + 1) * k {
        for j in i + 1..(pack + 1) * k {
            let sum = weights[state.slots[i] as usize] + weights[state.slots[j] as usize];
            out.push((sum, i as u32, j as u32));
        }
    }
    out.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
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
    fill_pairs(state, weights, h, &mut pairs_h);
    for &b in &scratch.by_load {
        let b = b as usize;
        let low = state.loads[b];
        if (high + low) * 0.5 >= best_max {
            continue;
        }
        let room = high - low;
        let target = room * 0.5;
        fill_pairs(state, weights, b, &mut pairs_b);
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

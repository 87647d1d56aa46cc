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
    /// Also try two-for-two swaps when no one-for-one swap helps.
    pub pair_swaps: bool,
}

/// Reusable buffers of [`improve`].
#[derive(Debug, Default)]
pub struct SearchScratch {
    by_load: Vec<u32>,
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
    let mut rounds = 0;
    while rounds < budget.max_rounds {
        let (h, high) = state.heaviest();
        if high <= 0.0 {
            break;
        }
        let threshold = high - high * MIN_GAIN;
        scratch.by_load.clear();
        scratch.by_load.extend((0..m as u32).filter(|&p| p as usize != h));
        scratch.by_load.sort_unstable_by(|&a, &b| {
            state.loads[a as usize]
                .total_cmp(&state.loads[b as usize])
                .then(a.cmp(&b))
        });
        let mut best = best_single_swap(state, weights, colors, h, threshold, &scratch.by_load);
        if best.is_none() && budget.pair_swaps {
            best = best_pair_swap(state, weights, colors, h, threshold, scratch);
        }
        let Some(exchange) = best else { break };
        state.swap_positions(exchange.first.0, exchange.first.1, weights);
        if let Some((a, b)) = exchange.second {
            state.swap_positions(a, b, weights);
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

fn best_single_swap(
    state: &PackState,
    weights: &[f64],
    colors: Option<&[u32]>,
    h: usize,
    threshold: f64,
    by_load: &[u32],
) -> Option<Exchange> {
    let k = state.per_pack;
    let high = state.loads[h];
    let mut best: Option<Exchange> = None;
    let mut best_max = threshold;
    for &b in by_load {
        let b = b as usize;
        let low = state.loads[b];
        if (high + low) * 0.5 >= best_max {
            break; // packs are sorted by load: no later pack can do better
        }
        let room = high - low;
        for pa in h * k..(h + 1) * k {
            let wa = weights[state.slots[pa] as usize];
            for pb in b * k..(b + 1) * k {
                let d = wa - weights[state.slots[pb] as usize];
                if d <= 0.0 || d >= room {
                    continue;
                }
                let new_max = (high - d).max(low + d);
                if new_max < best_max && colors_allow(state, colors, pa, pb, (usize::MAX, usize::MAX))
                {
                    best_max = new_max;
                    best = Some(Exchange {
                        new_max,
                        first: (pa, pb),
                        second: None,
                    });
                }
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
            break;
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
        (start..start + k)
            .any(|pos| pos != leaving.0 && pos != leaving.1 && c(pos) == color)
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
/// larger of the two packs involved as little as possible. Returns whether no duplicate remains.
pub fn repair_duplicates(state: &mut PackState, weights: &[f64], colors: &[u32]) -> bool {
    let k = state.per_pack;
    let m = state.num_packs();
    let mut clean = true;
    for p in 0..m {
        let mut pos = p * k;
        while pos < (p + 1) * k {
            let color = colors[state.slots[pos] as usize];
            let duplicated = (p * k..pos).any(|q| colors[state.slots[q] as usize] == color);
            if !duplicated {
                pos += 1;
                continue;
            }
            let mut best: Option<(f64, usize)> = None;
            for q in 0..m {
                if q == p || state.has_color(q, color, colors, usize::MAX) {
                    continue;
                }
                for other in q * k..(q + 1) * k {
                    let oc = colors[state.slots[other] as usize];
                    if state.has_color(p, oc, colors, pos) {
                        continue;
                    }
                    let (wa, wb) = (
                        weights[state.slots[pos] as usize],
                        weights[state.slots[other] as usize],
                    );
                    let worst = (state.loads[p] - wa + wb).max(state.loads[q] - wb + wa);
                    if best.is_none_or(|(w, _)| worst < w) {
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

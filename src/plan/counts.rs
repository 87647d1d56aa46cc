//! Replica counts for the refined planner, chosen with the packing in mind.
//!
//! The start is DeepSeek's rule (the next slot to the expert with the largest load per replica),
//! capped at one replica per GPU of the scope so that no GPU needs two copies of one expert whenever
//! the shape allows it. That rule minimises the largest *replica*, which is what matters when a GPU
//! holds many slots. With two slots per GPU (DeepSeek-V3 decode: 288 slots on 144 GPUs) it is not:
//! the optimal GPU packing then pairs the largest replica with the smallest, and the heaviest pair
//! decides the GPU maximum. For that shape a local search moves one replica at a time from the expert
//! that loses least to an expert of the heaviest pair, evaluating each move exactly (sorted pairing
//! is optimal for two items per GPU) and keeping it when the heaviest pair gets lighter.

use crate::options::Effort;
use crate::replication::{ReplicationScratch, replicate_greedy};

/// Reusable buffers of the count search.
#[derive(Debug, Default)]
pub struct CountPlanner {
    phy2log: Vec<u32>,
    rank: Vec<u32>,
    replication: ReplicationScratch<f64>,
    items: Vec<(f64, u32)>,
    trial: Vec<(f64, u32)>,
    added: Vec<(f64, u32)>,
    donors: Vec<(f64, u32)>,
}

/// Evaluations of a candidate count vector the search may spend.
fn evaluation_budget(effort: Effort) -> usize {
    match effort {
        Effort::Fast => 0,
        Effort::Default => 64,
        Effort::High => 512,
        Effort::Max => 4096,
    }
}

/// Donor candidates tried per receiver.
fn donor_breadth(effort: Effort) -> usize {
    match effort {
        Effort::Fast | Effort::Default => 3,
        Effort::High => 8,
        Effort::Max => 32,
    }
}

/// The sorted pairing's quality (items sorted by load descending): the heaviest pair's load, the
/// sum of squared pair loads (which breaks ties between equal maxima, so the search can cross
/// plateaus where several pairs share the maximum), and the heaviest pair's position.
fn pairing_quality(items: &[(f64, u32)]) -> (f64, f64, usize) {
    let n = items.len();
    let mut best = (f64::NEG_INFINITY, 0.0, 0);
    for i in 0..n / 2 {
        let sum = items[i].0 + items[n - 1 - i].0;
        best.1 += sum * sum;
        if sum > best.0 {
            best.0 = sum;
            best.2 = i;
        }
    }
    best
}

/// Whether `(max, squares)` improves on `current` (lower max, or equal max and lower squares).
fn improves(candidate: (f64, f64), current: (f64, f64)) -> bool {
    let tolerance = 1e-12;
    candidate.0 < current.0 * (1.0 - tolerance)
        || (candidate.0 <= current.0 * (1.0 + tolerance)
            && candidate.1 < current.1 * (1.0 - tolerance))
}

fn descending(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

impl CountPlanner {
    /// Whether [`CountPlanner::choose`] searches beyond DeepSeek's rule for this shape (two slots
    /// per GPU, some redundant slots, more than one GPU, effort above fast).
    pub fn searches(num_experts: usize, num_slots: usize, num_gpus: usize, effort: Effort) -> bool {
        num_slots == 2 * num_gpus
            && num_slots > num_experts
            && num_gpus > 1
            && evaluation_budget(effort) > 0
    }

    /// Chooses `counts` (one per expert, each `>= 1`, summing to `num_slots`) for `loads` placed on
    /// `num_gpus` GPUs of `num_slots / num_gpus` slots each.
    pub fn choose(
        &mut self,
        loads: &[f64],
        num_slots: usize,
        num_gpus: usize,
        effort: Effort,
        counts: &mut Vec<u32>,
    ) {
        counts.resize(loads.len(), 0);
        self.phy2log.resize(num_slots, 0);
        self.rank.resize(num_slots, 0);
        let cap = u32::try_from(num_gpus).unwrap_or(u32::MAX);
        replicate_greedy(
            loads,
            cap,
            &mut self.replication,
            &mut self.phy2log,
            &mut self.rank,
            counts,
        );
        if Self::searches(loads.len(), num_slots, num_gpus, effort) {
            // Several starts: a share of the redundant slots to the hottest experts (DeepSeek's
            // rule), the rest splitting the coldest experts into two (more light partners).
            let extras = num_slots - loads.len();
            let mut start = counts.clone();
            let mut best: Option<((f64, f64), Vec<u32>)> = None;
            let shares: &[usize] = match effort {
                Effort::Fast | Effort::Default => &[4, 3],
                Effort::High | Effort::Max => &[4, 3, 2, 1, 0],
            };
            for &quarters in shares {
                let hot = extras * quarters / 4;
                if hot == extras {
                    start.copy_from_slice(counts);
                } else {
                    self.phy2log.truncate(loads.len() + hot);
                    replicate_greedy(
                        loads,
                        cap,
                        &mut self.replication,
                        &mut self.phy2log,
                        &mut self.rank,
                        &mut start,
                    );
                    let mut order: Vec<u32> = (0..loads.len() as u32)
                        .filter(|&e| start[e as usize] == 1)
                        .collect();
                    order.sort_unstable_by(|&a, &b| {
                        loads[a as usize]
                            .total_cmp(&loads[b as usize])
                            .then(a.cmp(&b))
                    });
                    for &e in order.iter().take(extras - hot) {
                        start[e as usize] += 1;
                    }
                    if start.iter().map(|&c| c as usize).sum::<usize>() != num_slots {
                        continue;
                    }
                }
                let key = self.search_pairs(loads, cap, effort, &mut start);
                if best.as_ref().is_none_or(|(k, _)| improves(key, *k)) {
                    best = Some((key, start.clone()));
                }
            }
            self.phy2log.resize(num_slots, 0);
            if let Some((_, c)) = best {
                counts.copy_from_slice(&c);
            }
        }
    }

    /// The local search for two slots per GPU: moves one replica from a donor (least harmed first)
    /// to an expert of the heaviest pair, keeping the first move that improves the pairing (lower
    /// max, or equal max and lower sum of squares, which crosses plateaus of equal maxima).
    /// Returns the final quality. Deterministic.
    fn search_pairs(
        &mut self,
        loads: &[f64],
        cap: u32,
        effort: Effort,
        counts: &mut [u32],
    ) -> (f64, f64) {
        let mut budget = evaluation_budget(effort);
        self.items.clear();
        for (e, &c) in counts.iter().enumerate() {
            let r = loads[e] / f64::from(c);
            self.items.extend((0..c).map(|_| (r, e as u32)));
        }
        self.items.sort_unstable_by(descending);
        let n = self.items.len();
        let (max, squares, mut at) = pairing_quality(&self.items);
        let mut current = (max, squares);
        'search: while budget > 0 {
            let pair = [self.items[at].1, self.items[n - 1 - at].1];
            self.rank_donors(loads, counts, &pair, donor_breadth(effort));
            for &receiver in &pair {
                if counts[receiver as usize] >= cap {
                    continue;
                }
                for d in 0..self.donors.len() {
                    if budget == 0 {
                        break 'search;
                    }
                    budget -= 1;
                    let donor = self.donors[d].1;
                    self.apply(loads, counts, receiver, donor);
                    let (max, squares, position) = pairing_quality(&self.trial);
                    if improves((max, squares), current) {
                        counts[receiver as usize] += 1;
                        counts[donor as usize] -= 1;
                        std::mem::swap(&mut self.items, &mut self.trial);
                        current = (max, squares);
                        at = position;
                        continue 'search;
                    }
                }
            }
            break;
        }
        current
    }

    /// The `breadth` experts that can give up a replica with the least harm (smallest load per
    /// replica after giving one up), least harmed first; selected in one pass, not sorted.
    fn rank_donors(&mut self, loads: &[f64], counts: &[u32], receivers: &[u32], breadth: usize) {
        self.donors.clear();
        for (e, &c) in counts.iter().enumerate() {
            if c < 2 || receivers.contains(&(e as u32)) {
                continue;
            }
            let candidate = (loads[e] / f64::from(c - 1), e as u32);
            let better =
                |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).is_lt();
            if self.donors.len() < breadth {
                let at = self.donors.partition_point(|d| better(d, &candidate));
                self.donors.insert(at, candidate);
            } else if self
                .donors
                .last()
                .is_some_and(|last| better(&candidate, last))
            {
                self.donors.pop();
                let at = self.donors.partition_point(|d| better(d, &candidate));
                self.donors.insert(at, candidate);
            }
        }
    }

    /// Fills `trial` with the sorted items after moving one replica from `donor` to `receiver`.
    fn apply(&mut self, loads: &[f64], counts: &[u32], receiver: u32, donor: u32) {
        let (cr, cd) = (counts[receiver as usize] + 1, counts[donor as usize] - 1);
        self.added.clear();
        let r = loads[receiver as usize] / f64::from(cr);
        self.added.extend((0..cr).map(|_| (r, receiver)));
        let d = loads[donor as usize] / f64::from(cd);
        self.added.extend((0..cd).map(|_| (d, donor)));
        self.added.sort_unstable_by(descending);
        self.trial.clear();
        let mut extra = self.added.iter().peekable();
        for &item in self
            .items
            .iter()
            .filter(|&&(_, e)| e != receiver && e != donor)
        {
            while let Some(&&a) = extra.peek() {
                if descending(&a, &item).is_le() {
                    self.trial.push(a);
                    extra.next();
                } else {
                    break;
                }
            }
            self.trial.push(item);
        }
        self.trial.extend(extra);
    }
}

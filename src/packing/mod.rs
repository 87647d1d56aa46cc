//! Balanced packing: `n` weighted items into `num_packs` packs of exactly `n / num_packs` items.
//!
//! [`greedy`] is DeepSeek's algorithm, bit-exact. The refined packer starts from the better of
//! balanced differencing and greedy, improves it by [`local_search`], and solves tiny instances
//! exactly ([`exact`]).

pub mod differencing;
pub mod exact;
pub mod greedy;
pub mod local_search;
pub mod state;
pub mod weight;

use crate::error::{Result, try_vec};
use crate::load::{Load, row_to_f32, row_to_f64, validate_loads};
use crate::options::{Algorithm, Effort, Options};
use crate::shape::{checked_product, require_multiple, require_positive};

use differencing::{DifferencingScratch, balanced_differencing};
use exact::ExactScratch;
use greedy::{ColoredScratch, GreedyScratch, greedy_colored, greedy_pack};
use local_search::{SearchBudget, SearchScratch, improve_with_hint, repair_duplicates};
pub use state::PackState;

/// Work limits of the refined packer for one effort level.
#[derive(Debug, Clone, Copy)]
struct PackBudget {
    rounds_per_item: usize,
    /// Two-for-two swap partners (see [`SearchBudget::pair_swap_partners`]).
    pair_swap_partners: usize,
    /// Pairwise balancing sweeps (see [`SearchBudget::balance_sweeps`]).
    balance_sweeps: usize,
    differencing_start: bool,
    greedy_start: bool,
    search_every_start: bool,
    exact_items: usize,
    exact_nodes: usize,
}

fn budget(effort: Effort) -> PackBudget {
    match effort {
        Effort::Fast => PackBudget {
            rounds_per_item: 1,
            pair_swap_partners: 0,
            balance_sweeps: 2,
            differencing_start: false,
            greedy_start: false,
            search_every_start: false,
            exact_items: 12,
            exact_nodes: 2_000,
        },
        Effort::Default => PackBudget {
            rounds_per_item: 8,
            pair_swap_partners: 0,
            balance_sweeps: 2,
            differencing_start: false,
            greedy_start: false,
            search_every_start: false,
            exact_items: 16,
            exact_nodes: 20_000,
        },
        Effort::High => PackBudget {
            rounds_per_item: 32,
            pair_swap_partners: usize::MAX,
            balance_sweeps: 2,
            differencing_start: true,
            greedy_start: true,
            search_every_start: true,
            exact_items: 24,
            exact_nodes: 500_000,
        },
        Effort::Max => PackBudget {
            rounds_per_item: 128,
            pair_swap_partners: usize::MAX,
            balance_sweeps: 2,
            differencing_start: true,
            greedy_start: true,
            search_every_start: true,
            exact_items: 32,
            exact_nodes: 5_000_000,
        },
    }
}

/// Another start for [`Packer::pack`]: an assignment and, when known, the items in roughly
/// descending weight order (a greedy's packing order, empty if unknown), which makes the search's
/// setup cheaper.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// Each item's pack.
    pub pack_of: &'a [u32],
    /// Every item once, heaviest first (roughly), or empty.
    pub descending: &'a [u32],
}

/// The refined packer with its reusable buffers. Not shared between threads; cheap to create.
#[derive(Debug, Default)]
pub struct Packer {
    greedy: ColoredScratch,
    differencing: DifferencingScratch,
    search: SearchScratch,
    exact: ExactScratch,
    pack_of: Vec<u32>,
    greedy_pack_of: Vec<u32>,
    candidate: PackState,
    seen: Vec<u32>,
    /// The order hint of the current start (see [`Start::descending`]).
    descending: Vec<u32>,
    /// The result of the last [`Packer::pack`].
    pub state: PackState,
}

impl Packer {
    /// Packs `weights` into `num_packs` equal-count packs, as balanced as the effort allows.
    ///
    /// `colors` (one per item) forbids two items of one color in a pack whenever the search can
    /// avoid it. `extra_start` is another assignment (pack per item) to start from; the result is
    /// never worse than the best start, comparing duplicates first, then the heaviest pack.
    /// Precondition: `num_packs > 0` divides `weights.len()`.
    pub fn pack(
        &mut self,
        weights: &[f64],
        num_packs: usize,
        colors: Option<&[u32]>,
        effort: Effort,
        extra_start: Option<Start<'_>>,
    ) -> &PackState {
        self.pack_until(weights, num_packs, colors, effort, extra_start, 0.0)
    }

    /// [`Packer::pack`] that stops searching once the heaviest pack is at most `good_enough`.
    pub fn pack_until(
        &mut self,
        weights: &[f64],
        num_packs: usize,
        colors: Option<&[u32]>,
        effort: Effort,
        extra_start: Option<Start<'_>>,
        good_enough: f64,
    ) -> &PackState {
        let n = weights.len();
        let budget = budget(effort);
        self.descending.clear();
        if let Some(start) = extra_start {
            self.descending.extend_from_slice(start.descending);
        }
        self.pack_of.clear();
        self.pack_of.resize(n, 0);
        if n / num_packs <= 1 || num_packs == 1 {
            for (i, p) in self.pack_of.iter_mut().enumerate() {
                *p = if num_packs == 1 { 0 } else { i as u32 };
            }
            self.state.assign_from(&self.pack_of, weights, num_packs);
            return &self.state;
        }
        let search_budget = SearchBudget {
            max_rounds: budget.rounds_per_item * n,
            pair_swap_partners: budget.pair_swap_partners,
            good_enough,
            balance_sweeps: budget.balance_sweeps,
        };
        let mut best_key = None;
        let search_each = budget.search_every_start;
        if budget.differencing_start {
            let mut start = std::mem::take(&mut self.pack_of);
            balanced_differencing(weights, num_packs, &mut self.differencing, &mut start);
            self.consider(
                &start,
                weights,
                num_packs,
                colors,
                search_each,
                search_budget,
                &mut best_key,
            );
            self.pack_of = start;
        }
        let mut greedy_assignment = std::mem::take(&mut self.greedy_pack_of);
        if budget.greedy_start || best_key.is_none() && extra_start.is_none() {
            greedy_assignment.resize(n, 0);
            greedy_colored(
                weights,
                colors,
                num_packs,
                &mut self.greedy,
                &mut greedy_assignment,
            );
            self.consider(
                &greedy_assignment,
                weights,
                num_packs,
                colors,
                search_each,
                search_budget,
                &mut best_key,
            );
        }
        if let Some(start) = extra_start {
            self.consider(
                start.pack_of,
                weights,
                num_packs,
                colors,
                search_each,
                search_budget,
                &mut best_key,
            );
        }
        self.greedy_pack_of = greedy_assignment;
        if !budget.search_every_start {
            improve_with_hint(
                &mut self.state,
                weights,
                colors,
                search_budget,
                &mut self.search,
                &self.descending,
            );
        }
        if colors.is_none() && n <= budget.exact_items {
            exact::solve(
                &mut self.state,
                weights,
                budget.exact_nodes,
                &mut self.exact,
            );
        }
        &self.state
    }

    /// Makes `start` the current state when it beats the best start so far (`best`).
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &mut self,
        start: &[u32],
        weights: &[f64],
        num_packs: usize,
        colors: Option<&[u32]>,
        search: bool,
        budget: SearchBudget,
        best: &mut Option<(usize, u64)>,
    ) {
        std::mem::swap(&mut self.candidate, &mut self.state);
        self.state.assign_from(start, weights, num_packs);
        let key = self.prepare(weights, colors, search, budget);
        if best.is_none_or(|b| key < b) {
            *best = Some(key);
        } else {
            std::mem::swap(&mut self.candidate, &mut self.state);
        }
    }

    /// Repairs duplicates of the current state, optionally searches it, and returns its rank
    /// (duplicates, heaviest pack): lower is better.
    fn prepare(
        &mut self,
        weights: &[f64],
        colors: Option<&[u32]>,
        search: bool,
        budget: SearchBudget,
    ) -> (usize, u64) {
        let mut duplicates = 0;
        if let Some(colors) = colors {
            if self.state.duplicates(colors, &mut self.seen) > 0 {
                repair_duplicates(&mut self.state, weights, colors, false);
                duplicates = self.state.duplicates(colors, &mut self.seen);
            }
        }
        if search {
            improve_with_hint(
                &mut self.state,
                weights,
                colors,
                budget,
                &mut self.search,
                &self.descending,
            );
        }
        (duplicates, self.state.max_load().to_bits())
    }
}

/// Packing of every layer: `pack_index` and `rank_in_pack`, both `[num_layers][num_items]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    /// The pack of each item.
    pub pack_index: Vec<i64>,
    /// The item's position inside its pack.
    pub rank_in_pack: Vec<i64>,
}

/// The size rules of [`balanced_packing`]: both sizes positive, `num_items % num_packs == 0`.
pub fn check_sizes(num_items: usize, num_packs: usize) -> Result<()> {
    require_positive("num_items", num_items)?;
    require_positive("num_packs", num_packs)?;
    require_multiple("num_items", num_items, "num_packs", num_packs, "")
}

/// Balanced packing of each row of `weights` (`[num_layers][num_items]`) into `num_packs` packs of
/// `num_items / num_packs` items. DeepSeek's algorithm is bit-exact with the reference; the refined
/// one never has a heavier pack than DeepSeek's on any layer.
pub fn balanced_packing<L: Load>(
    weights: &[L],
    num_layers: usize,
    num_items: usize,
    num_packs: usize,
    options: &Options,
) -> Result<Packing> {
    check_sizes(num_items, num_packs)?;
    options.validate()?;
    let len = checked_product("num_layers x num_items", &[num_layers, num_items])?;
    debug_assert_eq!(weights.len(), len);
    validate_loads(weights, num_items)?;
    let mut pack_index = try_vec(len, 0i64)?;
    let mut rank_in_pack = try_vec(len, 0i64)?;
    let mut pack_of = try_vec(num_items, 0u32)?;
    let mut rank = try_vec(num_items, 0u32)?;
    let mut row32 = Vec::new();
    let mut row64 = Vec::new();
    let mut pack32 = Vec::new();
    let mut greedy = GreedyScratch::default();
    let mut packer = Packer::default();
    for layer in 0..num_layers {
        let row = &weights[layer * num_items..(layer + 1) * num_items];
        row_to_f32(row, &mut row32);
        greedy_pack(
            &row32,
            num_packs,
            &mut greedy,
            &mut pack32,
            &mut pack_of,
            &mut rank,
        );
        if options.algorithm == Algorithm::Refined {
            row_to_f64(row, &mut row64);
            let start = Start {
                pack_of: &pack_of,
                descending: greedy.order(),
            };
            let state = packer.pack(&row64, num_packs, None, options.effort, Some(start));
            state.write_assignment(&mut pack_of, &mut rank);
        }
        let out = layer * num_items..(layer + 1) * num_items;
        for ((dst_p, dst_r), (&p, &r)) in pack_index[out.clone()]
            .iter_mut()
            .zip(&mut rank_in_pack[out])
            .zip(pack_of.iter().zip(&rank))
        {
            *dst_p = i64::from(p);
            *dst_r = i64::from(r);
        }
    }
    Ok(Packing {
        pack_index,
        rank_in_pack,
    })
}

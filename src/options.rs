//! Planner options of the safe core (the C struct `eplb_options` decodes into these).

use crate::error::{Error, Result};

/// Which planner to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Exactly DeepSeek's `eplb.py` (stable sort, f32 accumulation): bit-exact `phy2log` and `logcnt`.
    DeepSeek,
    /// The default: better-balanced plans, never worse than DeepSeek's on any layer.
    #[default]
    Refined,
}

/// How much search the refined planner may spend. Levels are deterministic work budgets, not
/// time budgets, so a plan never depends on machine speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Effort {
    /// Greedy start and a short swap search.
    Fast,
    /// The default: swap search until no improving swap remains (in `balanced_packing`, after
    /// two sweeps of pairwise balancing), exact node splits for small group counts, packing-aware
    /// replica counts.
    #[default]
    Default,
    /// Adds a differencing start, two-for-two swaps with every pack and a wider replica-count
    /// search.
    High,
    /// Everything, with large budgets: for the last fraction of a percent.
    Max,
}

impl Effort {
    /// The level as its C value.
    pub fn level(self) -> i32 {
        self as i32
    }

    /// The effort for a C value (0 to 3).
    pub fn from_level(level: i32) -> Option<Effort> {
        [Effort::Fast, Effort::Default, Effort::High, Effort::Max]
            .get(usize::try_from(level).ok()?)
            .copied()
    }
}

/// All planner options. `Options::default()` equals what `eplb_options_init` fills in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// The planner.
    pub algorithm: Algorithm,
    /// Search effort of the refined planner (ignored by DeepSeek's).
    pub effort: Effort,
    /// Re-planning only: a layer may keep a plan that moves fewer weights when its max GPU load is
    /// within this fraction of the best plan's. `>= 0`, finite; default 0.
    pub max_balance_loss: f64,
    /// Hierarchical policy only: the share of a layer's load that replicas outside their expert's
    /// home node may carry, in `[0, 1]`; default 0 (strict hierarchical). Ignored by the global policy.
    pub max_off_home_share: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            algorithm: Algorithm::Refined,
            effort: Effort::Default,
            max_balance_loss: 0.0,
            max_off_home_share: 0.0,
        }
    }
}

impl Options {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<()> {
        if !(self.max_balance_loss.is_finite() && self.max_balance_loss >= 0.0) {
            return Err(Error::InvalidOptions {
                field: "max_balance_loss",
                value: format!("{:?}", self.max_balance_loss),
                reason: "must be finite and >= 0",
            });
        }
        if !(0.0..=1.0).contains(&self.max_off_home_share) {
            return Err(Error::InvalidOptions {
                field: "max_off_home_share",
                value: format!("{:?}", self.max_off_home_share),
                reason: "must be in [0, 1]",
            });
        }
        if self.algorithm == Algorithm::DeepSeek && self.max_off_home_share > 0.0 {
            return Err(Error::InvalidOptions {
                field: "max_off_home_share",
                value: format!("{:?}", self.max_off_home_share),
                reason: "the DeepSeek algorithm is strictly hierarchical; use EPLB_ALGORITHM_REFINED for a locality budget",
            });
        }
        Ok(())
    }
}

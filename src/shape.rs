//! The shape of a planning problem and the policy it selects.

use crate::error::{Error, Result};

/// Which of DeepSeek's two policies a shape selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// `num_groups % num_nodes == 0`: groups are packed onto nodes, replicas stay in their node.
    Hierarchical,
    /// Otherwise: one node, one group, replicas anywhere.
    Global,
}

/// Sizes of a planning problem (see DESIGN.md for the words). Build it with [`Shape::new`], which
/// checks every rule; a `Shape` is always valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// MoE layers, planned independently. May be 0.
    pub num_layers: usize,
    /// Logical experts per layer (E).
    pub num_logical: usize,
    /// Physical slots per layer (R >= E).
    pub num_replicas: usize,
    /// Expert groups (G).
    pub num_groups: usize,
    /// Server nodes (N).
    pub num_nodes: usize,
    /// GPUs (P), `R % P == 0`.
    pub num_gpus: usize,
}

pub(crate) fn require_positive(arg: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(Error::ZeroSize { arg })
    } else {
        Ok(())
    }
}

pub(crate) fn require_multiple(
    dividend_arg: &'static str,
    dividend: usize,
    divisor_arg: &'static str,
    divisor: usize,
    context: &'static str,
) -> Result<()> {
    if dividend % divisor == 0 {
        Ok(())
    } else {
        Err(Error::NotDivisible {
            dividend_arg,
            dividend,
            divisor_arg,
            divisor,
            context,
        })
    }
}

/// Checks `product` of sizes for overflow, naming what it measures.
pub(crate) fn checked_product(what: &str, factors: &[usize]) -> Result<usize> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or_else(|| Error::SizeOverflow {
            what: format!("{what} ({})", join_factors(factors)),
        })
}

fn join_factors(factors: &[usize]) -> String {
    factors
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(" x ")
}

const HIERARCHICAL: &str =
    " (the hierarchical policy applies because num_groups is a multiple of num_nodes)";

impl Shape {
    /// Validates the sizes. Rules, checked in this order: every size but `num_layers` is positive;
    /// `num_replicas >= num_logical`; `num_replicas % num_gpus == 0`; and where the hierarchical
    /// policy applies (`num_groups % num_nodes == 0`), `num_logical % num_groups == 0` and
    /// `num_gpus % num_nodes == 0`.
    pub fn new(
        num_layers: usize,
        num_logical: usize,
        num_replicas: usize,
        num_groups: usize,
        num_nodes: usize,
        num_gpus: usize,
    ) -> Result<Shape> {
        require_positive("num_logical", num_logical)?;
        require_positive("num_replicas", num_replicas)?;
        require_positive("num_groups", num_groups)?;
        require_positive("num_nodes", num_nodes)?;
        require_positive("num_gpus", num_gpus)?;
        if num_replicas < num_logical {
            return Err(Error::TooFewReplicas {
                replicas_arg: "num_replicas",
                replicas: num_replicas,
                logical: num_logical,
            });
        }
        require_multiple("num_replicas", num_replicas, "num_gpus", num_gpus, "")?;
        if num_groups % num_nodes == 0 {
            require_multiple(
                "num_logical",
                num_logical,
                "num_groups",
                num_groups,
                HIERARCHICAL,
            )?;
            require_multiple("num_gpus", num_gpus, "num_nodes", num_nodes, HIERARCHICAL)?;
        }
        let shape = Shape {
            num_layers,
            num_logical,
            num_replicas,
            num_groups,
            num_nodes,
            num_gpus,
        };
        checked_product("num_layers x num_replicas", &[num_layers, num_replicas])?;
        Ok(shape)
    }

    /// The policy DeepSeek's algorithm selects for this shape.
    pub fn policy(&self) -> Policy {
        if self.num_groups % self.num_nodes == 0 {
            Policy::Hierarchical
        } else {
            Policy::Global
        }
    }

    /// `(groups, nodes)` as the policy uses them: the shape's own for hierarchical, `(1, 1)` for global.
    pub fn effective_groups_nodes(&self) -> (usize, usize) {
        match self.policy() {
            Policy::Hierarchical => (self.num_groups, self.num_nodes),
            Policy::Global => (1, 1),
        }
    }

    /// Slots on each GPU (`R / P`).
    pub fn slots_per_gpu(&self) -> usize {
        self.num_replicas / self.num_gpus
    }

    /// The GPU holding `slot`.
    pub fn gpu_of_slot(&self, slot: usize) -> usize {
        slot / self.slots_per_gpu()
    }

    /// GPUs per node for the shape's own node count (used for locality reporting).
    pub fn gpus_per_node(&self) -> usize {
        self.num_gpus / self.num_nodes.max(1)
    }
}

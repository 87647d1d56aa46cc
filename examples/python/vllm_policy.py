"""An EPLB policy for vLLM backed by libeplb (through the `eplb` package in python/).

vLLM picks its expert-placement algorithm from a policy class with one classmethod,
`AbstractEplbPolicy.rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_ranks)`
(vllm/distributed/eplb/policy/abstract.py), returning `(physical_to_logical_map,
logical_to_physical_map, expert_count)` as int64 tensors. `LibEplbPolicy` has that shape. It
does not import vLLM (duck-typed), so it works with any vLLM version of this interface and is
tested without vLLM (python/tests/test_eplb.py, `AdapterTests`).

Wiring (in every vLLM process, before the engine starts; a vLLM "general plugin", the entry
point group `vllm.general_plugins`, runs in each process and is the place for it):

    from vllm.distributed.eplb.policy import EPLB_POLICIES
    from vllm_policy import LibEplbPolicy

    EPLB_POLICIES["default"] = LibEplbPolicy   # replaces DefaultEplbPolicy for --eplb-config policy=default

vLLM looks the class up in that dict (`EplbState`: `self.policy = EPLB_POLICIES[policy_type]`)
when it builds its EPLB state, so replacing the entry is enough.

Differences from vLLM's `DefaultEplbPolicy` (a port of DeepSeek's eplb.py):
* `algorithm = "refined"` (class attribute) plans better-balanced placements; set it to
  `"deepseek"` for exactly DeepSeek's `phy2log`/`logcnt`.
* `logical_to_physical_map[l, e]` lists the expert's slots in ascending order (vLLM: replica-rank
  order; the sets are the same), width `num_replicas - num_logical + 1` like vLLM's.
* The results are on `weight`'s device, like vLLM's.
* With `old_global_expert_indices` (the current `[layers, num_replicas]` placement, which newer
  vLLM versions pass) the plan is migration-aware: it moves as few expert weights as possible
  without losing balance (`max_balance_loss`, default 0).
* vLLM versions whose interface returns only `physical_to_logical_map` (the one taking
  `old_global_expert_indices` and returning one tensor) take `LibEplbPolicyMappingOnly`.
"""

import eplb


class LibEplbPolicy:
    """vLLM EPLB policy (duck-typed `AbstractEplbPolicy`) calling libeplb; returns the
    `(phy2log, log2phy, logcnt)` triple of the classic interface."""

    #: "refined" (default) or "deepseek".
    algorithm = "refined"
    #: "fast", "default", "high" or "max".
    effort = "default"
    #: Re-planning only: accept a plan this fraction worse than the best if it moves less.
    max_balance_loss = 0.0
    #: True for the newer interface that returns only `physical_to_logical_map`.
    return_mapping_only = False

    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes, num_ranks,
                          old_global_expert_indices=None):
        """Returns `(phy2log [L, R], log2phy [L, E, R - E + 1], logcnt [L, E])`, int64, on
        `weight`'s device (torch), or NumPy arrays for NumPy input; only `phy2log` when
        `return_mapping_only`."""
        num_layers, num_logical = weight.shape[-2], weight.shape[-1]
        num_groups = num_groups or 1  # vLLM may pass 0 for models without expert groups
        common = dict(algorithm=cls.algorithm, effort=cls.effort,
                      log2phy_width=num_replicas - num_logical + 1)
        old = old_global_expert_indices
        if old is not None and tuple(old.shape) == (num_layers, num_replicas):
            phy2log, log2phy, logcnt, _ = eplb.replan_experts(
                weight, old, num_replicas, num_groups, num_nodes, num_ranks,
                max_balance_loss=cls.max_balance_loss, **common)
        else:  # no current placement (or not one of this shape): plan from scratch
            phy2log, log2phy, logcnt = eplb.rebalance_experts(
                weight, num_replicas, num_groups, num_nodes, num_ranks, **common)
        device = getattr(weight, "device", None)
        if device is not None and hasattr(phy2log, "to"):  # torch: back to the caller's device
            phy2log, log2phy, logcnt = (t.to(device) for t in (phy2log, log2phy, logcnt))
        if cls.return_mapping_only:
            return phy2log
        return phy2log, log2phy, logcnt


class LibEplbPolicyMappingOnly(LibEplbPolicy):
    """For vLLM versions whose `rebalance_experts(..., old_global_expert_indices=None)` returns
    only `physical_to_logical_map` `[layers, num_replicas]`."""

    return_mapping_only = True

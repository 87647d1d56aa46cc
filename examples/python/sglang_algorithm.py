"""An EPLB algorithm for SGLang backed by libeplb (through the `eplb` package in python/).

SGLang computes expert placements in `sglang.srt.eplb.eplb_algorithms.rebalance_experts(
tokens_per_expert, num_physical_experts, num_local_physical_experts, num_groups, num_nodes,
algorithm)`, which returns `(physical_to_logical_map [L, P], logical_to_all_physical_map
[L, E, X], expert_count [L, E])`. `rebalance_experts` below has that signature. It does not
import SGLang (duck-typed) and is tested without it (python/tests/test_eplb.py, `AdapterTests`).

Wiring (in the SGLang server process, before it computes the first expert location; SGLang's
`expert_location.py` calls `eplb_algorithms.rebalance_experts(...)` through the module, so
replacing the module attribute is enough):

    from sglang.srt.eplb import eplb_algorithms
    import sglang_algorithm

    eplb_algorithms.rebalance_experts = sglang_algorithm.rebalance_experts

Behaviour, compared with SGLang's `deepseek` algorithms:
* `tokens_per_expert` is `[windows, layers, experts]` (summed over the windows, as SGLang's
  `deepseek` does) or already `[layers, experts]`; torch tensors, NumPy arrays or lists.
* `algorithm`: SGLang's `EplbAlgorithm` member or its name. Names containing "hierarchical" use
  the hierarchical policy (requires `num_groups % num_nodes == 0`); the others the global policy
  (as SGLang's `deepseek`); `"auto"` (and None) picks hierarchical when `num_groups` divides.
* `eplb_algorithm="refined"` (default) gives better-balanced plans; `"deepseek"` reproduces
  DeepSeek's `phy2log`/`expert_count` exactly.
* `logical_to_all_physical_map[l, e]` lists the slots ascending, -1 padded, width
  `expert_count.max()` (SGLang's `deepseek.py`: the same width, replica-rank order).
* Results are int64 torch tensors on the CPU for torch input (SGLang moves them to its device),
  NumPy arrays otherwise.
* `broken_ranks` (elastic EP) is not supported: a rank marked broken raises NotImplementedError.
"""

import numpy as np

import eplb


def _wants_hierarchical(algorithm, num_groups, num_nodes):
    name = getattr(algorithm, "name", algorithm)
    if name is None or str(name) == "auto":
        return num_groups is not None and num_groups % num_nodes == 0
    return "hierarchical" in str(name)


def rebalance_experts(tokens_per_expert, num_physical_experts, num_local_physical_experts,
                      num_groups, num_nodes, algorithm="auto", *, eplb_algorithm="refined",
                      effort="default", broken_ranks=None, **_ignored):
    """SGLang's `eplb_algorithms.rebalance_experts`, planned by libeplb. Returns
    `(physical_to_logical_map, logical_to_all_physical_map, expert_count)`."""
    if broken_ranks is not None and bool((broken_ranks != 0).any()):
        raise NotImplementedError("libeplb adapter: broken_ranks (elastic EP) is not supported")
    loads = tokens_per_expert
    if not hasattr(loads, "ndim"):
        loads = np.asarray(loads)
    if loads.ndim == 3:
        loads = loads.sum(0)  # [windows, layers, experts] -> [layers, experts]
    num_gpus = num_physical_experts // num_local_physical_experts
    if _wants_hierarchical(algorithm, num_groups, num_nodes):
        if num_groups is None or num_groups % num_nodes != 0:
            raise ValueError(f"hierarchical EPLB needs num_groups ({num_groups}) divisible by num_nodes ({num_nodes})")
        groups, nodes = num_groups, num_nodes
    else:
        groups, nodes = 1, 1  # the global policy, as DeepSeek's: one group, one node
    return eplb.rebalance_experts(loads, num_physical_experts, groups, nodes, num_gpus,
                                  algorithm=eplb_algorithm, effort=effort)

"""eplb: Expert Parallelism Load Balancer for Mixture-of-Experts serving.

Python binding of the native ``libeplb`` (ctypes; the low-level binding is ``eplb._capi``).
``rebalance_experts`` is a drop-in for DeepSeek's ``eplb.rebalance_experts`` (deepseek-ai/EPLB):

    phy2log, log2phy, logcnt = eplb.rebalance_experts(weight, num_replicas, num_groups,
                                                      num_nodes, num_gpus)

Inputs may be torch tensors (any device; moved to the CPU), NumPy arrays or nested lists, float
or integer loads. Float loads are passed as contiguous float32 (as DeepSeek's ``weight.float()``),
integer loads as int64 through the library's ``*_i64`` entry points. Results are int64 torch
tensors (on the CPU) when the loads were a torch tensor, NumPy arrays otherwise.

Differences from DeepSeek's ``eplb.py``, all intended:

* ``algorithm="refined"`` (the default) gives better-balanced plans; ``algorithm="deepseek"``
  reproduces DeepSeek's ``phy2log`` and ``logcnt`` exactly (with a stable sort on ties).
* ``log2phy[l, e]`` lists expert ``e``'s slots in ascending slot order, padded with -1. DeepSeek
  orders them by replica rank (the order in which replication created them); the set of slots is
  the same. The width is DeepSeek's (``logcnt.max()`` over all layers) unless ``log2phy_width``
  asks for another (vLLM's port uses ``num_replicas - num_logical + 1``).

Errors from the library raise :class:`EplbError` with the status code, its name and the
library's detailed message. Shape mistakes that the library cannot see (a 1-D weight, an
``old_phy2log`` of the wrong shape) raise ``ValueError``; unknown option names raise
``ValueError``; non-numeric inputs raise ``TypeError``.
"""

import ctypes
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from . import _capi
from ._capi import LIBRARY_PATH, STATUS_NAMES, lib

__all__ = [
    "EplbError",
    "Plan",
    "PlanStats",
    "balanced_packing",
    "evaluate_plan",
    "library_path",
    "plan_experts",
    "rebalance_experts",
    "replan_experts",
    "replicate_experts",
    "version",
    "ALGORITHMS",
    "EFFORTS",
]

#: ``algorithm=`` names and their ``EPLB_ALGORITHM_*`` values.
ALGORITHMS = {"deepseek": _capi.EPLB_ALGORITHM_DEEPSEEK, "refined": _capi.EPLB_ALGORITHM_REFINED}
#: ``effort=`` names and their ``EPLB_EFFORT_*`` values.
EFFORTS = {
    "fast": _capi.EPLB_EFFORT_FAST,
    "default": _capi.EPLB_EFFORT_DEFAULT,
    "high": _capi.EPLB_EFFORT_HIGH,
    "max": _capi.EPLB_EFFORT_MAX,
}


class EplbError(Exception):
    """A call into libeplb failed.

    ``status`` is the ``eplb_status`` code, ``status_name`` its header name (for example
    ``"EPLB_STATUS_NOT_DIVISIBLE"``), ``description`` the library's static text for the code and
    ``message`` the detailed message of the failing call (``eplb_last_error_message``).
    """

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, f"EPLB_STATUS_UNKNOWN_{self.status}")
        self.description = lib.eplb_status_str(self.status).decode("utf-8", "replace")
        self.message = message
        super().__init__(f"{self.status_name} ({self.status}): {message or self.description}")


def _last_error_message() -> str:
    needed = lib.eplb_last_error_message(None, 0)
    buf = ctypes.create_string_buffer(needed + 1)
    lib.eplb_last_error_message(buf, len(buf))
    return buf.value.decode("utf-8", "replace")


def _check(status: int) -> None:
    # Read the thread-local message right away, on the thread that made the failing call.
    if status != _capi.EPLB_STATUS_OK:
        raise EplbError(status, _last_error_message())


def version() -> str:
    """The native library's version, ``"MAJOR.MINOR.PATCH"``."""
    return lib.eplb_version().decode()


def library_path() -> str:
    """The path of the loaded native library."""
    return str(LIBRARY_PATH)


__version__ = version()


# --- input/output conversion ------------------------------------------------------------------


def _torch_module(x):
    """The ``torch`` module when ``x`` is a torch tensor, else None (torch is never imported
    otherwise)."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        import torch

        if isinstance(x, torch.Tensor):
            return torch
    return None


def _loads(x, name="weight", *, allow_int=True):
    """Converts loads to a C-contiguous, aligned float32 or int64 array.

    Returns ``(array, is_int, torch_module_or_None)``.
    """
    torch = _torch_module(x)
    if torch is not None:
        t = x.detach()
        if t.is_complex():
            raise TypeError(f"{name}: complex loads are not supported")
        if t.is_floating_point() or not allow_int:
            t = t.to(device="cpu", dtype=torch.float32)
        else:
            t = t.to(device="cpu", dtype=torch.int64)
        a = t.contiguous().numpy()
    else:
        a = np.asarray(x)
    kind = a.dtype.kind
    if kind == "f":
        a = np.require(a, np.float32, ["C", "A"])
        return a, False, torch
    if kind in "iub":
        if kind == "u" and a.dtype.itemsize == 8 and a.size and int(a.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name}: a load exceeds the int64 range")
        if allow_int:
            return np.require(a, np.int64, ["C", "A"]), True, torch
        return np.require(a, np.float32, ["C", "A"]), False, torch
    raise TypeError(f"{name}: expected numeric loads, got dtype {a.dtype}")


def _index_array(x, name, shape):
    """An int64 index array (``phy2log`` and friends) of exactly ``shape``."""
    torch = _torch_module(x)
    if torch is not None:
        x = x.detach().to(device="cpu", dtype=torch.int64).contiguous().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and a.size:
        raise TypeError(f"{name}: expected integer ids, got dtype {a.dtype}")
    a = np.require(a, np.int64, ["C", "A"])
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    return a


def _matrix(a, name):
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D [num_layers, num_experts] array, got shape {a.shape}")
    return a.shape


def _ptr(a, ctype):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctype))


def _out(a, torch):
    return torch.from_numpy(a) if torch is not None else a


def _options(algorithm="refined", effort="default", max_balance_loss=0.0, max_off_home_share=0.0):
    opts = _capi.Options()
    lib.eplb_options_init(ctypes.byref(opts))
    opts.algorithm = _enum(algorithm, ALGORITHMS, "algorithm")
    opts.effort = _enum(effort, EFFORTS, "effort")
    opts.max_balance_loss = float(max_balance_loss)
    opts.max_off_home_share = float(max_off_home_share)
    return opts


def _enum(value, names, what):
    if isinstance(value, str):
        try:
            return names[value.lower()]
        except KeyError:
            raise ValueError(f"{what} must be one of {sorted(names)}, got {value!r}") from None
    return int(value)  # passed through; the library range-checks it (EPLB_STATUS_INVALID_OPTIONS)


def _width(log2phy_width, num_replicas, num_logical):
    """The width to ask the library for, and whether to trim to DeepSeek's ``logcnt.max()``."""
    if log2phy_width is None:
        return num_replicas - num_logical + 1, True
    return int(log2phy_width), False


def _trim(log2phy, logcnt, trim):
    if not trim:
        return log2phy
    width = int(logcnt.max()) if logcnt.size else 1
    return np.ascontiguousarray(log2phy[:, :, :width])


def _migration_dict(stats):
    return {
        "weights_moved": int(stats.weights_moved),
        "weights_total": int(stats.weights_total),
        "slots_changed": int(stats.slots_changed),
        "layers_unchanged": int(stats.layers_unchanged),
    }


# --- the DeepSeek building blocks -------------------------------------------------------------


def balanced_packing(weight, num_packs, *, algorithm="refined", effort="default"):
    """Packs each row's items into ``num_packs`` packs of exactly ``n / num_packs`` items.

    ``weight``: ``[X, n]`` item weights (integers are converted to float32, as DeepSeek's
    ``weight.float()``). Returns ``(pack_index, rank_in_pack)``, both ``[X, n]`` int64.
    ``algorithm="deepseek"`` is DeepSeek's greedy ``balanced_packing``, bit-exact; the refined
    default never has a heavier pack than it.
    """
    w, _, torch = _loads(weight, allow_int=False)
    layers, items = _matrix(w, "weight")
    pack_index = np.empty((layers, items), np.int64)
    rank_in_pack = np.empty((layers, items), np.int64)
    opts = _options(algorithm, effort)
    _check(lib.eplb_balanced_packing(_ptr(w, ctypes.c_float), layers, items, int(num_packs),
                                     ctypes.byref(opts), _ptr(pack_index, ctypes.c_int64),
                                     _ptr(rank_in_pack, ctypes.c_int64)))
    return _out(pack_index, torch), _out(rank_in_pack, torch)


def replicate_experts(weight, num_physical):
    """DeepSeek's ``replicate_experts``, bit-exact: returns ``(phy2log, rank, logcnt)``.

    ``weight``: ``[X, num_logical]``; ``phy2log`` and ``rank`` are ``[X, num_physical]``,
    ``logcnt`` is ``[X, num_logical]``.
    """
    w, _, torch = _loads(weight, allow_int=False)
    layers, logical = _matrix(w, "weight")
    num_physical = int(num_physical)
    if num_physical < 0:
        raise ValueError("num_physical must be >= 0")
    phy2log = np.empty((layers, num_physical), np.int64)
    rank = np.empty((layers, num_physical), np.int64)
    logcnt = np.empty((layers, logical), np.int64)
    _check(lib.eplb_replicate_experts(_ptr(w, ctypes.c_float), layers, logical, num_physical,
                                      _ptr(phy2log, ctypes.c_int64), _ptr(rank, ctypes.c_int64),
                                      _ptr(logcnt, ctypes.c_int64)))
    return _out(phy2log, torch), _out(rank, torch), _out(logcnt, torch)


# --- planning ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """The result of :func:`plan_experts`.

    ``phy2log`` ``[L, R]``, ``log2phy`` ``[L, E, W]`` (None when not asked for), ``logcnt``
    ``[L, E]``, ``group_node`` ``[L, G]`` (each group's home node; -1 under the global policy),
    ``migration`` (what replacing ``old_phy2log`` moves; None without an old plan).
    """

    phy2log: Any
    log2phy: Any
    logcnt: Any
    group_node: Any
    migration: Optional[Dict[str, int]] = None


def _shape_args(num_replicas, num_groups, num_nodes, num_gpus):
    values = [int(v) for v in (num_replicas, num_groups, num_nodes, num_gpus)]
    if any(v < 0 for v in values):
        raise ValueError("num_replicas, num_groups, num_nodes and num_gpus must be >= 0")
    return values


def _plan_call(kind, weight, num_replicas, num_groups, num_nodes, num_gpus, *, old_phy2log=None,
               algorithm="refined", effort="default", max_balance_loss=0.0,
               max_off_home_share=0.0, log2phy_width=None, with_log2phy=True):
    w, is_int, torch = _loads(weight)
    layers, logical = _matrix(w, "weight")
    replicas, groups, nodes, gpus = _shape_args(num_replicas, num_groups, num_nodes, num_gpus)
    opts = _options(algorithm, effort, max_balance_loss, max_off_home_share)
    old = None if old_phy2log is None else _index_array(old_phy2log, "old_phy2log", (layers, replicas))
    width, trim = _width(log2phy_width, replicas, logical)
    width = max(width, 0)
    phy2log = np.empty((layers, replicas), np.int64)
    log2phy = np.empty((layers, logical, width), np.int64) if with_log2phy else None
    logcnt = np.empty((layers, logical), np.int64)
    group_node = np.empty((layers, groups), np.int64) if kind == "plan" else None
    stats = _capi.MigrationStats(struct_size=ctypes.sizeof(_capi.MigrationStats))
    suffix = "_i64" if is_int else ""
    load = _ptr(w, ctypes.c_int64 if is_int else ctypes.c_float)
    head = (load, layers, logical, replicas, groups, nodes, gpus, ctypes.byref(opts))
    i64 = ctypes.c_int64
    if kind == "rebalance":
        fn = getattr(lib, "eplb_rebalance_experts" + suffix)
        status = fn(*head, _ptr(phy2log, i64), _ptr(log2phy, i64), width, _ptr(logcnt, i64))
    elif kind == "replan":
        fn = getattr(lib, "eplb_replan_experts" + suffix)
        status = fn(*head, _ptr(old, i64), _ptr(phy2log, i64), _ptr(log2phy, i64), width,
                    _ptr(logcnt, i64), ctypes.byref(stats))
    else:
        fn = getattr(lib, "eplb_plan_experts" + suffix)
        status = fn(*head, _ptr(old, i64), _ptr(phy2log, i64), _ptr(log2phy, i64), width,
                    _ptr(logcnt, i64), _ptr(group_node, i64),
                    ctypes.byref(stats) if old is not None else None)
    _check(status)
    if log2phy is not None:
        log2phy = _trim(log2phy, logcnt, trim)
    migration = _migration_dict(stats) if old is not None else None
    return (_out(phy2log, torch), None if log2phy is None else _out(log2phy, torch),
            _out(logcnt, torch), None if group_node is None else _out(group_node, torch), migration)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, algorithm="refined",
                      effort="default", max_off_home_share=0.0, log2phy_width=None):
    """Drop-in for DeepSeek's ``eplb.rebalance_experts``: returns ``(phy2log, log2phy, logcnt)``.

    Parameters:
        weight: ``[layers, num_logical]`` loads (torch tensor, NumPy array or nested lists;
            float or integer; finite, ``>= 0``).
        num_replicas: physical expert slots per layer, a multiple of ``num_gpus``.
        num_groups: expert groups; the hierarchical policy applies when
            ``num_groups % num_nodes == 0``, the global one otherwise (as DeepSeek).
        num_nodes: server nodes.
        num_gpus: GPUs, a multiple of ``num_nodes``.
        algorithm: ``"refined"`` (default, better balance) or ``"deepseek"`` (exactly DeepSeek's
            ``phy2log`` and ``logcnt``).
        effort: ``"fast"``, ``"default"``, ``"high"`` or ``"max"`` (refined only).
        max_off_home_share: hierarchical policy, refined only: the share of a layer's load that
            replicas outside their expert's home node may carry (0 = strict, 1 = no limit).
        log2phy_width: width of ``log2phy``'s last axis; None gives DeepSeek's ``logcnt.max()``.

    Returns ``phy2log [layers, num_replicas]``, ``log2phy [layers, num_logical, width]`` (each
    expert's slots ascending, -1 padded: DeepSeek's order is by replica rank, the sets agree)
    and ``logcnt [layers, num_logical]``, int64; torch tensors on the CPU for torch input.
    """
    phy2log, log2phy, logcnt, _, _ = _plan_call(
        "rebalance", weight, num_replicas, num_groups, num_nodes, num_gpus, algorithm=algorithm,
        effort=effort, max_off_home_share=max_off_home_share, log2phy_width=log2phy_width)
    return phy2log, log2phy, logcnt


def replan_experts(weight, old_phy2log, num_replicas, num_groups, num_nodes, num_gpus, *,
                   algorithm="refined", effort="default", max_balance_loss=0.0,
                   max_off_home_share=0.0, log2phy_width=None):
    """Re-plans from the current placement ``old_phy2log`` (``[layers, num_replicas]``), moving as
    few expert weights as possible while no layer's max GPU load exceeds the from-scratch plan's
    by more than ``max_balance_loss`` (a fraction; 0 = never lose balance).

    Returns ``(phy2log, log2phy, logcnt, migration)`` where ``migration`` is a dict with
    ``weights_moved``, ``weights_total``, ``slots_changed`` and ``layers_unchanged``.
    """
    if old_phy2log is None:
        raise ValueError("replan_experts needs old_phy2log; use rebalance_experts to plan from scratch")
    phy2log, log2phy, logcnt, _, migration = _plan_call(
        "replan", weight, num_replicas, num_groups, num_nodes, num_gpus, old_phy2log=old_phy2log,
        algorithm=algorithm, effort=effort, max_balance_loss=max_balance_loss,
        max_off_home_share=max_off_home_share, log2phy_width=log2phy_width)
    return phy2log, log2phy, logcnt, migration


def plan_experts(weight, num_replicas, num_groups, num_nodes, num_gpus, *, old_phy2log=None,
                 algorithm="refined", effort="default", max_balance_loss=0.0,
                 max_off_home_share=0.0, log2phy_width=None, with_log2phy=True) -> Plan:
    """The general planning call (``eplb_plan_experts``): plans from scratch, or re-plans from
    ``old_phy2log`` when given, and also returns each group's home node. Returns a :class:`Plan`.
    ``with_log2phy=False`` skips ``log2phy`` (``Plan.log2phy`` is None).
    """
    phy2log, log2phy, logcnt, group_node, migration = _plan_call(
        "plan", weight, num_replicas, num_groups, num_nodes, num_gpus, old_phy2log=old_phy2log,
        algorithm=algorithm, effort=effort, max_balance_loss=max_balance_loss,
        max_off_home_share=max_off_home_share, log2phy_width=log2phy_width,
        with_log2phy=with_log2phy)
    return Plan(phy2log, log2phy, logcnt, group_node, migration)


# --- evaluation -------------------------------------------------------------------------------

_LAYER_FIELDS = [name for name, _ in _capi.LayerStats._fields_]


@dataclass
class PlanStats:
    """The statistics of :func:`evaluate_plan`: the fields of ``eplb_plan_stats`` and ``layers``,
    a dict of per-layer NumPy arrays (the fields of ``eplb_layer_stats``, each ``[num_layers]``).
    """

    balancedness: float
    slot_balancedness: float
    worst_layer_balancedness: float
    worst_layer: int
    max_over_mean: float
    lower_bound: float
    gap: float
    worst_layer_gap: float
    duplicated_replicas: int
    mean_off_home_share: float
    max_off_home_share: float
    worst_off_home_layer: int
    weights_moved: int
    slots_changed: int
    layers_unchanged: int
    layers: Dict[str, np.ndarray] = field(default_factory=dict)

    def as_dict(self) -> Dict[str, Any]:
        """The summary fields and ``layers`` as a plain dict."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "layers"}
        d["layers"] = dict(self.layers)
        return d


def evaluate_plan(weight, phy2log, num_groups, num_nodes, num_gpus, *, logcnt=None,
                  group_node=None, old_phy2log=None) -> PlanStats:
    """Statistics of a plan (``phy2log``, ``[layers, num_replicas]``) for loads ``weight``
    (``[layers, num_logical]``): balancedness over GPUs and slots, the lower bound and the gap to
    it, duplicated replicas, the off-home share, and with ``old_phy2log`` what replacing it moves.
    ``logcnt`` (checked against ``phy2log``) and ``group_node`` (home nodes; inferred when None)
    are optional. Returns a :class:`PlanStats` (``layers`` holds per-layer arrays).
    """
    w, is_int, _ = _loads(weight)
    layers, logical = _matrix(w, "weight")
    p2l_torch = _torch_module(phy2log)
    p2l = np.asarray(phy2log.detach().cpu() if p2l_torch is not None else phy2log)
    if p2l.ndim != 2 or p2l.shape[0] != layers:
        raise ValueError(f"phy2log: expected shape ({layers}, num_replicas), got {p2l.shape}")
    replicas = p2l.shape[1]
    groups, nodes, gpus = (int(v) for v in (num_groups, num_nodes, num_gpus))
    p2l = _index_array(p2l, "phy2log", (layers, replicas))
    cnt = None if logcnt is None else _index_array(logcnt, "logcnt", (layers, logical))
    gn = None if group_node is None else _index_array(group_node, "group_node", (layers, groups))
    old = None if old_phy2log is None else _index_array(old_phy2log, "old_phy2log", (layers, replicas))
    stats = _capi.PlanStats(struct_size=ctypes.sizeof(_capi.PlanStats))
    per_layer = (_capi.LayerStats * layers)() if layers else None
    fn = lib.eplb_evaluate_plan_i64 if is_int else lib.eplb_evaluate_plan
    i64 = ctypes.c_int64
    _check(fn(_ptr(w, i64 if is_int else ctypes.c_float), layers, logical, replicas, groups, nodes,
              gpus, _ptr(p2l, i64), _ptr(cnt, i64), _ptr(gn, i64), _ptr(old, i64),
              ctypes.byref(stats), per_layer))
    summary = {name: getattr(stats, name) for name, _ in _capi.PlanStats._fields_ if name != "struct_size"}
    if per_layer is not None:
        table = np.ctypeslib.as_array(per_layer)
        columns = {name: np.array(table[name]) for name in _LAYER_FIELDS}
    else:
        columns = {name: np.empty(0) for name in _LAYER_FIELDS}
    for name in ("duplicated_replicas", "weights_moved", "slots_changed"):
        columns[name] = columns[name].astype(np.int64)
    return PlanStats(**summary, layers=columns)

"""ctypes binding of the eplb C API (``include/eplb.h``): every exported function with its
``argtypes``/``restype``, the option and statistics structs, and the status codes.

This module only loads the library and declares signatures; ``eplb`` (the package) wraps it in
NumPy/torch-friendly functions. Pointers are typed (``POINTER(c_float)``, ``POINTER(c_int64)``,
``POINTER(Options)``...), so ctypes rejects a wrong buffer type before the call; ``None`` passes
NULL.

Where the library comes from, first match wins:

1. ``$EPLB_LIBRARY`` (a path to ``libeplb.so`` / ``libeplb.dylib`` / ``eplb.dll``), when set;
2. ``eplb/_lib/`` inside the installed package (``pip install ./python`` puts it there);
3. ``target/release`` then ``target/debug`` of the source tree this package sits in
   (``PYTHONPATH=python`` in a checkout, after ``cargo build --release``).
"""

import ctypes
import os
import sys
from ctypes import POINTER, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t
from pathlib import Path

__all__ = [
    "lib",
    "LIBRARY_PATH",
    "Options",
    "MigrationStats",
    "PlanStats",
    "LayerStats",
    "FUNCTIONS",
    "STATUS_NAMES",
]


def _library_file_names():
    if sys.platform == "darwin":
        return ["libeplb.dylib"]
    if sys.platform == "win32":
        return ["eplb.dll"]
    return ["libeplb.so"]


def _candidates():
    override = os.environ.get("EPLB_LIBRARY")
    if override:
        return [Path(override)]
    here = Path(__file__).resolve().parent
    names = _library_file_names()
    found = [here / "_lib" / n for n in names]
    repo = here.parent.parent  # python/eplb -> the repository root in a checkout
    if (repo / "Cargo.toml").is_file():
        for profile in ("release", "debug"):
            found += [repo / "target" / profile / n for n in names]
    return found


def _load():
    candidates = _candidates()
    for path in candidates:
        if path.is_file():
            return ctypes.CDLL(str(path)), path
    tried = ", ".join(str(p) for p in candidates)
    hint = (
        "EPLB_LIBRARY does not name an existing file"
        if os.environ.get("EPLB_LIBRARY")
        else "install the package with `pip install ./python`, build the library with "
        "`cargo build --release --lib`, or set EPLB_LIBRARY to libeplb's path"
    )
    raise ImportError(f"eplb: native library not found (tried {tried}); {hint}")


# --- status codes (include/eplb.h; values are stable) -------------------------------------------

STATUS_NAMES = {
    0: "EPLB_STATUS_OK",
    1: "EPLB_STATUS_INTERNAL",
    2: "EPLB_STATUS_NULL_POINTER",
    3: "EPLB_STATUS_MISALIGNED_POINTER",
    4: "EPLB_STATUS_OVERLAPPING_BUFFERS",
    5: "EPLB_STATUS_SIZE_OVERFLOW",
    6: "EPLB_STATUS_ZERO_SIZE",
    7: "EPLB_STATUS_TOO_FEW_REPLICAS",
    8: "EPLB_STATUS_NOT_DIVISIBLE",
    9: "EPLB_STATUS_INVALID_LOAD",
    10: "EPLB_STATUS_WIDTH_TOO_SMALL",
    11: "EPLB_STATUS_INVALID_OPTIONS",
    12: "EPLB_STATUS_INVALID_PLAN",
    13: "EPLB_STATUS_OUT_OF_MEMORY",
}
for _code, _name in STATUS_NAMES.items():
    globals()[_name] = _code
    __all__.append(_name)

EPLB_ALGORITHM_DEEPSEEK = 0
EPLB_ALGORITHM_REFINED = 1
EPLB_EFFORT_FAST = 0
EPLB_EFFORT_DEFAULT = 1
EPLB_EFFORT_HIGH = 2
EPLB_EFFORT_MAX = 3
__all__ += [
    "EPLB_ALGORITHM_DEEPSEEK",
    "EPLB_ALGORITHM_REFINED",
    "EPLB_EFFORT_FAST",
    "EPLB_EFFORT_DEFAULT",
    "EPLB_EFFORT_HIGH",
    "EPLB_EFFORT_MAX",
]


# --- structs (field order and types exactly as in include/eplb.h) ------------------------------


class Options(ctypes.Structure):
    """``eplb_options``; fill with ``lib.eplb_options_init(ctypes.byref(opts))``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("algorithm", c_int32),
        ("effort", c_int32),
        ("max_balance_loss", c_double),
        ("max_off_home_share", c_double),
    ]


class MigrationStats(ctypes.Structure):
    """``eplb_migration_stats``; set ``struct_size = ctypes.sizeof(MigrationStats)``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("weights_moved", c_size_t),
        ("weights_total", c_size_t),
        ("slots_changed", c_size_t),
        ("layers_unchanged", c_size_t),
    ]


class PlanStats(ctypes.Structure):
    """``eplb_plan_stats``; set ``struct_size = ctypes.sizeof(PlanStats)``."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("balancedness", c_double),
        ("slot_balancedness", c_double),
        ("worst_layer_balancedness", c_double),
        ("worst_layer", c_size_t),
        ("max_over_mean", c_double),
        ("lower_bound", c_double),
        ("gap", c_double),
        ("worst_layer_gap", c_double),
        ("duplicated_replicas", c_size_t),
        ("mean_off_home_share", c_double),
        ("max_off_home_share", c_double),
        ("worst_off_home_layer", c_size_t),
        ("weights_moved", c_size_t),
        ("slots_changed", c_size_t),
        ("layers_unchanged", c_size_t),
    ]


class LayerStats(ctypes.Structure):
    """``eplb_layer_stats`` (fixed layout, no ``struct_size``)."""

    _fields_ = [
        ("max_gpu_load", c_double),
        ("mean_gpu_load", c_double),
        ("balancedness", c_double),
        ("max_slot_load", c_double),
        ("lower_bound", c_double),
        ("gap", c_double),
        ("off_home_share", c_double),
        ("duplicated_replicas", c_size_t),
        ("weights_moved", c_size_t),
        ("slots_changed", c_size_t),
    ]


# --- functions -------------------------------------------------------------------------------

_f32p = POINTER(c_float)
_i64p = POINTER(c_int64)
_status = c_int32  # eplb_status
_plan_shape = [c_size_t] * 6  # num_layers, num_logical, num_replicas, num_groups, num_nodes, num_gpus


def _plan_sig(load_ptr):
    # (load, shape..., opts, phy2log, log2phy, log2phy_width, logcnt)
    return [load_ptr, *_plan_shape, POINTER(Options), _i64p, _i64p, c_size_t, _i64p]


def _replan_sig(load_ptr):
    # (load, shape..., opts, old_phy2log, phy2log, log2phy, log2phy_width, logcnt, stats)
    return [load_ptr, *_plan_shape, POINTER(Options), _i64p, _i64p, _i64p, c_size_t, _i64p,
            POINTER(MigrationStats)]


def _general_sig(load_ptr):
    # (load, shape..., opts, old_phy2log, phy2log, log2phy, log2phy_width, logcnt, group_node, stats)
    return [load_ptr, *_plan_shape, POINTER(Options), _i64p, _i64p, _i64p, c_size_t, _i64p, _i64p,
            POINTER(MigrationStats)]


def _evaluate_sig(load_ptr):
    # (load, shape..., phy2log, logcnt, group_node, old_phy2log, stats, layer_stats)
    return [load_ptr, *_plan_shape, _i64p, _i64p, _i64p, _i64p, POINTER(PlanStats),
            POINTER(LayerStats)]


#: name -> (restype, argtypes) for every function of include/eplb.h.
FUNCTIONS = {
    "eplb_options_init": (None, [POINTER(Options)]),
    "eplb_status_str": (c_char_p, [_status]),
    "eplb_last_error_message": (c_size_t, [c_char_p, c_size_t]),
    "eplb_version": (c_char_p, []),
    "eplb_balanced_packing": (_status, [_f32p, c_size_t, c_size_t, c_size_t, POINTER(Options), _i64p, _i64p]),
    "eplb_replicate_experts": (_status, [_f32p, c_size_t, c_size_t, c_size_t, _i64p, _i64p, _i64p]),
    "eplb_rebalance_experts": (_status, _plan_sig(_f32p)),
    "eplb_rebalance_experts_i64": (_status, _plan_sig(_i64p)),
    "eplb_replan_experts": (_status, _replan_sig(_f32p)),
    "eplb_replan_experts_i64": (_status, _replan_sig(_i64p)),
    "eplb_plan_experts": (_status, _general_sig(_f32p)),
    "eplb_plan_experts_i64": (_status, _general_sig(_i64p)),
    "eplb_evaluate_plan": (_status, _evaluate_sig(_f32p)),
    "eplb_evaluate_plan_i64": (_status, _evaluate_sig(_i64p)),
}

lib, LIBRARY_PATH = _load()
for _name, (_restype, _argtypes) in FUNCTIONS.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

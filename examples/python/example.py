#!/usr/bin/env python3
"""Calls libeplb from Python with nothing but the standard library (ctypes).

    cargo build --release --lib
    python3 examples/python/example.py            # or EPLB_LIBRARY=/path/to/libeplb.so ...

Plans a small workload (2 layers, 12 experts in 4 groups, 16 slots on 8 GPUs in 2 nodes) with
both algorithms, checks the plan's invariants, shows an error (status + detailed message) and
prints the plans. Exits non-zero when a check fails. Run by `cargo test --test python_callers`
(test `example_py_runs`). The `eplb` package in python/ wraps the same calls for NumPy/torch.
"""

import ctypes
import os
import sys
from ctypes import POINTER, byref, c_char_p, c_double, c_float, c_int32, c_int64, c_size_t
from pathlib import Path


class EplbOptions(ctypes.Structure):
    """`eplb_options` from include/eplb.h (field order and types must match)."""

    _fields_ = [
        ("struct_size", c_size_t),
        ("algorithm", c_int32),
        ("effort", c_int32),
        ("max_balance_loss", c_double),
        ("max_off_home_share", c_double),
    ]


EPLB_STATUS_OK = 0
EPLB_ALGORITHM_DEEPSEEK = 0
EPLB_ALGORITHM_REFINED = 1


def load_library():
    default = Path(__file__).resolve().parents[2] / "target" / "release" / "libeplb.so"
    path = os.environ.get("EPLB_LIBRARY") or str(default)
    if not Path(path).is_file():
        sys.exit(f"libeplb not found at {path}: run `cargo build --release --lib` or set EPLB_LIBRARY")
    lib = ctypes.CDLL(path)
    i64p = POINTER(c_int64)
    lib.eplb_version.argtypes = []
    lib.eplb_version.restype = c_char_p
    lib.eplb_status_str.argtypes = [c_int32]
    lib.eplb_status_str.restype = c_char_p
    lib.eplb_last_error_message.argtypes = [c_char_p, c_size_t]
    lib.eplb_last_error_message.restype = c_size_t
    lib.eplb_options_init.argtypes = [POINTER(EplbOptions)]
    lib.eplb_options_init.restype = None
    lib.eplb_rebalance_experts.argtypes = [
        POINTER(c_float),  # weight [num_layers][num_logical]
        c_size_t, c_size_t, c_size_t,  # num_layers, num_logical, num_replicas
        c_size_t, c_size_t, c_size_t,  # num_groups, num_nodes, num_gpus
        POINTER(EplbOptions),  # opts (NULL = defaults)
        i64p,  # phy2log [num_layers][num_replicas]
        i64p, c_size_t,  # log2phy [num_layers][num_logical][width], width
        i64p,  # logcnt [num_layers][num_logical]
    ]
    lib.eplb_rebalance_experts.restype = c_int32
    return lib, path


def last_error(lib):
    """The calling thread's last error message (asks for the length first, then copies)."""
    size = lib.eplb_last_error_message(None, 0)
    buf = ctypes.create_string_buffer(size + 1)
    lib.eplb_last_error_message(buf, len(buf))
    return buf.value.decode()


def plan(lib, weight, num_replicas, num_groups, num_nodes, num_gpus, algorithm):
    """Returns (status, phy2log, log2phy, logcnt, width) as nested lists."""
    layers, experts = len(weight), len(weight[0])
    width = num_replicas - experts + 1  # always wide enough
    flat = (c_float * (layers * experts))(*[x for row in weight for x in row])
    phy2log = (c_int64 * (layers * num_replicas))()
    log2phy = (c_int64 * (layers * experts * width))()
    logcnt = (c_int64 * (layers * experts))()
    opts = EplbOptions()
    lib.eplb_options_init(byref(opts))
    opts.algorithm = algorithm
    status = lib.eplb_rebalance_experts(flat, layers, experts, num_replicas, num_groups, num_nodes,
                                        num_gpus, byref(opts), phy2log, log2phy, width, logcnt)
    rows = lambda buf, n: [list(buf[i * n:(i + 1) * n]) for i in range(len(buf) // n)]
    p2l = rows(phy2log, num_replicas)
    l2p = [rows(layer, width) for layer in rows(log2phy, experts * width)]
    return status, p2l, l2p, rows(logcnt, experts), width


def check_plan(weight, num_replicas, num_gpus, phy2log, log2phy, logcnt):
    """Raises AssertionError when the plan breaks an invariant of the C API."""
    experts = len(weight[0])
    per_gpu = num_replicas // num_gpus
    for layer, (slots, counts, lists) in enumerate(zip(phy2log, logcnt, log2phy)):
        where = f"layer {layer}"
        assert len(slots) == num_replicas and len(slots) % num_gpus == 0, where
        assert all(c >= 1 for c in counts), f"{where}: an expert has no replica: {counts}"
        assert sum(counts) == num_replicas, f"{where}: logcnt sums to {sum(counts)}"
        for e in range(experts):
            held = [s for s, x in enumerate(slots) if x == e]
            assert len(held) == counts[e], f"{where}: expert {e} holds {held}, logcnt {counts[e]}"
            listed = [s for s in lists[e] if s >= 0]
            assert listed == held, f"{where}: log2phy[{e}] = {lists[e]}, slots {held}"
            assert all(s == -1 for s in lists[e][len(listed):]), f"{where}: padding of {lists[e]}"
        gpus = [slots[g * per_gpu:(g + 1) * per_gpu] for g in range(num_gpus)]
        assert all(len(g) == per_gpu for g in gpus), where


def gpu_loads(weight, phy2log, logcnt, num_gpus):
    per_gpu = len(phy2log) // num_gpus
    return [sum(weight[e] / logcnt[e] for e in phy2log[g * per_gpu:(g + 1) * per_gpu]) for g in range(num_gpus)]


def main():
    lib, path = load_library()
    print(f"libeplb {lib.eplb_version().decode()} from {path}")
    weight = [
        [90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
        [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27],
    ]
    replicas, groups, nodes, gpus = 16, 4, 2, 8
    for name, algorithm in (("deepseek", EPLB_ALGORITHM_DEEPSEEK), ("refined", EPLB_ALGORITHM_REFINED)):
        status, phy2log, log2phy, logcnt, _ = plan(lib, weight, replicas, groups, nodes, gpus, algorithm)
        if status != EPLB_STATUS_OK:
            sys.exit(f"{name}: status {status}: {last_error(lib)}")
        check_plan(weight, replicas, gpus, phy2log, log2phy, logcnt)
        print(f"\n{name}: {replicas} slots on {gpus} GPUs ({replicas // gpus} per GPU), {nodes} nodes")
        for layer in range(len(weight)):
            loads = gpu_loads(weight[layer], phy2log[layer], logcnt[layer], gpus)
            print(f"  layer {layer} phy2log {phy2log[layer]}")
            print(f"          logcnt  {logcnt[layer]}")
            print(f"          GPU loads {[round(x, 1) for x in loads]}  mean/max {sum(loads) / gpus / max(loads):.3f}")

    # An error: 15 slots do not divide over 8 GPUs. Outputs stay untouched; the status says what
    # kind of error, eplb_last_error_message which argument and value.
    status, *_ = plan(lib, weight, 15, groups, nodes, gpus, EPLB_ALGORITHM_REFINED)
    name = lib.eplb_status_str(status).decode()
    message = last_error(lib)
    print(f"\nerror path: status {status} ({name}): {message}")
    assert status == 8, f"expected EPLB_STATUS_NOT_DIVISIBLE (8), got {status}"
    assert "num_gpus" in message, message
    print("\nall checks passed")


if __name__ == "__main__":
    main()

"""Tests of the `eplb` Python package (standard library + NumPy; torch tests run when torch is
importable).

    PYTHONPATH=python EPLB_LIBRARY=target/release/libeplb.so python3 -m unittest discover -s python/tests -v

`cargo test --release --all-targets` runs this suite through tests/python_callers.rs. The package
under test is the one in this checkout (python/), whatever else is installed.
"""

import concurrent.futures
import contextlib
import ctypes
import importlib.util
import json
import os
import re
import sys
import types
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python"))

try:
    import numpy as np
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("numpy is required for the Python tests: run scripts/setup.sh (or pip install numpy)")

import eplb  # noqa: E402  (after the sys.path change)
from eplb import _capi  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

HEADER = (REPO / "include" / "eplb.h").read_text()
REFERENCE = json.loads((REPO / "tests" / "data" / "deepseek_reference.json").read_text())
README_W = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
            [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]


def load_example(name):
    """Imports examples/python/<name>.py as a module."""
    path = REPO / "examples" / "python" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"eplb_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpu_loads(weight, phy2log, logcnt, num_gpus):
    """[layers, gpus] loads: each slot carries weight / logcnt of its expert."""
    weight = np.asarray(weight, dtype=np.float64)
    phy2log, logcnt = np.asarray(phy2log), np.asarray(logcnt)
    rows = np.arange(weight.shape[0])[:, None]
    slot = weight[rows, phy2log] / logcnt[rows, phy2log]
    return slot.reshape(weight.shape[0], num_gpus, -1).sum(-1)


class PlanChecks:
    """Invariants every plan satisfies."""

    def assert_plan(self, weight, num_replicas, num_gpus, phy2log, log2phy, logcnt):
        weight = np.asarray(weight)
        layers, experts = weight.shape
        phy2log, log2phy, logcnt = np.asarray(phy2log), np.asarray(log2phy), np.asarray(logcnt)
        self.assertEqual(phy2log.shape, (layers, num_replicas))
        self.assertEqual(logcnt.shape, (layers, experts))
        self.assertEqual(phy2log.dtype, np.int64)
        self.assertEqual(log2phy.dtype, np.int64)
        self.assertEqual(logcnt.dtype, np.int64)
        self.assertEqual(num_replicas % num_gpus, 0)
        self.assertTrue((logcnt >= 1).all())
        self.assertTrue((logcnt.sum(1) == num_replicas).all())
        self.assertTrue(log2phy.shape[:2] == (layers, experts) and log2phy.shape[2] >= logcnt.max())
        for layer in range(layers):
            counts = np.bincount(phy2log[layer], minlength=experts)
            self.assertTrue((counts == logcnt[layer]).all(), f"layer {layer}")
            for e in range(experts):
                slots = np.flatnonzero(phy2log[layer] == e)
                row = log2phy[layer, e]
                self.assertEqual(row[: len(slots)].tolist(), slots.tolist(), f"log2phy[{layer}][{e}]")
                self.assertTrue((row[len(slots):] == -1).all())


class BindingTests(unittest.TestCase):
    """The ctypes binding matches include/eplb.h."""

    C_TYPES = {
        "eplb_status": ctypes.c_int32,
        "size_t": ctypes.c_size_t,
        "char *": ctypes.c_char_p,
        "float *": ctypes.POINTER(ctypes.c_float),
        "int64_t *": ctypes.POINTER(ctypes.c_int64),
        "struct eplb_options *": ctypes.POINTER(_capi.Options),
        "struct eplb_migration_stats *": ctypes.POINTER(_capi.MigrationStats),
        "struct eplb_plan_stats *": ctypes.POINTER(_capi.PlanStats),
        "struct eplb_layer_stats *": ctypes.POINTER(_capi.LayerStats),
    }
    FIELD_TYPES = {"size_t": ctypes.c_size_t, "int32_t": ctypes.c_int32, "int64_t": ctypes.c_int64,
                   "double": ctypes.c_double, "float": ctypes.c_float}
    STRUCTS = {"eplb_options": _capi.Options, "eplb_migration_stats": _capi.MigrationStats,
               "eplb_plan_stats": _capi.PlanStats, "eplb_layer_stats": _capi.LayerStats}

    @staticmethod
    def code():
        text = re.sub(r"/\*.*?\*/", "", HEADER, flags=re.S)
        return re.sub(r"//[^\n]*", "", text)

    def c_type(self, decl):
        decl = re.sub(r"\s+", " ", decl.replace("*", " * ")).strip()
        decl = re.sub(r"^const ", "", decl).replace(" *", "*").replace("*", " *").strip()
        self.assertIn(decl, self.C_TYPES, f"no ctypes mapping for C type {decl!r}: bind it")
        return self.C_TYPES[decl]

    def header_functions(self):
        found = {}
        for ret, name, params in re.findall(r"^([A-Za-z_][\w \*]*?)\s*\b(eplb_\w+)\s*\(([^)]*)\)\s*;",
                                            self.code(), flags=re.M):
            ret = ret.strip()
            restype = None if ret == "void" else self.c_type(ret)
            params = [p.strip() for p in params.split(",")]
            if params == ["void"]:
                params = []
            argtypes = [self.c_type(re.sub(r"\b\w+$", "", p)) for p in params]
            found[name] = (restype, argtypes)
        return found

    def test_every_header_function_is_bound_with_its_signature(self):
        functions = self.header_functions()
        self.assertGreaterEqual(len(functions), 14)
        self.assertEqual(sorted(functions), sorted(_capi.FUNCTIONS), "binding and header disagree")
        for name, (restype, argtypes) in functions.items():
            fn = getattr(_capi.lib, name)
            self.assertIs(fn.restype, restype, name)
            self.assertEqual(list(fn.argtypes), argtypes, name)

    def test_structs_match_header(self):
        structs = re.findall(r"typedef struct (\w+) \{(.*?)\} \w+;", self.code(), flags=re.S)
        self.assertEqual(sorted(n for n, _ in structs), sorted(self.STRUCTS), "a struct is not bound")
        for name, body in structs:
            fields = [tuple(f.split()) for f in body.replace("\n", " ").split(";") if f.strip()]
            want = [(field, self.FIELD_TYPES[ctype]) for ctype, field in fields]
            self.assertEqual(self.STRUCTS[name]._fields_, want, name)

    def test_constants_match_header(self):
        defines = dict((k, int(v)) for k, v in re.findall(r"#define (EPLB_\w+) (\d+)", HEADER))
        statuses = {v: k for k, v in defines.items() if k.startswith("EPLB_STATUS_")}
        self.assertEqual(statuses, _capi.STATUS_NAMES)
        for name, value in defines.items():
            if name.startswith(("EPLB_STATUS_", "EPLB_ALGORITHM_", "EPLB_EFFORT_")):
                self.assertEqual(getattr(_capi, name), value, name)
        self.assertEqual(eplb.ALGORITHMS["deepseek"], defines["EPLB_ALGORITHM_DEEPSEEK"])
        self.assertEqual(eplb.EFFORTS["max"], defines["EPLB_EFFORT_MAX"])

    def test_version(self):
        cargo = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)
        self.assertEqual(eplb.version(), cargo)
        self.assertEqual(eplb.__version__, cargo)
        self.assertTrue(Path(eplb.library_path()).is_file())
        if os.environ.get("EPLB_LIBRARY"):
            self.assertEqual(Path(eplb.library_path()), Path(os.environ["EPLB_LIBRARY"]))

    def test_options_init_defaults(self):
        opts = _capi.Options()
        _capi.lib.eplb_options_init(ctypes.byref(opts))
        self.assertEqual(opts.struct_size, ctypes.sizeof(_capi.Options))
        self.assertEqual((opts.algorithm, opts.effort), (_capi.EPLB_ALGORITHM_REFINED, _capi.EPLB_EFFORT_DEFAULT))
        self.assertEqual((opts.max_balance_loss, opts.max_off_home_share), (0.0, 0.0))
        _capi.lib.eplb_options_init(None)  # documented no-op

    def test_status_str(self):
        for code in _capi.STATUS_NAMES:
            text = _capi.lib.eplb_status_str(code)
            self.assertTrue(text, code)
        self.assertEqual(_capi.lib.eplb_status_str(9999), b"unknown status")

    def test_last_error_message_length_and_truncation(self):
        with self.assertRaises(eplb.EplbError) as ctx:
            eplb.rebalance_experts(README_W, 15, 4, 2, 8)
        full = ctx.exception.message.encode()
        lib = _capi.lib
        self.assertEqual(lib.eplb_last_error_message(None, 0), len(full))
        small = ctypes.create_string_buffer(8)
        self.assertEqual(lib.eplb_last_error_message(small, 8), len(full))
        self.assertEqual(small.value, full[:7])  # truncated, NUL-terminated
        # A successful call leaves the message alone.
        eplb.rebalance_experts(README_W, 16, 4, 2, 8)
        self.assertEqual(lib.eplb_last_error_message(None, 0), len(full))

    def test_outputs_untouched_on_error(self):
        weight = np.array(README_W, np.float32)
        phy2log = np.full((2, 15), 77, np.int64)
        log2phy = np.full((2, 12, 4), 77, np.int64)
        logcnt = np.full((2, 12), 77, np.int64)
        i64 = ctypes.POINTER(ctypes.c_int64)
        status = _capi.lib.eplb_rebalance_experts(
            weight.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 2, 12, 15, 4, 2, 8, None,
            phy2log.ctypes.data_as(i64), log2phy.ctypes.data_as(i64), 4, logcnt.ctypes.data_as(i64))
        self.assertEqual(status, _capi.EPLB_STATUS_NOT_DIVISIBLE)
        for a in (phy2log, log2phy, logcnt):
            self.assertTrue((a == 77).all())


class DeepSeekCompatibilityTests(unittest.TestCase):
    """`algorithm="deepseek"` returns DeepSeek's outputs on every reference case."""

    def test_rebalance_matches_reference(self):
        cases = REFERENCE["rebalance"]
        self.assertGreaterEqual(len(cases), 10)
        for case in cases:
            args = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
            weight = case["weight"]
            as_float = np.array(weight, np.float32)
            as_int = np.array(weight, np.int64)
            inputs = {"list": weight, "float32": as_float, "float64": as_float.astype(np.float64)}
            if (as_int == as_float).all():
                inputs["int64"] = as_int
            for kind, w in inputs.items():
                with self.subTest(case=case["name"], input=kind):
                    phy2log, log2phy, logcnt = eplb.rebalance_experts(w, *args, algorithm="deepseek")
                    self.assertIsInstance(phy2log, np.ndarray)
                    self.assertEqual(phy2log.tolist(), case["phy2log"])
                    self.assertEqual(logcnt.tolist(), case["logcnt"])
                    # DeepSeek's log2phy is [layers, experts, logcnt.max()]; compare as sets.
                    layers, experts = np.shape(weight)
                    self.assertEqual(log2phy.shape, (layers, experts, max(map(max, case["logcnt"]))))
                    got = [[sorted(s for s in row if s >= 0) for row in layer] for layer in log2phy.tolist()]
                    self.assertEqual(got, case["log2phy_sets"])

    def test_balanced_packing_matches_reference(self):
        for case in REFERENCE["balanced_packing"]:
            with self.subTest(case=case["name"]):
                pack, rank = eplb.balanced_packing(case["weight"], case["num_packs"], algorithm="deepseek")
                self.assertEqual(pack.tolist(), case["pack_index"])
                self.assertEqual(rank.tolist(), case["rank_in_pack"])

    def test_replicate_experts_matches_reference(self):
        for case in REFERENCE["replicate_experts"]:
            with self.subTest(case=case["name"]):
                phy2log, rank, logcnt = eplb.replicate_experts(case["weight"], case["num_physical"])
                self.assertEqual(phy2log.tolist(), case["phy2log"])
                self.assertEqual(rank.tolist(), case["replica_rank"])
                self.assertEqual(logcnt.tolist(), case["logcnt"])


class ApiTests(unittest.TestCase, PlanChecks):
    def test_refined_plans_are_valid_and_never_worse(self):
        for case in REFERENCE["rebalance"]:
            args = (case["num_replicas"], case["num_groups"], case["num_nodes"], case["num_gpus"])
            with self.subTest(case=case["name"]):
                plan = eplb.rebalance_experts(case["weight"], *args)
                self.assert_plan(case["weight"], case["num_replicas"], case["num_gpus"], *plan)
                ours = gpu_loads(case["weight"], plan[0], plan[2], case["num_gpus"]).max(1)
                theirs = gpu_loads(case["weight"], case["phy2log"], case["logcnt"], case["num_gpus"]).max(1)
                self.assertTrue((ours <= theirs * (1 + 1e-6) + 1e-9).all(), (ours, theirs))

    def test_input_kinds_agree(self):
        w = np.array(README_W)
        base = eplb.rebalance_experts(w.astype(np.float32), 16, 4, 2, 8, algorithm="deepseek")
        variants = {
            "list of ints": README_W,
            "list of floats": [[float(x) for x in row] for row in README_W],
            "int32": w.astype(np.int32),
            "uint16": w.astype(np.uint16),
            "float16": w.astype(np.float16),
            "fortran order": np.asfortranarray(w.astype(np.float64)),
            "strided view": np.repeat(w, 2, axis=1)[:, ::2],
            "read-only": np.frombuffer(w.astype(np.float32).tobytes(), np.float32).reshape(2, 12),
        }
        for name, v in variants.items():
            with self.subTest(name):
                got = eplb.rebalance_experts(v, 16, 4, 2, 8, algorithm="deepseek")
                for a, b in zip(got, base):
                    self.assertEqual(a.tolist(), b.tolist())

    def test_integer_and_float_loads_both_plan(self):
        w = np.array(README_W, np.int64) * 1000003  # not exactly representable as float32
        for loads in (w, w.astype(np.float32)):
            for algorithm in ("refined", "deepseek"):
                plan = eplb.rebalance_experts(loads, 16, 4, 2, 8, algorithm=algorithm)
                self.assert_plan(loads, 16, 8, *plan)

    def test_efforts_and_locality(self):
        rng = np.random.default_rng(7)
        w = rng.gamma(0.7, 100.0, size=(3, 32)).astype(np.float32)
        for effort in ("fast", "default", "high", "max", _capi.EPLB_EFFORT_HIGH):
            with self.subTest(effort=effort):
                self.assert_plan(w, 40, 8, *eplb.rebalance_experts(w, 40, 4, 2, 8, effort=effort))
        for share in (0.0, 0.25, 1.0):
            with self.subTest(max_off_home_share=share):
                plan = eplb.plan_experts(w, 40, 4, 2, 8, max_off_home_share=share)
                self.assert_plan(w, 40, 8, plan.phy2log, plan.log2phy, plan.logcnt)
                stats = eplb.evaluate_plan(w, plan.phy2log, 4, 2, 8, group_node=plan.group_node)
                self.assertLessEqual(stats.max_off_home_share, share + 1e-9)
                self.assertLessEqual(stats.layers["off_home_share"].max(), share + 1e-9)

    def test_log2phy_width(self):
        w = README_W
        _, default, logcnt = eplb.rebalance_experts(w, 16, 4, 2, 8)
        self.assertEqual(default.shape, (2, 12, logcnt.max()))
        _, wide, _ = eplb.rebalance_experts(w, 16, 4, 2, 8, log2phy_width=5)
        self.assertEqual(wide.shape, (2, 12, 5))
        self.assertEqual(wide[:, :, : default.shape[2]].tolist(), default.tolist())
        self.assertTrue((wide[:, :, default.shape[2]:] == -1).all())
        with self.assertRaises(eplb.EplbError) as ctx:
            eplb.rebalance_experts(w, 16, 4, 2, 8, log2phy_width=1)
        self.assertEqual(ctx.exception.status_name, "EPLB_STATUS_WIDTH_TOO_SMALL")

    def test_balanced_packing(self):
        rng = np.random.default_rng(1)
        w = rng.random((4, 24)).astype(np.float32)
        for algorithm in ("deepseek", "refined"):
            pack, rank = eplb.balanced_packing(w, 6, algorithm=algorithm)
            self.assertEqual(pack.shape, (4, 24))
            for layer in range(4):
                self.assertEqual(np.bincount(pack[layer], minlength=6).tolist(), [4] * 6)
                for p in range(6):
                    self.assertEqual(sorted(rank[layer][pack[layer] == p].tolist()), [0, 1, 2, 3])
        ds = eplb.balanced_packing(w, 6, algorithm="deepseek")[0]
        refined = eplb.balanced_packing(w, 6)[0]
        heaviest = lambda pack: np.array([[w[l][pack[l] == p].sum() for p in range(6)] for l in range(4)]).max(1)
        self.assertTrue((heaviest(refined) <= heaviest(ds) + 1e-6).all())
        pack, _ = eplb.balanced_packing([[3, 1, 2]], 3)  # one item per pack: the identity
        self.assertEqual(pack.tolist(), [[0, 1, 2]])

    def test_replicate_experts(self):
        phy2log, rank, logcnt = eplb.replicate_experts([[6.0, 2.0, 1.0]], 5)
        self.assertEqual(phy2log.tolist(), [[0, 1, 2, 0, 0]])
        self.assertEqual(rank.tolist(), [[0, 0, 0, 1, 2]])
        self.assertEqual(logcnt.tolist(), [[3, 1, 1]])
        self.assertEqual(eplb.replicate_experts([[6, 2, 1]], 5)[0].tolist(), phy2log.tolist())

    def test_plan_experts(self):
        w = np.array(README_W, np.float32)
        plan = eplb.plan_experts(w, 16, 4, 2, 8)
        self.assertIsInstance(plan, eplb.Plan)
        self.assert_plan(w, 16, 8, plan.phy2log, plan.log2phy, plan.logcnt)
        self.assertIsNone(plan.migration)
        self.assertEqual(plan.group_node.shape, (2, 4))
        for layer in range(2):  # 2 groups per node, and each group's experts sit on its node
            self.assertEqual(sorted(plan.group_node[layer].tolist()), [0, 0, 1, 1])
            nodes = plan.phy2log[layer].reshape(2, 8)
            for e in range(12):
                self.assertIn(e, nodes[plan.group_node[layer][e // 3]])
        same = eplb.rebalance_experts(w, 16, 4, 2, 8)
        for a, b in zip((plan.phy2log, plan.log2phy, plan.logcnt), same):
            self.assertEqual(a.tolist(), b.tolist())
        as_int = eplb.plan_experts(np.array(README_W), 16, 4, 2, 8, with_log2phy=False)
        self.assertIsNone(as_int.log2phy)
        self.assertEqual(as_int.phy2log.shape, (2, 16))
        glob = eplb.plan_experts(w, 16, 3, 2, 8)  # 3 groups on 2 nodes: the global policy
        self.assertTrue((glob.group_node == -1).all())
        self.assertEqual(glob.group_node.shape, (2, 3))

    def test_replan_experts(self):
        rng = np.random.default_rng(3)
        w = rng.gamma(0.8, 1000.0, size=(4, 64)).round().astype(np.int64)
        old, _, _ = eplb.rebalance_experts(w, 80, 8, 2, 16)
        # The same loads: the old plan is kept.
        p, _, _, moved = eplb.replan_experts(w, old, 80, 8, 2, 16)
        self.assertEqual(p.tolist(), old.tolist())
        self.assertEqual(moved, {"weights_moved": 0, "weights_total": moved["weights_total"],
                                 "slots_changed": 0, "layers_unchanged": 4})
        # New loads: valid plans that move no more than planning from scratch would.
        new = w + rng.gamma(0.8, 300.0, size=w.shape).round().astype(np.int64)
        scratch = eplb.rebalance_experts(new, 80, 8, 2, 16)
        scratch_moved = eplb.evaluate_plan(new, scratch[0], 8, 2, 16, old_phy2log=old).weights_moved
        previous = None
        for loss in (0.0, 0.02, 0.2):
            with self.subTest(max_balance_loss=loss):
                phy2log, log2phy, logcnt, moved = eplb.replan_experts(new, old, 80, 8, 2, 16, max_balance_loss=loss)
                self.assert_plan(new, 80, 16, phy2log, log2phy, logcnt)
                self.assertEqual(set(moved), {"weights_moved", "weights_total", "slots_changed", "layers_unchanged"})
                self.assertLessEqual(moved["weights_moved"], moved["weights_total"])
                self.assertLessEqual(moved["weights_moved"], scratch_moved)
                best = gpu_loads(new, scratch[0], scratch[2], 16).max(1)
                mine = gpu_loads(new, phy2log, logcnt, 16).max(1)
                self.assertTrue((mine <= best * (1 + loss) * (1 + 1e-6)).all())
                stats = eplb.evaluate_plan(new, phy2log, 8, 2, 16, old_phy2log=old)
                self.assertEqual(stats.weights_moved, moved["weights_moved"])
                if previous is not None:
                    self.assertLessEqual(moved["weights_moved"], previous)
                previous = moved["weights_moved"]
        general = eplb.plan_experts(new.astype(np.float32), 80, 8, 2, 16, old_phy2log=old, max_balance_loss=0.02)
        self.assertEqual(set(general.migration), {"weights_moved", "weights_total", "slots_changed", "layers_unchanged"})
        with self.assertRaises(ValueError):
            eplb.replan_experts(new, None, 80, 8, 2, 16)

    def test_evaluate_plan(self):
        w = np.array(README_W, np.float32)
        phy2log, _, logcnt = eplb.rebalance_experts(w, 16, 4, 2, 8, algorithm="deepseek")
        stats = eplb.evaluate_plan(w, phy2log, 4, 2, 8, logcnt=logcnt)
        self.assertIsInstance(stats, eplb.PlanStats)
        loads = gpu_loads(w, phy2log, logcnt, 8)
        self.assertAlmostEqual(stats.balancedness, loads.mean(1).sum() / loads.max(1).sum(), places=9)
        np.testing.assert_allclose(stats.layers["max_gpu_load"], loads.max(1))
        np.testing.assert_allclose(stats.layers["mean_gpu_load"], loads.mean(1))
        self.assertEqual(stats.worst_layer, int(np.argmin(loads.mean(1) / loads.max(1))))
        self.assertTrue(0 < stats.balancedness <= 1 and stats.gap >= 0 and stats.lower_bound > 0)
        for name, column in stats.layers.items():
            self.assertEqual(column.shape, (2,), name)
        self.assertEqual(stats.layers["duplicated_replicas"].dtype, np.int64)
        as_int = eplb.evaluate_plan(np.array(README_W), phy2log, 4, 2, 8)
        self.assertAlmostEqual(as_int.balancedness, stats.balancedness, places=9)
        d = stats.as_dict()
        self.assertEqual(d["balancedness"], stats.balancedness)
        self.assertIn("max_gpu_load", d["layers"])
        bad = logcnt.copy()
        bad[0, 0] += 1
        with self.assertRaises(eplb.EplbError) as ctx:
            eplb.evaluate_plan(w, phy2log, 4, 2, 8, logcnt=bad)
        self.assertEqual(ctx.exception.status, _capi.EPLB_STATUS_INVALID_PLAN)

    def test_zero_layers(self):
        w = np.zeros((0, 12), np.float32)
        phy2log, log2phy, logcnt = eplb.rebalance_experts(w, 16, 4, 2, 8)
        self.assertEqual((phy2log.shape, logcnt.shape, log2phy.shape[:2]), ((0, 16), (0, 12), (0, 12)))
        self.assertEqual(eplb.evaluate_plan(w, phy2log, 4, 2, 8).layers["gap"].shape, (0,))

    def test_errors_carry_status_and_message(self):
        w = README_W
        old = eplb.rebalance_experts(w, 16, 4, 2, 8)[0].copy()
        old[0, :] = 0  # leaves experts without a slot
        cases = [
            ("NOT_DIVISIBLE", lambda: eplb.rebalance_experts(w, 15, 4, 2, 8), "num_gpus"),
            ("TOO_FEW_REPLICAS", lambda: eplb.rebalance_experts(w, 8, 4, 2, 8), "num_replicas"),
            ("ZERO_SIZE", lambda: eplb.rebalance_experts(w, 16, 4, 2, 0), "num_gpus"),
            ("INVALID_LOAD", lambda: eplb.rebalance_experts([[1.0, -2.0, 3.0, 4.0]], 4, 1, 1, 2), "-2"),
            ("INVALID_LOAD", lambda: eplb.rebalance_experts([[1.0, float("nan"), 3.0, 4.0]], 4, 1, 1, 2), "NaN"),
            ("INVALID_LOAD", lambda: eplb.rebalance_experts([[1, -2, 3, 4]], 4, 1, 1, 2), "-2"),
            ("WIDTH_TOO_SMALL", lambda: eplb.rebalance_experts(w, 16, 4, 2, 8, log2phy_width=1), "width"),
            ("INVALID_OPTIONS", lambda: eplb.rebalance_experts(w, 16, 4, 2, 8, algorithm=7), "algorithm"),
            ("INVALID_OPTIONS", lambda: eplb.rebalance_experts(w, 16, 4, 2, 8, effort=99), "effort"),
            ("INVALID_OPTIONS", lambda: eplb.rebalance_experts(w, 16, 4, 2, 8, max_off_home_share=2.0), "max_off_home_share"),
            ("INVALID_OPTIONS", lambda: eplb.replan_experts(w, old, 16, 4, 2, 8, max_balance_loss=-1), "max_balance_loss"),
            ("INVALID_PLAN", lambda: eplb.replan_experts(w, old, 16, 4, 2, 8), "old_phy2log"),
            ("NOT_DIVISIBLE", lambda: eplb.balanced_packing(w, 5), "5"),
            ("TOO_FEW_REPLICAS", lambda: eplb.replicate_experts(w, 11), "11"),
            ("NOT_DIVISIBLE", lambda: eplb.evaluate_plan(w, old, 4, 2, 5), "num_gpus"),
        ]
        for name, call, needle in cases:
            with self.subTest(name, needle=needle):
                with self.assertRaises(eplb.EplbError) as ctx:
                    call()
                err = ctx.exception
                self.assertEqual(err.status_name, "EPLB_STATUS_" + name)
                self.assertEqual(err.status, getattr(_capi, err.status_name))
                self.assertTrue(err.message)
                self.assertIn(needle.lower(), err.message.lower())
                self.assertEqual(err.description, _capi.lib.eplb_status_str(err.status).decode())
                self.assertIn(err.status_name, str(err))
                self.assertIn(err.message, str(err))

    def test_python_side_errors(self):
        with self.assertRaises(ValueError):
            eplb.rebalance_experts([1.0, 2.0], 2, 1, 1, 1)  # 1-D
        with self.assertRaises(ValueError):
            eplb.rebalance_experts(README_W, 16, 4, 2, 8, algorithm="greedy")
        with self.assertRaises(ValueError):
            eplb.rebalance_experts(README_W, 16, 4, 2, 8, effort="extreme")
        with self.assertRaises(TypeError):
            eplb.rebalance_experts([["a", "b"]], 2, 1, 1, 1)
        with self.assertRaises(ValueError):
            eplb.replan_experts(README_W, np.zeros((2, 15), np.int64), 16, 4, 2, 8)
        with self.assertRaises(ValueError):
            eplb.evaluate_plan(README_W, np.zeros((3, 16), np.int64), 4, 2, 8)
        with self.assertRaises(ValueError):
            eplb.rebalance_experts(README_W, -16, 4, 2, 8)

    def test_last_error_is_per_thread(self):
        def fail(replicas):
            try:
                eplb.rebalance_experts(README_W, replicas, 4, 2, 8)
            except eplb.EplbError as err:
                return replicas, err.message
            return replicas, None

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(fail, [15, 17, 23, 25] * 25))
        for replicas, message in results:
            self.assertIn(f"({replicas})", message)


@unittest.skipIf(torch is None, "torch is not installed (optional)")
class TorchTests(unittest.TestCase, PlanChecks):
    def test_torch_in_torch_out(self):
        w = torch.tensor(README_W, dtype=torch.float32)
        for loads in (w, w.to(torch.int64), w.to(torch.bfloat16), w.clone().requires_grad_(True), w.t().contiguous().t()):
            phy2log, log2phy, logcnt = eplb.rebalance_experts(loads, 16, 4, 2, 8, algorithm="deepseek")
            for t in (phy2log, log2phy, logcnt):
                self.assertIsInstance(t, torch.Tensor)
                self.assertEqual(t.dtype, torch.int64)
                self.assertEqual(t.device.type, "cpu")
            case = REFERENCE["rebalance"][0]
            self.assertEqual(phy2log.tolist(), case["phy2log"])
            self.assertEqual(logcnt.tolist(), case["logcnt"])
        plan = eplb.plan_experts(w, 16, 4, 2, 8, old_phy2log=torch.tensor(case["phy2log"]))
        self.assert_plan(README_W, 16, 8, plan.phy2log.numpy(), plan.log2phy.numpy(), plan.logcnt.numpy())
        pack, rank = eplb.balanced_packing(w, 4)
        self.assertIsInstance(pack, torch.Tensor)
        stats = eplb.evaluate_plan(w, plan.phy2log, 4, 2, 8)
        self.assertGreater(stats.balancedness, 0)

    @unittest.skipUnless(torch is not None and torch.cuda.is_available(), "no CUDA device")
    def test_gpu_tensor(self):
        w = torch.tensor(README_W, dtype=torch.float32, device="cuda")
        phy2log, _, _ = eplb.rebalance_experts(w, 16, 4, 2, 8, algorithm="deepseek")
        self.assertEqual(phy2log.device.type, "cpu")
        self.assertEqual(phy2log.tolist(), REFERENCE["rebalance"][0]["phy2log"])


class AdapterTests(unittest.TestCase, PlanChecks):
    """examples/python/vllm_policy.py and sglang_algorithm.py, on NumPy (and torch) input."""

    @classmethod
    def setUpClass(cls):
        cls.vllm = load_example("vllm_policy")
        cls.sglang = load_example("sglang_algorithm")

    def test_vllm_policy(self):
        Policy = self.vllm.LibEplbPolicy
        w = np.array(README_W, np.int64)
        phy2log, log2phy, logcnt = Policy.rebalance_experts(w, 16, 4, 2, 8)
        self.assertEqual(log2phy.shape, (2, 12, 16 - 12 + 1))  # vLLM's width
        self.assert_plan(w, 16, 8, phy2log, log2phy, logcnt)

        class DeepSeekPolicy(Policy):
            algorithm = "deepseek"

        case = REFERENCE["rebalance"][0]
        ds = DeepSeekPolicy.rebalance_experts(np.array(case["weight"], np.float32), 16, 4, 2, 8)
        self.assertEqual(ds[0].tolist(), case["phy2log"])
        self.assertEqual(ds[2].tolist(), case["logcnt"])
        # With the current placement: a migration-aware re-plan; same loads, nothing moves.
        again = Policy.rebalance_experts(w, 16, 4, 2, 8, old_global_expert_indices=phy2log)
        self.assertEqual(again[0].tolist(), phy2log.tolist())
        only = self.vllm.LibEplbPolicyMappingOnly.rebalance_experts(w, 16, 4, 2, 8, phy2log)
        self.assertEqual(only.tolist(), phy2log.tolist())
        self.assertEqual(Policy.rebalance_experts(w, 16, 0, 2, 8)[0].shape, (2, 16))  # num_groups=0

    def test_sglang_algorithm(self):
        rebalance = self.sglang.rebalance_experts
        case = REFERENCE["rebalance"][0]  # readme_hierarchical: 4 groups, 2 nodes, 8 GPUs
        windows = np.array([case["weight"], np.zeros_like(case["weight"])], np.int64)  # [windows, L, E]
        hier = rebalance(windows, 16, 2, 4, 2, "deepseek_hierarchical", eplb_algorithm="deepseek")
        self.assertEqual(hier[0].tolist(), case["phy2log"])
        self.assertEqual(hier[2].tolist(), case["logcnt"])
        self.assertEqual(hier[1].shape[2], max(map(max, case["logcnt"])))  # SGLang's deepseek width
        auto = rebalance(windows, 16, 2, 4, 2, "auto", eplb_algorithm="deepseek")
        self.assertEqual(auto[0].tolist(), case["phy2log"])
        # SGLang's "deepseek" is the global policy even when the groups divide; DeepSeek's global
        # plan of these loads is the readme_global reference case.
        glob_case = REFERENCE["rebalance"][1]
        enum_member = types.SimpleNamespace(name="deepseek")
        glob = rebalance(np.array(case["weight"]), 16, 2, 4, 2, enum_member, eplb_algorithm="deepseek")
        self.assertEqual(glob[0].tolist(), glob_case["phy2log"])
        refined = rebalance(windows.tolist(), 16, 2, None, 2)
        self.assert_plan(case["weight"], 16, 8, *refined)
        with self.assertRaises(ValueError):
            rebalance(windows, 16, 2, 3, 2, "deepseek_hierarchical")
        with self.assertRaises(NotImplementedError):
            rebalance(windows, 16, 2, 4, 2, "auto", broken_ranks=np.array([0, 1, 0, 0, 0, 0, 0, 0]))
        fine = rebalance(windows, 16, 2, 4, 2, "auto", broken_ranks=np.zeros(8, np.int32))
        self.assertEqual(fine[0].shape, (2, 16))

    @unittest.skipIf(torch is None, "torch is not installed (optional)")
    def test_adapters_with_torch(self):
        w = torch.tensor(README_W, dtype=torch.int64)
        phy2log, log2phy, logcnt = self.vllm.LibEplbPolicy.rebalance_experts(w, 16, 4, 2, 8)
        self.assertTrue(all(isinstance(t, torch.Tensor) for t in (phy2log, log2phy, logcnt)))
        self.assertEqual(tuple(log2phy.shape), (2, 12, 5))
        p, l, c = self.sglang.rebalance_experts(w.unsqueeze(0), 16, 2, 4, 2, "auto")
        self.assertIsInstance(p, torch.Tensor)
        self.assert_plan(README_W, 16, 8, p.numpy(), l.numpy(), c.numpy())


class ReadmeTests(unittest.TestCase):
    """Runs every ```python block of the README's Python section."""

    def blocks(self):
        text = (REPO / "README.md").read_text()
        start, end = text.index("<!-- usage-python:start -->"), text.index("<!-- usage-python:end -->")
        return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)

    @contextlib.contextmanager
    def stand_ins(self):
        """Stand-in `vllm` and `sglang` modules (the wiring snippets import them) and the
        examples directory on sys.path."""
        names = ["vllm", "vllm.distributed", "vllm.distributed.eplb", "vllm.distributed.eplb.policy",
                 "sglang", "sglang.srt", "sglang.srt.eplb", "sglang.srt.eplb.eplb_algorithms"]
        saved = {n: sys.modules.get(n) for n in names + ["vllm_policy", "sglang_algorithm"]}
        modules = {n: types.ModuleType(n) for n in names}
        modules["vllm.distributed.eplb.policy"].EPLB_POLICIES = {"default": object}
        modules["sglang.srt.eplb.eplb_algorithms"].rebalance_experts = None
        modules["sglang.srt.eplb"].eplb_algorithms = modules["sglang.srt.eplb.eplb_algorithms"]
        sys.modules.update(modules)
        sys.path.insert(0, str(REPO / "examples" / "python"))
        cwd = os.getcwd()
        os.chdir(REPO)
        try:
            yield modules
        finally:
            os.chdir(cwd)
            sys.path.remove(str(REPO / "examples" / "python"))
            for n, m in saved.items():
                if m is None:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = m

    def test_readme_python_snippets(self):
        blocks = self.blocks()
        self.assertGreaterEqual(len(blocks), 5)
        namespace = {}
        with self.stand_ins() as modules, open(os.devnull, "w") as devnull:
            with contextlib.redirect_stdout(devnull):
                for i, block in enumerate(blocks):
                    if "import torch" in block and torch is None:
                        continue
                    with self.subTest(block=i, first_line=block.splitlines()[0]):
                        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
            policy = modules["vllm.distributed.eplb.policy"].EPLB_POLICIES["default"]
            self.assertEqual(policy.__name__, "LibEplbPolicy")
            phy2log, _, _ = policy.rebalance_experts(np.array(README_W), 16, 4, 2, 8)
            self.assertEqual(phy2log.shape, (2, 16))
            algorithm = modules["sglang.srt.eplb.eplb_algorithms"].rebalance_experts
            self.assertEqual(algorithm.__module__, "sglang_algorithm")
            self.assertEqual(algorithm(np.array([README_W]), 16, 2, 4, 2, "auto")[0].shape, (2, 16))


if __name__ == "__main__":
    unittest.main()

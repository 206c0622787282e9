"""Where a CIFAR-10 training step's time goes, on both sides of ``omnifuse bench cifar10-94 --compare airbench94``:
omnifuse's ``cifar10-94`` (Keras on TensorFlow, traced with TensorFlow's profiler) and airbench94 on the CPU
(PyTorch, as ``benchmarks/reference/airbench94.py`` runs it, traced with PyTorch's profiler).

Each side trains a few steps after some warm-up steps, traces them, and sorts every traced op's own time into the
same groups: convolutions forward and backward, batch norm forward and backward, the other forward and backward ops
(GELU, pooling, casts, the loss), augmentation, the optimizer (with lookahead), data feeding, and per-step overhead
(the step's wall time that no traced op accounts for: Python, dispatch, waiting). airbench augments the whole
training set once per epoch, outside its steps: that share is timed apart and spread over the epoch's steps.

    python benchmarks/experiments/cifar10_profile.py --steps 5                     # both sides, then the table
    python benchmarks/experiments/cifar10_profile.py --torch-python VENV/bin/python  # torch + airbench live there
    python benchmarks/experiments/cifar10_profile.py --side tf --steps 5 --json tf.json   # one side, its JSON

Each side runs in its own process (the two frameworks' thread pools must not compete), each with its own batch
(cifar10-94: 256; airbench94: 1,024), so compare milliseconds per image. ``--precision`` (default ``auto``:
bfloat16 where the CPU computes it natively, as the preset decides) applies to both. Numbers from a loaded machine
are indicative only; a few steps under a profiler are not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GROUPS = (
    "conv forward",
    "conv backward",
    "batch norm forward",
    "batch norm backward",
    "other forward",
    "other backward",
    "augmentation",
    "optimizer + lookahead",
    "data feeding",
    "per-step overhead",
)


def _result(side, batch, step_seconds, op_seconds, extra_seconds=None, **info):
    """Per group the milliseconds per step; overhead = the step's wall time no op accounts for."""
    steps = len(step_seconds)
    per_step = {g: 1e3 * s / steps for g, s in op_seconds.items()}
    for group, ms in (extra_seconds or {}).items():
        per_step[group] = per_step.get(group, 0.0) + 1e3 * ms
    wall = 1e3 * sum(step_seconds) / steps
    traced = sum(v for g, v in op_seconds.items()) * 1e3 / steps
    per_step["per-step overhead"] = max(0.0, wall - traced)
    return {
        "side": side,
        "batch_size": batch,
        "steps": steps,
        "step_ms": round(wall, 2),
        "median_step_ms": round(1e3 * statistics.median(step_seconds), 2),
        "traced_ms": round(traced, 2),
        "groups_ms": {g: round(per_step.get(g, 0.0), 2) for g in GROUPS},
        **info,
    }


# ------------------------------------------------------------------------------------------ omnifuse (TensorFlow)


def _tf_group(name: str) -> str | None:
    """The group of one TensorFlow op, from its name scope and type (``scope/.../name:Type``)."""
    low = name.lower()
    op_type = name.rsplit(":", 1)[-1]
    if "iterator" in low or op_type in ("IteratorGetNext", "OptionalGetValue"):
        return "data feeding"
    if "lookahead" in low or "/sgd/" in low or low.startswith("sgd/") or "optimizer" in low:
        return "optimizer + lookahead"
    if op_type.startswith(("ResourceApply", "AssignVariable", "AssignAddVariable", "AssignSubVariable")):
        return "optimizer + lookahead"
    backward = "gradient_tape" in low or "grad" in op_type.lower()
    if "Conv2D" in op_type or "conv2d" in op_type.lower():
        return "conv backward" if backward or "Backprop" in op_type else "conv forward"
    if "_bn/" in low or "batchnorm" in low or "batch_normalization" in low:
        return "batch norm backward" if backward else "batch norm forward"
    if not backward and ("random" in low or "augment" in low or "shifted" in low or "flip" in low):
        return "augmentation"
    return "other backward" if backward else "other forward"


def _xplane_ops(logdir: Path) -> dict[str, float]:
    """Seconds per op name (``scope/name:Type``) of the TensorFlow ops in a trace: each op's own time."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    seconds: dict[str, float] = {}
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:"):
                continue
            stat_names = {k: v.name for k, v in plane.stat_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    meta = plane.event_metadata[event.metadata_id]
                    op = _tf_op_name(meta, event, stat_names)
                    if op is not None:
                        seconds[op] = seconds.get(op, 0.0) + event.duration_ps * 1e-12
    return seconds


def _tf_op_name(meta, event, stat_names) -> str | None:
    """``name:Type`` where the event is a TensorFlow op's kernel (the trace's ``tf_op`` stat), else None."""
    for stat in (*meta.stats, *event.stats):
        if stat_names.get(stat.metadata_id) == "tf_op":
            return stat.str_value or None
    name = meta.name
    return name if ":" in name and "/" in name.split(":", 1)[0] else None


def run_tf(args) -> dict:
    import keras
    import tensorflow as tf

    from omnifuse.config import load_config
    from omnifuse.training import train

    steps, warmup, batch = args.steps, args.warmup, args.tf_batch_size
    times: list[float] = []
    logdir = Path(tempfile.mkdtemp(prefix="cifar10-profile-tf-"))

    class Trace(keras.callbacks.Callback):
        def on_train_batch_begin(self, step, logs=None):
            if step == warmup:
                tf.profiler.experimental.start(str(logdir))
            self.began = time.perf_counter()

        def on_train_batch_end(self, step, logs=None):
            if warmup <= step < warmup + steps:
                times.append(time.perf_counter() - self.began)
            if step == warmup + steps - 1:
                tf.profiler.experimental.stop()

    cfg = load_config(
        "cifar10-94",
        [
            f"data.limit_train={batch * (warmup + steps + 1)}",
            f"train.batch_size={batch}",
            "train.epochs=1",
            "train.verbose=0",
            f"train.precision={args.precision}",
        ],
    )
    train(cfg, runs_root=Path(tempfile.mkdtemp(prefix="cifar10-profile-runs-")), callbacks=[Trace()])
    ops = _xplane_ops(logdir)
    grouped: dict[str, float] = {}
    for op, s in ops.items():
        group = _tf_group(op)
        grouped[group] = grouped.get(group, 0.0) + s
    top = sorted(ops.items(), key=lambda kv: -kv[1])[: args.top]
    return _result(
        "omnifuse cifar10-94 (TensorFlow)",
        batch,
        times,
        grouped,
        precision=cfg.train.precision,
        top_ops_ms={k: round(1e3 * v / len(times), 2) for k, v in top},
    )


# ------------------------------------------------------------------------------------------ airbench94 (PyTorch)


def _torch_group(names: list[str]) -> str:
    """The group of one PyTorch op from its own name and its callers' (innermost first)."""
    if any(n.startswith("Optimizer.") or n == "lookahead" for n in names):
        return "optimizer + lookahead"
    if "loader.next" in names:
        return "data feeding"
    backward = any("Backward" in n or n.startswith("autograd::engine") for n in names)
    low = " ".join(names).lower()
    if "convolution" in low or "conv2d" in low:
        return "conv backward" if backward else "conv forward"
    if "batch_norm" in low or "batchnorm" in low:
        return "batch norm backward" if backward else "batch norm forward"
    return "other backward" if backward else "other forward"


def run_torch(args) -> dict:
    import runpy

    import torch

    from omnifuse.precision import check_precision

    ref = runpy.run_path(str(ROOT / "benchmarks" / "reference" / "airbench94.py"), run_name="airbench94")
    lib, utils = ref["lib_airbench94"], ref["utils"]
    torch.manual_seed(0)
    torch.set_num_threads(args.threads or os.cpu_count())
    precision = check_precision(args.precision)
    train, test, classes = ref["data_arrays"](args.data_dir, 0, args.limit_train, 2000)
    with tempfile.TemporaryDirectory() as folder:
        loader, test_loader = ref["loaders"](Path(folder), train, test, classes, lib.hyp["opt"]["batch_size"])

    # airbench augments the whole training set once per epoch (translate, flip): timed apart, spread over its steps
    loader.epoch = 1
    start = time.perf_counter()
    next(iter(loader))
    augment_per_step = (time.perf_counter() - start) / len(loader)

    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    marks: list[float] = []

    def on_step():
        if len(marks) == args.warmup:
            profiler.start()
        marks.append(time.perf_counter())

    update = utils.LookaheadState.update

    def traced_update(self, net, decay):
        with torch.profiler.record_function("lookahead"):
            return update(self, net, decay)

    loader.on_step = on_step
    utils.LookaheadState.update = traced_update
    epochs = (args.warmup + args.steps) / len(loader)
    import functools

    with ref["on_cpu"](test_loader, None, epochs, {}):
        lib.train94(
            loader, epochs=epochs, make_net=functools.partial(ref["cpu_net"], precision), verbose=False
        )
    marks.append(time.perf_counter())
    profiler.stop()
    utils.LookaheadState.update = update
    step_seconds = [b - a for a, b in zip(marks[args.warmup : -1], marks[args.warmup + 1 :])]

    grouped: dict[str, float] = {}
    by_name: dict[str, float] = {}
    for event in profiler.events():
        names, parent = [event.name], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        group = _torch_group(names)
        seconds = event.self_cpu_time_total * 1e-6
        grouped[group] = grouped.get(group, 0.0) + seconds
        by_name[event.name] = by_name.get(event.name, 0.0) + seconds
    grouped.pop("per-step overhead", None)
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[: args.top]
    return _result(
        "airbench94 (PyTorch)",
        loader.batch_size,
        step_seconds,
        grouped,
        extra_seconds={"augmentation": augment_per_step},
        precision=precision,
        threads=torch.get_num_threads(),
        top_ops_ms={k: round(1e3 * v / len(step_seconds), 2) for k, v in top},
    )


# ------------------------------------------------------------------------------------------ both, and the table


def table(results: list[dict]) -> str:
    """Markdown: per group the milliseconds per step and per image on each side."""
    head = "| group | " + " | ".join(
        f"{r['side']}: ms/step (batch {r['batch_size']}) | µs/image" for r in results
    )
    lines = [head + " |", "|---" * (1 + 2 * len(results)) + "|"]
    for group in (*GROUPS, "step (wall)"):
        cells = []
        for r in results:
            ms = r["step_ms"] if group == "step (wall)" else r["groups_ms"][group]
            cells += [f"{ms:.1f}", f"{1e3 * ms / r['batch_size']:.0f}"]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", choices=("tf", "torch", "both"), default="both")
    parser.add_argument("--steps", type=int, default=5, help="steps traced")
    parser.add_argument("--warmup", type=int, default=3, help="steps run before the trace starts")
    parser.add_argument("--precision", choices=("auto", "bfloat16", "float32"), default="auto")
    parser.add_argument("--tf-batch-size", type=int, default=256, help="cifar10-94's batch")
    parser.add_argument(
        "--limit-train", type=int, default=0, help="airbench's training images (0: all 50,000)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    parser.add_argument("--top", type=int, default=15, help="the most expensive ops listed per side")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--torch-python", default=sys.executable, help="a Python with torch and airbench")
    parser.add_argument("--json", help="write the result(s) here")
    args = parser.parse_args()
    if args.side == "tf":
        results = [run_tf(args)]
    elif args.side == "torch":
        results = [run_torch(args)]
    else:
        results = []
        options = [
            "--steps",
            args.steps,
            "--warmup",
            args.warmup,
            "--precision",
            args.precision,
            "--top",
            args.top,
        ]
        options += ["--tf-batch-size", args.tf_batch_size, "--limit-train", args.limit_train]
        options += ["--threads", args.threads, *(["--data-dir", args.data_dir] if args.data_dir else [])]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        for side, python in (("tf", sys.executable), ("torch", args.torch_python)):
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "side.json"
                cmd = [python, __file__, *map(str, options), "--side", side, "--json", str(out)]
                subprocess.run(cmd, check=True, env=env)
                results.extend(json.loads(out.read_text()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(table(results))
    for r in results:
        print(
            f"\n{r['side']}: {r['steps']} steps traced, precision {r['precision']}; most expensive ops (ms/step):"
        )
        for name, ms in r["top_ops_ms"].items():
            print(f"  {ms:9.1f}  {name}")


if __name__ == "__main__":
    main()

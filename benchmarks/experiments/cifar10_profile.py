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
import re
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


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Seconds in which at least one of these (start, end) intervals runs."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _result(side, batch, step_seconds, op_seconds, busy_seconds, augment_seconds=0.0, **info):
    """Per group its milliseconds per step: the step's busy time (some op running on some thread) shared out in
    proportion to each group's op time (threads run ops side by side, so op times add up to more than the wall
    time); overhead: the rest of the step's wall time. ``augment_seconds``: per step, work done outside the steps."""
    steps = len(step_seconds)
    wall, busy = 1e3 * sum(step_seconds) / steps, 1e3 * min(busy_seconds, sum(step_seconds)) / steps
    total = sum(op_seconds.values()) or 1.0
    groups = {g: busy * op_seconds.get(g, 0.0) / total for g in GROUPS}
    groups["per-step overhead"] = wall - busy
    groups["augmentation"] += 1e3 * augment_seconds
    return {
        "side": side,
        "batch_size": batch,
        "steps": steps,
        "step_ms": round(wall + 1e3 * augment_seconds, 2),
        "median_step_ms": round(1e3 * statistics.median(step_seconds), 2),
        "groups_ms": {g: round(v, 2) for g, v in groups.items()},
        "op_thread_ms": {g: round(1e3 * v / steps, 2) for g, v in sorted(op_seconds.items())},
        **info,
    }


# ------------------------------------------------------------------------------------------ omnifuse (TensorFlow)


OPTIMIZER_SCOPE = re.compile(r"(^|/)(sgd|adam|adamw|lookahead)(_\d+)?/")
BN_SCOPE = re.compile(r"_bn(_\d+)?/|batch_normalization|fusedbatchnorm")
# fastnet augments inside the step with ops right under the encoder's scope (no layer of its own)
ENCODER_OWN_OP = re.compile(r"image_encoder(_\d+)?/[^/]+(/[^/]+)?:[A-Za-z0-9]+$")
AUGMENT_TYPES = {
    "GatherV2",
    "SelectV2",
    "MirrorPad",
    "ReverseV2",
    "BroadcastTo",
    "Transpose",
    "Less",
    "Range",
}


def _tf_group(name: str) -> str:
    """The group of one TensorFlow op, from its name scope and type (``scope/.../name:Type``). The same rules
    suit any model omnifuse builds, but augmentation is found where fastnet does it."""
    low = name.lower()
    op_type = name.rsplit(":", 1)[-1]
    if low.startswith("iterator") or op_type in ("IteratorGetNext", "OptionalGetValue"):
        return "data feeding"
    if OPTIMIZER_SCOPE.search(low) or op_type.startswith(("ResourceApply", "Assign")):
        return "optimizer + lookahead"
    backward = "gradient_tape/" in low or op_type in ("AddN",) or "Grad" in op_type or "Backprop" in op_type
    if "Conv2D" in op_type:
        return "conv backward" if backward else "conv forward"
    if BN_SCOPE.search(low):
        return "batch norm backward" if backward else "batch norm forward"
    if not backward and ENCODER_OWN_OP.search(name):
        if op_type in AUGMENT_TYPES or "stateless_random" in low or op_type.startswith("StatelessRandom"):
            return "augmentation"
    return "other backward" if backward else "other forward"


# "scope/name:Type" (not "ExecutorState::Process"), and tf.data's own events
OP_EVENT = re.compile(r"^[^:]+:[A-Z_][A-Za-z0-9_]*$|^Iterator::|^IteratorGetNextOp::DoCompute$")


def _xplane_ops(logdir: Path) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """From a TensorFlow trace: seconds per op (``scope/name:Type``) of each op's own time (less the ops it ran
    inside it, e.g. a function call's), and every op's (start, end) in seconds."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    seconds: dict[str, float] = {}
    intervals: list[tuple[float, float]] = []
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in (p for p in space.planes if p.name.startswith("/host:")):
            for line in plane.lines:
                ops = []
                for event in line.events:
                    name = plane.event_metadata[event.metadata_id].name
                    if OP_EVENT.match(name):
                        start = line.timestamp_ns * 1e-9 + event.offset_ps * 1e-12
                        ops.append((start, start + event.duration_ps * 1e-12, name))
                stack: list[list] = []  # [end, name, own seconds] of the ops open at this point of the line
                for start, end, name in sorted(ops, key=lambda o: (o[0], -o[1])):
                    while stack and stack[-1][0] <= start:
                        _, done, own = stack.pop()
                        seconds[done] = seconds.get(done, 0.0) + own
                    if stack:
                        stack[-1][2] -= end - start  # the caller's own time leaves this op out
                    else:
                        intervals.append((start, end))
                    stack.append([end, name, end - start])
                for _, done, own in stack:
                    seconds[done] = seconds.get(done, 0.0) + own
    return seconds, intervals


def run_tf(args) -> dict:
    import keras
    import tensorflow as tf

    from omnifuse.config import load_config
    from omnifuse.precision import check_precision
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
        args.preset,
        [
            *args.set,
            f"data.limit_train={batch * (warmup + steps + 1)}",
            f"train.batch_size={batch}",
            "train.epochs=1",
            # traced, as in a real run: a training of at most 12 steps would otherwise run eagerly (train.eager)
            "train.eager=never",
            "train.verbose=0",
            f"train.precision={args.precision}",
        ],
    )
    train(cfg, runs_root=Path(tempfile.mkdtemp(prefix="cifar10-profile-runs-")), callbacks=[Trace()])
    ops, intervals = _xplane_ops(logdir)
    grouped: dict[str, float] = {}
    for op, s in ops.items():
        group = _tf_group(op)
        grouped[group] = grouped.get(group, 0.0) + s
    top = sorted(ops.items(), key=lambda kv: -kv[1])[: args.top]
    return _result(
        f"omnifuse {args.preset} (TensorFlow)",
        batch,
        times,
        grouped,
        _busy(intervals),
        precision=check_precision(cfg.train.precision),  # what "auto" became here
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
        loader, test_loader = ref["loaders"](Path(folder), train, test, classes, args.torch_batch_size)

    # airbench augments the whole training set once per epoch (translate; flip every other epoch), outside its
    # steps: epochs 1 and 2 timed (epoch 0 also normalises and pads once), spread over an epoch's steps
    next(iter(loader))
    augment = []
    for epoch in (1, 2):
        loader.epoch = epoch
        start = time.perf_counter()
        next(iter(loader))
        augment.append(time.perf_counter() - start)
    augment_per_step = statistics.mean(augment) / len(loader)

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
    intervals = []
    for event in profiler.events():
        if event.cpu_parent is None:
            intervals.append((event.time_range.start * 1e-6, event.time_range.end * 1e-6))
        names, parent = [event.name], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        group = _torch_group(names)
        seconds = event.self_cpu_time_total * 1e-6
        grouped[group] = grouped.get(group, 0.0) + seconds
        by_name[event.name] = by_name.get(event.name, 0.0) + seconds
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[: args.top]
    return _result(
        "airbench94 (PyTorch)",
        loader.batch_size,
        step_seconds,
        grouped,
        _busy(intervals),
        augment_seconds=augment_per_step,
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
    parser.add_argument("--preset", default="cifar10-94", help="omnifuse's side: this preset")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override of the preset's (repeatable)",
    )
    parser.add_argument("--torch-batch-size", type=int, default=1024, help="airbench94's batch")
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
        options += ["--tf-batch-size", args.tf_batch_size, "--torch-batch-size", args.torch_batch_size]
        options += ["--limit-train", args.limit_train, "--preset", args.preset]
        options += [f"--set={kv}" for kv in args.set]
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

"""airbench94 on the CPU: the fastest known CIFAR-10 trainer (Keller Jordan's, 94.01% in 3.83 s on an A100) as a
reference for ``omnifuse bench cifar10-94 --compare airbench94``.

Nothing of airbench is copied here: this script imports the PyPI package (``airbench==0.1.8``, the `airbench`
extra with ``torch==2.13.0``, a CPU build) and moves it to the CPU with a shim that leaves its algorithm as it is:
its network, patch-whitening initialisation, 9.9 epochs of batches of 1,024, Nesterov SGD with its decoupled
hyper-parameters and triangular schedule, lookahead every 5 steps, label smoothing, alternating flip and 2-pixel
translation, and test-time augmentation level 2 all run as the package defines them. What the shim changes:

- device: ``.cuda()`` and ``.half()`` do nothing while its network is made, so the weights stay float32 (batch
  norm is float32 in airbench too); the forward pass runs under ``torch.autocast('cpu', dtype=torch.bfloat16)``
  (bfloat16 where airbench computes in float16) and hands the loss float32 logits. Channels-last as airbench sets.
- timers: ``torch.cuda.Event`` measures with ``time.perf_counter`` and ``torch.cuda.synchronize`` does nothing
  (CPU ops are synchronous), so airbench's own total (whitening + training + TTA) is recorded as it counts it.
- data: CIFAR-10 from omnifuse's loader (the official archive in ``OMNIFUSE_DATA`` or ``--data-dir``), written in
  airbench's ``train.pt``/``test.pt`` form into a temporary folder: never downloaded. Its loader normalises to
  float16 as on the GPU; the pixels are then kept as float32, which the CPU computes natively.
- torchvision, of which airbench uses ``Normalize`` only, is replaced by a stub where it does not import (PyPI's
  torchvision does not load beside a CPU build of torch).

Per epoch the test accuracy without TTA (as airbench prints it) is recorded by omnifuse's recorder, the training
time per epoch leaving the evaluation out; the final metrics are airbench's TTA predictions. Run alone:

    python benchmarks/reference/airbench94.py --data-dir DATA --json out.json        # the full 9.9 epochs
    python benchmarks/reference/airbench94.py --epochs 0.5 --limit-train 5000 --limit-test 1000   # a quick check
"""

import functools
import os
import sys
import tempfile
import time
import types
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torch import nn

from omnifuse.bench import EpochRecorder, finish_reference, reference_parser
from omnifuse.data import cifar10
from omnifuse.evaluation import task_metrics
from omnifuse.precision import PRECISIONS, check_precision


def torchvision_or_stub() -> None:
    """airbench imports torchvision for ``transforms.Normalize`` (and for a download it never makes here)."""
    try:
        import torchvision  # noqa: F401

        return
    except Exception:  # ImportError, or PyPI's torchvision failing to load its operators beside torch+cpu
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]

    class Normalize:
        """(x - mean) / std per channel of an (N, C, H, W) tensor, as torchvision's on tensors."""

        def __init__(self, mean, std):
            self.mean, self.std = torch.as_tensor(mean), torch.as_tensor(std)

        def __call__(self, x):
            return (x - self.mean.to(x).view(-1, 1, 1)) / self.std.to(x).view(-1, 1, 1)

    package = types.ModuleType("torchvision")
    package.transforms = types.ModuleType("torchvision.transforms")
    package.transforms.Normalize = Normalize
    package.datasets = types.ModuleType("torchvision.datasets")  # no CIFAR10: a download would fail loudly
    sys.modules.update(
        {
            "torchvision": package,
            "torchvision.transforms": package.transforms,
            "torchvision.datasets": package.datasets,
        }
    )


torchvision_or_stub()
from airbench import lib_airbench94, utils  # noqa: E402  (after the stub)


class PerfEvent:
    """``torch.cuda.Event(enable_timing=True)`` on the CPU; every interval airbench adds to its total is kept."""

    intervals: list[float] = []

    def __init__(self, enable_timing: bool = True):
        self.at = None

    def record(self, stream=None):
        self.at = time.perf_counter()

    def elapsed_time(self, end: "PerfEvent") -> float:
        PerfEvent.intervals.append(end.at - self.at)
        return 1e3 * (end.at - self.at)


def _same(module, *args, **kwargs):
    return module


def cpu_net(precision: str = "bfloat16") -> nn.Module:
    """airbench94's network with float32 weights on the CPU, its forward pass under bfloat16 autocast (or in
    float32)."""
    with mock.patch.object(nn.Module, "half", _same), mock.patch.object(nn.Module, "cuda", _same):
        net = lib_airbench94.make_net94()
    if precision == "bfloat16":
        forward = net.forward

        def autocast_forward(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward(x).float()

        net.forward = autocast_forward
    return net


def loaders(folder: Path, train: tuple, test: tuple, classes: list[str], batch_size: int):
    """airbench's own train and test loaders over these arrays (uint8 NHWC images, int labels), on the CPU."""
    for name, (images, labels) in (("train.pt", train), ("test.pt", test)):
        torch.save(
            {
                "images": torch.from_numpy(np.ascontiguousarray(images)),
                "labels": torch.from_numpy(labels.astype(np.int64)),
                "classes": list(classes),
            },
            folder / name,
        )
    hyp = lib_airbench94.hyp
    train_loader = TimedLoader(
        str(folder), train=True, batch_size=batch_size, aug=hyp["aug"], altflip=True, gpu="cpu"
    )
    test_loader = utils.CifarLoader(str(folder), train=False, batch_size=2000, gpu="cpu")
    for loader in (train_loader, test_loader):
        loader.images = loader.images.float()  # float16 on the GPU; float32 is native here
    return train_loader, test_loader


class TimedLoader(utils.CifarLoader):
    """airbench's training loader, telling a recorder where epochs and steps begin (a step: its batch's fetch,
    forward, backward, optimizer step and lookahead, up to the next fetch)."""

    recorder = None  # an EpochRecorder, or None
    on_step = None  # called before each step (the profiler's step marker)

    def __iter__(self):
        if self.recorder is not None:
            self.recorder.on_epoch_begin(self.epoch)
        batches, step = super().__iter__(), 0
        while True:
            if self.on_step is not None:
                self.on_step()
            if self.recorder is not None:
                self.recorder.on_train_batch_begin(step)
            try:
                with torch.profiler.record_function("loader.next"):  # data feeding, for cifar10_profile.py
                    batch = next(batches)
            except StopIteration:
                if self.recorder is not None:
                    self.recorder.open = False  # no step after the epoch's last
                return
            yield batch
            if self.recorder is not None:
                self.recorder.on_train_batch_end(step)
            step += 1


class AirRecorder(EpochRecorder):
    """omnifuse's recorder, driven by airbench's loop: the accuracy of each epoch is airbench's (no TTA)."""

    def __init__(self, y_test: np.ndarray, batch_size: int):
        super().__init__(None, {"cifar10": y_test}, batch_size=batch_size)
        self.net = self.test_loader = None
        self.open = False  # a step began and has not ended

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch)
        self.open = True

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch)
        self.open = False

    def on_epoch_end(self, epoch, logs=None):
        if self.open:  # the run's last step: airbench's loop breaks off after it, asking for no next batch
            self.on_train_batch_end(-1)
        super().on_epoch_end(epoch)

    def _accuracies(self):
        return {"cifar10": EVALUATE(self.net, self.test_loader, tta_level=0)}, {}


EVALUATE = utils.evaluate  # airbench's own


@contextmanager
def on_cpu(test_loader, recorder: AirRecorder | None, epochs: float, outcome: dict):
    """airbench's ``train`` on the CPU: its timers and test loader replaced, its evaluation calls reported to
    ``recorder`` (one per epoch, then the final TTA one, whose logits and time go to ``outcome``)."""
    calls = []

    def evaluate(model, loader, tta_level=0):
        calls.append(tta_level)
        if len(calls) <= int(np.ceil(epochs)):  # the evaluation after each epoch
            recorder.net, recorder.test_loader = model, loader
            recorder.on_epoch_end(len(recorder.epochs))
            return recorder.epochs[-1]["test_accuracy"]["cifar10"]
        start = time.perf_counter()
        logits = utils.infer(model, loader, tta_level)
        outcome.update(logits=logits, tta_seconds=time.perf_counter() - start, tta_level=tta_level)
        return (logits.argmax(1) == loader.labels).float().mean().item()

    PerfEvent.intervals = []
    with (
        mock.patch.object(torch.cuda, "Event", PerfEvent),
        mock.patch.object(torch.cuda, "synchronize", lambda *a, **k: None),
        mock.patch.object(utils, "CifarLoader", lambda *a, **k: test_loader),
        mock.patch.object(utils, "evaluate", evaluate),
    ):
        yield
    outcome["airbench_seconds"] = sum(PerfEvent.intervals)
    outcome["whiten_seconds"] = PerfEvent.intervals[0] if PerfEvent.intervals else None


def data_arrays(data_dir, seed: int, limit_train: int, limit_test: int):
    """CIFAR-10 from omnifuse's loader: (train images, labels), (test images, labels), class names."""
    data = cifar10.load(data_dir)
    x_train, y_train = data["train"].inputs["image"], data["train"].labels["cifar10"]
    x_test, y_test = data["test"].inputs["image"], data["test"].labels["cifar10"]
    if limit_train:  # the same images as omnifuse's data.limit_train with train.seed = --seed
        keep = np.sort(np.random.default_rng(seed).permutation(len(x_train))[:limit_train])
        x_train, y_train = x_train[keep], y_train[keep]
    if limit_test:
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    return (x_train, np.asarray(y_train)), (x_test, np.asarray(y_test)), list(data.tasks["cifar10"])


def main() -> None:
    hyp = lib_airbench94.hyp["opt"]
    parser = reference_parser(__doc__, epochs=hyp["train_epochs"], batch_size=hyp["batch_size"])
    parser.add_argument("--limit-test", type=int, default=0, help="score on the first N test images (checks)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="bfloat16: autocast (airbench's float16 on the GPU); auto: bfloat16 where the CPU computes it "
        "natively (AMX, AVX512-BF16), float32 elsewhere, as omnifuse's presets decide",
    )
    args = parser.parse_args()
    precision = check_precision(args.precision)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train, test, classes = data_arrays(args.data_dir, args.seed, args.limit_train, args.limit_test)
    if len(train[0]) < args.batch_size:
        parser.error(
            f"--limit-train must keep at least one batch ({args.batch_size}). Received: {len(train[0])}"
        )
    recorder = AirRecorder(test[1], batch_size=2000)
    outcome: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        train_loader, test_loader = loaders(Path(folder), train, test, classes, args.batch_size)
    train_loader.recorder = recorder
    with on_cpu(test_loader, recorder, args.epochs, outcome):
        net = lib_airbench94.train94(
            train_loader, epochs=args.epochs, make_net=functools.partial(cpu_net, precision), verbose=True
        )

    probs = torch.softmax(outcome["logits"].float(), -1).numpy()
    final = task_metrics(test[1], probs, classes)
    print(
        f"airbench's own total (whitening + training + TTA) {outcome['airbench_seconds']:.1f} s; "
        f"TTA evaluation {outcome['tta_seconds']:.1f} s"
    )
    finish_reference(
        args,
        recorder,
        "cifar10",
        final,
        start,
        sum(p.numel() for p in net.parameters()),  # all: the whitening bias stops learning after 3 epochs
        airbench={
            "version": _version(),
            "seconds": round(outcome["airbench_seconds"], 3),
            "whiten_seconds": round(outcome["whiten_seconds"], 3),
            "tta_seconds": round(outcome["tta_seconds"], 3),
            "tta_level": outcome["tta_level"],
            "threads": torch.get_num_threads(),
            "precision": precision,  # bfloat16: autocast, float32 weights; channels-last either way
        },
    )


def _version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("airbench")
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

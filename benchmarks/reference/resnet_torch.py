"""The plain-PyTorch reference for training-step speed: omnifuse's `resnet` image model in a plain PyTorch loop.

The same network as ``omnifuse bench step-overhead`` trains (``model.image.encoder = "resnet"``, concat fusion, a
linear head): stem conv-BN-ReLU, one stage per width (a conv-BN-ReLU projection and 2x2 max-pool from the second
stage on, then residual blocks of two conv-BN-ReLU), global max pool, dense + ReLU, the fusion's dense + ReLU and a
linear head; BatchNorm with Keras's momentum and epsilon. Random flip and translation by up to 1/8 of the side
(bilinear, reflected border), as Keras's RandomFlip + RandomTranslation do, on each batch tensor; Adam at a constant
learning rate. What a user would write from the PyTorch tutorials, on the same CIFAR-10 arrays (omnifuse's loader),
timed by omnifuse's benchmark recorder so both sides are measured the same way (median steady step -> samples/s).
Needs ``torch==2.13.0`` (a CPU build). Run by ``omnifuse bench step-overhead --compare resnet_torch``, or alone:

    python benchmarks/reference/resnet_torch.py --epochs 2 --limit-train 6000 --data-dir DATA --json out.json
"""

import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.bench import EpochRecorder, finish_reference, reference_parser
from omnifuse.data import cifar10
from omnifuse.evaluation import task_metrics


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    # Keras BatchNormalization: momentum 0.99 (torch counts the other way: 0.01), epsilon 1e-3
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01),
        nn.ReLU(),
    ]


class ResNet(nn.Module):
    def __init__(self, widths, blocks, dense_units, fusion_dim, classes, dropout):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(3, widths[0]))
        self.proj = nn.ModuleList()
        self.blocks = nn.ModuleList()
        cin = widths[0]
        for s, width in enumerate(widths):
            self.proj.append(nn.Sequential(*conv_bn(cin, width), nn.MaxPool2d(2)) if s > 0 else nn.Identity())
            self.blocks.append(
                nn.ModuleList(
                    nn.Sequential(*conv_bn(width, width), *conv_bn(width, width)) for _ in range(blocks)
                )
            )
            cin = width
        self.dense = nn.Linear(cin, dense_units)
        self.drop = nn.Dropout(dropout)
        self.fusion = nn.Linear(dense_units, fusion_dim)
        self.head = nn.Linear(fusion_dim, classes)

    def forward(self, x):
        x = self.stem(x)
        for proj, blocks in zip(self.proj, self.blocks):
            x = proj(x)
            for block in blocks:
                x = x + block(x)
        x = torch.amax(x, dim=(2, 3))
        x = self.drop(F.relu(self.dense(x)))
        return self.head(F.relu(self.fusion(x)))


def augment(x: torch.Tensor, generator: torch.Generator, shift: float = 0.125) -> torch.Tensor:
    """Random horizontal flip and translation (bilinear, reflected border) of a float NCHW batch."""
    n = x.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(n, 2, generator=generator) * 2 - 1) * shift * 2  # grid units span 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float32 NCHW in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


class TorchRecorder(EpochRecorder):
    """omnifuse's recorder, driven by hand, with the test accuracy computed by the torch model."""

    def __init__(self, net: nn.Module, x_test: np.ndarray, y_test: np.ndarray, batch_size: int = 256):
        super().__init__(x_test, {"cifar10": y_test}, batch_size=batch_size)
        self.net = net

    def probabilities(self) -> np.ndarray:
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(self.test_inputs), self.batch_size):
                out.append(
                    F.softmax(self.net(to_tensor(self.test_inputs[i : i + self.batch_size])), -1).numpy()
                )
        self.net.train()
        return np.concatenate(out)

    def _accuracies(self) -> tuple[dict[str, float], dict]:  # what the recorder scores after each epoch
        pred = self.probabilities().argmax(axis=-1)
        return {"cifar10": float(np.mean(pred == self.test_labels["cifar10"]))}, {}


def main() -> None:
    parser = reference_parser(__doc__, epochs=2, batch_size=128, limit_train=6000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--widths", default="64,128,256")
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--dense-units", type=int, default=256)
    parser.add_argument("--fusion-dim", type=int, default=256)
    parser.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format (often faster on CPU)"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)

    data = cifar10.load(args.data_dir)
    x_train, y_train = data["train"].inputs["image"], data["train"].labels["cifar10"]
    x_test, y_test = data["test"].inputs["image"], data["test"].labels["cifar10"]
    if args.limit_train:  # the same images as omnifuse's data.limit_train with train.seed = --seed
        keep = np.sort(np.random.default_rng(args.seed).permutation(len(x_train))[: args.limit_train])
        x_train, y_train = x_train[keep], y_train[keep]

    widths = [int(w) for w in args.widths.split(",")]
    net = ResNet(widths, args.blocks, args.dense_units, args.fusion_dim, 10, dropout=0.0)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate, eps=1e-7)  # Keras's epsilon
    recorder = TorchRecorder(net, x_test, y_test)
    labels = torch.from_numpy(y_train.astype(np.int64))
    net.train()
    for epoch in range(args.epochs):
        recorder.on_epoch_begin(epoch)
        order = torch.randperm(len(x_train), generator=generator).numpy()
        for step, i in enumerate(range(0, len(order), args.batch_size)):
            recorder.on_train_batch_begin(step)
            idx = order[i : i + args.batch_size]
            x = augment(to_tensor(x_train[idx]), generator)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            recorder.on_train_batch_end(step)
        recorder.on_epoch_end(epoch)

    final = task_metrics(y_test, recorder.probabilities(), data.tasks["cifar10"])
    finish_reference(
        args, recorder, "cifar10", final, start, sum(p.numel() for p in net.parameters() if p.requires_grad)
    )


if __name__ == "__main__":
    main()

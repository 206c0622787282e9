"""Data sets as in-memory arrays, read from their official distribution formats.

Every loader returns a :class:`Dataset`: named splits, each a :class:`Split` holding one array per modality that the
data set has (``inputs``) and one integer label array per task (``labels``, ``-1`` where a sample has no label for
that task). A modality a data set does not have is simply absent from ``inputs``; the training pipeline fills it with
zeros and a presence mask of 0, so data sets with different modalities can be trained together in one model.
Within a data set, a sample may lack one of its modalities (an empty CSV cell): ``Split.masks`` then holds the
per-sample presence (1 = present) and the array holds zeros (or ``""``, or NaN for numbers) at the absent samples.

Array conventions: images ``uint8 (N, H, W, C)``; text ``object (N,)`` of ``str``; audio ``float32 (N, samples)``;
numbers ``float32 (N, F)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """One split of a data set, fully in memory."""

    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    ids: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    # modality -> float32 (N,) presence, 1 = present; a modality not named here is present for every sample
    masks: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        arrays = list(self.inputs.values()) or list(self.labels.values())
        return len(arrays[0]) if arrays else 0

    def take(self, index: np.ndarray) -> Split:
        """The samples at ``index`` (an integer array), in that order."""
        return Split(
            inputs={k: v[index] for k, v in self.inputs.items()},
            labels={k: v[index] for k, v in self.labels.items()},
            ids=None if self.ids is None else self.ids[index],
            extra={k: v[index] for k, v in self.extra.items()},
            masks={k: v[index] for k, v in self.masks.items()},
        )


@dataclass
class Dataset:
    """A data set: its splits (``train``, ``test``, sometimes ``val``), tasks and modalities."""

    name: str
    splits: dict[str, Split]
    tasks: dict[str, list[str]]  # task name -> class names, in label order
    modalities: dict[str, str]  # modality name -> kind: "image" | "text" | "audio" | "numbers"
    source: str = ""  # where the files were found, for reports
    # loader-specific facts a run records in meta.json, e.g. the table loader's "numbers" (feature names and
    # category vocabularies per numbers modality) and "skipped_rows" / "bad_rows"
    meta: dict = field(default_factory=dict)

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]


def modalities_per_task(splits: list[Split]) -> dict[str, list[str]]:
    """Per task, the modalities present in training samples that carry its label (sorted): what the task learnt to
    answer from. A joint model's task whose modalities are all absent from a request has nothing to answer from.

    Example: CIFAR-10 (image) and IMDb (text) trained together give ``{"cifar10": ["image"], "sentiment": ["text"]}``.
    """
    found: dict[str, set[str]] = {}
    for split in splits:
        for task, labels in split.labels.items():
            labelled = np.asarray(labels).reshape(-1) >= 0
            if not labelled.any():
                continue
            names = found.setdefault(task, set())
            for name in split.inputs:
                mask = split.masks.get(name)
                if mask is None or (np.asarray(mask)[labelled] > 0).any():
                    names.add(name)
    return {task: sorted(names) for task, names in found.items()}

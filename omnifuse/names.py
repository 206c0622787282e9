"""The names of a model's outputs and mask inputs, in one place: the model builder makes them, the data pipeline,
the evaluation, the predictor and the exporter read them. Saved models depend on them, so they never change.

- ``<modality>_mask``: the presence mask input of a modality (float (B,), 1 = present);
- ``modality_weights``: the fusion's per-sample modality weights output (B, n_modalities), where it has them;
- ``<task>__<modality>``: the auxiliary head of ``task`` on ``modality`` alone (``train.unimodal_loss``);
- ``<name>__member<i>``: output (or layer) ``name`` of ensemble member ``i`` (``model.members`` > 1).
"""

from __future__ import annotations

from collections.abc import Iterable

WEIGHTS_OUTPUT = "modality_weights"
MASK_SUFFIX = "_mask"
UNIMODAL_SEPARATOR = "__"
MEMBER_SEPARATOR = "__member"


def mask_name(modality: str) -> str:
    """The presence mask input of ``modality`` (``"image"`` -> ``"image_mask"``)."""
    return f"{modality}{MASK_SUFFIX}"


def unimodal_name(task: str, modality: str) -> str:
    """The output of ``task``'s auxiliary head on ``modality`` alone (``train.unimodal_loss``)."""
    return f"{task}{UNIMODAL_SEPARATOR}{modality}"


def member_name(name: str, member: int | str) -> str:
    """The output (or layer) ``name`` of ensemble member ``member`` (1, 2, ...; ``model.members`` > 1)."""
    return f"{name}{MEMBER_SEPARATOR}{member}"


def split_member(name: str) -> tuple[str, int | None]:
    """``"sentiment__member2"`` -> ``("sentiment", 2)``; a name without a member suffix -> ``(name, None)``."""
    base, sep, index = name.rpartition(MEMBER_SEPARATOR)
    if sep and base and index.isdigit():
        return base, int(index)
    return name, None


def member_index(name: str) -> int:
    """The member number of an ensemble member's output name (``"sentiment__member2"`` -> 2)."""
    member = split_member(name)[1]
    if member is None:
        raise ValueError(f"Expected an ensemble member's output name (<task>__member<i>). Received: {name!r}")
    return member


def unimodal_outputs(output_names: Iterable[str], tasks: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The model's auxiliary unimodal outputs: output name -> (task, modality), an ensemble member's included."""
    tasks = set(tasks)
    out = {}
    for name in output_names:
        base, _ = split_member(name)
        task, sep, modality = base.partition(UNIMODAL_SEPARATOR)
        if sep and task in tasks and modality:
            out[name] = (task, modality)
    return out


def member_outputs(output_names: Iterable[str], tasks: Iterable[str]) -> dict[str, str]:
    """An ensemble's per-member task outputs (``model.members`` > 1): output name -> task."""
    tasks = set(tasks)
    out = {}
    for name in output_names:
        base, member = split_member(name)
        if member is not None and base in tasks:
            out[name] = base
    return out


def auxiliary_outputs(output_names: Iterable[str], tasks: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """Every output trained with its own loss beside the task outputs: output -> (task, modality whose presence
    it needs, or None). Unimodal heads (``train.unimodal_loss``) and the members of an ensemble (``model.members``)."""
    output_names, tasks = list(output_names), list(tasks)
    out: dict[str, tuple[str, str | None]] = dict(unimodal_outputs(output_names, tasks))
    out.update({name: (task, None) for name, task in member_outputs(output_names, tasks).items()})
    return out


def reserved_names(modalities: Iterable[str]) -> set[str]:
    """Names a modality or task may not take beside ``modalities``: their masks and the weights output."""
    return {WEIGHTS_OUTPUT, *(mask_name(m) for m in modalities)}

"""``MODEL_CARD.md`` of an exported run: Hugging Face-style YAML front matter, the model and its pretrained
weights, the exact input arrays of the artifact's format, outputs, data, metrics (per class, calibration), training
hardware and time, intended use, limitations, the export check and how to load the artifact."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import keras

from omnifuse.config import read_run_config
from omnifuse.modalities import kind as modality_kind
from omnifuse.names import WEIGHTS_OUTPUT
from omnifuse.predictor import Predictor

MEDICAL_SETS = {"brain_mri", "pneumoniamnist", "retinamnist"}


def pretrained_weights(cfg, kinds: set[str]) -> list[str]:
    """The model card's lines on each pretrained encoder: its weights, the package and version they come from, its
    licence and how it was trained (empty when every encoder learned from scratch)."""
    from omnifuse.weights.catalog import SPECS

    chosen = {"image": cfg.model.image, "text": cfg.model.text, "audio": cfg.model.audio}
    rows = []
    for kind, section in chosen.items():
        if kind not in kinds:
            continue
        for name in section.encoder.split("+"):
            spec = SPECS.get(name)
            if spec is None:
                continue
            options = getattr(section, name)
            mode = getattr(options, "mode", "?")
            source = options.weights or f"the `{spec.package}=={spec.version}` package"
            rows.append(f"| {kind} | {spec.model} | {source} | {spec.licence} | {mode} |")
    if not rows:
        return []
    return [
        "## Pretrained encoders",
        "",
        "| modality | weights | from | licence | training |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "The weights' licences apply to this model too.",
        "",
    ]


def model_card(
    predictor: Predictor, format: str, artifact: str, info: dict[str, Any], diff: float, n_probe: int
) -> str:
    """The text of ``MODEL_CARD.md``: model, inputs, outputs, data, metrics, intended use, export check."""
    from omnifuse import __version__

    run_dir, meta = predictor.run_dir, predictor.meta
    cfg = read_run_config(run_dir)
    kinds = set(predictor.modalities.values())
    lines = _front_matter(predictor, meta, metrics := _read_metrics(run_dir))
    lines += [f"# Model card: {run_dir.name}", ""]
    lines += [
        f"A multimodal classifier trained with omnifuse {__version__}, exported as **{format}** "
        f"(`{artifact}`) on {_dt.date.today().isoformat()} with Keras {keras.__version__}.",
        "",
        "## Model",
        "",
    ]
    encoders = []
    if "image" in kinds:
        encoders.append(f"image: {cfg.model.image.encoder}")
    if "text" in kinds:
        encoders.append(f"text: {cfg.model.text.encoder} (vocabulary {cfg.model.text.vocab_size})")
    if "audio" in kinds:
        encoders.append(f"audio: {cfg.model.audio.encoder} on a log-mel spectrogram")
    if "numbers" in kinds:
        encoders.append(f"numbers: {cfg.model.tabular.encoder}")
    pretrained = pretrained_weights(cfg, kinds)
    lines += [
        f"- Encoders: {'; '.join(encoders)}",
        f"- Fusion: {cfg.model.fusion} "
        + (f"(dimension {cfg.model.fusion_dim})" if cfg.model.fusion_dim > 0 else "(no common projection)"),
        f"- Parameters: {predictor.model.count_params():,}",
        f"- Training: {meta.get('progress', {}).get('epochs_done', '?')} epochs, batch size "
        f"{cfg.train.batch_size}, learning rate {cfg.train.learning_rate:g} ({cfg.train.schedule}), seed "
        f"{cfg.train.seed}",
        "",
        *pretrained,
        "## Inputs",
        "",
        "One tensor per modality plus its presence mask `<name>_mask` (float32, 1 = present, 0 = absent). "
        "Any modality may be absent (mask 0, zeros or an empty string as its value), but each sample needs one.",
        "",
        "| input | kind | dtype | shape | what to feed |",
        "|---|---|---|---|---|",
    ]
    modalities = info["modalities"]
    for tensor in info["inputs"]:
        name = tensor["name"]
        if name in modalities:
            kind = modalities[name]["kind"]
            what = modality_kind(kind, name).feed(modalities[name])
        else:
            kind, what = "mask", f"1.0 if `{name.removesuffix('_mask')}` is present, else 0.0"
        shape = str(tuple("batch" if d is None else d for d in tensor["shape"])).replace("'", "")
        lines.append(f"| `{name}` | {kind} | {tensor['dtype']} | {shape} | {what} |")
    lines += ["", _feed_note(format, info), "", "## Outputs", ""]
    for task, classes in predictor.tasks.items():
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        lines.append(f"- `{task}`: softmax probabilities over {len(classes)} classes, in order: {shown}")
    if WEIGHTS_OUTPUT in info["outputs"]:
        lines.append(
            f"- `{WEIGHTS_OUTPUT}`: per sample, how much each modality counted (sums to 1; 0 when absent), in "
            f"order: {', '.join(info['outputs'][WEIGHTS_OUTPUT]['modalities'])}"
        )
    temps = info.get("temperatures") or {}
    if temps:
        lines.append(
            "- The task probabilities are calibrated: temperature-scaled by "
            + ", ".join(f"`{t}` T = {v:.3f}" for t, v in temps.items())
            + " (fitted on the validation split; see Calibration)."
        )
    lines += ["", "Class names and input specs are also in `model_info.json`.", "", "## Data", ""]
    lines += ["| data set | file | train | validation | test |", "|---|---|---|---|---|"]
    sources = meta.get("sources") or {}
    for name in meta.get("sets", []):
        counts = (meta.get("samples") or {}).get(name, {})
        # file names only: the folders are the trainer's
        src = " + ".join(Path(part.strip()).name for part in str(sources.get(name, "?")).split(" + "))
        lines.append(
            f"| {name} | {src} | {counts.get('train', '?')} | {counts.get('val', '?')} | {counts.get('test', '?')} |"
        )
    lines += ["", "## Metrics", ""]
    if metrics is None:
        lines.append(f"Not evaluated yet: `omnifuse evaluate {run_dir.name}` writes report/metrics.json.")
    else:
        lines += [
            "On the held-out test sets (`report/metrics.json` of the run):",
            "",
            "| task | data set | n | accuracy | macro-F1 | ROC-AUC |",
            "|---|---|---|---|---|---|",
        ]
        for task, m in metrics.get("tasks", {}).items():
            auc = "—" if m.get("roc_auc") is None else f"{m['roc_auc']:.4f}"
            lines.append(
                f"| {task} | {m.get('data_set', '?')} | {m.get('n', '?')} | {m.get('accuracy', 0):.4f} | "
                f"{m.get('macro_f1', 0):.4f} | {auc} |"
            )
    lines += _per_class_lines(metrics)
    lines += _calibration_lines(meta, metrics, temps)
    lines += _training_lines(meta)
    lines += [
        "",
        "## Intended use",
        "",
        "Classifying inputs like those of the data sets above, for research, teaching and demonstrations of "
        "multimodal fusion. Predictions on inputs unlike the training data (other cameras, languages, "
        "microphones, populations) are not validated; the modality weights say which input the model relied "
        "on, not why.",
    ]
    if MEDICAL_SETS & set(meta.get("sets", [])):
        lines += [
            "",
            "**Not a medical device.** Trained on a small public research data set; it must not be used to "
            "diagnose, screen or treat anyone.",
        ]
    lines += _limitations(predictor, meta)
    lines += [
        "",
        "## Export check",
        "",
        f"The artifact was reloaded and run on {n_probe} probe samples (every modality present, absent, and "
        f"alone); its outputs differ from the run's model by at most {diff:.2e} (tolerance {info['tolerance']:g}).",
        "",
        "## Loading",
        "",
        _loading(format, artifact, info),
        "",
    ]
    return "\n".join(lines)


PIPELINE_TAGS = {
    "image": "image-classification",
    "text": "text-classification",
    "audio": "audio-classification",
    "numbers": "tabular-classification",
}


def _front_matter(predictor: Predictor, meta: dict[str, Any], metrics: dict[str, Any] | None) -> list[str]:
    """Hugging Face-style YAML metadata: licence, data sets, metrics, task tags, languages, results."""
    kinds = sorted(set(predictor.modalities.values()))
    lines = [
        "---",
        "license: other  # see the data sets' and pretrained weights' licences below",
        "library_name: keras",
    ]
    lines.append("tags:")
    lines += [f"  - {tag}" for tag in ["omnifuse", "multimodal" if len(kinds) > 1 else kinds[0], *kinds]]
    if len(kinds) == 1:
        lines.append(f"pipeline_tag: {PIPELINE_TAGS[kinds[0]]}")
    lines.append("datasets:")
    lines += [f"  - {name}" for name in meta.get("sets", [])]
    if "text" in kinds:
        lines += ["language:", "  - en"]
    lines += ["metrics:", "  - accuracy", "  - f1", "  - roc_auc", "  - expected_calibration_error"]
    if metrics and metrics.get("tasks"):
        lines += ["model-index:", f"  - name: {predictor.run_dir.name}", "    results:"]
        for task, m in metrics["tasks"].items():
            lines += [
                f"      - task: {{type: {PIPELINE_TAGS.get(kinds[0]) if len(kinds) == 1 else 'multimodal'}, "
                f"name: {task}}}",
                f"        dataset: {{name: {m.get('data_set', '?')}, type: {m.get('data_set', '?')}, split: test}}",
                "        metrics:",
                f"          - {{type: accuracy, value: {m.get('accuracy') or 0:.4f}}}",
                f"          - {{type: f1, name: macro-F1, value: {m.get('macro_f1') or 0:.4f}}}",
            ]
    return lines + ["---", ""]


def _feed_note(format: str, info: dict[str, Any]) -> str:
    """How the arrays above are handed to the artifact of ``format``."""
    names = ", ".join(f"`{i['name']}`" for i in info["inputs"])
    how = {
        "keras": "`model.predict_on_batch({...})` with a dict of NumPy arrays",
        "savedmodel": "`model.serve({...})` with a dict of tensors (`tf.constant`)",
        "onnx": "`session.run(None, {...})` with a dict of NumPy arrays, each of exactly the dtype shown",
    }[format]
    return (
        f"The artifact takes every input above, by name ({names}), batch first: {how}. Numbers go in as one "
        "ordered float32 array per modality (encode a CSV row's columns as `model_info.json` lists them)."
    )


def _per_class_lines(metrics: dict[str, Any] | None) -> list[str]:
    tasks = {t: m["per_class"] for t, m in ((metrics or {}).get("tasks") or {}).items() if m.get("per_class")}
    if not tasks:
        return []
    lines = ["", "### Per class (test)"]
    for task, per_class in tasks.items():
        lines += [
            "",
            f"`{task}`:",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for name, c in per_class.items():
            lines.append(
                f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |"
            )
    return lines


def _calibration_lines(
    meta: dict[str, Any], metrics: dict[str, Any] | None, temps: dict[str, float]
) -> list[str]:
    fitted = ((meta.get("calibration") or {}).get("tasks")) or {}
    if not fitted:
        return ["", "## Calibration", "", "No temperature was fitted (the run has no validation split)."]
    tested = {t: m.get("calibration") or {} for t, m in ((metrics or {}).get("tasks") or {}).items()}
    lines = [
        "",
        "## Calibration",
        "",
        "One temperature per task, fitted on the validation split after training (probabilities "
        "`softmax(log(p) / T)`; the predicted class is unchanged). Expected calibration error (15 bins) and "
        "negative log-likelihood on the test split, before and after:",
        "",
        "| task | T | ECE before | ECE after | NLL before | NLL after | in this artifact |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, f in fitted.items():
        t = tested.get(task) or {}
        cell = {
            k: "—" if t.get(k) is None else f"{t[k]:.4f}"
            for k in ("ece_before", "ece_after", "nll_before", "nll_after")
        }
        lines.append(
            f"| {task} | {f['temperature']:.3f} | {cell['ece_before']} | {cell['ece_after']} | "
            f"{cell['nll_before']} | {cell['nll_after']} | {'applied' if task in temps else 'not applied'} |"
        )
    return lines


def _training_lines(meta: dict[str, Any]) -> list[str]:
    progress = meta.get("progress") or {}
    hardware = meta.get("hardware") or {}
    where = (
        f"{hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores"
        + (f", {hardware['accelerators']}" if hardware.get("accelerators") else "")
        if hardware
        else "not recorded by this run"
    )
    return [
        "",
        "## Training hardware and time",
        "",
        f"- Hardware: {where}",
        f"- Training time: {progress.get('train_seconds', 0):.0f} s over {progress.get('epochs_done', '?')} "
        f"epochs (data loading and set-up: {progress.get('setup_seconds', 0):.0f} s)",
    ]


def _limitations(predictor: Predictor, meta: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Limitations and out-of-scope uses",
        "",
        "- Out of scope: decisions about people (health, credit, employment, policing) and any use where a wrong "
        "answer causes harm; inputs unlike the training data (other sensors, languages, populations).",
        "- The probabilities are calibrated on the validation split only; on shifted data they may again be "
        "over-confident. Explanations (`predict --explain`) show which inputs moved the answer, not causes.",
        "- A missing modality is handled, but accuracy with fewer modalities is lower (see the evaluation "
        "report's robustness section).",
    ]
    sets = meta.get("sets", [])
    if len(sets) > 1 and len(predictor.tasks) > 1:
        lines.append(
            f"- A joint model of {len(sets)} data sets ({', '.join(sets)}): each task learnt only from its own "
            f"data set's samples and modalities. A task ({', '.join(f'`{t}`' for t in predictor.tasks)}) asked "
            "about a sample without the modality its data set has would answer from nothing: `predict` and the "
            'server mark it `"answerable": false` with a reason, but the exported artifact still outputs '
            "probabilities for it; read only the tasks whose modality you gave."
        )
    return lines


def _read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "report" / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _loading(format: str, artifact: str, info: dict[str, Any]) -> str:
    feed = ", ".join(f'"{i["name"]}": ...' for i in info["inputs"])
    if format == "keras":
        return (
            "```python\nimport omnifuse\nmodel = omnifuse.load('RUN_DIR')   # raw files in, answers out\n"
            "# or the bare Keras model (needs omnifuse installed for its layers):\n"
            "import keras, omnifuse.modelio\n"
            f"model = keras.saving.load_model('{artifact}')\n"
            f"probabilities = model.predict_on_batch({{{feed}}})\n```"
        )
    if format == "savedmodel":
        return (
            "```python\nimport tensorflow as tf   # omnifuse is not needed\n"
            f"model = tf.saved_model.load('{artifact}')\n"
            f"outputs = model.serve({{{feed}}})   # dict of tensors, batch first\n```"
        )
    return (
        "```python\nimport onnxruntime as ort   # neither omnifuse nor TensorFlow is needed\n"
        f"session = ort.InferenceSession('{artifact}')\n"
        f"outputs = session.run(None, {{{feed}}})\n```"
    )

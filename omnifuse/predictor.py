"""Predictions from raw inputs: image files/bytes/arrays and strings, any non-empty subset of the model's modalities.

>>> p = omnifuse.load("runs/cifar10-imdb")
>>> p.predict(image="cat.png", text="A wonderful film.")
{'tasks': {'cifar10': {'class': 'cat', 'probabilities': {...}}, ...}, 'modality_weights': {'image': 0.5, ...}}
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.evaluation import calibration
from omnifuse.inference import Inference
from omnifuse.limits import DEFAULT_LIMITS, InputLimits
from omnifuse.modalities import KINDS
from omnifuse.modalities import kind as modality_kind
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, mask_name
from omnifuse.precision import check_precision, model_precision
from omnifuse.rundir import read_meta


def _read_run_meta(run_dir: Path) -> dict[str, Any]:
    """The run's meta.json; a damaged one is an :class:`OmnifuseError` naming it, not a JSON traceback."""
    try:
        meta = read_meta(run_dir)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OmnifuseError(
            f"Expected a run directory with a readable meta.json. Received: '{run_dir / 'meta.json'}', "
            f"which is damaged ({exc}); restore it or train the run again"
        ) from exc
    missing = [k for k in ("modalities", "tasks") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise OmnifuseError(
            f"Expected a run directory whose meta.json names the {missing[0]}. Received: '{run_dir / 'meta.json'}' "
            f"without {missing[0]!r}; restore it or train the run again"
        )
    return meta


def _load_model(path: Path, precision: str | None):
    """The run's model; a truncated archive or one safe_mode refuses is an :class:`OmnifuseError` naming it."""
    try:
        return load_model(path, precision, compile=False)  # it answers: no optimizer, losses or metrics
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise OmnifuseError(
            f"Expected a complete .keras model file. Received: '{path}', which is not a readable archive "
            f"({type(exc).__name__}: {exc}); it may be truncated: restore it or train the run again"
        ) from exc
    except TypeError as exc:
        found = re.search(r"'registered_name': 'omnifuse_custom>(\w+)'", str(exc))
        if found is None:
            raise
        module = re.search(rf"'module': '([\w.]+)', 'class_name': '{found[1]}'", str(exc))
        raise OmnifuseError(
            f"Expected the encoder class {found[1]!r} (from module {module[1] if module else '?'!r}) to be "
            f"registered before loading "
            f"'{path}'. Import the module of yours that calls omnifuse.register_encoder first"
        ) from exc
    except ValueError as exc:
        if "safe_mode" not in str(exc):
            raise
        raise OmnifuseError(
            f"Refused to load '{path}': it holds Python code (a Lambda layer or a function), which omnifuse never "
            "runs from a file (Keras safe_mode). Rebuild the model from omnifuse's own layers"
        ) from exc


class Predictor:
    """A trained run, ready to answer. ``omnifuse.load(run_dir)`` returns one.

    ``precision``: ``"float32"``, ``"bfloat16"`` (layers compute in bfloat16, several times faster on CPUs with AMX
    or AVX512-BF16; probabilities then differ from float32 by up to ~0.02), ``"auto"`` (bfloat16 where the hardware
    computes it natively, else float32), or ``None``: the precision the model was trained in. See
    :mod:`omnifuse.precision`. ``limits``: the largest image, recording and text accepted
    (:class:`~omnifuse.limits.InputLimits`). ``calibrated``: apply the temperatures fitted on the validation split
    after training (:mod:`omnifuse.evaluation.calibration`; a run without them answers as its model does);
    ``False`` gives the model's raw probabilities.
    """

    def __init__(
        self,
        run_dir: str | Path,
        precision: str | None = None,
        limits: InputLimits | None = None,
        calibrated: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.limits = limits or DEFAULT_LIMITS
        if precision is not None:
            check_precision(precision)
        model_path = self.run_dir / "model.keras"
        if not model_path.is_file():
            raise OmnifuseError(
                f"Expected a finished run directory with model.keras. Received: '{self.run_dir}' "
                "(train it first, or resume it with `omnifuse train --resume`)"
            )
        self.meta = _read_run_meta(self.run_dir)
        self.model = _load_model(model_path, precision)
        self.precision = model_precision(self.model)
        # a one-off prediction computes eagerly; a server's stream of requests runs a traced graph after a few
        self.inference = Inference(self.model)
        self.modalities: dict[str, str] = self.meta["modalities"]
        self.tasks: dict[str, list[str]] = self.meta["tasks"]
        self.image_shape = tuple(self.meta.get("image_shape") or (32, 32, 3))
        audio = self.meta.get("audio") or {}
        self.sample_rate = int(audio.get("sample_rate", 8000))
        self.num_samples = int(audio.get("num_samples", 8000))
        # numbers modality -> its features and, for a CSV, its columns (kinds, category vocabularies)
        self.numbers: dict[str, dict] = self.meta.get("numbers") or {}
        # task -> temperature applied to its probabilities (empty: raw probabilities)
        self.temperatures: dict[str, float] = calibration.temperatures(self.meta) if calibrated else {}
        # task -> the modalities it learnt to answer from (a run that did not record them: all of them)
        learnt = self.meta.get("task_modalities") or {}
        self.task_modalities = {t: list(learnt.get(t, self.modalities)) for t in self.tasks}

    def _column(self, name: str, kind: str, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """One modality's array and presence mask: its kind's ``decode`` (omnifuse/modalities)."""
        if kind not in KINDS:
            raise OmnifuseError(f"Modality kind {kind!r} of {name!r} is not supported by this predictor.")
        return KINDS[kind].decode(name, values, limits=self.limits, **self.facts(name))

    def _group_columns(self, inputs: dict[str, Any], batch: bool) -> dict[str, Any]:
        """Keywords named after a numbers modality's columns (``age=31``), gathered into its dicts."""
        owners = {c["name"]: m for m, spec in self.numbers.items() for c in spec.get("columns", [])}
        out: dict[str, Any] = {}
        for key, value in inputs.items():
            owner = owners.get(key) if key not in self.modalities else None
            if owner is None:
                out[key] = value
                continue
            if owner in inputs:
                raise OmnifuseError(
                    f"Expected {owner!r} as one dict or array, or column by column. "
                    f"Received both {owner!r} and {key!r}"
                )
            if not batch:
                out.setdefault(owner, {})[key] = value
                continue
            rows = out.setdefault(owner, [{} for _ in value])
            if len(rows) != len(value):
                raise OmnifuseError(
                    f"Expected inputs of equal length. Received lengths {len(rows)} and {len(value)}"
                )
            for row, cell in zip(rows, value):
                if cell is not None:
                    row[key] = cell
        return out

    def predict(
        self, table: Any = None, /, batch: bool = False, explain: bool = False, **inputs: Any
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict from keyword inputs named after the model's modalities (``image=``, ``text=``), or for every
        row of a pandas DataFrame ``table`` (the training CSV's columns: a DataFrame of answers comes back, see
        :meth:`predict_table`).

        A single sample by default; with ``batch=True`` each input is a list (``None`` = absent for that sample)
        and a list of answers comes back. A ``numbers`` modality (``tabular``, from a CSV) takes a dict of
        column -> value or a 1-D array of its features; its columns may also be keywords (``age=31``).
        Images and audio may be paths, bytes or arrays.

        ``explain=True`` adds ``"explanation"`` to each answer: per task, the predicted class and per present
        modality what made it (an image's heat map, a score per word, per audio segment, per column; see
        :mod:`omnifuse.evaluation.explain`). It costs about ``steps`` (16) forward and backward passes per sample
        and one forward pass per word of text.
        """
        if table is not None:
            if inputs or batch or explain:
                raise OmnifuseError("Expected a table or keyword inputs. Received both")
            return self.predict_table(table).to_frame()
        feed = self.encode(batch, **inputs)
        answers = self.predict_feed(feed)
        if explain:
            for answer, found in zip(answers, self.explain_feed(feed)):
                answer["explanation"] = found
        return answers if batch else answers[0]

    def answerable(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per task, which samples of ``feed`` give at least one of the modalities it learnt to answer from (a
        joint model's task with none of its inputs would answer from nothing, however confident it looks)."""
        return {
            task: np.any([feed[mask_name(m)] > 0 for m in names], axis=0)
            if names
            else np.zeros(len(feed[mask_name(next(iter(self.modalities)))]), bool)
            for task, names in self.task_modalities.items()
        }

    def _unanswerable(self, task: str) -> dict[str, Any]:
        names = self.task_modalities[task]
        return {
            "answerable": False,
            "class": None,
            "reason": f"no input to answer from: {task!r} answers from {' or '.join(names) or 'nothing'}, "
            "and none was given",
        }

    def predict_table(
        self,
        table: Any,
        id_column: str | None = None,
        skip_bad_rows: bool = False,
        allow_outside_paths: bool = False,
    ):
        """Answers for every row of a CSV file (a path) or a pandas DataFrame with the training CSV's columns: a
        :class:`~omnifuse.predict_table.TableAnswers` (``.to_frame()``, ``.write_csv(path)``, ``.skipped``).
        ``id_column`` (default: the training CSV's id column, where the table has it) is kept in the answers; a bad
        row is an error unless ``skip_bad_rows``. See :mod:`omnifuse.predict_table`.

        >>> load("runs/pets").predict_table("new.csv", skip_bad_rows=True).write_csv("predictions.csv")
        """
        from omnifuse import predict_table

        if isinstance(table, (str, Path)):
            return predict_table.predict_csv(
                self,
                table,
                id_column=id_column,
                skip_bad_rows=skip_bad_rows,
                allow_outside_paths=allow_outside_paths,
            )
        return predict_table.predict_frame(self, table, id_column=id_column, skip_bad_rows=skip_bad_rows)

    def encode_column(self, name: str, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """One modality's input array and presence mask for ``values`` (``None`` = absent), as :meth:`encode`
        makes them."""
        if name not in self.modalities:
            raise OmnifuseError(f"Unknown modality {name!r}. This model takes: {', '.join(self.modalities)}")
        return self._column(name, self.modalities[name], values)

    def explain_feed(self, feed: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Explanations (one per sample, JSON-ready: lists and floats) of the predicted classes for arrays made by
        :meth:`encode`."""
        from omnifuse.evaluation.explain import Explainer, jsonable

        if getattr(self, "_explainer", None) is None:
            features = {m: list(spec.get("features", [])) for m, spec in self.numbers.items()}
            self._explainer = Explainer(self.model, self.modalities, features, sample_rate=self.sample_rate)
        found = self._explainer.explain(feed, tasks=list(self.tasks))
        answerable = self.answerable(feed)
        for i, sample in enumerate(found):
            for task in list(sample):
                if not answerable[task][i]:  # nothing to explain: the task had no input
                    del sample[task]
                    continue
                sample[task]["class"] = self.tasks[task][sample[task]["class_index"]]
        return [jsonable(sample) for sample in found]

    def encode(self, batch: bool = False, **inputs: Any) -> dict[str, np.ndarray]:
        """The model's input arrays (one per modality, plus its presence mask) for ``predict``'s inputs.

        Decoding is the slow, error-prone half of a prediction: the server runs it per request (so an error names
        the request's field) and batches only :meth:`predict_feed`. Feeds of several requests concatenate.
        """
        inputs = self._group_columns(inputs, batch)
        unknown = [k for k in inputs if k not in self.modalities]
        if unknown:
            columns = [c["name"] for spec in self.numbers.values() for c in spec.get("columns", [])]
            raise OmnifuseError(
                f"Unknown modality {unknown[0]!r}.{did_you_mean(unknown[0], [*self.modalities, *columns])} "
                f"This model takes: {', '.join(self.modalities)}"
                + (f" (and the columns {', '.join(columns)})" if columns else "")
            )
        columns = {k: (v if batch else [v]) for k, v in inputs.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise OmnifuseError(f"Expected inputs of equal length. Received lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        feed = {}
        for name, kind in self.modalities.items():
            arr, mask = self._column(name, kind, columns.get(name, [None] * n))
            feed[name], feed[mask_name(name)] = arr, mask
        present = sum(feed[mask_name(m)] for m in self.modalities) if n else np.zeros(0)
        if n == 0 or (present == 0).any():
            raise OmnifuseError(
                f"Expected at least one modality per sample ({', '.join(self.modalities)}). Received: none"
            )
        return feed

    def _run(self, feed: dict[str, np.ndarray], chunk: int = 256) -> dict[str, np.ndarray]:
        # Inference runs a traced predict_on_batch after its first few calls; model.predict builds a data
        # pipeline per call, which costs tens of times more than the model itself for a server's one-sample requests.
        # the heads compute in float32 in either precision, so probabilities sum to 1
        out = {k: np.asarray(v, dtype=np.float32) for k, v in self.inference.over(feed, chunk).items()}
        return calibration.apply(out, self.temperatures)

    def predict_feed(self, feed: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        """Answers (one per sample) for arrays made by :meth:`encode`: per task ``"answerable": true``, the class and
        the probabilities; or, where none of the modalities the task learnt from was given (a joint model's
        ``cifar10`` asked about a review), ``"answerable": false``, ``"class": null`` and a ``"reason"``."""
        n = len(feed[mask_name(next(iter(self.modalities)))])
        out = self._run(feed)
        answerable = self.answerable(feed)
        answers = []
        order = sorted(self.modalities)
        for i in range(n):
            answer: dict[str, Any] = {"tasks": {}}
            for task, classes in self.tasks.items():
                if not answerable[task][i]:
                    answer["tasks"][task] = self._unanswerable(task)
                    continue
                probs = out[task][i]
                answer["tasks"][task] = {
                    "answerable": True,
                    "class": classes[int(probs.argmax())],
                    "probabilities": {c: float(p) for c, p in zip(classes, probs)},
                }
            if WEIGHTS_OUTPUT in out:
                answer["modality_weights"] = {m: float(w) for m, w in zip(order, out[WEIGHTS_OUTPUT][i])}
            answer["modalities_used"] = [m for m in order if feed[mask_name(m)][i] > 0]
            answers.append(answer)
        return answers

    def facts(self, name: str) -> dict[str, Any]:
        """What a modality of this model takes: the keyword arguments of its kind's ``describe``, ``example``,
        ``decode`` and ``warm_up`` (omnifuse/modalities)."""
        spec = self.numbers.get(name) or {"features": []}
        return dict(
            image_shape=self.image_shape,
            sample_rate=self.sample_rate,
            num_samples=self.num_samples,
            spec=spec,
        )

    def metadata(self) -> dict[str, Any]:
        """What this model takes and answers: modalities with their expected inputs, tasks with class names.

        Example: ``load(run).metadata()["modalities"]["image"]["shape"] == [32, 32, 3]``.
        """
        modalities: dict[str, dict[str, Any]] = {}
        for name, kind in self.modalities.items():
            modalities[name] = {"kind": kind, **modality_kind(kind, name).describe(**self.facts(name))}
        return {
            "run": self.run_dir.name,
            "modalities": modalities,
            "tasks": {task: list(classes) for task, classes in self.tasks.items()},
            "task_modalities": {task: list(names) for task, names in self.task_modalities.items()},
            "modality_weights": WEIGHTS_OUTPUT in self.model.output_names,
            "precision": self.precision,
            "temperatures": dict(self.temperatures),
        }


def load(
    run_dir: str | Path,
    precision: str | None = None,
    limits: InputLimits | None = None,
    calibrated: bool = True,
) -> Predictor:
    """Load a trained run for prediction (``precision``: ``"float32"``, ``"bfloat16"``, or ``None`` for the
    precision it was trained in; ``limits``: :class:`~omnifuse.limits.InputLimits`; ``calibrated=False``: the
    model's probabilities without the run's fitted temperatures)."""
    return Predictor(run_dir, precision, limits, calibrated)

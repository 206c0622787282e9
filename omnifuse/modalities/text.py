"""Text: one string per sample (B,), vectorized inside the model; corruption drops whitespace tokens."""

from __future__ import annotations

import re

from omnifuse.modalities.image import _digest
from omnifuse.modalities.numbers import CATEGORY_MAX_LENGTH

DTYPE = "string"
CORRUPTION = "token dropout rate"
MAX_LEVEL = 1.0  # every token dropped
LEVELS = (0.0, 0.25, 0.5, 0.75, MAX_LEVEL)
# a vocabulary learnt from the training texts tokenises it inside the model: training fits one over every text
# modality, and an encoder checkpoint is only valid for the vocabulary options it was trained with
VOCABULARY = True
CELL = "text"  # a CSV cell holds the text itself (a folder's .txt file is read into it)
SUFFIXES = (".txt",)  # the files of a folder that hold texts
REQUEST = "text"  # a request sends a string (or a UTF-8 text file)
EXPLAIN = (
    "word_occlusion"  # how omnifuse/evaluation/explain.py scores a sample: no gradient reaches the words
)
CONTENT_TYPES = ("text/plain",)
COLUMN_KINDS = ("text",)  # a table's column of texts (a folder's .txt files)
# a value that looks like a file path: a text column of these holds files of a kind omnifuse does not know
PATH_LIKE = re.compile(r"^(?:[A-Za-z]:)?[^\s]*[/\\][^\s]*$|^[^\s/\\]+\.[A-Za-z0-9]{1,5}$")


def sample_shape(**_) -> tuple[int, ...]:
    return ()


def read_cell(cell, files, column_kind: str = "text"):
    """A table's text cell (the text itself, or a folder's .txt file, read through ``files``: the loader's
    :class:`omnifuse.data.cells.Decoder`), or None when the text is empty (the sample lacks the modality)."""
    from pathlib import Path

    from omnifuse.data.decode import check_text, read_text

    if isinstance(cell, Path):  # a folder's file
        data = files.file(cell).read_bytes()
        value = read_text(cell) if data.strip() else ""
    else:
        value = check_text(cell, "the text")
    return value if value.strip() else None


def column_array(n: int, files):
    """The array a table's text column fills: n empty strings."""
    import numpy as np

    return np.array([""] * n, dtype=object)


def id_reason(filled: list[str], column_kind: str) -> str | None:
    """Why a column of ``filled`` texts reads as an id (each a different single word), else None; paths are
    files of a kind omnifuse does not know (:func:`warn_column` says so), not ids."""
    if len(set(filled)) != len(filled):
        return None
    short = all(len(v) <= CATEGORY_MAX_LENGTH and not any(c.isspace() for c in v) for v in filled)
    if short and not any(PATH_LIKE.match(v) for v in filled):
        return "every value is a different single word"
    return None


def warn_column(path, column: str, values: list[str], log) -> bool:
    """Warn on ``log`` (and say True) when most values of a column read as text look like file paths: a column
    of files in a format omnifuse does not know, or with a few odd names, would otherwise be trained on as
    strings."""
    filled = [v.strip() for v in values if v.strip()]
    looks = [v for v in filled if PATH_LIKE.match(v)]
    if not filled or len(looks) < 0.8 * len(filled):
        return False
    log.warning(
        "Column %r of '%s' is read as text, but %d of its %d values look like file paths (e.g. %r); if it holds "
        "files, give its kind in data.kinds (image or audio) and check the values, else set it to ignore",
        column,
        path,
        len(looks),
        len(filled),
        looks[0],
    )
    return True


def blank(batch, shape=()):
    import tensorflow as tf

    return tf.fill([batch], "")


def corrupt(value, level, seed):
    """``value`` (B,) strings with each whitespace token dropped with probability ``level`` (B,)."""
    import tensorflow as tf

    tokens = tf.strings.split(value)
    draw = tf.random.stateless_uniform(tf.shape(tokens.flat_values), seed=seed)
    keep = tokens.with_flat_values(draw >= tf.gather(level, tokens.value_rowids()))
    return tf.strings.reduce_join(tf.ragged.boolean_mask(tokens, keep), axis=1, separator=" ")


WORDS = ("a", "wonderful", "dull", "film", "great", "awful", "story", "not", "bad", "the")


def describe(**_) -> dict:
    return {"expects": "UTF-8 text; empty text counts as absent"}


def example(n: int, rng, **_):
    import numpy as np

    return np.array([" ".join(rng.choice(WORDS, 8)) for _ in range(n)], dtype=object)


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    return "form", "A wonderful, moving film with a great cast."


def feed(info: dict) -> str:
    return info.get("expects", "")


def decode(name: str, values: list, *, limits, **_):
    """The model's (B,) string array and (B,) presence mask for ``values`` (``None`` or empty text: absent)."""
    import numpy as np

    from omnifuse.data.decode import check_text
    from omnifuse.errors import OmnifuseError

    mask = np.array([v is not None for v in values], dtype=np.float32)
    out = np.array(["" if v is None else v for v in values], dtype=object)
    for i, value in enumerate(values):
        if value is not None and not isinstance(value, str):
            raise OmnifuseError(f"Expected text as a string for {name!r}. Received: {type(value).__name__}")
        if value is not None:
            check_text(value, f"the text {name!r}", limits.max_text_chars)
        if value is not None and not value.strip():
            mask[i] = 0.0  # an empty string is an absent text
    return out, mask


def warm_up(**_):
    """One sample a server predicts on before its first request."""
    return "warm up"


def bad_requests(name: str, info: dict, rng) -> dict[str, tuple[str, object]]:
    """Values a server must refuse with a 4xx: a lone surrogate in JSON, Latin-1 bytes in a form, empty text
    alone (text only: empty text is absent)."""
    return {
        # json.dumps escapes the lone surrogate as \udce9: valid JSON, not encodable text
        "lone_surrogate_json": ("json", "caf\udce9"),
        "not_utf8_multipart": ("part", (None, "café".encode("latin-1"), None)),
        "empty_alone": ("json", ""),
    }


def show(value, why: dict, path=None, **_) -> dict:
    """One text as the report shows it: the words (or spans) its explanation scored, their scores, its length."""
    text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return {
        "words": list(why["words"]),
        "scores": [float(s) for s in why["scores"]],
        "n_words": len(text.split()),
    }


_WORDS = re.compile(r"\w+")


def duplicate_keys(values, threshold: float) -> list[tuple]:
    """Each text's (exact, near) duplicate keys: a hash of it, and its words lower-cased, without punctuation or
    extra spaces."""
    return [(_digest(str(v).encode()), " ".join(_WORDS.findall(str(v).lower()))) for v in values]


def glimpse(value, name: str, folder, stem: str, *, chars: int = 160, **_) -> str:
    """One text in a Markdown table cell: its first ``chars`` characters on one line."""
    text = " ".join(str(value).split())
    text = text[:chars] + ("…" if len(text) > chars else "")
    return f"{name}: “{text.replace('|', '/')}”"


def as_input(array):
    """A data set's texts (N,) as the model's input: an object array, which goes to tf.string as it is (astype(str)
    would pad every review to the longest)."""
    import numpy as np

    return array.astype(object) if len(array) else np.zeros((0,), dtype=str)

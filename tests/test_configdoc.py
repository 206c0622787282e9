"""The config reference: every key documented in the code, and docs/config.md generated from it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from omnifuse import configdoc

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_key_has_a_comment():
    missing = configdoc.undocumented()
    assert not missing, (
        "Config keys without a comment (write one beside or above the field, in omnifuse/config.py or the "
        f"encoder's config dataclass): {', '.join(missing)}"
    )


def test_docs_config_md_is_the_generators_output():
    written = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert written == configdoc.render(), "docs/config.md is stale: run `make docs` and commit it"


def test_reference_lists_every_section_and_key_with_its_default():
    from omnifuse.config import Config

    text = configdoc.render()
    paths = [path for path, _, _ in configdoc.sections()]
    assert paths[:3] == ["", "data", "model"] and "model.image.cnn" in paths and "model.text.nb" in paths
    for path in paths[1:]:
        assert f"## `{path}`\n" in text
    default = Config().train
    assert f"| `epochs` | `{default.epochs}` |" in text
    assert '| `sets` | `["cifar10"]` |' in text  # a tuple default, written as TOML
    assert '`"float32"`, `"bfloat16"`, `"auto"`' in text  # a Literal's allowed values


# ------------------------------------------------------------------ the walker on dataclasses of other shapes


@dataclasses.dataclass(frozen=True)
class _Inner:
    """An inner section."""

    width: int = (
        8  # a comment inside the parentheses that a formatter adds around a value whose line and comment are too long
    )  # fmt: skip
    # a comment above the field,
    # on two lines
    depth: int = 2
    words: tuple[str, ...] = dataclasses.field(default_factory=lambda: ("a", "b"))  # from a default_factory
    bare: int = 0


_Made = dataclasses.make_dataclass(
    "_Made",
    [
        ("kind", typing.Literal["x", "y"], dataclasses.field(default="x")),  # which kind
        # the inner section, described here
        ("inner", _Inner, dataclasses.field(default_factory=_Inner)),
        ("other", _Inner, dataclasses.field(default_factory=_Inner)),
        ("noted", int, dataclasses.field(default=3, metadata={"doc": "from the field's metadata"})),
    ],
    frozen=True,
)


@dataclasses.dataclass(frozen=True)
class _Outer:
    made: _Made = dataclasses.field(default_factory=_Made)  # a section made by make_dataclass


def test_comments_trailing_inside_parentheses_and_above():
    comments = configdoc.field_comments(_Inner)
    assert comments["width"] == (
        "a comment inside the parentheses that a formatter adds around a value whose line and comment are too long"
    )
    assert comments["depth"] == "a comment above the field, on two lines"
    assert comments["words"] == "from a default_factory"
    assert comments["bare"] == ""


def test_make_dataclass_sections_read_the_call_comments_literals_and_defaults():
    found = {path: keys for path, _, keys in configdoc.sections(_Outer)}
    assert list(found) == ["", "made", "made.inner", "made.other"]
    made = {key.name: key for key in found["made"]}
    assert made["kind"].description == "which kind" and made["kind"].choices == ("x", "y")
    assert made["inner"].description == "the inner section, described here"
    assert made["other"].description == "An inner section."  # no comment: the section's own docstring
    assert made["noted"].description == "from the field's metadata"
    inner = {key.name: key for key in found["made.inner"]}
    assert inner["words"].default == ("a", "b")
    assert configdoc.undocumented(_Outer) == ["made.inner.bare", "made.other.bare"]
    text = configdoc.render(_Outer)
    assert '| `kind` | `"x"` | One of `"x"`, `"y"`. which kind |' in text
    assert '| `words` | `["a", "b"]` |' in text


def test_cells_escape_pipes_and_angle_brackets():
    assert configdoc._cell("a | b\n  <name>") == "a \\| b &lt;name>"

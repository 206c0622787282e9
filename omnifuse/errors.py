"""The one exception type for user mistakes: bad input files, bad config, missing data.

The CLI prints these without a traceback and exits with code 2; everything else is a bug and keeps its traceback.
"""


class OmnifuseError(ValueError):
    """A problem with what the user gave omnifuse (a file, a config key, a data set), not a bug."""


def did_you_mean(word: object, options) -> str:
    """`` Did you mean 'x'?`` naming the closest of ``options`` to ``word``, or ``""`` when none is close.

    >>> raise OmnifuseError(f"Unknown preset {name!r}.{did_you_mean(name, presets())}")
    """
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def near_key(parts: list[str], depth: int, names) -> str:
    """`` Did you mean 'train.epochs'?`` for the unknown part ``parts[depth]`` of a dotted key, the closest of
    ``names`` put in its place (``""`` when none is close)."""
    import difflib

    near = difflib.get_close_matches(parts[depth], [str(n) for n in names], n=1)
    return f" Did you mean {'.'.join([*parts[:depth], near[0], *parts[depth + 1 :]])!r}?" if near else ""

"""Token-id padding helpers shared by the text encoders."""

from __future__ import annotations

from keras import ops


def trim_padding(ids, multiple=1, reach=0):
    """``ids`` (B, L) without the padding columns (id 0) after the batch's longest text: the columns up to its last
    real id, rounded up to a ``multiple`` of columns, plus ``reach`` more, at least ``multiple`` and at most L.
    An encoder whose answer ignores padding gives the same answer on the trimmed ids and does less work, the more so
    in batches of texts of similar length (``data.length_buckets``, and evaluation's shortest-first order)."""
    positions = ops.arange(1, ops.shape(ids)[1] + 1, dtype="int32")[None, :]
    longest = ops.max(ops.where(ops.not_equal(ids, 0), positions, 0))
    keep = ops.maximum((longest + multiple - 1) // multiple, 1) * multiple + reach
    return ids[:, : ops.minimum(ops.shape(ids)[1], keep)]

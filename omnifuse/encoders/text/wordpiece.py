"""BERT's uncased tokeniser as TensorFlow string ops, so a model takes raw text: strings (B,) -> WordPiece ids.

The steps are those of BERT's ``BasicTokenizer`` + ``WordpieceTokenizer`` (and of the ``tokenizers`` library's
``BertNormalizer`` + ``BertPreTokenizer`` + ``WordPiece`` that sentence-transformers runs):

1. drop control characters, NUL and U+FFFD; every whitespace character becomes a space;
2. per character: canonical decomposition (NFD), combining marks (Mn) dropped, lower case — one lookup table built
   from Python's ``unicodedata``, holding only the characters that change;
3. a space either side of each punctuation mark and CJK ideograph, then a split on spaces: the words;
4. the special tokens ([CLS], [SEP], [MASK], [UNK], [PAD]) written in a text are those tokens, as in ``tokenizers``;
5. per word, greedy longest-match-first WordPiece (``##`` for pieces after the first); a word longer than 100
   characters, or with a part no piece matches, is one ``[UNK]``.

Two departures, both on strings no real text holds: the decomposition is per character, so combining marks are
not reordered across characters (they are dropped anyway), and special tokens are found after control characters
are dropped ("[MA\\u200bSK]" is [MASK] here, "[", "mask", "]" there). On 200 IMDb reviews and 200 generated hard
strings (accents, emoji, CJK, Hangul, Devanagari, special tokens, 101-letter words) every text got the reference's
exact ids (benchmarks/experiments/minilm_tokenizer_agreement.py).
"""

from __future__ import annotations

import functools
import unicodedata

import keras
import tensorflow as tf

from omnifuse.errors import OmnifuseError

# Cc but tab, newline and carriage return; Cf (e.g. zero-width joiner); private use; NUL; the replacement character
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\p{Cf}\p{Co}\x{fffd}]"
_WHITESPACE = r"[\t\n\r\p{Zs}\x{2028}\x{2029}]"
# ASCII punctuation (BERT counts $ + < = > ^ ` | ~ too), Unicode P*, and the CJK ideograph blocks BERT isolates
_ISOLATED = (
    r"([!-/:-@\[-`{-~\pP\x{4e00}-\x{9fff}\x{3400}-\x{4dbf}\x{20000}-\x{2a6df}\x{2a700}-\x{2b73f}"
    r"\x{2b740}-\x{2b81f}\x{2b820}-\x{2ceaf}\x{f900}-\x{faff}\x{2f800}-\x{2fa1f}])"
)
MAX_WORD_CHARS = 100
# the tokens BERT's tokeniser takes literally, wherever they stand in a text ("a[MASK]b" -> a [MASK] b); each is
# swapped for a word between two private-use characters (text cannot hold those: the control pass drops them)
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SPECIAL = r"\[(PAD|UNK|CLS|SEP|MASK)\]"
_MARK = "\ue000"
_NO_MATCH = -1


@functools.lru_cache(maxsize=1)
def char_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(characters, replacements): each assigned character whose NFD form without combining marks, lower-cased,
    differs from itself, and that form (possibly empty or several characters)."""
    keys, values = [], []
    for code in range(0x110000):
        char = chr(code)
        category = unicodedata.category(char)
        if category in ("Cn", "Cs", "Co"):
            continue
        if code < 0x80:
            mapped = char.lower()
        else:
            decomposed = unicodedata.normalize("NFD", char)
            mapped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()
        if mapped != char:
            keys.append(char)
            values.append(mapped)
    return tuple(keys), tuple(values)


def read_vocabulary(path) -> list[str]:
    """The tokens of a BERT ``vocab.txt``, one a line, the line number being the id."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f]


@keras.saving.register_keras_serializable(package="omnifuse")
class BertWordPiece(keras.layers.Layer):
    """Raw strings (B,) -> ragged WordPiece ids (B, None), without [CLS]/[SEP]. TensorFlow only (string ops).

    The vocabulary is set by :meth:`set_vocabulary` (the owning layer keeps it: in a ``.keras`` file, as an asset).
    """

    def __init__(self, unk_token="[UNK]", **kwargs):
        super().__init__(**kwargs)
        self.unk_token = unk_token
        self.vocabulary: list[str] = []
        self._vocab_table = None
        self._char_table = None

    def set_vocabulary(self, vocabulary: list[str]):
        if self.unk_token not in vocabulary:
            raise OmnifuseError(
                f"Expected a WordPiece vocabulary holding {self.unk_token!r}. Received: {len(vocabulary)} tokens without it"
            )
        self.vocabulary = list(vocabulary)
        self.unk_id = self.vocabulary.index(self.unk_token)
        # the longest piece, in characters without its "##": no candidate longer than this can match
        self.max_piece_chars = max(len(t[2:] if t.startswith("##") else t) for t in self.vocabulary)
        keys = list(self.vocabulary)
        ids = list(range(len(keys)))
        for token in SPECIAL_TOKENS:
            if token in self.vocabulary:
                keys.append(_MARK + token[1:-1].lower() + _MARK)
                ids.append(self.vocabulary.index(token))
        self._vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(ids, tf.int64)),
            default_value=_NO_MATCH,
        )
        keys, values = char_table()
        self._char_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values)), default_value="\x00"
        )

    def normalize(self, text):
        """Steps 1-2 of the module's list, and the spaces of step 3: strings (N,) -> strings (N,)."""
        # invalid UTF-8 becomes U+FFFD, which the control pass drops
        text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        text = tf.strings.regex_replace(text, _CONTROL, "")
        text = tf.strings.regex_replace(text, _WHITESPACE, " ")
        text = tf.strings.regex_replace(text, _SPECIAL, f" {_MARK}\\1{_MARK} ")
        # only texts with a character outside lower-case ASCII go through the per-character table
        plain = tf.strings.regex_full_match(text, r"[\x00-\x40\x5b-\x7f]*")
        index = tf.where(tf.logical_not(plain))[:, 0]
        chars = tf.strings.unicode_split(tf.gather(text, index), "UTF-8")
        mapped = self._char_table.lookup(chars.flat_values)
        chars = chars.with_flat_values(tf.where(tf.equal(mapped, "\x00"), chars.flat_values, mapped))
        text = tf.tensor_scatter_nd_update(text, index[:, None], tf.strings.reduce_join(chars, axis=-1))
        return tf.strings.regex_replace(text, _ISOLATED, r" \1 ")

    def wordpiece(self, words):
        """Greedy longest-match-first WordPiece of words (N,) -> ragged ids (N, None)."""
        count = tf.shape(words, out_type=tf.int64)[0]
        lengths = tf.strings.length(words, unit="UTF8_CHAR")
        too_long = lengths > MAX_WORD_CHARS
        start = tf.zeros_like(lengths)
        done = too_long | (lengths == 0)
        bad = too_long
        pieces = tf.TensorArray(tf.int64, size=0, dynamic_size=True)

        # every candidate length of a step at once, longest first: (N, sizes) strings, one table lookup
        n_sizes = self.max_piece_chars
        sizes = tf.range(n_sizes, 0, -1, dtype=lengths.dtype)
        tiled_words = tf.tile(words[:, None], [1, n_sizes])
        tiled_sizes = tf.tile(sizes[None, :], tf.stack([count, 1]))

        def step(i, start, done, bad, pieces):
            prefix = tf.tile(tf.where(start > 0, "##", "")[:, None], [1, n_sizes])
            candidate = tf.strings.substr(
                tiled_words, tf.tile(start[:, None], [1, n_sizes]), tiled_sizes, unit="UTF8_CHAR"
            )
            ids = self._vocab_table.lookup(tf.strings.join([prefix, candidate]))
            hit = (ids != _NO_MATCH) & (start[:, None] + tiled_sizes <= lengths[:, None])
            first = tf.argmax(
                tf.cast(hit, tf.int32), axis=1, output_type=tf.int32
            )  # the longest that matches
            matched = tf.reduce_any(hit, axis=1)
            best_id = tf.where(matched, tf.gather(ids, first, batch_dims=1), _NO_MATCH)
            best_len = tf.where(matched, tf.gather(sizes, first), tf.zeros_like(lengths))
            active = tf.logical_not(done)
            failed = active & (best_id == _NO_MATCH)
            pieces = pieces.write(i, tf.where(active & tf.logical_not(failed), best_id, _NO_MATCH))
            start = start + best_len
            return i + 1, start, done | failed | (start >= lengths), bad | failed, pieces

        _, _, _, bad, pieces = tf.while_loop(
            lambda i, start, done, bad, pieces: tf.reduce_any(tf.logical_not(done)),
            step,
            (tf.constant(0), start, done, bad, pieces),
        )
        steps = tf.transpose(
            tf.reshape(pieces.stack(), [-1, count])
        )  # (N, steps), _NO_MATCH after a word's last piece
        ids = tf.ragged.boolean_mask(steps, steps != _NO_MATCH)
        # a word with an unmatched part is a single [UNK]
        unk = tf.RaggedTensor.from_row_lengths(
            tf.fill([count], tf.constant(self.unk_id, tf.int64)), tf.ones([count], tf.int64)
        )
        return _select_rows(bad, unk, ids)

    def call(self, text):
        if self._vocab_table is None:
            raise OmnifuseError(
                f"Expected a vocabulary in {self.name}. Received: none (set_vocabulary was not called)"
            )
        text = tf.convert_to_tensor(text, dtype=tf.string)
        if text.shape.rank == 2:
            text = tf.squeeze(text, axis=-1)
        words = tf.strings.split(self.normalize(text))  # (B, None)
        ids = self.wordpiece(words.flat_values)  # (words, None)
        return words.with_flat_values(ids).merge_dims(1, 2)

    def get_config(self):
        return {**super().get_config(), "unk_token": self.unk_token}


def _select_rows(choose_first, first, second):
    """Row i of ragged ``first`` where ``choose_first[i]``, else row i of ragged ``second``."""
    keep_first = tf.ragged.boolean_mask(
        first,
        tf.RaggedTensor.from_row_lengths(tf.repeat(choose_first, first.row_lengths()), first.row_lengths()),
    )
    keep_second = tf.ragged.boolean_mask(
        second,
        tf.RaggedTensor.from_row_lengths(
            tf.repeat(tf.logical_not(choose_first), second.row_lengths()), second.row_lengths()
        ),
    )
    return tf.concat([keep_first, keep_second], axis=1)

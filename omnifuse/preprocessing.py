"""Preprocessing that lives inside the model (TensorFlow string ops: text is a TensorFlow-backend feature)."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="omnifuse")
def standardize_text(text):
    """Lower-case, drop HTML line breaks and apostrophes, and keep only runs of letters and digits.

    Keeping letters and digits only (Unicode-aware) also removes exotic whitespace such as U+0085 or U+2028, which
    would otherwise end up inside vocabulary tokens and break the vocabulary file when a saved model is loaded.
    """
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    text = tf.strings.regex_replace(text, r"['’]", "")
    return tf.strings.regex_replace(text, r"[^\p{L}\p{N}]+", " ")

"""Forward time of TextMiniLM on one batch of 32 IMDb reviews of about 220 tokens, on this machine's CPU.

    python benchmarks/experiments/minilm_forward.py --imdb aclImdb_v1.tar.xz [--texts-out batch.json]
    # the same batch through sentence-transformers (torch), for the ratio:
    python benchmarks/reference/minilm_reference.py --model MODEL_DIR --time batch.json

Times (median of --repeats after one warm-up call, each a compiled tf.function): the whole layer, and its
tokeniser alone.
"""

import argparse
import json
import os
import tarfile
import time

import numpy as np


def reviews_near(tarball, tokens, count, tokenizer):
    """``count`` test reviews whose WordPiece count is within 10% of ``tokens``."""
    import tensorflow as tf

    picked = []
    with tarfile.open(tarball) as tar:
        for member in tar:
            if not (member.isfile() and "/test/" in member.name and member.name.endswith(".txt")):
                continue
            text = tar.extractfile(member).read().decode("utf-8")
            n = int(tokenizer(tf.constant([text])).row_lengths()[0]) + 2
            if abs(n - tokens) <= tokens // 10:
                picked.append((text, n))
                if len(picked) == count:
                    return picked
    raise SystemExit(f"only {len(picked)} reviews of about {tokens} tokens")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--imdb", required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=220)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--texts-out")
    args = parser.parse_args()

    import tensorflow as tf

    from omnifuse.encoders.text.minilm import TextMiniLM

    start = time.perf_counter()
    encoder = TextMiniLM()
    encoder.build()
    built = time.perf_counter() - start
    picked = reviews_near(args.imdb, args.tokens, args.batch, encoder.tokenizer)
    texts = tf.constant([t for t, _ in picked])
    if args.texts_out:
        with open(args.texts_out, "w", encoding="utf-8") as f:
            json.dump([t for t, _ in picked], f, ensure_ascii=False)

    def median_time(fn):
        fn(texts)  # trace + warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            np.asarray(fn(texts))
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    forward = median_time(tf.function(lambda x: encoder(x, training=False)))
    tokenize = median_time(tf.function(lambda x: encoder.tokenize(x)[0]))
    lengths = [n for _, n in picked]
    print(
        f"batch {args.batch} x {min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f}), "
        f"{os.cpu_count()} CPUs visible: build {built:.2f} s, forward {forward * 1000:.0f} ms "
        f"(tokeniser {tokenize * 1000:.0f} ms), median of {args.repeats}"
    )


if __name__ == "__main__":
    main()

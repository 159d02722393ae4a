"""Side-by-side ANN benchmark: kAI's HnswIndex against hnswlib (and, for quantized indexes, faiss's
quantized HNSW) on the same data, parameters and threads.

Generates (or reads) a dataset, computes exact ground truth with numpy, runs the peers in this process
and kAI's `ann_compare` binary, and prints build time, recall@10, single-thread QPS and memory.

    python compare.py --binary <ann_compare> --dataset clustered --n 100000 --dims 128
    python compare.py --binary <ann_compare> --quantization none,int8,pq32    # with faiss-cpu installed
    python compare.py --binary <ann_compare> --quantization none,hnsw_rs      # both graph backends

Each kAI quantization is built and searched as its own index; each quantized one is paired with faiss's
counterpart (IndexHNSWSQ with 8-bit codes for int8 and 4-bit for int4, IndexHNSWPQ for pq<subspaces>). `hnsw_rs` is the
hnsw_rs backend (full vectors), built and searched in one process. Memory is what the
opened index holds after searching: for kAI, memory of its own plus the pages of its file that it
read in place (vectors, codes); for the peers, what loading their saved index added.
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


class Hnswlib:
    """hnswlib's HNSW over float32 vectors."""

    def __init__(self, metric):
        self.name = "hnswlib"
        self.space = "cosine" if metric == "cosine" else "l2"

    def build(self, base, m, ef_construction, threads, work):
        import hnswlib

        before = resident_kib()
        started = time.perf_counter()
        index = hnswlib.Index(space=self.space, dim=base.shape[1])
        index.init_index(max_elements=len(base), M=m, ef_construction=ef_construction, random_seed=1)
        index.set_num_threads(threads)
        index.add_items(base, np.arange(len(base)))
        stats = {"build_seconds": time.perf_counter() - started, "memory_kib": resident_kib() - before}
        path = os.path.join(work, "hnswlib.bin")
        started = time.perf_counter()
        index.save_index(path)
        stats["save_seconds"] = time.perf_counter() - started
        stats["file_bytes"] = os.path.getsize(path)
        del index
        self.index, stats["reopen_seconds"], stats["loaded_kib"] = fastest_load(
            lambda: self._load(hnswlib, path, base.shape[1], len(base)))
        self.index.set_num_threads(1)
        return stats

    def _load(self, hnswlib, path, dims, n):
        index = hnswlib.Index(space=self.space, dim=dims)
        index.load_index(path, max_elements=n)
        return index

    def search(self, queries, truth, ef):
        """One untimed pass then one timed pass at `ef`, like one `ann_compare search` run."""
        self.index.set_ef(ef)
        self.index.knn_query(queries, k=10, num_threads=1)
        started = time.perf_counter()
        labels, _ = self.index.knn_query(queries, k=10, num_threads=1)
        return scored(labels, truth, ef, len(queries) / (time.perf_counter() - started))


class FaissQuantized:
    """faiss's HNSW over 8- or 4-bit scalar (IndexHNSWSQ) or product-quantized (IndexHNSWPQ) codes."""

    def __init__(self, metric, quantization):
        scalar = {"int8": "SQ8", "int4": "SQ4"}
        self.name = f"faiss HNSW{scalar.get(quantization) or 'PQ' + quantization[2:]}"
        self.metric = metric
        self.quantization = quantization

    def _normalised(self, vectors):
        if self.metric != "cosine":
            return vectors
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def build(self, base, m, ef_construction, threads, work):
        import faiss

        faiss.omp_set_num_threads(threads)
        # Cosine runs as L2 over normalised vectors (the same order): faiss's HNSWPQ under inner product
        # found about a fifth of the neighbours in a trial, and L2 is its home ground.
        metric = faiss.METRIC_L2
        dims = base.shape[1]
        data = np.ascontiguousarray(self._normalised(base), dtype=np.float32)
        before = resident_kib()
        started = time.perf_counter()
        if self.quantization in ("int8", "int4"):
            bits = faiss.ScalarQuantizer.QT_8bit if self.quantization == "int8" else faiss.ScalarQuantizer.QT_4bit
            index = faiss.IndexHNSWSQ(dims, bits, m, metric)
        else:
            index = faiss.IndexHNSWPQ(dims, int(self.quantization[2:]), m, 8, metric)
        index.hnsw.efConstruction = ef_construction
        index.train(data)
        index.add(data)
        stats = {"build_seconds": time.perf_counter() - started, "memory_kib": resident_kib() - before}
        path = os.path.join(work, f"faiss-{self.quantization}.index")
        started = time.perf_counter()
        faiss.write_index(index, path)
        stats["save_seconds"] = time.perf_counter() - started
        stats["file_bytes"] = os.path.getsize(path)
        del index
        self.index, stats["reopen_seconds"], stats["loaded_kib"] = fastest_load(lambda: faiss.read_index(path))
        faiss.omp_set_num_threads(1)
        return stats

    def search(self, queries, truth, ef):
        self.index.hnsw.efSearch = ef
        data = np.ascontiguousarray(self._normalised(queries), dtype=np.float32)
        self.index.search(data, 10)
        started = time.perf_counter()
        _, labels = self.index.search(data, 10)
        return scored(labels, truth, ef, len(queries) / (time.perf_counter() - started))


class Kai:
    """kAI's HnswIndex, through the `ann_compare` binary."""

    def __init__(self, binary, metric, quantization):
        self.name = "kAI" if quantization == "none" else f"kAI {quantization}"
        self.binary = binary
        self.metric = metric
        self.quantization = quantization

    def build(self, base, m, ef_construction, threads, work):
        self.work = work
        environment = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        return json.loads(subprocess.run(
            [self.binary, "build", work, self.metric, str(m), str(ef_construction), self.quantization],
            check=True, capture_output=True, text=True, env=environment).stdout)

    def search(self, queries, truth, ef):
        command = [self.binary, "search", self.work, str(ef), "1", self.quantization]
        if MEMORY_CGROUP:
            # The index file's pages leave the page cache, so that the search reads them again inside
            # the cgroup, which is charged for them and holds no more than its limit.
            with open(os.path.join(self.work, f"kai-{self.quantization}.index"), "rb") as index_file:
                os.posix_fadvise(index_file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            procs = os.path.join(MEMORY_CGROUP, "cgroup.procs")
            command = ["sh", "-c", f'echo $$ > {procs} && exec "$0" "$@"'] + command
        return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


# A memory cgroup (v1) that kAI's searches run in, with --memory-limit-mib.
MEMORY_CGROUP = None


def limit_memory(mib):
    """Makes a memory cgroup holding at most `mib` MiB (page cache included), removed at exit."""
    global MEMORY_CGROUP
    path = f"/sys/fs/cgroup/memory/kai-ann-{os.getpid()}"
    os.mkdir(path)
    atexit.register(os.rmdir, path)
    with open(os.path.join(path, "memory.limit_in_bytes"), "w") as limit:
        limit.write(str(mib * 2**20))
    MEMORY_CGROUP = path


class KaiServed(Kai):
    """kAI's hnsw_rs backend, built and searched in one `ann_compare serve` process: reopening it
    builds its graph again, so separate search processes would each search a different graph."""

    def build(self, base, m, ef_construction, threads, work):
        environment = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        self.process = subprocess.Popen(
            [self.binary, "serve", work, self.metric, str(m), str(ef_construction), self.quantization],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)
        atexit.register(self.process.kill)
        return json.loads(self.process.stdout.readline())

    def search(self, queries, truth, ef):
        self.process.stdin.write(f"{ef}\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())


def fastest_load(load):
    """The fastest of three loads of a saved index, and the memory the first one added."""
    fastest = float("inf")
    index, loaded = None, None
    for _ in range(3):
        del index
        before = resident_kib()
        started = time.perf_counter()
        index = load()
        fastest = min(fastest, time.perf_counter() - started)
        if loaded is None:
            loaded = resident_kib() - before
    return index, fastest, loaded


def code_bytes(side, dims, metric):
    """Bytes per vector that a side's searches walk with: float32, int8, int4, or for PQ one byte per
    subspace (kAI: plus the coarse centroid's byte, and under L2 the reconstruction's length)."""
    quantization = getattr(side, "quantization", "none")
    if quantization == "int8":
        return dims
    if quantization == "int4":
        # kAI: plus the vector's range (8 bytes).
        return (dims + 1) // 2 + (8 if isinstance(side, Kai) else 0)
    if quantization.startswith("pq"):
        extra = (1 + (4 if metric == "l2" else 0)) if isinstance(side, Kai) else 0
        return int(quantization[2:]) + extra
    return 4 * dims


def scored(labels, truth, ef, qps):
    found = sum(len(set(labels[i]) & set(truth[i])) for i in range(len(labels)))
    return {"ef": ef, "recall": found / (len(labels) * 10), "qps": qps}


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
    parser.add_argument("--quantization", default="none",
                        help="kAI indexes to build, comma-separated: none, int8, int4, pq<subspaces>, hnsw_rs")
    parser.add_argument("--memory-limit-mib", type=int, default=0,
                        help="search kAI's saved indexes (only) in a memory cgroup of this many MiB, page cache "
                             "included, their files' pages evicted first: speed when the full vectors do not fit")
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

    kinds = args.quantization.split(",")
    sides = [(KaiServed if kind == "hnsw_rs" else Kai)(args.binary, args.metric, kind) for kind in kinds]
    if args.memory_limit_mib:
        # The peers load whole indexes into memory of their own: under such a limit they cannot run.
        limit_memory(args.memory_limit_mib)
        sides = [side for side in sides if type(side) is Kai]
    else:
        sides += [Hnswlib(args.metric)]
        sides += [FaissQuantized(args.metric, kind) for kind in kinds if kind not in ("none", "hnsw_rs")]
    stats = {side.name: side.build(base, args.m, args.ef_construction, args.threads, work) for side in sides}

    # Searches alternate between the sides, round after round, so that all meet the same interference
    # on a shared machine; each side's fastest round counts (interference only ever slows a round).
    runs = {side.name: {ef: [] for ef in efs} for side in sides}
    for _ in range(max(args.repeat, 1)):
        for ef in efs:
            for side in sides:
                runs[side.name][ef].append(side.search(queries, truth, ef))
    for side in sides:
        stats[side.name]["search"] = [best(runs[side.name][ef]) for ef in efs]

    names = [side.name for side in sides]
    float32_mib = base.nbytes / 2**20
    print(f"## {name}, {args.metric}, M={args.m}, ef_construction={args.ef_construction}, "
          f"build threads={args.threads}, {len(queries)} queries, one search thread, "
          f"best of {args.repeat} alternating rounds; float32 vectors: {float32_mib:.1f} MiB"
          + (f"; searches in {args.memory_limit_mib} MiB of memory, page cache included" if args.memory_limit_mib else ""))
    print("| | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))

    def row(label, cell):
        print(f"| {label} | " + " | ".join(cell(stats[n]) for n in names) + " |")

    row("build", lambda s: f"{s['build_seconds']:.1f} s")
    row("memory added by building", lambda s: f"{s['memory_kib'] / 1024:.0f} MiB")
    row("file", lambda s: f"{s['file_bytes'] / 2**20:.0f} MiB")
    row("save (kAI: with fsync; encoding alone)",
        lambda s: f"{s['save_seconds']:.3f} s" + (f" ({s['encode_seconds']:.3f} s)" if "encode_seconds" in s else ""))
    row("reopen (fastest of 3)", lambda s: f"{s['reopen_seconds']:.3f} s")

    def memory(s):
        if "loaded_kib" in s:
            return f"{s['loaded_kib'] / 1024:.1f} MiB / -"
        last = s["search"][-1]
        return f"{last['anon_kib'] / 1024:.1f} MiB / {last['file_kib'] / 1024:.1f} MiB"

    row("opened index after searching: own memory / file pages read in place (reclaimable)", memory)
    dims = base.shape[1]
    walked = {side.name: float32_mib * code_bytes(side, dims, args.metric) / (4 * dims) for side in sides}
    print("| vectors searches walk (share of float32) | " + " | ".join(
        f"{walked[n]:.1f} MiB ({walked[n] / float32_mib:.0%})" for n in names) + " |")
    for i, ef in enumerate(efs):
        row(f"ef={ef}: recall@10 / QPS", lambda s: f"{s['search'][i]['recall']:.3f} / {s['search'][i]['qps']:,.0f}")
    if "hnswlib" not in stats:
        return 0
    reference = stats["hnswlib"]["search"]
    for side in names:
        if side == "hnswlib":
            continue
        ratios = ", ".join(f"{ours['qps'] / theirs['qps']:.2f}" for ours, theirs in zip(stats[side]["search"], reference))
        print(f"\nQPS of {side} against hnswlib at ef {args.ef}: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

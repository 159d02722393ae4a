//! The kAI side of `benches/ann/compare.py`, in commands that print JSON objects, one per line:
//!
//! - `ann_compare build <dir> <l2|cosine> <m> <ef_construction> <kind>`: builds an `HnswIndex` over
//!   the dataset, of `kind`: a quantization (`none`, `int8`, `int4` or `pq<subspaces>`) of the builtin graph,
//!   or `hnsw_rs` (the hnsw_rs backend, full vectors); saves it as `<dir>/kai-<kind>.index`; build
//!   time, memory added, save time (and encoding time alone), file size, reopen time (the fastest of
//!   three);
//! - `ann_compare search <dir> <ef> <passes> <kind>`: recall@10 and single-thread queries per
//!   second at `ef` on that saved index (the fastest of `passes` timed passes, after an untimed one),
//!   and what the opened index holds in memory after searching: memory of its own (anonymous) and
//!   pages of its file (vectors and codes, read in place);
//! - `ann_compare serve <dir> <l2|cosine> <m> <ef_construction> <kind>`: builds as `build` does (with
//!   one reopen, timed, and not kept), then answers each line of standard input, an `ef`, as `search`
//!   does with one pass, on the index it built (its memory: what building added). For the hnsw_rs backend, whose reopening builds its
//!   graph again (so that each `search` would search a different graph).
//!
//! The script alternates search runs with its peers' on the same machine, so all see the same noise.
//! `<dir>` holds `base.f32`, `queries.f32`, `truth.u32` (10 ids per query) and `meta.json`
//! (`{"n", "queries", "dims"}`).

use std::process::ExitCode;
use std::time::Instant;

use std::io::BufRead;

use kai_memory::index::{HnswBackend, HnswConfig, HnswIndex, Metric, Quantization};

fn read_f32(path: &std::path::Path) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A field of `/proc/self/status`, in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn resident_kib() -> u64 {
    status_kib("VmRSS:")
}

/// The resident KiB of this process's mappings of `path` (from `/proc/self/smaps`).
fn mapped_kib(path: &std::path::Path) -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let name = path.to_string_lossy();
    let mut inside = false;
    let mut total = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header line: its path, if any, is the last field.
            inside = line.ends_with(name.as_ref());
        } else if inside && first == "Rss:" {
            total += fields.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

fn run(args: &[String]) -> Result<String, String> {
    match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]),
        Some("search") => search(&args[1..]),
        Some("serve") => serve(&args[1..]),
        _ => Err(USAGE.into()),
    }
}

const USAGE: &str = "usage: ann_compare build <dir> <l2|cosine> <m> <ef_construction> <kind>\n       \
                     ann_compare search <dir> <ef> <passes> <kind>\n       \
                     ann_compare serve <dir> <l2|cosine> <m> <ef_construction> <kind>";

/// Builds the index over `<dir>/base.f32`, saves it as `<dir>/kai-<kind>.index`, and reopens it.
fn build(args: &[String]) -> Result<String, String> {
    Ok(built(args, 3)?.1.to_string())
}

/// Builds as [`build`] does, reopening `reopens` times; returns the index built and its figures.
fn built(args: &[String], reopens: usize) -> Result<(HnswIndex, serde_json::Value), String> {
    let [dir, metric, m, ef_construction, name] = args else {
        return Err(USAGE.into());
    };
    let dir = std::path::Path::new(dir);
    let dims = dimensions(dir)?;
    let metric = match metric.as_str() {
        "l2" => Metric::L2,
        "cosine" => Metric::Cosine,
        other => return Err(format!("unknown metric {other}")),
    };
    let base = read_f32(&dir.join("base.f32"))?;
    let ids: Vec<u64> = (0..(base.len() / dims) as u64).collect();

    let mut config = HnswConfig::new(metric, dims);
    config.m = m.parse().map_err(|_| "m")?;
    config.ef_construction = ef_construction.parse().map_err(|_| "ef_construction")?;
    config.expected_len = ids.len();
    if name == "hnsw_rs" {
        config.backend = HnswBackend::HnswRs;
    } else {
        config.quantization = name.parse::<Quantization>().map_err(|e| e.to_string())?;
    }
    let before = resident_kib();
    let started = Instant::now();
    let mut index = HnswIndex::new(config).map_err(|e| e.to_string())?;
    index.insert_flat(&ids, &base).map_err(|e| e.to_string())?;
    let build_seconds = started.elapsed().as_secs_f64();
    let memory_kib = resident_kib().saturating_sub(before);
    let path = dir.join(format!("kai-{name}.index"));
    let started = Instant::now();
    index.save(&path).map_err(|e| e.to_string())?;
    let save_seconds = started.elapsed().as_secs_f64();
    // Of which encoding; the rest is writing, fsync and rename (hnswlib writes without fsync).
    let started = Instant::now();
    index.to_bytes().map_err(|e| e.to_string())?;
    let encode_seconds = started.elapsed().as_secs_f64();
    // The fastest of the opens of the file just written (in the page cache, as hnswlib's is).
    let mut reopen_seconds = f64::INFINITY;
    for _ in 0..reopens {
        let started = Instant::now();
        let reopened = HnswIndex::open(&path).map_err(|e| e.to_string())?;
        reopen_seconds = reopen_seconds.min(started.elapsed().as_secs_f64());
        drop(reopened);
    }
    let file_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let figures = serde_json::json!({
        "build_seconds": build_seconds, "memory_kib": memory_kib, "save_seconds": save_seconds,
        "encode_seconds": encode_seconds,
        "reopen_seconds": reopen_seconds, "file_bytes": file_bytes
    });
    Ok((index, figures))
}

/// Opens `<dir>/kai.index`, makes one untimed pass over the queries (page faults and cold caches are
/// not search speed), then `passes` timed ones at `ef`; reports recall@10 and the fastest pass's QPS.
fn search(args: &[String]) -> Result<String, String> {
    let [dir, ef, passes, name] = args else {
        return Err(USAGE.into());
    };
    let dir = std::path::Path::new(dir);
    let ef: usize = ef.parse().map_err(|_| "ef")?;
    let passes: usize = passes.parse().map_err(|_| "passes")?;
    let path = dir.join(format!("kai-{name}.index"));
    let anon_before = status_kib("RssAnon:");
    let index = HnswIndex::open(&path).map_err(|e| e.to_string())?;
    let mut figures = searched(&index, &Workload::read(dir)?, ef, passes)?;
    figures["anon_kib"] = (status_kib("RssAnon:").saturating_sub(anon_before)).into();
    figures["file_kib"] = mapped_kib(&path).into();
    Ok(figures.to_string())
}

/// Builds as `build` does, then searches that index at each `ef` read from standard input.
fn serve(args: &[String]) -> Result<String, String> {
    let (index, figures) = built(args, 1)?;
    // What building added (the reopen after it may leave freed memory with the allocator).
    let anon_kib = figures["memory_kib"].as_u64().unwrap_or(0);
    println!("{figures}");
    let workload = Workload::read(std::path::Path::new(&args[0]))?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let ef: usize = line.trim().parse().map_err(|_| format!("not an ef: {line}"))?;
        let mut figures = searched(&index, &workload, ef, 1)?;
        figures["anon_kib"] = anon_kib.into();
        figures["file_kib"] = 0.into();
        println!("{figures}");
    }
    Ok(String::new())
}

/// The queries of `<dir>`, back to back, and their true ten nearest ids.
struct Workload {
    dims: usize,
    queries: Vec<f32>,
    truth: Vec<u32>,
}

impl Workload {
    fn read(dir: &std::path::Path) -> Result<Self, String> {
        let truth = std::fs::read(dir.join("truth.u32"))
            .map_err(|e| e.to_string())?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self {
            dims: dimensions(dir)?,
            queries: read_f32(&dir.join("queries.f32"))?,
            truth,
        })
    }
}

/// Recall@10 and the fastest of `passes` timed passes' queries per second at `ef` on `index`, after
/// an untimed pass (page faults and cold caches are not search speed).
fn searched(index: &HnswIndex, workload: &Workload, ef: usize, passes: usize) -> Result<serde_json::Value, String> {
    let Workload { dims, queries, truth } = workload;
    let dims = *dims;
    let n_queries = queries.len() / dims;
    let (mut found, mut best_seconds) = (0usize, f64::INFINITY);
    for pass in 0..=passes.max(1) {
        found = 0;
        let started = Instant::now();
        for (q, query) in queries.chunks_exact(dims).enumerate() {
            let hits = index.search_with(query, 10, ef, None).map_err(|e| e.to_string())?;
            let expected = &truth[q * 10..q * 10 + 10];
            found += hits.iter().filter(|h| expected.contains(&(h.id as u32))).count();
        }
        if pass > 0 {
            best_seconds = best_seconds.min(started.elapsed().as_secs_f64());
        }
    }
    Ok(serde_json::json!({
        "ef": ef, "recall": found as f64 / (n_queries * 10) as f64, "qps": n_queries as f64 / best_seconds
    }))
}

fn dimensions(dir: &std::path::Path) -> Result<usize, String> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    Ok(meta["dims"].as_u64().ok_or("meta.dims")? as usize)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(json) => {
            if !json.is_empty() {
                println!("{json}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ann_compare: {error}");
            ExitCode::FAILURE
        }
    }
}

//! The index file, version 1 (all integers little-endian):
//!
//! ```text
//! magic "KAIINDEX" · version u32 · kind u8 (0 flat, 1 hnsw) · metric u8 · dimensions u32 · slots u64
//! ids [u64; slots] · live [u8; slots] · vectors [f32; slots × dimensions]
//! hnsw only: m u32 · ef_construction u32 · ef_search u32 · expected_len u64 · entry u32 · max_level u8
//!            offsets [u32; slots + 1] · neighbour count u64 · neighbours [u32]
//!            per slot: upper layer count u8, then per layer: count u32 · neighbours [u32]
//! sha256 of everything above
//! ```
//!
//! Written with a temporary file, fsync and rename: a crash leaves the old file or the new one.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::bytes::Reader;
use crate::error::Error;
use crate::index::distance::Metric;
use crate::index::graph::{MAX_LEVEL, SearchGraph};
use crate::index::hnsw::HnswConfig;
use crate::index::slots::Slots;
use kai_core::fs::write_atomic;

const MAGIC: &[u8; 8] = b"KAIINDEX";
const VERSION: u32 = 1;

/// Writes an index file's bytes to `path` atomically.
pub(crate) fn save(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, bytes).map_err(|e| Error::file(path, e))
}

/// The index file's bytes.
pub(crate) fn encode(slots: &Slots, hnsw: Option<(&HnswConfig, &SearchGraph)>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64 + slots.data.len() * 4 + slots.ids.len() * 9);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(u8::from(hnsw.is_some()));
    out.push(slots.metric.code());
    out.extend_from_slice(&(slots.dimensions as u32).to_le_bytes());
    out.extend_from_slice(&(slots.ids.len() as u64).to_le_bytes());
    for id in &slots.ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend(slots.live.iter().map(|&l| u8::from(l)));
    for x in slots.data.as_slice() {
        out.extend_from_slice(&x.to_le_bytes());
    }
    if let Some((config, graph)) = hnsw {
        for n in [config.m, config.ef_construction, config.ef_search] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.extend_from_slice(&(config.expected_len as u64).to_le_bytes());
        out.extend_from_slice(&graph.entry().unwrap_or(0).to_le_bytes());
        out.push(graph.max_level());
        let slots = graph.len() as u32;
        let mut offset = 0u32;
        out.extend_from_slice(&offset.to_le_bytes());
        for slot in 0..slots {
            // Version 1 numbers layer-0 links with u32 offsets: about 134 million vectors at M = 16.
            offset = u32::try_from(graph.neighbours(slot, 0).len())
                .ok()
                .and_then(|links| offset.checked_add(links))
                .ok_or_else(|| {
                    Error::InvalidConfig("the graph has more than 2^32 links, more than the file format holds".into())
                })?;
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&u64::from(offset).to_le_bytes());
        for slot in 0..slots {
            for n in graph.neighbour_list(slot, 0) {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        for slot in 0..slots {
            let level = graph.level(slot);
            out.push(level);
            for layer in 1..=usize::from(level) {
                let list = graph.neighbour_list(slot, layer);
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for n in list {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Reads the index file at `path`.
pub(crate) fn open(path: &Path) -> Result<(Slots, Option<(HnswConfig, SearchGraph)>), Error> {
    decode(&std::fs::read(path).map_err(|e| Error::io(path, e))?)
}

/// Reads an index file's bytes, checking everything before trusting it.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Slots, Option<(HnswConfig, SearchGraph)>), Error> {
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            Error::Truncated
        } else {
            Error::NotAnIndex
        });
    }
    if &bytes[..8] != MAGIC {
        return Err(Error::NotAnIndex);
    }
    if bytes.len() < 8 + 4 + 32 {
        return Err(Error::Truncated);
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    let mut r = Reader::new(body, 8);
    let version = r.u32()?;
    if version != VERSION {
        return Err(Error::UnsupportedVersion {
            found: u16::try_from(version).unwrap_or(u16::MAX),
            supported: VERSION as u16,
        });
    }
    // The checksum covers structure and contents; lengths are still checked as they are read, so a
    // damaged file is reported as truncated or corrupt rather than read out of bounds.
    if Sha256::digest(body).as_slice() != digest {
        return Err(corrupt_or_truncated(bytes));
    }
    let kind = r.u8()?;
    let metric = Metric::from_code(r.u8()?).ok_or_else(|| corrupt("unknown metric"))?;
    let dimensions = r.u32()? as usize;
    let count = usize::try_from(r.u64()?).map_err(|_| corrupt("slot count"))?;
    if dimensions == 0 {
        return Err(corrupt("zero dimensions"));
    }
    let mut slots = Slots::new(metric, dimensions);
    slots.ids = (0..count).map(|_| r.u64()).collect::<Result<_, _>>()?;
    slots.live = r.take(count)?.iter().map(|&b| b != 0).collect();
    let floats = count.checked_mul(dimensions).ok_or_else(|| corrupt("vector size"))?;
    let raw = r.take(floats.checked_mul(4).ok_or_else(|| corrupt("vector size"))?)?;
    slots.data.extend(
        raw.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    for slot in 0..count {
        if slots.live[slot] && slots.by_id.insert(slots.ids[slot], slot as u32).is_some() {
            return Err(corrupt("two live vectors share an id"));
        }
    }
    // Stored vectors were checked when inserted; a file's may not have been. A NaN would rank first
    // for every query under cosine.
    let stored = slots.data.as_slice().chunks_exact(dimensions).zip(&slots.live);
    if stored
        .filter(|(_, live)| **live)
        .any(|(vector, _)| !usable(metric, vector))
    {
        return Err(corrupt(
            "a stored vector is not finite (or, for cosine, not of unit length)",
        ));
    }
    let graph = match kind {
        0 => None,
        1 => {
            let config = HnswConfig {
                metric,
                dimensions,
                m: r.u32()? as usize,
                ef_construction: r.u32()? as usize,
                ef_search: r.u32()? as usize,
                expected_len: usize::try_from(r.u64()?).map_err(|_| corrupt("expected length"))?,
            };
            config
                .validate()
                .map_err(|_| corrupt("the index settings are out of range"))?;
            let entry = r.u32()?;
            let max_level = r.u8()?;
            let offsets: Vec<u32> = (0..=count).map(|_| r.u32()).collect::<Result<_, _>>()?;
            let total = usize::try_from(r.u64()?).map_err(|_| corrupt("neighbour count"))?;
            let neighbours: Vec<u32> = (0..total).map(|_| r.u32()).collect::<Result<_, _>>()?;
            if offsets.first() != Some(&0)
                || offsets.windows(2).any(|w| w[0] > w[1])
                || offsets.last().map(|&o| o as usize) != Some(total)
            {
                return Err(corrupt("the neighbour list offsets are out of order"));
            }
            let layer0: Vec<Vec<u32>> = offsets
                .windows(2)
                .map(|w| neighbours[w[0] as usize..w[1] as usize].to_vec())
                .collect();
            // The graph's blocks hold 2M + 1 words per vector on layer 0 and M + 1 per upper layer,
            // whatever the file holds: bound them by the file's size before anything is allocated.
            let layer0_words = (count as u64).saturating_mul(2 * config.m as u64 + 1);
            if layer0_words.saturating_mul(4) > graph_budget(body.len()) {
                return Err(corrupt("the graph would take far more memory than the file holds"));
            }
            let mut upper_words = 0u64;
            let mut upper = Vec::with_capacity(count);
            for _ in 0..count {
                let layers = r.u8()?;
                if layers > MAX_LEVEL {
                    return Err(corrupt("a vector is on too many layers"));
                }
                upper_words = upper_words.saturating_add(u64::from(layers) * (config.m as u64 + 1));
                if layer0_words.saturating_add(upper_words).saturating_mul(4) > graph_budget(body.len()) {
                    return Err(corrupt("the graph would take far more memory than the file holds"));
                }
                let mut lists = Vec::with_capacity(usize::from(layers));
                for _ in 0..layers {
                    let n = r.u32()? as usize;
                    lists.push((0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?);
                }
                upper.push(lists);
            }
            let graph = SearchGraph::from_lists(config.m, layer0, upper, entry).map_err(corrupt)?;
            if graph.max_level() != max_level {
                return Err(corrupt("the entry point is below the top layer"));
            }
            Some((config, graph))
        }
        _ => return Err(corrupt("unknown index kind")),
    };
    if r.at != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok((slots, graph))
}

/// The most memory a graph read from a file of `file_len` bytes may take: a full graph takes a few times
/// its file's size, a sparse small one up to about a hundred times, but then little in all.
fn graph_budget(file_len: usize) -> u64 {
    (file_len as u64).saturating_mul(16).saturating_add(16 << 20)
}

/// Whether a stored vector could have been inserted: finite, and for cosine of unit length.
fn usable(metric: Metric, vector: &[f32]) -> bool {
    if vector.iter().any(|x| !x.is_finite()) {
        return false;
    }
    match metric {
        Metric::Cosine => {
            let norm_sq: f32 = vector.iter().map(|x| x * x).sum();
            (norm_sq - 1.0).abs() < 1e-3
        }
        Metric::Dot | Metric::L2 => true,
    }
}

/// A file whose checksum fails was either cut short (a crash mid-copy) or altered.
fn corrupt_or_truncated(bytes: &[u8]) -> Error {
    // The shortest well-formed header tells how long the vector section alone must be.
    if bytes.len() >= 30 {
        let dims = u32::from_le_bytes([bytes[14], bytes[15], bytes[16], bytes[17]]) as u64;
        let count = u64::from_le_bytes(bytes[18..26].try_into().unwrap_or([0; 8]));
        let minimum = 26u64
            .saturating_add(count.saturating_mul(9 + 4 * dims))
            .saturating_add(32);
        if (bytes.len() as u64) < minimum {
            return Error::Truncated;
        }
    }
    corrupt("checksum mismatch")
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt { what: what.into() }
}

/// Little-endian fields over the shared byte reader.
trait LittleEndian {
    fn u8(&mut self) -> Result<u8, Error>;
    fn u32(&mut self) -> Result<u32, Error>;
    fn u64(&mut self) -> Result<u64, Error>;
}

impl LittleEndian for Reader<'_> {
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

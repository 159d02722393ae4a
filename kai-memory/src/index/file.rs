//! The index file, version 2 (all integers little-endian):
//!
//! ```text
//! magic "KAIINDEX" · version u32 · kind u8 (0 flat, 1 hnsw) · metric u8 · 0u16 · dimensions u32
//! slots u64 · zeros up to byte 64
//! vectors [f32; slots × dimensions] (at byte 64, so that a mapped file is read in place)
//! ids [u64; slots] · live [u8; slots]
//! hnsw only: m u32 · ef_construction u32 · ef_search u32 · expected_len u64 · entry u32 · max_level u8
//!            offsets [u32; slots + 1] · neighbour count u64 · neighbours [u32]
//!            per slot: upper layer count u8, then per layer: count u32 · neighbours [u32]
//! CRC-32 (IEEE) of everything above, u32
//! ```
//!
//! Version 1 (still read) put the ids and liveness before the vectors, after a 26-byte header, and
//! ended with a SHA-256 of the rest, which took most of the time to open a large index. The checksum
//! finds damage (a torn copy, a flipped bit); it is no defence against a deliberate writer, so every
//! structure is checked as it is read, whatever the checksum says.
//!
//! Written with a temporary file, fsync and rename: a crash leaves the old file or the new one, and a
//! file mapped by an open index is never rewritten in place.

use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::bytes::Reader;
use crate::error::Error;
use crate::index::buffer::FloatBuffer;
use crate::index::distance::Metric;
use crate::index::graph::{MAX_LEVEL, SearchGraph};
use crate::index::hnsw::HnswConfig;
use crate::index::slots::Slots;
use kai_core::fs::write_atomic;

const MAGIC: &[u8; 8] = b"KAIINDEX";
const VERSION: u32 = 2;
/// Where version 2 puts the vectors.
const HEADER_LEN: usize = 64;

/// Writes an index file's bytes to `path` atomically.
pub(crate) fn save(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, bytes).map_err(|e| Error::file(path, e))
}

/// The index file's bytes. An HNSW index's slots are written in [`SearchGraph::locality_order`], so
/// that slots a search meets one after another sit near each other in the file and in memory once
/// it is opened (about 1.1× queries per second on 100k vectors).
pub(crate) fn encode(slots: &Slots, hnsw: Option<(&HnswConfig, &SearchGraph)>) -> Result<Vec<u8>, Error> {
    // order[new] = old, and new_of[old] = new.
    let order: Vec<u32> = match hnsw {
        Some((_, graph)) => graph.locality_order(),
        None => (0..slots.len() as u32).collect(),
    };
    let mut new_of = vec![0u32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_of[old as usize] = new as u32;
    }
    let mut out = Vec::with_capacity(HEADER_LEN + slots.data.len() * 4 + slots.ids.len() * 9 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(u8::from(hnsw.is_some()));
    out.push(slots.metric.code());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(slots.dimensions as u32).to_le_bytes());
    out.extend_from_slice(&(order.len() as u64).to_le_bytes());
    out.resize(HEADER_LEN, 0);
    for &old in &order {
        put_f32s(&mut out, slots.vector(old));
    }
    for &old in &order {
        out.extend_from_slice(&slots.ids[old as usize].to_le_bytes());
    }
    out.extend(order.iter().map(|&old| u8::from(slots.live[old as usize])));
    if let Some((config, graph)) = hnsw {
        for n in [config.m, config.ef_construction, config.ef_search] {
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        out.extend_from_slice(&(config.expected_len as u64).to_le_bytes());
        let entry = graph.entry().map_or(0, |entry| new_of[entry as usize]);
        out.extend_from_slice(&entry.to_le_bytes());
        out.push(graph.max_level());
        let mut offset = 0u32;
        out.extend_from_slice(&offset.to_le_bytes());
        for &old in &order {
            // Layer-0 links are numbered with u32 offsets: about 134 million vectors at M = 16.
            offset = u32::try_from(graph.neighbours(old, 0).len())
                .ok()
                .and_then(|links| offset.checked_add(links))
                .ok_or_else(|| {
                    Error::InvalidConfig("the graph has more than 2^32 links, more than the file format holds".into())
                })?;
            out.extend_from_slice(&offset.to_le_bytes());
        }
        out.extend_from_slice(&u64::from(offset).to_le_bytes());
        let renumbered = |old: u32, layer: usize| {
            graph
                .neighbours(old, layer)
                .iter()
                .map(|n| new_of[n.load(std::sync::atomic::Ordering::Relaxed) as usize])
        };
        for &old in &order {
            for n in renumbered(old, 0) {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        for &old in &order {
            let level = graph.level(old);
            out.push(level);
            for layer in 1..=usize::from(level) {
                out.extend_from_slice(&(graph.neighbours(old, layer).len() as u32).to_le_bytes());
                for n in renumbered(old, layer) {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
    }
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// Appends `values` as little-endian bytes.
fn put_f32s(out: &mut Vec<u8>, values: &[f32]) {
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(values));
    } else {
        out.extend(values.iter().flat_map(|x| x.to_le_bytes()));
    }
}

/// What an index file decodes to.
pub(crate) type Decoded = (Slots, Option<(HnswConfig, SearchGraph)>);

/// Reads the index file at `path`. On native targets the file is mapped, and a version-2 file's
/// vectors are read where they lie rather than copied (until the index next grows): opening costs
/// one pass over the file, and an index larger than the heap can be searched.
#[allow(unsafe_code)]
pub(crate) fn open(path: &Path) -> Result<Decoded, Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the mapping is read-only and this crate never writes a file in place (saves write a
        // new file and rename it), so the bytes cannot change under the index. Another program that
        // truncates or rewrites the file in place breaks that, as it would for any mapped file.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let map = std::sync::Arc::new(map);
        decode_from(&map, |range| FloatBuffer::mapped(std::sync::Arc::clone(&map), range))
    }
    #[cfg(target_arch = "wasm32")]
    decode(&std::fs::read(path).map_err(|e| Error::io(path, e))?)
}

/// Reads an index file's bytes, checking everything before trusting it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    decode_from(bytes, |range| FloatBuffer::from_le_bytes(&bytes[range]))
}

/// Reads an index file's bytes; `vectors` makes the vector buffer from the byte range that holds it.
fn decode_from(bytes: &[u8], vectors: impl FnOnce(Range<usize>) -> FloatBuffer) -> Result<Decoded, Error> {
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
    if bytes.len() < 8 + 4 {
        return Err(Error::Truncated);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let trailer = match version {
        1 => 32,
        2 => 4,
        _ => {
            return Err(Error::UnsupportedVersion {
                found: u16::try_from(version).unwrap_or(u16::MAX),
                supported: VERSION as u16,
            });
        }
    };
    let header_len = if version == 1 { 26 } else { HEADER_LEN };
    if bytes.len() < header_len + trailer {
        return Err(Error::Truncated);
    }
    let (body, checksum) = bytes.split_at(bytes.len() - trailer);
    let intact = if version == 1 {
        Sha256::digest(body).as_slice() == checksum
    } else {
        crc32fast::hash(body).to_le_bytes() == checksum
    };
    if !intact {
        return Err(corrupt_or_truncated(version, bytes));
    }
    // The checksum finds damage only; lengths are still checked as they are read, so a crafted file is
    // reported as truncated or corrupt rather than read out of bounds.
    let mut r = Reader::new(body, 12);
    let kind = r.u8()?;
    let metric = Metric::from_code(r.u8()?).ok_or_else(|| corrupt("unknown metric"))?;
    if version >= 2 {
        r.take(2)?;
    }
    let dimensions = r.u32()? as usize;
    let count = usize::try_from(r.u64()?).map_err(|_| corrupt("slot count"))?;
    if dimensions == 0 {
        return Err(corrupt("zero dimensions"));
    }
    let vector_bytes = count
        .checked_mul(dimensions)
        .and_then(|floats| floats.checked_mul(4))
        .ok_or_else(|| corrupt("vector size"))?;
    let mut slots = Slots::new(metric, dimensions);
    let vector_range = if version == 1 {
        slots.ids = (0..count).map(|_| r.u64()).collect::<Result<_, _>>()?;
        slots.live = r.take(count)?.iter().map(|&b| b != 0).collect();
        let start = r.at;
        r.take(vector_bytes)?;
        start..r.at
    } else {
        r.at = HEADER_LEN;
        r.take(vector_bytes)?;
        let range = HEADER_LEN..r.at;
        // The ids and liveness take 9 bytes a slot: a count the file cannot hold is refused before
        // anything is allocated for it.
        if body.len().saturating_sub(r.at) / 9 < count {
            return Err(Error::Truncated);
        }
        slots.ids = (0..count).map(|_| r.u64()).collect::<Result<_, _>>()?;
        slots.live = r.take(count)?.iter().map(|&b| b != 0).collect();
        range
    };
    slots.data = vectors(vector_range);
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
fn corrupt_or_truncated(version: u32, bytes: &[u8]) -> Error {
    // The header tells how long the vectors, ids and liveness alone must be.
    let (dims_at, count_at, header_len) = if version == 1 {
        (14, 18, 26)
    } else {
        (16, 20, HEADER_LEN)
    };
    if bytes.len() >= count_at + 8 {
        let dims = u32::from_le_bytes(bytes[dims_at..dims_at + 4].try_into().unwrap_or([0; 4])) as u64;
        let count = u64::from_le_bytes(bytes[count_at..count_at + 8].try_into().unwrap_or([0; 8]));
        let minimum = (header_len as u64).saturating_add(count.saturating_mul(9 + 4 * dims));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Saved in locality order, a graph keeps every edge, vector, id and liveness, and its entry.
    #[test]
    fn a_saved_graph_keeps_every_edge_vector_and_id_in_its_new_order() {
        // 0 → 2 → 4, 1 → 3, 4 → 0; entry 2, which with 4 reaches layer 1.
        let layer0 = vec![vec![2], vec![3], vec![4], vec![], vec![0]];
        let upper = vec![vec![], vec![], vec![vec![4]], vec![], vec![vec![2]]];
        let graph = SearchGraph::from_lists(2, layer0, upper, 2).unwrap();
        let mut slots = Slots::new(Metric::L2, 1);
        for id in 0..5u64 {
            slots.push(id * 10, &[id as f32]).unwrap();
        }
        slots.remove(30);
        let config = HnswConfig::new(Metric::L2, 1).with_m(2);
        let (moved, saved) = decode(&encode(&slots, Some((&config, &graph))).unwrap()).unwrap();
        let (_, saved) = saved.unwrap();

        let order = graph.locality_order();
        assert_eq!(order, vec![2, 4, 0, 1, 3]);
        let edges = |g: &SearchGraph, s: &Slots, slot: u32, layer: usize| -> Vec<u64> {
            g.neighbour_list(slot, layer)
                .iter()
                .map(|&n| s.ids[n as usize])
                .collect()
        };
        for (new, &old) in order.iter().enumerate() {
            let new = new as u32;
            assert_eq!(moved.vector(new), slots.vector(old));
            assert_eq!(moved.ids[new as usize], slots.ids[old as usize]);
            assert_eq!(moved.live[new as usize], slots.live[old as usize]);
            assert_eq!(saved.level(new), graph.level(old));
            for layer in 0..=usize::from(graph.level(old)) {
                assert_eq!(edges(&saved, &moved, new, layer), edges(&graph, &slots, old, layer));
            }
        }
        assert_eq!(saved.entry().map(|e| moved.ids[e as usize]), Some(20));
        assert_eq!(saved.neighbour_list(0, 1), vec![1]);
        assert_eq!(moved.by_id.get(&30), None);
        assert_eq!(moved.by_id.len(), 4);
    }
}

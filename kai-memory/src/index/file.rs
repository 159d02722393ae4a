//! The index file, version 2 (all integers little-endian):
//!
//! ```text
//! magic "KAIINDEX" · version u32 · kind u8 (0 flat, 1 hnsw) · metric u8 · quantization u8 (0 none,
//! 1 int8, 2 product, 3 int4) · graph backend u8 (0 builtin, 1 hnsw_rs; 0 when flat) · dimensions u32 ·
//! slots u64 · zeros up to byte 64
//! vectors [f32; slots × dimensions] (at byte 64, so that a mapped file is read in place)
//! ids [u64; slots] · live [u8; slots]
//! hnsw only: m u32 · ef_construction u32 · ef_search u32 · expected_len u64 · entry u32 · max_level u8
//!            offsets [u32; slots + 1] · neighbour count u64 · neighbours [u32]
//!            per slot: upper layer count u8, then per layer: count u32 · neighbours [u32]
//! quantized only: subspaces u16 (0 for int8, int4) · trained u8 (0 or 1), then if trained:
//!            int8: low [f32; dimensions] · step [f32; dimensions]
//!            int4: nothing (each code holds its own range)
//!            product: trained_on u64 · typical error f32 · coarse centroids [f32; 256 × dimensions]
//!                     part centroids [f32; 256 × dimensions]
//!            codes [u8; slots × bytes per code] (int8: dimensions; int4: 8 + ⌈dimensions / 2⌉;
//!            product: 1 + subspaces, and 4 more under L2)
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

use crate::bytes::{LittleEndian, Reader};
use crate::error::Error;
use crate::index::buffer::Buffer;
use crate::index::distance::Metric;
use crate::index::graph::{MAX_LEVEL, SearchGraph};
use crate::index::hnsw::{HnswBackend, HnswConfig};
use crate::index::quantize::{CENTROIDS, Codes, Quantization, Scheme};
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
    let quantization = hnsw.map_or(Quantization::None, |(config, _)| config.quantization);
    let backend = match hnsw.map(|(config, _)| config.backend) {
        None | Some(HnswBackend::Builtin) => 0,
        Some(HnswBackend::HnswRs) => 1,
    };
    out.extend_from_slice(&[quantization.code(), backend]);
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
    // Only an HNSW index searches on codes (a flat one opened from an HNSW file keeps none).
    if let Some(codes) = slots.codes.as_ref().filter(|_| hnsw.is_some()) {
        let subspaces = match codes.quantization {
            Quantization::Product { subspaces } => subspaces,
            Quantization::Int8 | Quantization::Int4 | Quantization::None => 0,
        };
        out.extend_from_slice(&subspaces.to_le_bytes());
        match slots.searchable_codes().and_then(|codes| codes.scheme.as_ref()) {
            None => out.push(0),
            Some(scheme) => {
                out.push(1);
                match scheme {
                    Scheme::Int8 { low, step } => {
                        put_f32s(&mut out, low);
                        put_f32s(&mut out, step);
                    }
                    Scheme::Product {
                        coarse,
                        centroids,
                        trained_on,
                        typical_error,
                        ..
                    } => {
                        out.extend_from_slice(&trained_on.to_le_bytes());
                        out.extend_from_slice(&typical_error.to_le_bytes());
                        put_f32s(&mut out, coarse);
                        put_f32s(&mut out, centroids);
                    }
                    // Each code holds its own range.
                    Scheme::Int4 => {}
                }
                for &old in &order {
                    out.extend_from_slice(codes.code(old));
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

/// Where decoded sections come from: copied out of the bytes, or read in place from a mapped file.
enum Source<'a> {
    Bytes,
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(&'a std::sync::Arc<memmap2::Mmap>),
    #[cfg(target_arch = "wasm32")]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

impl Source<'_> {
    /// The section of `bytes` at `range` as a buffer.
    fn buffer<T: bytemuck::Pod>(&self, bytes: &[u8], range: Range<usize>) -> Buffer<T> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Source::Mapped(map) => Buffer::mapped(std::sync::Arc::clone(map), range),
            _ => Buffer::from_le_bytes(&bytes[range]),
        }
    }
}

/// Reads the index file at `path`. On native targets the file is mapped, and a version-2 file's
/// vectors (and codes) are read where they lie rather than copied: opening costs one pass over the
/// file, and an index larger than the heap can be searched. The pages that checking the file read are
/// let go again, so that only what searches touch stays resident: for a quantized index, whose codes
/// are copied into memory, the full-precision vectors that re-ranking reads (pages the kernel may
/// reclaim whenever memory is short, and read again from the file when needed).
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
        let (decoded, vectors) = decode_from(&map, Source::Mapped(&map))?;
        // Checking the file read every page of it; what was copied out (ids, graph) is not needed
        // again, and the vectors and codes are paged in again as searches touch them. Hints only: a
        // kernel that declines them leaves the pages resident, which is correct.
        // SAFETY: the mapping (shared, as `Mmap::map` makes it) is only ever read, never written
        // through, so its pages hold nothing the file does not: dropping them loses nothing, and the
        // next read faults them in again from the page cache or the file. (A copy-on-write mapping
        // written through would lose those writes; this one is never written.)
        let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        if decoded.0.searchable_codes().is_some() {
            // Re-ranking reads a few scattered vectors: read no more of the file around them.
            let _ = map.advise_range(memmap2::Advice::Random, vectors.start, vectors.len());
        }
        Ok(decoded)
    }
    #[cfg(target_arch = "wasm32")]
    decode(&std::fs::read(path).map_err(|e| Error::io(path, e))?)
}

/// Reads an index file's bytes, checking everything before trusting it.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, Error> {
    decode_from(bytes, Source::Bytes).map(|(decoded, _)| decoded)
}

/// Reads an index file's bytes, taking its sections from `source`; also returns where the vectors lie.
fn decode_from(bytes: &[u8], source: Source<'_>) -> Result<(Decoded, Range<usize>), Error> {
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
    let [quantization_code, backend_code] = if version >= 2 { r.array::<2>()? } else { [0, 0] };
    let dimensions = r.u32()? as usize;
    let count = usize::try_from(r.u64()?).map_err(|_| corrupt("slot count"))?;
    // Slots are numbered with u32 everywhere after this.
    if count > u32::MAX as usize {
        return Err(corrupt("more slots than an index holds"));
    }
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
    slots.data = source.buffer(bytes, vector_range.clone());
    for slot in 0..count {
        if slots.live[slot] && slots.by_id.insert(slots.ids[slot], slot as u32).is_some() {
            return Err(corrupt("two live vectors share an id"));
        }
    }
    // Stored vectors were checked when inserted; a file's may not have been. A NaN would rank first
    // for every query under cosine.
    // Dead slots too: compaction skips them, but quantization fits its ranges over every slot.
    if (0..count as u32).any(|slot| !usable(metric, slots.vector(slot))) {
        return Err(corrupt(
            "a stored vector is not finite (or, for cosine, not of unit length)",
        ));
    }
    let graph = match kind {
        0 => None,
        1 => {
            let mut config = HnswConfig {
                metric,
                dimensions,
                m: r.u32()? as usize,
                ef_construction: r.u32()? as usize,
                ef_search: r.u32()? as usize,
                expected_len: usize::try_from(r.u64()?).map_err(|_| corrupt("expected length"))?,
                quantization: Quantization::None,
                backend: HnswBackend::Builtin,
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
            if quantization_code != 0 {
                let subspaces = u16::from_le_bytes(r.array()?);
                config.quantization = match quantization_code {
                    1 if subspaces == 0 => Quantization::Int8,
                    3 if subspaces == 0 => Quantization::Int4,
                    2 => Quantization::Product { subspaces },
                    _ => return Err(corrupt("unknown quantization")),
                };
                config
                    .validate()
                    .map_err(|_| corrupt("the quantization does not fit the dimensions"))?;
                slots.codes = Some(read_codes(&mut r, config.quantization, metric, dimensions, count)?);
            }
            config.backend = match backend_code {
                0 => HnswBackend::Builtin,
                1 => HnswBackend::HnswRs,
                _ => return Err(corrupt("unknown graph backend")),
            };
            Some((config, graph))
        }
        _ => return Err(corrupt("unknown index kind")),
    };
    if kind == 0 && (quantization_code != 0 || backend_code != 0) {
        return Err(corrupt("a flat index has no quantization or graph backend"));
    }
    if r.at != body.len() {
        return Err(corrupt("trailing bytes"));
    }
    Ok(((slots, graph), vector_range))
}

/// Reads the codes section of a quantized index of `count` vectors.
fn read_codes(
    r: &mut Reader<'_>,
    quantization: Quantization,
    metric: Metric,
    dimensions: usize,
    count: usize,
) -> Result<Codes, Error> {
    let width = Codes::new(quantization, dimensions, metric).map_or(0, |codes| codes.width);
    let floats = |r: &mut Reader<'_>, n: usize| -> Result<Vec<f32>, Error> {
        let raw = r.take(n.checked_mul(4).ok_or_else(|| corrupt("quantization size"))?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let scheme = match r.u8()? {
        0 => None,
        1 => Some(match quantization {
            Quantization::Int8 => Scheme::Int8 {
                low: floats(r, dimensions)?,
                step: floats(r, dimensions)?,
            },
            Quantization::Product { subspaces } => {
                let trained_on = r.u64()?;
                let typical_error = f32::from_le_bytes(r.array()?);
                let coarse = floats(r, dimensions.saturating_mul(CENTROIDS))?;
                let centroids = floats(r, dimensions.saturating_mul(CENTROIDS))?;
                Scheme::product(
                    dimensions / usize::from(subspaces),
                    coarse,
                    centroids,
                    trained_on,
                    typical_error,
                )
            }
            Quantization::Int4 => Scheme::Int4,
            Quantization::None => return Err(corrupt("unknown quantization")),
        }),
        _ => return Err(corrupt("unknown quantization state")),
    };
    let codes = if scheme.is_some() {
        // Copied rather than read in place: searches read every code, so they are resident anyway,
        // and as memory of the index's own they are never dropped and faulted in again.
        Buffer::from_le_bytes(r.take(count.checked_mul(width).ok_or_else(|| corrupt("codes size"))?)?)
    } else {
        Buffer::default()
    };
    Codes::restored(quantization, dimensions, metric, scheme, codes).map_err(corrupt)
}

/// The most memory a graph read from a file of `file_len` bytes may take: a full graph takes a few times
/// its file's size, a sparse small one up to about a hundred times, but then little in all.
fn graph_budget(file_len: usize) -> u64 {
    (file_len as u64).saturating_mul(16).saturating_add(16 << 20)
}

/// Whether a stored vector could have been inserted: finite, and for cosine of unit length.
fn usable(metric: Metric, vector: &[f32]) -> bool {
    // The checks of `Metric::prepare`: finite components and a length that does not overflow.
    let norm_sq: f32 = vector.iter().map(|x| x * x).sum();
    if vector.iter().any(|x| !x.is_finite()) || !norm_sq.is_finite() {
        return false;
    }
    match metric {
        Metric::Cosine => (norm_sq - 1.0).abs() < 1e-3,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The file of a 5,000-vector 4-d index quantized with `quantization`, its codes first changed by
    /// `tamper`.
    fn quantized_file(quantization: Quantization, tamper: impl FnOnce(&mut Codes)) -> Vec<u8> {
        let config = HnswConfig::new(Metric::L2, 4).with_quantization(quantization);
        let mut slots = Slots::quantized(Metric::L2, 4, quantization);
        let vectors: Vec<f32> = (0..20_000u32).map(|i| ((i * 7_919) % 1_000) as f32 / 100.0).collect();
        let ids: Vec<u64> = (0..5_000).collect();
        slots.push_batch(&ids, &vectors).unwrap();
        let mut graph = SearchGraph::new(config.m);
        crate::index::insert::insert(&mut graph, &slots, 0..5_000, 40);
        tamper(slots.codes.as_mut().unwrap());
        encode(&slots, Some((&config, &graph))).unwrap()
    }

    /// Writes `value` at byte `at` of slot `slot`'s code.
    fn tamper_code(codes: &mut Codes, slot: u32, at: usize, value: f32) {
        let mut raw: Vec<u8> = (0..codes.len() as u32).flat_map(|s| codes.code(s).to_vec()).collect();
        raw[slot as usize * codes.width + at..][..4].copy_from_slice(&value.to_le_bytes());
        codes.bytes = Buffer::default();
        codes.bytes.extend_from_slice(&raw);
    }

    /// `bytes` with its checksum made right again after a change.
    fn resealed(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - 4;
        let checksum = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// What a hostile file could make of an opened index: a slot count past u32 (slots are numbered
    /// with u32), a beam of 2^32 (every insertion would walk the whole graph), a dead slot holding NaN
    /// or a vector whose length overflows (quantization fits its ranges over every slot), product
    /// centroids claiming to be learnt from no vectors (an empty insert would learn again from none).
    #[test]
    fn files_that_would_break_the_opened_index_are_refused() {
        let mut slots = Slots::new(Metric::L2, 2);
        slots.push_batch(&[1, 2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        slots.remove(1);
        let flat = encode(&slots, None).unwrap();
        assert!(decode(&flat).is_ok());
        let patched = |at: usize, bytes: &[u8]| {
            let mut file = flat.clone();
            file[at..at + bytes.len()].copy_from_slice(bytes);
            resealed(file)
        };
        // Slot 0 is dead; its first component becomes NaN. Then a live one of 3e38 (length overflows).
        assert!(matches!(
            decode(&patched(64, &f32::NAN.to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&patched(72, &3e38f32.to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&patched(20, &(1u64 << 32).to_le_bytes())),
            Err(Error::Corrupt { .. })
        ));

        let wide = quantized_file(Quantization::Int8, |_| {});
        let ef_construction_at = 64 + 5_000 * (4 * 4 + 9) + 4;
        let mut wide = wide;
        wide[ef_construction_at..ef_construction_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&resealed(wide)), Err(Error::Corrupt { .. })));

        let untrained = quantized_file(Quantization::Product { subspaces: 2 }, |codes| {
            if let Some(Scheme::Product { trained_on, .. }) = &mut codes.scheme {
                *trained_on = 0;
            }
        });
        assert!(matches!(decode(&untrained), Err(Error::Corrupt { .. })));
    }

    /// A flat index opened from a quantized HNSW file keeps no codes, and saves a file it reads back.
    #[test]
    fn a_flat_index_opened_from_a_quantized_file_saves_what_it_reads() {
        let bytes = quantized_file(Quantization::Int8, |_| {});
        let flat = crate::index::FlatIndex::from_bytes(&bytes).unwrap();
        let again = crate::index::FlatIndex::from_bytes(&flat.to_bytes().unwrap()).unwrap();
        assert_eq!(again.len(), 5_000);
        assert_eq!(again.search(&[0.0; 4], 3).unwrap(), flat.search(&[0.0; 4], 3).unwrap());
    }

    /// A quantized file's scheme and codes are checked like the rest: ranges and centroids must be
    /// finite (steps positive), the codes must cover every vector, and the scheme must be known.
    #[test]
    fn crafted_quantization_sections_are_refused() {
        for quantization in [
            Quantization::Int8,
            Quantization::Int4,
            Quantization::Product { subspaces: 2 },
        ] {
            let (slots, graph) = decode(&quantized_file(quantization, |_| {})).unwrap();
            assert_eq!(graph.unwrap().0.quantization, quantization);
            assert_eq!(slots.searchable_codes().unwrap().len(), 5_000);
        }
        let tampered = [
            quantized_file(Quantization::Int8, |codes| {
                if let Some(Scheme::Int8 { low, .. }) = &mut codes.scheme {
                    low[0] = f32::NAN;
                }
            }),
            quantized_file(Quantization::Int8, |codes| {
                if let Some(Scheme::Int8 { step, .. }) = &mut codes.scheme {
                    step[1] = 0.0;
                }
            }),
            quantized_file(Quantization::Product { subspaces: 2 }, |codes| {
                if let Some(Scheme::Product { centroids, .. }) = &mut codes.scheme {
                    centroids[77] = f32::INFINITY;
                }
            }),
            // An int4 code carries its own range: a NaN low end, a zero step.
            quantized_file(Quantization::Int4, |codes| tamper_code(codes, 3, 0, f32::NAN)),
            quantized_file(Quantization::Int4, |codes| tamper_code(codes, 4_999, 4, 0.0)),
            // A range whose top end overflows.
            quantized_file(Quantization::Int4, |codes| {
                tamper_code(codes, 10, 0, -3e38);
                tamper_code(codes, 10, 4, 3e38);
            }),
        ];
        for bytes in tampered {
            assert!(matches!(decode(&bytes), Err(Error::Corrupt { .. })));
        }
        let good = quantized_file(Quantization::Int8, |_| {});
        let mut unknown = good.clone();
        unknown[14] = 4;
        assert!(matches!(decode(&resealed(unknown)), Err(Error::Corrupt { .. })));
        // One code byte short: the section ends early and the trailing checks fail.
        let mut short = good.clone();
        short.remove(short.len() - 5);
        assert!(matches!(
            decode(&resealed(short)),
            Err(Error::Truncated | Error::Corrupt { .. })
        ));
    }

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

//! Reading the dumps that the `hnsw_rs` crate writes (`Hnsw::file_dump(dir, basename)`), without
//! the crate: a dump is input like any file, and hnsw_rs's own loader trusts its lengths.
//!
//! A dump is two files, every integer in the writer's byte order and `usize` fields in its width
//! (read here as little-endian and 64 bits: x86-64 and AArch64):
//!
//! ```text
//! <basename>.hnsw.graph   description: magic u32 (format 3: 0x002a6771, 4: 0x002a6779) · dump mode u8 ·
//!                         max connections u8 · (format 4: level scale f64) · layers u8 · ef usize ·
//!                         points usize · dimensions usize · distance name (usize length, ≤ 256
//!                         bytes) · element type name (usize length, ≤ 256 bytes); then the links
//! <basename>.hnsw.data    magic u32 0xa67f0000 · dimensions usize, then per point:
//!                         magic u32 · id u64 · byte length u64 · the vector's bytes
//! ```
//!
//! Only the graph file's description is read: the links are rebuilt by whichever backend the vectors
//! go into.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::bytes::{LittleEndian, Reader};
use crate::error::Error;
use crate::index::distance::Metric;

const DESCRIPTION_V3: u32 = 0x002a_6771;
const DESCRIPTION_V4: u32 = 0x002a_6779;
/// Format 2 encoded vectors with bincode; hnsw_rs itself no longer reads it.
const DESCRIPTION_V2: u32 = 0x002a_677f;
const DATA: u32 = 0xa67f_0000;
/// hnsw_rs refuses longer type names when it reads a dump.
const MAX_NAME: u64 = 256;
/// The description's fixed fields and two names at their longest.
const MAX_DESCRIPTION: usize = 4 + 1 + 1 + 8 + 1 + 3 * 8 + 2 * (8 + MAX_NAME as usize);
/// Each point's header in the data file: magic, id and byte length.
const POINT_HEADER: u64 = 4 + 8 + 8;

/// Reads the dump `basename` in `dir`, which must hold vectors of `dimensions` indexed by `metric`:
/// its ids, and its vectors back to back.
pub(crate) fn read(
    dir: &Path,
    basename: &str,
    dimensions: usize,
    metric: Metric,
) -> Result<(Vec<u64>, Vec<f32>), Error> {
    let graph_path = dir.join(format!("{basename}.hnsw.graph"));
    let data_path = dir.join(format!("{basename}.hnsw.data"));
    let description = describe(&read_at_most(&graph_path, MAX_DESCRIPTION as u64)?)?;
    if description.dimensions != dimensions {
        return Err(Error::DimensionMismatch {
            expected: dimensions,
            found: description.dimensions,
        });
    }
    if description.metric != metric {
        return Err(Error::InvalidConfig(format!(
            "the dump measures {:?} distance; the settings ask for {metric:?}",
            description.metric
        )));
    }
    // The data file's size follows from the description: check it before reading anything.
    let expected = data_len(&description)?;
    let data = read_at_most(&data_path, expected.saturating_add(1))?;
    points(&data, expected, &description)
}

/// What [`read`] checks, on the two files' bytes, for the fuzz targets.
#[cfg(fuzzing)]
pub(crate) fn check(graph: &[u8], data: &[u8]) -> Result<(), Error> {
    let description = describe(graph)?;
    points(data, data_len(&description)?, &description).map(drop)
}

/// The length of the data file that `description` describes.
fn data_len(description: &Description) -> Result<u64, Error> {
    description
        .points
        .checked_mul(POINT_HEADER + 4 * description.dimensions as u64)
        .and_then(|points| points.checked_add(12))
        .ok_or_else(|| corrupt("the point count"))
}

/// The first `limit` bytes of the regular file at `path` (anything else, a FIFO or a device, is
/// refused before it is opened).
fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, Error> {
    let metadata = std::fs::metadata(path).map_err(|e| Error::file(path, e))?;
    if !metadata.is_file() {
        return Err(corrupt("a dump file is not a regular file"));
    }
    let mut bytes = Vec::with_capacity(metadata.len().min(limit) as usize);
    let file = std::fs::File::open(path).map_err(|e| Error::file(path, e))?;
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, e))?;
    Ok(bytes)
}

/// What the graph file's description says.
#[derive(Debug)]
struct Description {
    metric: Metric,
    dimensions: usize,
    points: u64,
}

/// Reads the description at the start of a graph file.
fn describe(head: &[u8]) -> Result<Description, Error> {
    let mut r = Reader::new(head, 0);
    let format = match r.u32()? {
        DESCRIPTION_V3 => 3,
        DESCRIPTION_V4 => 4,
        DESCRIPTION_V2 => {
            return Err(corrupt(
                "a format 2 (bincode) hnsw_rs dump, which hnsw_rs no longer reads",
            ));
        }
        magic if [DESCRIPTION_V2, DESCRIPTION_V3, DESCRIPTION_V4].contains(&magic.swap_bytes()) => {
            return Err(corrupt("a dump written on a big-endian machine"));
        }
        _ => return Err(Error::NotAnIndex),
    };
    let _mode = r.u8()?;
    let _max_connections = r.u8()?;
    if format == 4 {
        let _level_scale = r.u64()?;
    }
    let _layers = r.u8()?;
    let _ef = r.u64()?;
    let points = r.u64()?;
    let dimensions = usize::try_from(r.u64()?).map_err(|_| corrupt("dimensions"))?;
    if dimensions == 0 || dimensions > u32::MAX as usize {
        return Err(corrupt("dimensions"));
    }
    let distance = name(&mut r)?;
    let element = name(&mut r)?;
    if element != "f32" {
        return Err(Error::InvalidConfig(format!(
            "the dump holds vectors of {element:?}; an index holds f32"
        )));
    }
    // The distance's type name, path and all (`anndists::dist::distances::DistL2`).
    let metric = match distance.rsplit("::").next().unwrap_or_default() {
        "DistL2" => Metric::L2,
        // hnsw_rs's dot distance is `1 - a·b` over vectors normalised beforehand: cosine.
        "DistCosine" | "DistDot" => Metric::Cosine,
        _ => {
            return Err(Error::InvalidConfig(format!(
                "the dump measures with {distance:?}, which no kAI metric matches (DistL2, DistCosine and DistDot do)"
            )));
        }
    };
    Ok(Description {
        metric,
        dimensions,
        points,
    })
}

/// A length-prefixed UTF-8 name of at most [`MAX_NAME`] bytes.
fn name<'a>(r: &mut Reader<'a>) -> Result<&'a str, Error> {
    let len = r.u64()?;
    if len > MAX_NAME {
        return Err(corrupt("a type name longer than hnsw_rs writes"));
    }
    std::str::from_utf8(r.take(len as usize)?).map_err(|_| corrupt("a type name is not UTF-8"))
}

/// The ids and vectors of the data file, which must be `expected` bytes long: exactly the points the
/// description counts, each id once.
fn points(data: &[u8], expected: u64, description: &Description) -> Result<(Vec<u64>, Vec<f32>), Error> {
    let dimensions = description.dimensions;
    let vector_bytes = 4 * dimensions as u64;
    if (data.len() as u64) < expected {
        return Err(Error::Truncated);
    }
    if data.len() as u64 > expected {
        return Err(corrupt(
            "the data file holds more than the points its graph file counts",
        ));
    }
    let count = description.points as usize;
    let mut r = Reader::new(data, 0);
    if r.u32()? != DATA {
        return Err(corrupt("the data file does not start as an hnsw_rs data file"));
    }
    if r.u64()? != dimensions as u64 {
        return Err(corrupt("the data and graph files give different dimensions"));
    }
    let mut ids = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    let mut vectors = Vec::with_capacity(count * dimensions);
    for _ in 0..count {
        if r.u32()? != DATA {
            return Err(corrupt("a point in the data file does not start with its marker"));
        }
        let id = r.u64()?;
        // hnsw_rs keeps a repeated id as another point; an index keeps one vector per id, and the
        // dump's order (by layer) does not say which came last.
        if !seen.insert(id) {
            return Err(corrupt(&format!(
                "id {id} appears twice, and an index keeps one vector per id"
            )));
        }
        ids.push(id);
        if r.u64()? != vector_bytes {
            return Err(corrupt("a vector's length differs from the dump's dimensions"));
        }
        let bytes = r.take(vector_bytes as usize)?;
        vectors.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    Ok((ids, vectors))
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        what: format!("hnsw_rs dump: {what}"),
    }
}

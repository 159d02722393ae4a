//! Growable `f32` storage for an index's vectors, backed on Linux by transparent huge pages.
//!
//! A search reads vectors scattered over the whole index. With 4 KiB pages, 50,000 vectors of 384
//! dimensions span 19,000 pages, far more than the CPU's TLB maps, so most distance computations
//! start with a page-table walk. Memory advised `MADV_HUGEPAGE` is backed by 2 MiB pages wherever
//! transparent huge pages are `always` or `madvise` (the default on Debian and Ubuntu), and the same
//! vectors then span 37 pages. docs/PERFORMANCE.md has the measured effect on search.
//!
//! Buffers smaller than one huge page stay on the heap, as does everything on other systems and any
//! buffer the system declines to map.
//!
//! A buffer may also be the vector section of a mapped index file, read in place: opening then copies
//! nothing, and the kernel pages the vectors in and out as searches touch them. The first write copies
//! them into memory of the buffer's own.

/// The size of a transparent huge page on x86-64 and most aarch64 kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// A growable buffer of `f32`, read as one slice.
#[derive(Default)]
pub(crate) struct FloatBuffer {
    storage: Storage,
}

enum Storage {
    Heap(Vec<f32>),
    /// An anonymous mapping advised for huge pages, of which the first `len` floats are in use.
    #[cfg(target_os = "linux")]
    Mapped {
        map: memmap2::MmapMut,
        len: usize,
    },
    /// Floats read in place from a mapped file: `bytes` is a range of it, 4-byte aligned.
    #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
    File {
        map: std::sync::Arc<memmap2::Mmap>,
        bytes: std::ops::Range<usize>,
    },
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Heap(Vec::new())
    }
}

impl FloatBuffer {
    /// The little-endian floats in `bytes` (whose length is a multiple of 4), copied.
    pub(crate) fn from_le_bytes(bytes: &[u8]) -> Self {
        let mut buffer = Self::default();
        buffer.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        buffer
    }

    /// The little-endian floats in `bytes` of `map` (a range whose length is a multiple of 4), read in
    /// place where the range is aligned for `f32` and the machine is little-endian, copied otherwise.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn mapped(map: std::sync::Arc<memmap2::Mmap>, bytes: std::ops::Range<usize>) -> Self {
        #[cfg(target_endian = "little")]
        if map[bytes.clone()].as_ptr().align_offset(4) == 0 {
            return Self {
                storage: Storage::File { map, bytes },
            };
        }
        Self::from_le_bytes(&map[bytes])
    }

    /// The floats held, in order.
    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[f32] {
        match &self.storage {
            Storage::Heap(vec) => vec,
            // A mapping starts on a page boundary, so its bytes are aligned for f32.
            #[cfg(target_os = "linux")]
            Storage::Mapped { map, len } => &bytemuck::cast_slice(&map[..])[..*len],
            // Aligned, as `mapped` checked.
            #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
            Storage::File { map, bytes } => bytemuck::cast_slice(&map[bytes.clone()]),
        }
    }

    /// How many floats are held.
    pub(crate) fn len(&self) -> usize {
        match &self.storage {
            Storage::Heap(vec) => vec.len(),
            #[cfg(target_os = "linux")]
            Storage::Mapped { len, .. } => *len,
            #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
            Storage::File { bytes, .. } => bytes.len() / 4,
        }
    }

    /// Whether the floats are read in place from a mapped file.
    #[cfg(test)]
    pub(crate) fn is_file(&self) -> bool {
        #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
        if let Storage::File { .. } = self.storage {
            return true;
        }
        false
    }

    /// Makes room for at least `additional` more floats (and, as a `Vec` does, for amortised growth).
    pub(crate) fn reserve(&mut self, additional: usize) {
        match &mut self.storage {
            #[cfg(target_os = "linux")]
            Storage::Heap(vec) if vec.len().saturating_add(additional).saturating_mul(4) >= HUGE_PAGE => {
                let needed = vec.len().saturating_add(additional);
                if let Some(mapped) = map_with_room(vec, needed) {
                    self.storage = mapped;
                } else {
                    vec.reserve(additional);
                }
            }
            Storage::Heap(vec) => vec.reserve(additional),
            #[cfg(target_os = "linux")]
            Storage::Mapped { map, len } => {
                let needed = len.saturating_add(additional);
                let capacity = map.len() / 4;
                if needed > capacity {
                    let held = &bytemuck::cast_slice(&map[..])[..*len];
                    self.storage = map_with_room(held, needed.max(2 * capacity))
                        .unwrap_or_else(|| Storage::Heap(with_room(held, needed)));
                }
            }
            // A file's floats are read-only: they are copied into memory of the buffer's own first.
            #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
            Storage::File { map, bytes } => {
                let held: &[f32] = bytemuck::cast_slice(&map[bytes.clone()]);
                let mut owned = FloatBuffer::default();
                owned.reserve(held.len().saturating_add(additional));
                owned.extend_from_slice(held);
                self.storage = owned.storage;
            }
        }
    }

    /// Appends the floats `values` yields.
    pub(crate) fn extend(&mut self, values: impl ExactSizeIterator<Item = f32>) {
        self.reserve(values.len());
        match &mut self.storage {
            Storage::Heap(vec) => vec.extend(values),
            #[cfg(target_os = "linux")]
            Storage::Mapped { map, len } => {
                let room = &mut bytemuck::cast_slice_mut(&mut map[..])[*len..];
                *len += room.iter_mut().zip(values).map(|(place, value)| *place = value).count();
            }
            // Not reached (`reserve` has made the buffer its own), and correct all the same.
            #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
            Storage::File { map, bytes } => {
                let mut vec = with_room(bytemuck::cast_slice(&map[bytes.clone()]), 0);
                vec.extend(values);
                self.storage = Storage::Heap(vec);
            }
        }
    }

    /// Appends a copy of `values`.
    pub(crate) fn extend_from_slice(&mut self, values: &[f32]) {
        self.extend(values.iter().copied());
    }
}

/// A heap copy of `held` with room for `needed` floats.
#[cfg(not(target_arch = "wasm32"))]
fn with_room(held: &[f32], needed: usize) -> Vec<f32> {
    let mut vec = Vec::with_capacity(needed.max(held.len()));
    vec.extend_from_slice(held);
    vec
}

/// A huge-page mapping holding a copy of `held`, with room for `needed` floats; `None` if the system
/// declines the mapping (the caller then stays on the heap).
#[cfg(target_os = "linux")]
fn map_with_room(held: &[f32], needed: usize) -> Option<Storage> {
    let bytes = needed
        .max(held.len())
        .checked_mul(4)?
        .checked_next_multiple_of(HUGE_PAGE)?;
    let mut map = memmap2::MmapOptions::new().len(bytes).map_anon().ok()?;
    // Only a hint: without transparent huge pages the kernel refuses it and 4 KiB pages serve.
    let _ = map.advise(memmap2::Advice::HugePage);
    bytemuck::cast_slice_mut(&mut map[..held.len() * 4]).copy_from_slice(held);
    Some(Storage::Mapped { map, len: held.len() })
}

impl Clone for FloatBuffer {
    fn clone(&self) -> Self {
        let mut copy = FloatBuffer::default();
        copy.extend_from_slice(self.as_slice());
        copy
    }
}

impl std::fmt::Debug for FloatBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloatBuffer").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_appended_across_growth_and_moves_to_huge_pages() {
        let mut buffer = FloatBuffer::default();
        let mut expected = Vec::new();
        // Small batches stay on the heap, then growth past one huge page moves the floats to a mapping.
        for batch in 0..40 {
            let values: Vec<f32> = (0..batch * 997).map(|i| (batch * 100_000 + i) as f32).collect();
            buffer.extend_from_slice(&values);
            expected.extend_from_slice(&values);
            assert_eq!(buffer.as_slice(), &expected[..]);
        }
        #[cfg(target_os = "linux")]
        assert!(matches!(buffer.storage, Storage::Mapped { .. }));
        buffer.reserve(10_000_000);
        assert_eq!(buffer.as_slice(), &expected[..]);
        let copy = buffer.clone();
        assert_eq!(copy.as_slice(), &expected[..]);
        assert_eq!(copy.len(), expected.len());
    }
}

//! Growable storage for an index's vectors and codes, backed on Linux by transparent huge pages, and
//! able to start with a mapped file's contents read in place.
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
//! A buffer may start with a section of a mapped index file, read in place: opening then copies
//! nothing, the kernel pages the section in and out as searches touch it, and an index larger than
//! the heap can be searched. What is appended later goes to memory of the buffer's own, after it.

use bytemuck::Pod;

/// The size of a transparent huge page on x86-64 and most aarch64 kernels.
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// A growable buffer of `T`, read by ranges.
pub(crate) struct Buffer<T: Pod> {
    /// Values read in place from a mapped file, before the owned ones.
    #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
    file: Option<FileSection>,
    owned: Owned<T>,
}

/// The vectors of an index.
pub(crate) type FloatBuffer = Buffer<f32>;

/// A range of a mapped file, aligned for the values it holds.
#[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
struct FileSection {
    map: std::sync::Arc<memmap2::Mmap>,
    bytes: std::ops::Range<usize>,
}

enum Owned<T> {
    Heap(Vec<T>),
    /// An anonymous mapping advised for huge pages, of which the first `len` values are in use.
    #[cfg(target_os = "linux")]
    Mapped {
        map: memmap2::MmapMut,
        len: usize,
    },
}

impl<T: Pod> Default for Buffer<T> {
    fn default() -> Self {
        Self {
            #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
            file: None,
            owned: Owned::Heap(Vec::new()),
        }
    }
}

impl<T: Pod> Buffer<T> {
    /// The values in `bytes` (little-endian, a multiple of `T`'s size long), copied.
    pub(crate) fn from_le_bytes(bytes: &[u8]) -> Self {
        let mut values = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
        let whole = std::mem::size_of_val(values.as_slice());
        bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(&bytes[..whole]);
        if cfg!(target_endian = "big") {
            for value in &mut values {
                bytemuck::bytes_of_mut(value).reverse();
            }
        }
        let mut buffer = Self::default();
        buffer.extend_from_slice(&values);
        buffer
    }

    /// The values in `bytes` of `map` (little-endian, a multiple of `T`'s size long): read in place
    /// where the range is aligned for `T` and the machine is little-endian, copied otherwise.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn mapped(map: std::sync::Arc<memmap2::Mmap>, bytes: std::ops::Range<usize>) -> Self {
        #[cfg(target_endian = "little")]
        if map[bytes.clone()].as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
            return Self {
                file: Some(FileSection { map, bytes }),
                owned: Owned::Heap(Vec::new()),
            };
        }
        Self::from_le_bytes(&map[bytes])
    }

    /// The values read in place from a file.
    #[inline(always)]
    fn file_values(&self) -> &[T] {
        #[cfg(all(not(target_arch = "wasm32"), target_endian = "little"))]
        if let Some(section) = &self.file {
            // Aligned, as `mapped` checked.
            return bytemuck::cast_slice(&section.map[section.bytes.clone()]);
        }
        &[]
    }

    /// The values of the buffer's own.
    #[inline(always)]
    fn owned_values(&self) -> &[T] {
        match &self.owned {
            Owned::Heap(vec) => vec,
            // A mapping starts on a page boundary, so its bytes are aligned for any `T`.
            #[cfg(target_os = "linux")]
            Owned::Mapped { map, len } => &bytemuck::cast_slice(&map[..])[..*len],
        }
    }

    /// `len` values from `start`, which lie either all in the file's section or all after it (the
    /// section holds whole vectors).
    #[inline(always)]
    pub(crate) fn range(&self, start: usize, len: usize) -> &[T] {
        let file = self.file_values();
        if start < file.len() {
            &file[start..start + len]
        } else {
            &self.owned_values()[start - file.len()..][..len]
        }
    }

    /// How many values are read in place from a file.
    pub(crate) fn file_len(&self) -> usize {
        self.file_values().len()
    }

    /// How many values are held.
    pub(crate) fn len(&self) -> usize {
        self.file_values().len() + self.owned_values().len()
    }

    /// Makes room for at least `additional` more values (and, as a `Vec` does, for amortised growth).
    pub(crate) fn reserve(&mut self, additional: usize) {
        #[cfg(target_os = "linux")]
        let size = std::mem::size_of::<T>();
        match &mut self.owned {
            #[cfg(target_os = "linux")]
            Owned::Heap(vec) if vec.len().saturating_add(additional).saturating_mul(size) >= HUGE_PAGE => {
                let needed = vec.len().saturating_add(additional);
                if let Some(mapped) = map_with_room(vec, needed) {
                    self.owned = mapped;
                } else {
                    vec.reserve(additional);
                }
            }
            Owned::Heap(vec) => vec.reserve(additional),
            #[cfg(target_os = "linux")]
            Owned::Mapped { map, len } => {
                let needed = len.saturating_add(additional);
                let capacity = map.len() / size;
                if needed > capacity {
                    let held = &bytemuck::cast_slice(&map[..])[..*len];
                    self.owned = map_with_room(held, needed.max(2 * capacity)).unwrap_or_else(|| {
                        let mut vec = Vec::with_capacity(needed);
                        vec.extend_from_slice(held);
                        Owned::Heap(vec)
                    });
                }
            }
        }
    }

    /// Appends a copy of `values`.
    pub(crate) fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        match &mut self.owned {
            Owned::Heap(vec) => vec.extend_from_slice(values),
            #[cfg(target_os = "linux")]
            Owned::Mapped { map, len } => {
                // `reserve` made room for them.
                let room: &mut [T] = bytemuck::cast_slice_mut(&mut map[..]);
                room[*len..*len + values.len()].copy_from_slice(values);
                *len += values.len();
            }
        }
    }
}

/// A huge-page mapping holding a copy of `held`, with room for `needed` values; `None` if the system
/// declines the mapping (the caller then stays on the heap).
#[cfg(target_os = "linux")]
fn map_with_room<T: Pod>(held: &[T], needed: usize) -> Option<Owned<T>> {
    let size = std::mem::size_of::<T>();
    let bytes = needed
        .max(held.len())
        .checked_mul(size)?
        .checked_next_multiple_of(HUGE_PAGE)?;
    let mut map = memmap2::MmapOptions::new().len(bytes).map_anon().ok()?;
    // Only a hint: without transparent huge pages the kernel refuses it and 4 KiB pages serve.
    let _ = map.advise(memmap2::Advice::HugePage);
    map[..std::mem::size_of_val(held)].copy_from_slice(bytemuck::cast_slice(held));
    Some(Owned::Mapped { map, len: held.len() })
}

impl<T: Pod> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        let mut copy = Buffer::default();
        copy.reserve(self.len());
        copy.extend_from_slice(self.file_values());
        copy.extend_from_slice(self.owned_values());
        copy
    }
}

impl<T: Pod> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.len())
            .field("in_place", &self.file_len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents<T: Pod>(buffer: &Buffer<T>) -> Vec<T> {
        let mut all = buffer.file_values().to_vec();
        all.extend_from_slice(buffer.owned_values());
        all
    }

    #[test]
    fn holds_what_was_appended_across_growth_and_moves_to_huge_pages() {
        let mut buffer = FloatBuffer::default();
        let mut expected = Vec::new();
        // Small batches stay on the heap, then growth past one huge page moves the floats to a mapping.
        for batch in 0..40 {
            let values: Vec<f32> = (0..batch * 997).map(|i| (batch * 100_000 + i) as f32).collect();
            buffer.extend_from_slice(&values);
            expected.extend_from_slice(&values);
            assert_eq!(contents(&buffer), expected);
        }
        #[cfg(target_os = "linux")]
        assert!(matches!(buffer.owned, Owned::Mapped { .. }));
        buffer.reserve(10_000_000);
        assert_eq!(contents(&buffer), expected);
        let copy = buffer.clone();
        assert_eq!(contents(&copy), expected);
        assert_eq!(copy.len(), expected.len());
        assert_eq!(buffer.range(997, 3), &expected[997..1000]);
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_mapped_section_is_read_in_place_and_appends_go_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("floats");
        let floats: Vec<f32> = (0..1_000).map(|i| i as f32).collect();
        let mut bytes = vec![0u8; 8];
        bytes.extend(floats.iter().flat_map(|x| x.to_le_bytes()));
        std::fs::write(&path, &bytes).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the file is this test's own and nothing changes it while it is mapped.
        let map = std::sync::Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap());

        let mut buffer = FloatBuffer::mapped(map.clone(), 8..bytes.len());
        assert_eq!(buffer.file_len(), 1_000);
        buffer.extend_from_slice(&[-1.0, -2.0]);
        assert_eq!(buffer.range(998, 2), &[998.0, 999.0]);
        assert_eq!(buffer.range(1_000, 2), &[-1.0, -2.0]);
        assert_eq!(buffer.len(), 1_002);

        // A range not aligned for f32 is copied instead.
        let copied = FloatBuffer::mapped(map, 9..9 + 4 * 10);
        assert_eq!(copied.file_len(), 0);
        assert_eq!(copied.len(), 10);
        let bytes: Vec<u8> = [0.5f32, 1.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(contents(&FloatBuffer::from_le_bytes(&bytes)), [0.5, 1.5]);
    }
}

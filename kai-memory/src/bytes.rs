//! Reading binary file formats without ever indexing past the end.

use crate::error::Error;

/// A cursor over bytes; running out is [`Error::Truncated`].
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    /// A reader starting at `at`.
    pub(crate) fn new(bytes: &'a [u8], at: usize) -> Self {
        Self { bytes, at }
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).ok_or(Error::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(Error::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    /// The next `N` bytes as an array (for `from_le_bytes` / `from_be_bytes`).
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Little-endian fields over the byte reader.
pub(crate) trait LittleEndian {
    /// The next byte.
    fn u8(&mut self) -> Result<u8, Error>;
    /// The next 4 bytes as a little-endian `u32`.
    fn u32(&mut self) -> Result<u32, Error>;
    /// The next 8 bytes as a little-endian `u64`.
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

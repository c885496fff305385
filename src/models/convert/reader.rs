//! A small binary reader that knows its file, offset and length for errors.

use super::*;

/// Position-tracking little-endian reader over a seekable source.
pub(super) struct BinReader<R> {
    pub(super) inner: R,
    pub(super) path: PathBuf,
    pub(super) pos: u64,
    pub(super) len: u64,
}

impl<R: Read + Seek> BinReader<R> {
    pub(super) fn new(inner: R, path: &Path, len: u64) -> Self {
        BinReader {
            inner,
            path: path.to_path_buf(),
            pos: 0,
            len,
        }
    }

    pub(super) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    pub(super) fn truncated(&self, what: &str, needed: u64) -> ConvertError {
        ConvertError::Truncated {
            path: self.path.clone(),
            offset: self.pos,
            expected: what.to_string(),
            needed: needed.saturating_sub(self.remaining()),
            file_len: self.len,
        }
    }

    pub(super) fn malformed(
        &self,
        offset: u64,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> ConvertError {
        ConvertError::Malformed {
            path: self.path.clone(),
            offset,
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// Fails with [`ConvertError::Truncated`] unless `n` more bytes exist.
    pub(super) fn need(&self, n: u64, what: &str) -> Result<(), ConvertError> {
        if n > self.remaining() {
            Err(self.truncated(what, n))
        } else {
            Ok(())
        }
    }

    pub(super) fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ConvertError> {
        self.need(buf.len() as u64, what)?;
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            // The file shrank while we read it.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(self.truncated(what, buf.len() as u64 + 1))
            }
            Err(source) => Err(ConvertError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }

    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        self.need(n, what)?;
        let len = usize::try_from(n).map_err(|_| self.truncated(what, n))?;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ConvertError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(super) fn i32(&mut self, what: &str) -> Result<i32, ConvertError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    /// Skips `n` bytes, which must exist.
    pub(super) fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        self.need(n, what)?;
        let delta = i64::try_from(n).map_err(|_| self.truncated(what, n))?;
        self.inner
            .seek(SeekFrom::Current(delta))
            .map_err(|source| ConvertError::Io {
                action: "seek in",
                path: self.path.clone(),
                source,
            })?;
        self.pos += n;
        Ok(())
    }
}

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ConvertError + 'a {
    move |source| ConvertError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn open_reader(path: &Path) -> Result<BinReader<BufReader<File>>, ConvertError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    Ok(BinReader::new(BufReader::new(file), path, len))
}

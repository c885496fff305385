//! Reading PyTorch checkpoints (`torch.save` zip archives) without PyTorch.
//!
//! An archive holds `<prefix>/data.pkl` (the pickled state dict, read by
//! [`pickle`]) and one raw little-endian file per storage,
//! `<prefix>/data/<key>`. [`Checkpoint`] lists the tensors and reads any of
//! them as `f32`.

pub mod pickle;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use pickle::{PickleError, TensorRef, Value};

/// What went wrong reading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be opened or read.
    #[error("cannot read the checkpoint {}: {source}", path.display())]
    Io {
        /// The checkpoint.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The file is not a zip archive or lacks an entry.
    #[error("{} is not a PyTorch zip checkpoint: {what}", path.display())]
    Archive {
        /// The checkpoint.
        path: PathBuf,
        /// What is missing or broken.
        what: String,
    },
    /// The pickled state dict cannot be read.
    #[error("{}: {source}", path.display())]
    Pickle {
        /// The checkpoint.
        path: PathBuf,
        /// Cause.
        source: PickleError,
    },
    /// A tensor the caller needs is absent.
    #[error("{} has no tensor '{name}'", path.display())]
    MissingTensor {
        /// The checkpoint.
        path: PathBuf,
        /// Tensor name.
        name: String,
    },
    /// A tensor has an unexpected shape or element type, or its view runs
    /// past its storage.
    #[error("{}: tensor '{name}': {what}", path.display())]
    BadTensor {
        /// The checkpoint.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// What is wrong.
        what: String,
    },
}

/// A tensor read as `f32`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Elements.
    pub data: Vec<f32>,
}

/// An opened checkpoint: the tensor index, with data read on demand.
pub struct Checkpoint {
    path: PathBuf,
    zip: zip::ZipArchive<File>,
    prefix: String,
    tensors: BTreeMap<String, TensorRef>,
}

/// Largest storage entry read (bytes): far above any speaker model.
const MAX_STORAGE: u64 = 1 << 31;

impl Checkpoint {
    /// Open `path` and read its state dict's tensor index.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        };
        let archive = |what: String| CheckpointError::Archive {
            path: path.to_path_buf(),
            what,
        };
        let f = File::open(path).map_err(io)?;
        let mut zip = zip::ZipArchive::new(f).map_err(|e| archive(e.to_string()))?;
        let pkl = zip
            .file_names()
            .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
            .map(str::to_string)
            .ok_or_else(|| archive("no data.pkl entry".into()))?;
        let prefix = pkl.trim_end_matches("data.pkl").to_string();
        let mut bytes = Vec::new();
        zip.by_name(&pkl)
            .map_err(|e| archive(e.to_string()))?
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let root = pickle::parse(&bytes).map_err(|source| CheckpointError::Pickle {
            path: path.to_path_buf(),
            source,
        })?;
        let Value::Dict(entries) = root else {
            return Err(archive("data.pkl is not a state dict".into()));
        };
        let mut tensors = BTreeMap::new();
        for (k, v) in entries {
            if let (Value::Str(name), Value::Tensor(t)) = (k, v) {
                tensors.insert(name, t);
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            zip,
            prefix,
            tensors,
        })
    }

    /// Tensor names and views, sorted by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorRef> {
        &self.tensors
    }

    /// Shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Read tensor `name` as `f32` (from float, half or double storage).
    pub fn read(&mut self, name: &str) -> Result<Tensor, CheckpointError> {
        let t = self
            .tensors
            .get(name)
            .cloned()
            .ok_or_else(|| CheckpointError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            })?;
        let bad = |what: String| CheckpointError::BadTensor {
            path: self.path.clone(),
            name: name.into(),
            what,
        };
        let width = match t.dtype.as_str() {
            "FloatStorage" => 4,
            "HalfStorage" => 2,
            "DoubleStorage" => 8,
            other => return Err(bad(format!("element type {other} is not floating point"))),
        };
        let entry = format!("{}data/{}", self.prefix, t.storage);
        let mut raw = Vec::new();
        {
            let e = self
                .zip
                .by_name(&entry)
                .map_err(|_| bad(format!("storage {entry} is missing")))?;
            if e.size() > MAX_STORAGE {
                return Err(bad(format!("storage of {} bytes is too large", e.size())));
            }
            e.take(MAX_STORAGE)
                .read_to_end(&mut raw)
                .map_err(|source| CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })?;
        }
        let elems = raw.len() / width;
        let count: usize = t.shape.iter().product();
        // Highest element index the view touches.
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&n, &s)| {
                acc.checked_add(n.saturating_sub(1).checked_mul(s)?)
            });
        match last {
            Some(l) if count == 0 || l < elems => {}
            _ => {
                return Err(bad(format!(
                    "view runs past its storage of {elems} elements"
                )))
            }
        }
        let get = |i: usize| -> f32 {
            let b = &raw[i * width..(i + 1) * width];
            match width {
                4 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                2 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
                _ => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            }
        };
        let mut data = Vec::with_capacity(count);
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..count {
            let at = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            data.push(get(at));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(Tensor {
            shape: t.shape,
            data,
        })
    }
}

/// IEEE half to single precision.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}

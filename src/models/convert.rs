//! CTranslate2 (faster-whisper) Whisper model → whisper.cpp ggml model converter.
//!
//! faster-whisper ships Whisper as a CTranslate2 directory (`model.bin`,
//! `tokenizer.json`, `config.json`). whisper.cpp (vendored by whisper-rs) only
//! reads its own single-file "ggml" format. This module rewrites the first into
//! the second without Python:
//!
//! * the CTranslate2 `model.bin` is indexed once (names, shapes, dtypes, data
//!   offsets) and each tensor is then streamed, chunk by chunk, into the output;
//! * fused projections are split back into OpenAI's layout (self-attention
//!   Q/K/V, cross-attention K/V; Whisper's key projections have no bias);
//! * the mel filter bank whisper.cpp expects in the file is computed here
//!   (librosa `filters.mel(sr=16000, n_fft=400, n_mels=N)`: Slaney mel scale,
//!   Slaney area normalisation);
//! * the vocabulary is recovered from `tokenizer.json` by mapping the byte-level
//!   BPE strings back through GPT-2's byte-to-unicode table.
//!
//! The output is written to `<out>.part`, fsynced and renamed, so an
//! interrupted or failed conversion never leaves a file that looks complete.
//! [`inspect_ggml`] reads a ggml file's header and tensor directory back, to
//! verify a conversion or a downloaded model.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `ggml` file magic (`"ggml"` as a little-endian `u32`).
const GGML_MAGIC: u32 = 0x6767_6d6c;
/// CTranslate2 binary versions whose layout this reader understands.
const CT2_MIN_VERSION: u32 = 4;
/// Newest CTranslate2 binary version known to this reader.
const CT2_MAX_VERSION: u32 = 6;
/// The CTranslate2 model specification a Whisper model must carry.
const CT2_WHISPER_SPEC: &str = "WhisperSpec";
/// Sample rate Whisper's front end assumes.
const SAMPLE_RATE: f64 = 16_000.0;
/// FFT window size of Whisper's front end.
const N_FFT: usize = 400;
/// Number of frequency bins of a real FFT of [`N_FFT`] samples.
const N_FFT_BINS: usize = N_FFT / 2 + 1;
/// ggml tensor type id for `f32`.
const GGML_TYPE_F32: i32 = 0;
/// ggml tensor type id for `f16`.
const GGML_TYPE_F16: i32 = 1;
/// whisper.cpp `ftype` for "matrices in f16".
const GGML_FTYPE_MOSTLY_F16: i32 = 1;
/// Elements converted per chunk while streaming a tensor.
const CHUNK_ELEMS: usize = 1 << 18;
/// Longest tensor name accepted when reading a ggml file back.
const MAX_GGML_NAME: usize = 4096;

/// What can go wrong while converting or inspecting a model.
///
/// Each variant names the file concerned and, for malformed binary data, the
/// byte offset at which the problem was found.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Opening, reading, writing, syncing or renaming a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done ("open", "read", "write", "rename", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file ended before a complete item could be read.
    #[error("{}: file ends at byte {file_len}, but {expected} at offset {offset} needs {needed} more byte(s); the file is truncated or not a model of this kind", path.display())]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// Offset at which the incomplete item starts.
        offset: u64,
        /// What was being read there.
        expected: String,
        /// Bytes that item needs beyond the end of the file.
        needed: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The data at `offset` is not what the format allows.
    #[error("{}: at offset {offset}: expected {expected}, found {found}", path.display())]
    Malformed {
        /// The file concerned.
        path: PathBuf,
        /// Offset of the offending item.
        offset: u64,
        /// What the format requires there.
        expected: String,
        /// What the file holds instead.
        found: String,
    },
    /// The CTranslate2 binary version is not one this converter reads.
    #[error("{}: CTranslate2 binary version {found} is not supported (expected {CT2_MIN_VERSION} to {CT2_MAX_VERSION}); re-export the model with a CTranslate2 3.x/4.x converter", path.display())]
    UnsupportedVersion {
        /// The file concerned.
        path: PathBuf,
        /// The version found in the file.
        found: u32,
    },
    /// The CTranslate2 model is not a Whisper model.
    #[error("{}: model specification is {found:?}, expected {CT2_WHISPER_SPEC:?} (only Whisper models can be converted)", path.display())]
    NotWhisper {
        /// The file concerned.
        path: PathBuf,
        /// The specification name found in the file.
        found: String,
    },
    /// A variable the Whisper layout needs is absent from `model.bin`.
    #[error("{}: variable {name:?} is missing; is this a complete faster-whisper model?", path.display())]
    MissingVariable {
        /// The file concerned.
        path: PathBuf,
        /// The missing CTranslate2 variable.
        name: String,
    },
    /// A variable has a shape the Whisper layout does not allow.
    #[error("{}: variable {name:?} (record at offset {offset}) has shape {found:?}, expected {expected:?}", path.display())]
    BadShape {
        /// The file concerned.
        path: PathBuf,
        /// Offset of the variable's record in the file.
        offset: u64,
        /// The CTranslate2 variable.
        name: String,
        /// Its shape in the file.
        found: Vec<u64>,
        /// The shape the hyper-parameters require.
        expected: Vec<u64>,
    },
    /// A variable is stored in a data type the converter cannot turn into
    /// whisper.cpp weights.
    #[error("{}: variable {name:?} is stored as {dtype}, which cannot be converted ({hint})", path.display())]
    UnsupportedDtype {
        /// The file concerned.
        path: PathBuf,
        /// The CTranslate2 variable.
        name: String,
        /// The data type found.
        dtype: String,
        /// What would work instead.
        hint: &'static str,
    },
    /// The model's hyper-parameters cannot be represented by whisper.cpp.
    #[error("{}: {message}", path.display())]
    Unsupported {
        /// The file concerned.
        path: PathBuf,
        /// What is not supported, in user terms.
        message: String,
    },
    /// A JSON file (`tokenizer.json`, `config.json`) could not be parsed.
    #[error("{}: not valid JSON of the expected form: {source}", path.display())]
    Json {
        /// The file concerned.
        path: PathBuf,
        /// The parser error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` parsed but is not a CTranslate2 model configuration.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, in user terms.
        message: String,
    },
    /// `tokenizer.json` parsed but does not describe a Whisper tokenizer.
    #[error("{}: {message}", path.display())]
    Tokenizer {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong, in user terms.
        message: String,
    },
}

/// Summary of a successful [`convert_ct2_to_ggml`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Vocabulary size (rows of the token embedding), as written to the header.
    pub n_vocab: u32,
    /// Number of encoder blocks.
    pub n_audio_layer: u32,
    /// Number of decoder blocks.
    pub n_text_layer: u32,
    /// Model width (encoder and decoder share it).
    pub n_audio_state: u32,
    /// Number of mel bands of the input features.
    pub n_mels: u32,
    /// Number of tensors written.
    pub tensors: usize,
    /// Size of the finished ggml file in bytes.
    pub bytes_written: u64,
}

/// The hyper-parameter header of a whisper.cpp ggml model file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlHeader {
    /// Vocabulary size, including special and timestamp tokens.
    pub n_vocab: i32,
    /// Encoder context length in frames (1500 for Whisper).
    pub n_audio_ctx: i32,
    /// Encoder width.
    pub n_audio_state: i32,
    /// Encoder attention heads.
    pub n_audio_head: i32,
    /// Encoder blocks.
    pub n_audio_layer: i32,
    /// Decoder context length in tokens (448 for Whisper).
    pub n_text_ctx: i32,
    /// Decoder width.
    pub n_text_state: i32,
    /// Decoder attention heads.
    pub n_text_head: i32,
    /// Decoder blocks.
    pub n_text_layer: i32,
    /// Mel bands of the input features.
    pub n_mels: i32,
    /// Weight type (1 = f16 matrices), possibly offset by a quantization version × 1000.
    pub ftype: i32,
}

/// One tensor entry of a ggml model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgmlTensorInfo {
    /// Tensor name in OpenAI checkpoint naming (`encoder.conv1.weight`, ...).
    pub name: String,
    /// Dimensions, outermost first (as PyTorch reports them).
    pub dims: Vec<i32>,
    /// ggml type id of the data (0 = f32, 1 = f16, others quantized).
    pub ftype: i32,
}

// ---------------------------------------------------------------------------
// Small binary reader that knows its file, offset and length for errors.
// ---------------------------------------------------------------------------

/// Position-tracking little-endian reader over a seekable source.
struct BinReader<R> {
    inner: R,
    path: PathBuf,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> BinReader<R> {
    fn new(inner: R, path: &Path, len: u64) -> Self {
        BinReader {
            inner,
            path: path.to_path_buf(),
            pos: 0,
            len,
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, what: &str, needed: u64) -> ConvertError {
        ConvertError::Truncated {
            path: self.path.clone(),
            offset: self.pos,
            expected: what.to_string(),
            needed: needed.saturating_sub(self.remaining()),
            file_len: self.len,
        }
    }

    fn malformed(
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
    fn need(&self, n: u64, what: &str) -> Result<(), ConvertError> {
        if n > self.remaining() {
            Err(self.truncated(what, n))
        } else {
            Ok(())
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), ConvertError> {
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

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        self.need(n, what)?;
        let len = usize::try_from(n).map_err(|_| self.truncated(what, n))?;
        let mut buf = vec![0u8; len];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ConvertError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }

    fn u16(&mut self, what: &str) -> Result<u16, ConvertError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn i32(&mut self, what: &str) -> Result<i32, ConvertError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    /// Skips `n` bytes, which must exist.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
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

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ConvertError + 'a {
    move |source| ConvertError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn open_reader(path: &Path) -> Result<BinReader<BufReader<File>>, ConvertError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let len = file.metadata().map_err(io_err("stat", path))?.len();
    Ok(BinReader::new(BufReader::new(file), path, len))
}

// ---------------------------------------------------------------------------
// CTranslate2 model.bin index
// ---------------------------------------------------------------------------

/// Storage type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::Bf16,
            _ => return None,
        })
    }

    fn size(self) -> u64 {
        match self {
            Ct2Dtype::I8 => 1,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => 2,
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ct2Dtype::F32 => "float32",
            Ct2Dtype::I8 => "int8",
            Ct2Dtype::I16 => "int16",
            Ct2Dtype::I32 => "int32",
            Ct2Dtype::F16 => "float16",
            Ct2Dtype::Bf16 => "bfloat16",
        }
    }
}

/// Where one variable's data lives in `model.bin`.
#[derive(Debug, Clone)]
struct Ct2Var {
    shape: Vec<u64>,
    dtype: Ct2Dtype,
    /// Offset of the first data byte.
    offset: u64,
    /// Offset of the variable's record (its name), for error messages.
    record: u64,
}

impl Ct2Var {
    fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Directory of a CTranslate2 `model.bin`: variables and aliases.
#[derive(Debug)]
struct Ct2Index {
    path: PathBuf,
    vars: HashMap<String, Ct2Var>,
    aliases: HashMap<String, String>,
}

impl Ct2Index {
    /// Looks a variable up, following aliases.
    fn get(&self, name: &str) -> Option<&Ct2Var> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(v) = self.vars.get(name) {
                return Some(v);
            }
            name = self.aliases.get(name)?;
        }
        None
    }

    fn require(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
        self.get(name).ok_or_else(|| ConvertError::MissingVariable {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// Reads a scalar integer variable (CTranslate2 stores e.g. `num_heads` as int16).
    fn scalar_int(&self, name: &str, reader: &mut ModelData) -> Result<Option<i64>, ConvertError> {
        let Some(var) = self.get(name) else {
            return Ok(None);
        };
        if var.elements() != 1 {
            return Err(ConvertError::BadShape {
                path: self.path.clone(),
                offset: var.record,
                name: name.to_string(),
                found: var.shape.clone(),
                expected: vec![],
            });
        }
        let raw = reader.read_at(var.offset, var.dtype.size(), name)?;
        let value = match var.dtype {
            Ct2Dtype::I8 => raw.first().map(|&b| i64::from(b as i8)),
            Ct2Dtype::I16 => raw
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .map(|b| i64::from(i16::from_le_bytes(b))),
            Ct2Dtype::I32 => raw
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(|b| i64::from(i32::from_le_bytes(b))),
            Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => {
                let mut out = Vec::with_capacity(1);
                decode_floats(&raw, var.dtype, &mut out);
                out.first().map(|&f| f.round() as i64)
            }
        };
        Ok(value)
    }
}

/// Reads a CTranslate2 string: `u16` length (including a trailing NUL), bytes.
fn read_ct2_string<R: Read + Seek>(
    r: &mut BinReader<R>,
    what: &str,
) -> Result<String, ConvertError> {
    let offset = r.pos;
    let len = r.u16(&format!("length of {what}"))?;
    let raw = r.bytes(u64::from(len), what)?;
    let trimmed = match raw.split_last() {
        Some((0, rest)) => rest,
        _ => raw.as_slice(),
    };
    String::from_utf8(trimmed.to_vec()).map_err(|_| {
        r.malformed(
            offset,
            format!("{what} as UTF-8 text"),
            "invalid UTF-8 bytes",
        )
    })
}

/// Parses the directory of a CTranslate2 `model.bin`, skipping over the data.
fn read_ct2_index<R: Read + Seek>(mut r: BinReader<R>) -> Result<Ct2Index, ConvertError> {
    let version = r.u32("CTranslate2 binary version (u32)")?;
    if !(CT2_MIN_VERSION..=CT2_MAX_VERSION).contains(&version) {
        return Err(ConvertError::UnsupportedVersion {
            path: r.path.clone(),
            found: version,
        });
    }
    let spec = read_ct2_string(&mut r, "model specification name")?;
    if spec != CT2_WHISPER_SPEC {
        return Err(ConvertError::NotWhisper {
            path: r.path.clone(),
            found: spec,
        });
    }
    let _revision = r.u32("specification revision (u32)")?;
    let count_at = r.pos;
    let count = r.u32("variable count (u32)")?;
    // Every variable record takes at least 9 bytes; reject absurd counts
    // before reserving memory for them.
    if u64::from(count) > r.remaining() / 9 {
        return Err(r.malformed(
            count_at,
            format!(
                "a variable count that fits in the remaining {} bytes",
                r.remaining()
            ),
            count.to_string(),
        ));
    }
    let mut vars = HashMap::with_capacity(count as usize);
    for i in 0..count {
        let record = r.pos;
        let name = read_ct2_string(&mut r, &format!("name of variable #{i}"))?;
        let ndims = r.u8(&format!("rank of variable {name:?}"))?;
        let mut shape = Vec::with_capacity(usize::from(ndims));
        for _ in 0..ndims {
            shape.push(u64::from(r.u32(&format!("shape of variable {name:?}"))?));
        }
        let dtype_at = r.pos;
        let dtype_id = r.u8(&format!("data type of variable {name:?}"))?;
        let dtype = Ct2Dtype::from_id(dtype_id).ok_or_else(|| {
            r.malformed(
                dtype_at,
                format!("data type id 0..=5 for variable {name:?}"),
                dtype_id.to_string(),
            )
        })?;
        let nbytes_at = r.pos;
        let nbytes = u64::from(r.u32(&format!("byte count of variable {name:?}"))?);
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX);
        if nbytes != expected {
            return Err(r.malformed(
                nbytes_at,
                format!(
                    "{expected} data bytes for variable {name:?} (shape {shape:?}, {})",
                    dtype.name()
                ),
                format!("{nbytes} bytes"),
            ));
        }
        let offset = r.pos;
        r.skip(nbytes, &format!("data of variable {name:?}"))?;
        vars.insert(
            name,
            Ct2Var {
                shape,
                dtype,
                offset,
                record,
            },
        );
    }
    let alias_count_at = r.pos;
    let alias_count = r.u32("alias count (u32)")?;
    if u64::from(alias_count) > r.remaining() / 4 {
        return Err(r.malformed(
            alias_count_at,
            format!(
                "an alias count that fits in the remaining {} bytes",
                r.remaining()
            ),
            alias_count.to_string(),
        ));
    }
    let mut aliases = HashMap::new();
    for i in 0..alias_count {
        let alias = read_ct2_string(&mut r, &format!("alias #{i}"))?;
        let target = read_ct2_string(&mut r, &format!("target of alias {alias:?}"))?;
        aliases.insert(alias, target);
    }
    if r.remaining() != 0 {
        return Err(r.malformed(
            r.pos,
            "end of file after the alias table",
            format!("{} trailing bytes", r.remaining()),
        ));
    }
    Ok(Ct2Index {
        path: r.path,
        vars,
        aliases,
    })
}

/// Random access to the data section of `model.bin`.
struct ModelData {
    file: File,
    path: PathBuf,
    len: u64,
}

impl ModelData {
    fn read_at(&mut self, offset: u64, n: u64, what: &str) -> Result<Vec<u8>, ConvertError> {
        let mut buf = Vec::new();
        self.read_into(offset, n, what, &mut buf)?;
        Ok(buf)
    }

    fn read_into(
        &mut self,
        offset: u64,
        n: u64,
        what: &str,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        let end = offset.saturating_add(n);
        let truncated = |len: u64| ConvertError::Truncated {
            path: self.path.clone(),
            offset,
            expected: format!("data of variable {what:?}"),
            needed: end.saturating_sub(len),
            file_len: len,
        };
        if end > self.len {
            return Err(truncated(self.len));
        }
        let n = usize::try_from(n).map_err(|_| truncated(self.len))?;
        buf.clear();
        buf.resize(n, 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err("seek in", &self.path))?;
        match self.file.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(truncated(offset.saturating_add(1)))
            }
            Err(source) => Err(ConvertError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Number formats
// ---------------------------------------------------------------------------

/// Converts an IEEE half-precision value to `f32` (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: man × 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Converts `f32` to IEEE half precision, rounding to nearest, ties to even.
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let mut half = (m >> shift) as u16;
        let rem = m & ((1u32 << shift) - 1);
        let halfway = 1u32 << (shift - 1);
        if rem > halfway || (rem == halfway && half & 1 == 1) {
            half += 1;
        }
        return sign | half;
    }
    let mut half = ((e as u32) << 10 | (man >> 13)) as u16;
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        // A carry into the exponent is the correct result (up to infinity).
        half += 1;
    }
    sign | half
}

/// Appends the floating-point values in `raw` (little-endian `dtype`) to `out`.
/// Integer types are converted numerically (used only for scalars and
/// quantized weights, which are rescaled by the caller).
fn decode_floats(raw: &[u8], dtype: Ct2Dtype, out: &mut Vec<f32>) {
    match dtype {
        Ct2Dtype::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Ct2Dtype::F16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
        ),
        Ct2Dtype::Bf16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
        ),
        Ct2Dtype::I8 => out.extend(raw.iter().map(|&b| f32::from(b as i8))),
        Ct2Dtype::I16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]]))),
        ),
        Ct2Dtype::I32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
    }
}

// ---------------------------------------------------------------------------
// GPT-2 byte-level alphabet
// ---------------------------------------------------------------------------

/// GPT-2's `bytes_to_unicode()`: the printable character standing for each byte.
fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(slot) = table.get_mut(usize::from(b)) {
            *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
        }
    }
    table
}

/// Inverse of [`byte_to_unicode`].
fn unicode_to_byte() -> HashMap<char, u8> {
    byte_to_unicode()
        .iter()
        .zip(0..=255u8)
        .map(|(&c, b)| (c, b))
        .collect()
}

/// Maps a byte-level BPE token string back to the raw bytes it stands for.
fn token_bytes(token: &str, table: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(&c).copied()).collect()
}

// ---------------------------------------------------------------------------
// Mel filter bank
// ---------------------------------------------------------------------------

/// Slaney mel scale (librosa `hz_to_mel(htk=False)`).
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

/// Inverse of [`hz_to_mel`] (librosa `mel_to_hz(htk=False)`).
fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Band edges (Hz) of an `n_mels`-band Slaney filter bank from 0 to Nyquist:
/// `n_mels + 2` points, as librosa's `mel_frequencies`.
fn mel_band_edges(n_mels: usize) -> Vec<f64> {
    let n = n_mels + 2;
    let max_mel = hz_to_mel(SAMPLE_RATE / 2.0);
    let step = max_mel / (n - 1) as f64;
    (0..n)
        .map(|i| {
            let m = if i + 1 == n { max_mel } else { i as f64 * step };
            mel_to_hz(m)
        })
        .collect()
}

/// librosa `filters.mel(sr=16000, n_fft=400, n_mels=n_mels)` as float32,
/// row-major `[n_mels][201]`: triangular filters on the Slaney mel scale,
/// each scaled by `2 / (f_hi - f_lo)` (Slaney area normalisation).
fn mel_filters(n_mels: usize) -> Vec<f32> {
    let edges = mel_band_edges(n_mels);
    let bin_hz = SAMPLE_RATE / N_FFT as f64;
    let mut out = Vec::with_capacity(n_mels * N_FFT_BINS);
    for w in edges.windows(3) {
        let (lo, mid, hi) = match *w {
            [a, b, c] => (a, b, c),
            _ => continue,
        };
        let enorm = 2.0 / (hi - lo);
        for k in 0..N_FFT_BINS {
            let f = k as f64 * bin_hz;
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            // librosa stores the triangle in a float32 array, then scales it in place.
            let tri = lower.min(upper).max(0.0) as f32;
            out.push((f64::from(tri) * enorm) as f32);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Tokenizer and config
// ---------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct TokenizerJson {
    model: TokenizerModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(serde::Deserialize)]
struct TokenizerModel {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
}

#[derive(serde::Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
}

/// The part of the vocabulary whisper.cpp stores: raw bytes of ids below `<|endoftext|>`.
struct Vocab {
    tokens: Vec<Vec<u8>>,
    /// Id of `<|endoftext|>`.
    eot: u32,
    /// Highest id the tokenizer defines, plus one.
    defined: u32,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConvertError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    serde_json::from_reader(BufReader::new(file)).map_err(|source| {
        if source.is_io() {
            ConvertError::Io {
                action: "read",
                path: path.to_path_buf(),
                source: source.into(),
            }
        } else {
            ConvertError::Json {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Loads the vocabulary; `n_vocab` (rows of the model's token embedding)
/// bounds the ids accepted.
fn load_vocab(path: &Path, n_vocab: u64) -> Result<Vocab, ConvertError> {
    let tok: TokenizerJson = read_json(path)?;
    let err = |message: String| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    if let Some(kind) = tok.model.kind.as_deref() {
        if kind != "BPE" {
            return Err(err(format!(
                "model type is {kind:?}, expected \"BPE\" (Whisper's byte-level BPE)"
            )));
        }
    }
    let eot = tok
        .added_tokens
        .iter()
        .find(|t| t.content == "<|endoftext|>")
        .map(|t| t.id)
        .or_else(|| tok.model.vocab.get("<|endoftext|>").copied())
        .ok_or_else(|| err("no <|endoftext|> token in model.vocab or added_tokens".into()))?;
    let defined = tok
        .model
        .vocab
        .values()
        .chain(tok.added_tokens.iter().map(|t| &t.id))
        .max()
        .map_or(0, |&m| m.saturating_add(1));
    let table = unicode_to_byte();
    let n = usize::try_from(eot)
        .ok()
        .filter(|_| u64::from(eot) < n_vocab)
        .ok_or_else(|| {
            err(format!(
                "<|endoftext|> has id {eot}, but the model embeds only {n_vocab} tokens"
            ))
        })?;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
    for (text, &id) in &tok.model.vocab {
        let Some(slot) = usize::try_from(id).ok().and_then(|i| tokens.get_mut(i)) else {
            continue; // special tokens at or above <|endoftext|> are not stored
        };
        let bytes = token_bytes(text, &table).ok_or_else(|| {
            err(format!(
                "token {id} ({text:?}) is not a GPT-2 byte-level BPE string; this is not a Whisper tokenizer"
            ))
        })?;
        if slot.is_some() {
            return Err(err(format!("token id {id} appears twice in model.vocab")));
        }
        *slot = Some(bytes);
    }
    // whisper.cpp tolerates an empty token (multilingual models have one).
    let tokens = tokens.into_iter().map(Option::unwrap_or_default).collect();
    Ok(Vocab {
        tokens,
        eot,
        defined,
    })
}

// ---------------------------------------------------------------------------
// Conversion plan
// ---------------------------------------------------------------------------

/// Model dimensions derived from the CTranslate2 variables.
#[derive(Debug, Clone)]
struct Hparams {
    n_vocab: u64,
    n_audio_ctx: u64,
    n_audio_state: u64,
    n_audio_head: u64,
    n_audio_layer: u64,
    n_text_ctx: u64,
    n_text_state: u64,
    n_text_head: u64,
    n_text_layer: u64,
    n_mels: u64,
}

/// One output tensor: which CTranslate2 variable (and which rows of its first
/// axis) it comes from, and how it is written.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    source: String,
    /// Shape the source variable must have.
    source_shape: Vec<u64>,
    /// First row (along the source's first axis) taken.
    row_start: u64,
    /// Dimensions written, outermost first.
    dims: Vec<u64>,
    f32: bool,
}

impl Planned {
    fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Number of `prefix/layer_N/` blocks, which must be numbered 0..N.
fn count_layers(index: &Ct2Index, prefix: &str) -> Result<u64, ConvertError> {
    let marker = format!("{prefix}/layer_");
    let mut seen = std::collections::BTreeSet::new();
    for name in index.vars.keys().chain(index.aliases.keys()) {
        if let Some(rest) = name.strip_prefix(&marker) {
            if let Some(n) = rest.split('/').next().and_then(|s| s.parse::<u64>().ok()) {
                seen.insert(n);
            }
        }
    }
    let count = seen.len() as u64;
    if let Some(missing) = (0..count).find(|i| !seen.contains(i)) {
        return Err(ConvertError::MissingVariable {
            path: index.path.clone(),
            name: format!("{prefix}/layer_{missing}/..."),
        });
    }
    if count == 0 {
        return Err(ConvertError::MissingVariable {
            path: index.path.clone(),
            name: format!("{prefix}/layer_0/..."),
        });
    }
    Ok(count)
}

fn dim(index: &Ct2Index, name: &str, axis: usize, rank: usize) -> Result<u64, ConvertError> {
    let var = index.require(name)?;
    match var.shape.get(axis) {
        Some(&d) if var.shape.len() == rank && d > 0 => Ok(d),
        _ => Err(ConvertError::Unsupported {
            path: index.path.clone(),
            message: format!(
                "variable {name:?} has shape {:?}; a non-empty {rank}-D tensor was expected",
                var.shape
            ),
        }),
    }
}

fn derive_hparams(index: &Ct2Index, data: &mut ModelData) -> Result<Hparams, ConvertError> {
    let n_audio_state = dim(index, "encoder/conv1/weight", 0, 3)?;
    let n_mels = dim(index, "encoder/conv1/weight", 1, 3)?;
    let n_audio_ctx = dim(index, "encoder/position_encodings/encodings", 0, 2)?;
    let n_text_ctx = dim(index, "decoder/position_encodings/encodings", 0, 2)?;
    let n_vocab = dim(index, "decoder/embeddings/weight", 0, 2)?;
    let n_text_state = dim(index, "decoder/embeddings/weight", 1, 2)?;
    let n_audio_layer = count_layers(index, "encoder")?;
    let n_text_layer = count_layers(index, "decoder")?;
    let unsupported = |message: String| ConvertError::Unsupported {
        path: index.path.clone(),
        message,
    };
    if n_text_state != n_audio_state {
        return Err(unsupported(format!(
            "decoder width {n_text_state} differs from encoder width {n_audio_state}; whisper.cpp requires them equal"
        )));
    }
    // Whisper's attention heads are 64 wide; CTranslate2 records the count.
    let heads = |name: &str, data: &mut ModelData| -> Result<u64, ConvertError> {
        let n = match index.scalar_int(name, data)? {
            Some(n) => n,
            None => (n_audio_state / 64) as i64,
        };
        match u64::try_from(n) {
            Ok(n) if n > 0 && n_audio_state % n == 0 => Ok(n),
            _ => Err(unsupported(format!(
                "{name} = {n} does not divide the model width {n_audio_state}"
            ))),
        }
    };
    let n_audio_head = heads("encoder/num_heads", data)?;
    let n_text_head = heads("decoder/num_heads", data)?;
    let hp = Hparams {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
    };
    for (what, v) in [
        ("n_vocab", hp.n_vocab),
        ("n_audio_ctx", hp.n_audio_ctx),
        ("n_text_ctx", hp.n_text_ctx),
        ("n_audio_layer", hp.n_audio_layer),
        ("n_text_layer", hp.n_text_layer),
        ("n_mels", hp.n_mels),
        // The feed-forward width 4 × state must fit, too.
        ("n_audio_state", hp.n_audio_state.saturating_mul(4)),
    ] {
        if i32::try_from(v).is_err() {
            return Err(unsupported(format!(
                "{what} = {v} does not fit the ggml header (i32)"
            )));
        }
    }
    Ok(hp)
}

/// Lists every tensor whisper.cpp loads, in OpenAI checkpoint order.
fn plan_tensors(hp: &Hparams) -> Vec<Planned> {
    let d = hp.n_audio_state;
    let mut plan = Vec::new();
    let mut add =
        |name: String, source: String, source_shape: Vec<u64>, row_start: u64, dims: Vec<u64>| {
            // 1-D tensors, both positional embeddings and the conv biases are f32.
            let f32 = dims.len() < 2
                || name.ends_with("positional_embedding")
                || name == "encoder.conv1.bias"
                || name == "encoder.conv2.bias";
            plan.push(Planned {
                name,
                source,
                source_shape,
                row_start,
                dims,
                f32,
            });
        };
    // Whole variable, same shape.
    macro_rules! whole {
        ($name:expr, $src:expr, $shape:expr) => {{
            let shape: Vec<u64> = $shape;
            add($name, $src, shape.clone(), 0, shape)
        }};
    }
    // `rows` rows starting at `start` of a variable whose first axis is `total`.
    macro_rules! rows {
        ($name:expr, $src:expr, $total:expr, $start:expr, $rows:expr, $tail:expr) => {{
            let tail: Vec<u64> = $tail;
            let mut src_shape = vec![$total];
            src_shape.extend(&tail);
            let mut dims = vec![$rows];
            dims.extend(&tail);
            add($name, $src, src_shape, $start, dims)
        }};
    }
    whole!(
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings".into(),
        vec![hp.n_audio_ctx, d]
    );
    whole!(
        "encoder.conv1.weight".into(),
        "encoder/conv1/weight".into(),
        vec![d, hp.n_mels, 3]
    );
    add(
        "encoder.conv1.bias".into(),
        "encoder/conv1/bias".into(),
        vec![d],
        0,
        vec![d, 1],
    );
    whole!(
        "encoder.conv2.weight".into(),
        "encoder/conv2/weight".into(),
        vec![d, d, 3]
    );
    add(
        "encoder.conv2.bias".into(),
        "encoder/conv2/bias".into(),
        vec![d],
        0,
        vec![d, 1],
    );

    for (side, layers) in [("encoder", hp.n_audio_layer), ("decoder", hp.n_text_layer)] {
        if side == "decoder" {
            whole!(
                "encoder.ln_post.weight".into(),
                "encoder/layer_norm/gamma".into(),
                vec![d]
            );
            whole!(
                "encoder.ln_post.bias".into(),
                "encoder/layer_norm/beta".into(),
                vec![d]
            );
            whole!(
                "decoder.positional_embedding".into(),
                "decoder/position_encodings/encodings".into(),
                vec![hp.n_text_ctx, d]
            );
            whole!(
                "decoder.token_embedding.weight".into(),
                "decoder/embeddings/weight".into(),
                vec![hp.n_vocab, d]
            );
        }
        for i in 0..layers {
            let dst = format!("{side}.blocks.{i}");
            let src = format!("{side}/layer_{i}");
            // Self-attention: fused [3d, d] Q, K, V; the K bias is unused.
            let qkv = format!("{src}/self_attention/linear_0");
            rows!(
                format!("{dst}.attn.query.weight"),
                format!("{qkv}/weight"),
                3 * d,
                0,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.query.bias"),
                format!("{qkv}/bias"),
                3 * d,
                0,
                d,
                vec![]
            );
            rows!(
                format!("{dst}.attn.key.weight"),
                format!("{qkv}/weight"),
                3 * d,
                d,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.value.weight"),
                format!("{qkv}/weight"),
                3 * d,
                2 * d,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.value.bias"),
                format!("{qkv}/bias"),
                3 * d,
                2 * d,
                d,
                vec![]
            );
            let o = format!("{src}/self_attention/linear_1");
            whole!(
                format!("{dst}.attn.out.weight"),
                format!("{o}/weight"),
                vec![d, d]
            );
            whole!(format!("{dst}.attn.out.bias"), format!("{o}/bias"), vec![d]);
            let ln = format!("{src}/self_attention/layer_norm");
            whole!(
                format!("{dst}.attn_ln.weight"),
                format!("{ln}/gamma"),
                vec![d]
            );
            whole!(format!("{dst}.attn_ln.bias"), format!("{ln}/beta"), vec![d]);
            if side == "decoder" {
                let q = format!("{src}/attention/linear_0");
                whole!(
                    format!("{dst}.cross_attn.query.weight"),
                    format!("{q}/weight"),
                    vec![d, d]
                );
                whole!(
                    format!("{dst}.cross_attn.query.bias"),
                    format!("{q}/bias"),
                    vec![d]
                );
                // Fused [2d, d] K, V over the encoder output; the K bias is unused.
                let kv = format!("{src}/attention/linear_1");
                rows!(
                    format!("{dst}.cross_attn.key.weight"),
                    format!("{kv}/weight"),
                    2 * d,
                    0,
                    d,
                    vec![d]
                );
                rows!(
                    format!("{dst}.cross_attn.value.weight"),
                    format!("{kv}/weight"),
                    2 * d,
                    d,
                    d,
                    vec![d]
                );
                rows!(
                    format!("{dst}.cross_attn.value.bias"),
                    format!("{kv}/bias"),
                    2 * d,
                    d,
                    d,
                    vec![]
                );
                let o = format!("{src}/attention/linear_2");
                whole!(
                    format!("{dst}.cross_attn.out.weight"),
                    format!("{o}/weight"),
                    vec![d, d]
                );
                whole!(
                    format!("{dst}.cross_attn.out.bias"),
                    format!("{o}/bias"),
                    vec![d]
                );
                let ln = format!("{src}/attention/layer_norm");
                whole!(
                    format!("{dst}.cross_attn_ln.weight"),
                    format!("{ln}/gamma"),
                    vec![d]
                );
                whole!(
                    format!("{dst}.cross_attn_ln.bias"),
                    format!("{ln}/beta"),
                    vec![d]
                );
            }
            let f0 = format!("{src}/ffn/linear_0");
            whole!(
                format!("{dst}.mlp.0.weight"),
                format!("{f0}/weight"),
                vec![4 * d, d]
            );
            whole!(
                format!("{dst}.mlp.0.bias"),
                format!("{f0}/bias"),
                vec![4 * d]
            );
            let f1 = format!("{src}/ffn/linear_1");
            whole!(
                format!("{dst}.mlp.2.weight"),
                format!("{f1}/weight"),
                vec![d, 4 * d]
            );
            whole!(format!("{dst}.mlp.2.bias"), format!("{f1}/bias"), vec![d]);
            let ln = format!("{src}/ffn/layer_norm");
            whole!(
                format!("{dst}.mlp_ln.weight"),
                format!("{ln}/gamma"),
                vec![d]
            );
            whole!(format!("{dst}.mlp_ln.bias"), format!("{ln}/beta"), vec![d]);
        }
    }
    whole!(
        "decoder.ln.weight".into(),
        "decoder/layer_norm/gamma".into(),
        vec![d]
    );
    whole!(
        "decoder.ln.bias".into(),
        "decoder/layer_norm/beta".into(),
        vec![d]
    );
    plan
}

/// Checks every planned source against the index before anything is written.
fn validate_plan(index: &Ct2Index, plan: &[Planned]) -> Result<(), ConvertError> {
    for p in plan {
        let var = index.require(&p.source)?;
        if var.shape != p.source_shape {
            return Err(ConvertError::BadShape {
                path: index.path.clone(),
                offset: var.record,
                name: p.source.clone(),
                found: var.shape.clone(),
                expected: p.source_shape.clone(),
            });
        }
        match var.dtype {
            Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => {}
            Ct2Dtype::I8 | Ct2Dtype::I16 => {
                let scale_name = scale_name(&p.source);
                let scale =
                    index
                        .get(&scale_name)
                        .ok_or_else(|| ConvertError::UnsupportedDtype {
                            path: index.path.clone(),
                            name: p.source.clone(),
                            dtype: var.dtype.name().into(),
                            hint: "integer weights need a matching weight_scale variable",
                        })?;
                let rows = var.shape.first().copied().unwrap_or(1);
                let ok_shape = scale.elements() == 1 || scale.elements() == rows;
                let ok_type = matches!(scale.dtype, Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16);
                if !ok_shape || !ok_type {
                    return Err(ConvertError::BadShape {
                        path: index.path.clone(),
                        offset: scale.record,
                        name: scale_name,
                        found: scale.shape.clone(),
                        expected: vec![rows],
                    });
                }
            }
            Ct2Dtype::I32 => {
                return Err(ConvertError::UnsupportedDtype {
                    path: index.path.clone(),
                    name: p.source.clone(),
                    dtype: var.dtype.name().into(),
                    hint: "weights must be float32, float16, bfloat16 or int8/int16 with scales",
                })
            }
        }
    }
    Ok(())
}

/// CTranslate2 keeps the scales of a quantized `x/weight` in `x/weight_scale`.
fn scale_name(source: &str) -> String {
    format!("{source}_scale")
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Writer that counts bytes and remembers which file it writes, for errors.
struct OutFile {
    inner: BufWriter<File>,
    path: PathBuf,
    written: u64,
}

impl OutFile {
    fn put(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
        self.inner
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn i32(&mut self, v: i32) -> Result<(), ConvertError> {
        self.put(&v.to_le_bytes())
    }

    /// Writes a count or dimension already checked to fit an `i32`.
    fn dim(&mut self, v: u64) -> Result<(), ConvertError> {
        let v = i32::try_from(v).map_err(|_| ConvertError::Unsupported {
            path: self.path.clone(),
            message: format!("value {v} does not fit a ggml i32 field"),
        })?;
        self.i32(v)
    }
}

/// Streams one planned tensor's data (converted to f16 or f32) into `out`.
fn write_tensor_data(
    index: &Ct2Index,
    data: &mut ModelData,
    p: &Planned,
    out: &mut OutFile,
    raw: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let var = index.require(&p.source)?;
    let elems = p.elements();
    let row_len: u64 = p.source_shape.iter().skip(1).product();
    let start_elem = p.row_start * row_len;
    let esize = var.dtype.size();
    let scales = match var.dtype {
        Ct2Dtype::I8 | Ct2Dtype::I16 => {
            let name = scale_name(&p.source);
            let sv = index.require(&name)?;
            let bytes = data.read_at(sv.offset, sv.elements() * sv.dtype.size(), &name)?;
            let mut s = Vec::new();
            decode_floats(&bytes, sv.dtype, &mut s);
            Some(s)
        }
        _ => None,
    };
    let mut floats = Vec::with_capacity(CHUNK_ELEMS);
    let mut encoded = Vec::with_capacity(CHUNK_ELEMS * 4);
    let mut done = 0u64;
    while done < elems {
        let n = (elems - done).min(CHUNK_ELEMS as u64);
        let first = start_elem + done;
        data.read_into(var.offset + first * esize, n * esize, &p.source, raw)?;
        floats.clear();
        decode_floats(raw, var.dtype, &mut floats);
        if let Some(scales) = &scales {
            for (k, v) in floats.iter_mut().enumerate() {
                let row = (first + k as u64) / row_len.max(1);
                let s = if scales.len() == 1 {
                    scales.first()
                } else {
                    usize::try_from(row).ok().and_then(|r| scales.get(r))
                };
                // CTranslate2 quantizes as q = round(w × scale).
                *v /= s.copied().filter(|s| *s != 0.0).unwrap_or(1.0);
            }
        }
        encoded.clear();
        if p.f32 {
            for v in &floats {
                encoded.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            for v in &floats {
                encoded.extend_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        out.put(&encoded)?;
        done += n;
    }
    Ok(())
}

/// Writes the complete ggml file (header, mel filters, vocabulary, tensors) to `out`.
fn write_ggml(
    out: &mut OutFile,
    hp: &Hparams,
    vocab: &Vocab,
    index: &Ct2Index,
    data: &mut ModelData,
    plan: &[Planned],
) -> Result<(), ConvertError> {
    out.put(&GGML_MAGIC.to_le_bytes())?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
    ] {
        out.dim(v)?;
    }
    out.i32(GGML_FTYPE_MOSTLY_F16)?;

    let n_mels = usize::try_from(hp.n_mels).unwrap_or(0);
    out.dim(hp.n_mels)?;
    out.dim(N_FFT_BINS as u64)?;
    let mut bank = Vec::with_capacity(n_mels * N_FFT_BINS * 4);
    for v in mel_filters(n_mels) {
        bank.extend_from_slice(&v.to_le_bytes());
    }
    out.put(&bank)?;

    out.dim(vocab.tokens.len() as u64)?;
    for t in &vocab.tokens {
        out.dim(t.len() as u64)?;
        out.put(t)?;
    }

    let mut raw = Vec::new();
    for p in plan {
        out.dim(p.dims.len() as u64)?;
        out.dim(p.name.len() as u64)?;
        out.i32(if p.f32 { GGML_TYPE_F32 } else { GGML_TYPE_F16 })?;
        for &d in p.dims.iter().rev() {
            out.dim(d)?;
        }
        out.put(p.name.as_bytes())?;
        write_tensor_data(index, data, p, out, &mut raw)?;
    }
    Ok(())
}

/// `<out>.part`, the name the file has until it is complete.
fn part_path(out: &Path) -> PathBuf {
    let mut s: OsString = out.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Converts a CTranslate2 (faster-whisper) Whisper model to a whisper.cpp
/// ggml model file with f16 weights.
///
/// `model_bin`, `tokenizer_json` and `config_json` are the files of a
/// CTranslate2 model directory. All hyper-parameters are derived from the
/// tensor shapes and the tokenizer, so any Whisper size (tiny … large-v3,
/// English-only or multilingual) converts. Weights stored as float32,
/// float16, bfloat16 or int8/int16 with scales are accepted.
///
/// Everything is validated before the output is created. The data is then
/// streamed to `out` + `".part"`, synced to disk and renamed to `out`, so a
/// failed conversion never leaves a file that looks complete (the partial
/// file is removed).
///
/// # Errors
/// A [`ConvertError`] naming the file, offset and expectation when an input
/// is missing, truncated, malformed or not a Whisper model, or when writing
/// fails.
pub fn convert_ct2_to_ggml(
    model_bin: &Path,
    tokenizer_json: &Path,
    config_json: &Path,
    out: &Path,
) -> Result<ConvertReport, ConvertError> {
    let index = read_ct2_index(open_reader(model_bin)?)?;
    let file = File::open(model_bin).map_err(io_err("open", model_bin))?;
    let len = file.metadata().map_err(io_err("stat", model_bin))?.len();
    let mut data = ModelData {
        file,
        path: model_bin.to_path_buf(),
        len,
    };
    let hp = derive_hparams(&index, &mut data)?;
    let plan = plan_tensors(&hp);
    validate_plan(&index, &plan)?;

    let vocab = load_vocab(tokenizer_json, hp.n_vocab)?;
    check_vocab(&hp, &vocab, tokenizer_json)?;
    // config.json carries decoding hints (suppressed tokens, alignment heads)
    // that whisper.cpp hard-codes; it must still be a JSON object, so a
    // mixed-up or damaged model directory is caught here.
    let config: serde_json::Value = read_json(config_json)?;
    if !config.is_object() {
        return Err(ConvertError::Config {
            path: config_json.to_path_buf(),
            message: "expected a JSON object (CTranslate2 model config)".into(),
        });
    }

    let part = part_path(out);
    let result = (|| {
        let file = File::create(&part).map_err(io_err("create", &part))?;
        let mut w = OutFile {
            inner: BufWriter::with_capacity(1 << 20, file),
            path: part.clone(),
            written: 0,
        };
        write_ggml(&mut w, &hp, &vocab, &index, &mut data, &plan)?;
        let written = w.written;
        let file = w.inner.into_inner().map_err(|e| ConvertError::Io {
            action: "write",
            path: part.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err("sync", &part))?;
        drop(file);
        std::fs::rename(&part, out).map_err(io_err("rename", &part))?;
        Ok(written)
    })();
    let bytes_written = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    // Make the rename durable; not all platforms can sync a directory.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(ConvertReport {
        n_vocab: small(hp.n_vocab),
        n_audio_layer: small(hp.n_audio_layer),
        n_text_layer: small(hp.n_text_layer),
        n_audio_state: small(hp.n_audio_state),
        n_mels: small(hp.n_mels),
        tensors: plan.len(),
        bytes_written,
    })
}

/// Cross-checks the tokenizer against the model and against whisper.cpp's
/// assumptions about special token ids.
fn check_vocab(hp: &Hparams, vocab: &Vocab, path: &Path) -> Result<(), ConvertError> {
    let err = |message: String| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    if u64::from(vocab.defined) > hp.n_vocab {
        return Err(err(format!(
            "defines token ids up to {}, but the model embeds only {} tokens; tokenizer and model.bin do not belong together",
            vocab.defined - 1,
            hp.n_vocab
        )));
    }
    // whisper.cpp infers "multilingual" from n_vocab >= 51865 and then places
    // <|endoftext|> at 50257 instead of 50256.
    let expected_eot = if hp.n_vocab >= 51865 { 50257 } else { 50256 };
    if vocab.eot != expected_eot {
        return Err(err(format!(
            "<|endoftext|> has id {}, but whisper.cpp assumes {expected_eot} for a model with {} tokens",
            vocab.eot, hp.n_vocab
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading a ggml file back
// ---------------------------------------------------------------------------

/// Bytes taken by `n` elements of ggml type `ttype`, if the type is known.
fn ggml_nbytes(ttype: i32, n: u64) -> Option<u64> {
    // (block size, bytes per block)
    let (blck, size) = match ttype {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),    // q4_0
        3 => (32, 20),    // q4_1
        6 => (32, 22),    // q5_0
        7 => (32, 24),    // q5_1
        8 => (32, 34),    // q8_0
        10 => (256, 84),  // q2_K
        11 => (256, 110), // q3_K
        12 => (256, 144), // q4_K
        13 => (256, 176), // q5_K
        14 => (256, 210), // q6_K
        _ => return None,
    };
    if !n.is_multiple_of(blck) {
        return None;
    }
    (n / blck).checked_mul(size)
}

/// Reads a whisper.cpp ggml model file's header and tensor directory.
///
/// Checks the magic, reads the eleven hyper-parameters, skips the mel filter
/// bank and vocabulary (checking their sizes), then lists every tensor with
/// its name, dimensions (outermost first) and type, skipping the data. The
/// file must end exactly after the last tensor.
///
/// # Errors
/// [`ConvertError::Malformed`] or [`ConvertError::Truncated`] (with the
/// offset) when the file is not a complete ggml Whisper model;
/// [`ConvertError::Io`] when it cannot be read.
pub fn inspect_ggml(path: &Path) -> Result<(GgmlHeader, Vec<GgmlTensorInfo>), ConvertError> {
    inspect_reader(open_reader(path)?)
}

fn inspect_reader<R: Read + Seek>(
    mut r: BinReader<R>,
) -> Result<(GgmlHeader, Vec<GgmlTensorInfo>), ConvertError> {
    let magic = r.u32("ggml magic (u32)")?;
    if magic != GGML_MAGIC {
        return Err(r.malformed(0, "ggml magic 0x67676d6c", format!("{magic:#010x}")));
    }
    let mut hv = [0i32; 11];
    const NAMES: [&str; 11] = [
        "n_vocab",
        "n_audio_ctx",
        "n_audio_state",
        "n_audio_head",
        "n_audio_layer",
        "n_text_ctx",
        "n_text_state",
        "n_text_head",
        "n_text_layer",
        "n_mels",
        "ftype",
    ];
    for (slot, name) in hv.iter_mut().zip(NAMES) {
        *slot = r.i32(&format!("hyper-parameter {name} (i32)"))?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype] =
        hv;
    let header = GgmlHeader {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
        ftype,
    };

    let at = r.pos;
    let n_mel = r.i32("mel filter count (i32)")?;
    let n_fft = r.i32("mel filter length (i32)")?;
    let (Ok(n_mel), Ok(n_fft)) = (u64::try_from(n_mel), u64::try_from(n_fft)) else {
        return Err(r.malformed(
            at,
            "non-negative mel filter dimensions",
            format!("{n_mel} × {n_fft}"),
        ));
    };
    r.skip(
        n_mel.saturating_mul(n_fft).saturating_mul(4),
        "mel filter bank (f32)",
    )?;

    let at = r.pos;
    let n_tokens = r.i32("vocabulary size (i32)")?;
    let n_tokens = u32::try_from(n_tokens)
        .map_err(|_| r.malformed(at, "a non-negative vocabulary size", n_tokens.to_string()))?;
    for i in 0..n_tokens {
        let len = r.u32(&format!("length of token {i} (u32)"))?;
        r.skip(u64::from(len), &format!("bytes of token {i}"))?;
    }

    let mut tensors = Vec::new();
    while r.remaining() > 0 {
        let at = r.pos;
        let n_dims = r.i32("tensor rank (i32)")?;
        let name_len = r.i32("tensor name length (i32)")?;
        let ttype = r.i32("tensor type (i32)")?;
        if !(1..=4).contains(&n_dims) {
            return Err(r.malformed(at, "tensor rank 1..=4", n_dims.to_string()));
        }
        let name_len = match usize::try_from(name_len) {
            Ok(n) if (1..=MAX_GGML_NAME).contains(&n) => n,
            _ => {
                return Err(r.malformed(
                    at + 4,
                    format!("tensor name length 1..={MAX_GGML_NAME}"),
                    name_len.to_string(),
                ))
            }
        };
        let mut dims = Vec::with_capacity(4);
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let dat = r.pos;
            let d = r.i32("tensor dimension (i32)")?;
            let du = u64::try_from(d)
                .map_err(|_| r.malformed(dat, "a non-negative tensor dimension", d.to_string()))?;
            elements = elements.saturating_mul(du);
            dims.push(d);
        }
        dims.reverse();
        let raw = r.bytes(name_len as u64, "tensor name")?;
        let name = String::from_utf8_lossy(&raw).into_owned();
        let nbytes = ggml_nbytes(ttype, elements).ok_or_else(|| {
            r.malformed(
                at + 8,
                format!("a known ggml type for {elements} elements of tensor {name:?}"),
                format!("type {ttype}"),
            )
        })?;
        r.skip(nbytes, &format!("data of tensor {name:?}"))?;
        tensors.push(GgmlTensorInfo {
            name,
            dims,
            ftype: ttype,
        });
    }
    Ok((header, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    // ---------------- helpers: synthetic CTranslate2 files -----------------

    fn ct2_string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// A variable for the synthetic model: f32 data (or scalar int16).
    enum V {
        F(Vec<u32>, Vec<f32>),
        F16(Vec<u32>, Vec<f32>),
        I16(i16),
    }

    fn ct2_file(
        version: u32,
        spec: &str,
        vars: &[(String, V)],
        aliases: &[(&str, &str)],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&version.to_le_bytes());
        ct2_string(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
        for (name, v) in vars {
            ct2_string(&mut out, name);
            let (shape, dtype, data): (Vec<u32>, u8, Vec<u8>) = match v {
                V::F(shape, d) => (
                    shape.clone(),
                    0,
                    d.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                V::F16(shape, d) => (
                    shape.clone(),
                    4,
                    d.iter()
                        .flat_map(|x| f32_to_f16(*x).to_le_bytes())
                        .collect(),
                ),
                V::I16(x) => (vec![], 2, x.to_le_bytes().to_vec()),
            };
            out.push(shape.len() as u8);
            for s in &shape {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.push(dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&data);
        }
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            ct2_string(&mut out, a);
            ct2_string(&mut out, t);
        }
        out
    }

    /// Deterministic distinct values so that row splits can be checked.
    fn ramp(n: usize, base: f32) -> Vec<f32> {
        (0..n).map(|i| base + i as f32 * 0.25).collect()
    }

    /// A miniature Whisper in CTranslate2 layout: width 8, 2 heads, 4 mels,
    /// 1 encoder and 2 decoder layers, 51864 tokens (so whisper.cpp's
    /// English-model special ids apply), audio ctx 6, text ctx 5.
    fn tiny_synthetic() -> Vec<(String, V)> {
        let d = 8u32;
        let n = d as usize;
        let mut v: Vec<(String, V)> = vec![
            ("decoder/activation".into(), V::I16(3)),
            ("encoder/num_heads".into(), V::I16(2)),
            ("decoder/num_heads".into(), V::I16(2)),
            (
                "encoder/conv1/weight".into(),
                V::F16(vec![d, 4, 3], ramp(n * 12, 0.0)),
            ),
            ("encoder/conv1/bias".into(), V::F(vec![d], ramp(n, 1.0))),
            (
                "encoder/conv2/weight".into(),
                V::F16(vec![d, d, 3], ramp(n * n * 3, 0.0)),
            ),
            ("encoder/conv2/bias".into(), V::F(vec![d], ramp(n, 2.0))),
            (
                "encoder/position_encodings/encodings".into(),
                V::F(vec![6, d], ramp(6 * n, 0.0)),
            ),
            (
                "encoder/layer_norm/gamma".into(),
                V::F(vec![d], ramp(n, 3.0)),
            ),
            (
                "encoder/layer_norm/beta".into(),
                V::F(vec![d], ramp(n, 4.0)),
            ),
            (
                "decoder/embeddings/weight".into(),
                V::F16(vec![51864, d], vec![0.5; 51864 * n]),
            ),
            (
                "decoder/position_encodings/encodings".into(),
                V::F(vec![5, d], ramp(5 * n, 0.0)),
            ),
            (
                "decoder/layer_norm/gamma".into(),
                V::F(vec![d], ramp(n, 5.0)),
            ),
            (
                "decoder/layer_norm/beta".into(),
                V::F(vec![d], ramp(n, 6.0)),
            ),
        ];
        let mut block = |p: String, cross: bool| {
            let sa = format!("{p}/self_attention");
            v.push((
                format!("{sa}/linear_0/weight"),
                V::F16(vec![3 * d, d], ramp(3 * n * n, 0.0)),
            ));
            v.push((
                format!("{sa}/linear_0/bias"),
                V::F(vec![3 * d], ramp(3 * n, 100.0)),
            ));
            v.push((
                format!("{sa}/linear_1/weight"),
                V::F16(vec![d, d], ramp(n * n, 0.0)),
            ));
            v.push((format!("{sa}/linear_1/bias"), V::F(vec![d], ramp(n, 0.0))));
            v.push((
                format!("{sa}/layer_norm/gamma"),
                V::F(vec![d], ramp(n, 0.0)),
            ));
            v.push((format!("{sa}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
            if cross {
                let a = format!("{p}/attention");
                v.push((
                    format!("{a}/linear_0/weight"),
                    V::F16(vec![d, d], ramp(n * n, 0.0)),
                ));
                v.push((format!("{a}/linear_0/bias"), V::F(vec![d], ramp(n, 0.0))));
                v.push((
                    format!("{a}/linear_1/weight"),
                    V::F16(vec![2 * d, d], ramp(2 * n * n, 0.0)),
                ));
                v.push((
                    format!("{a}/linear_1/bias"),
                    V::F(vec![2 * d], ramp(2 * n, 200.0)),
                ));
                v.push((
                    format!("{a}/linear_2/weight"),
                    V::F16(vec![d, d], ramp(n * n, 0.0)),
                ));
                v.push((format!("{a}/linear_2/bias"), V::F(vec![d], ramp(n, 0.0))));
                v.push((format!("{a}/layer_norm/gamma"), V::F(vec![d], ramp(n, 0.0))));
                v.push((format!("{a}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
            }
            let f = format!("{p}/ffn");
            v.push((
                format!("{f}/linear_0/weight"),
                V::F16(vec![4 * d, d], ramp(4 * n * n, 0.0)),
            ));
            v.push((
                format!("{f}/linear_0/bias"),
                V::F(vec![4 * d], ramp(4 * n, 0.0)),
            ));
            v.push((
                format!("{f}/linear_1/weight"),
                V::F16(vec![d, 4 * d], ramp(4 * n * n, 0.0)),
            ));
            v.push((format!("{f}/linear_1/bias"), V::F(vec![d], ramp(n, 0.0))));
            v.push((format!("{f}/layer_norm/gamma"), V::F(vec![d], ramp(n, 0.0))));
            v.push((format!("{f}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
        };
        block("encoder/layer_0".into(), false);
        block("decoder/layer_0".into(), true);
        block("decoder/layer_1".into(), true);
        v
    }

    fn tokenizer_json() -> String {
        // ids 0..256 are the byte alphabet, one merged token, then specials.
        let table = byte_to_unicode();
        let mut vocab = serde_json::Map::new();
        for (i, c) in table.iter().enumerate() {
            vocab.insert(c.to_string(), serde_json::json!(i));
        }
        vocab.insert("Ġthe".into(), serde_json::json!(256));
        vocab.insert("<|endoftext|>".into(), serde_json::json!(50256));
        serde_json::json!({
            "model": {"type": "BPE", "vocab": vocab},
            "added_tokens": [
                {"id": 50256, "content": "<|endoftext|>"},
                {"id": 50257, "content": "<|startoftranscript|>"}
            ]
        })
        .to_string()
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new(model: &[u8]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("model.bin"), model).unwrap();
            std::fs::write(dir.path().join("tokenizer.json"), tokenizer_json()).unwrap();
            std::fs::write(dir.path().join("config.json"), "{\"suppress_ids\": []}").unwrap();
            Fixture { dir }
        }
        fn p(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn convert(&self) -> Result<ConvertReport, ConvertError> {
            convert_ct2_to_ggml(
                &self.p("model.bin"),
                &self.p("tokenizer.json"),
                &self.p("config.json"),
                &self.p("out.bin"),
            )
        }
        fn assert_no_output(&self) {
            assert!(
                !self.p("out.bin").exists(),
                "failed conversion left out.bin"
            );
            assert!(
                !self.p("out.bin.part").exists(),
                "failed conversion left out.bin.part"
            );
        }
    }

    fn index_of(bytes: &[u8]) -> Result<Ct2Index, ConvertError> {
        read_ct2_index(BinReader::new(
            Cursor::new(bytes),
            Path::new("model.bin"),
            bytes.len() as u64,
        ))
    }

    // ---------------- number formats and tables ----------------------------

    #[test]
    fn f16_round_trips_every_value() {
        for h in 0..=u16::MAX {
            let f = f16_to_f32(h);
            if f.is_nan() {
                assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
                continue;
            }
            assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
        }
    }

    #[test]
    fn f32_to_f16_rounds_to_nearest_even() {
        assert_eq!(f32_to_f16(1.0), 0x3c00);
        assert_eq!(f32_to_f16(-2.0), 0xc000);
        assert_eq!(f32_to_f16(65504.0), 0x7bff);
        assert_eq!(f32_to_f16(65520.0), 0x7c00, "rounds up to infinity");
        assert_eq!(f32_to_f16(1e-8), 0, "below half the smallest subnormal");
        assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001, "smallest subnormal");
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        // 1 + 3·2^-11 is halfway between odd and even: goes up to even.
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(0.1), 0x2e66);
    }

    #[test]
    fn byte_to_unicode_table_round_trips() {
        let table = byte_to_unicode();
        let inverse = unicode_to_byte();
        assert_eq!(inverse.len(), 256, "the 256 characters are distinct");
        for (b, c) in table.iter().enumerate() {
            assert_eq!(inverse.get(c).copied(), Some(b as u8));
        }
        // Known GPT-2 mappings: printable ASCII is itself, space is 'Ġ',
        // newline 'Ċ', byte 0 'Ā', 0x7f 'ġ', 0xad 'Ń'.
        assert_eq!(table[usize::from(b'a')], 'a');
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[usize::from(b'\n')], 'Ċ');
        assert_eq!(table[0], 'Ā');
        assert_eq!(table[0x7f], 'ġ');
        assert_eq!(table[0xad], 'Ń');
        assert_eq!(token_bytes("Ġgazed", &inverse).unwrap(), b" gazed");
        // "é" in UTF-8 is C3 A9, which byte-level BPE spells "Ã©".
        assert_eq!(token_bytes("Ã©", &inverse).unwrap(), "é".as_bytes());
        assert_eq!(token_bytes("<|x|>\u{4e00}", &inverse), None);
    }

    // ---------------- mel filter bank --------------------------------------

    fn filter(bank: &[f32], i: usize) -> &[f32] {
        &bank[i * N_FFT_BINS..(i + 1) * N_FFT_BINS]
    }

    #[test]
    fn mel_edges_follow_the_slaney_scale() {
        let e = mel_band_edges(80);
        assert_eq!(e.len(), 82);
        assert_eq!(e[0], 0.0);
        assert!((e[81] - 8000.0).abs() < 1e-9);
        // Below 1 kHz the scale is linear: 45.2456… mel at 8 kHz over 81
        // steps of 200/3 Hz per mel gives 37.2392… Hz per step.
        let step_hz = (15.0 + 27.0 * 8f64.ln() / 6.4f64.ln()) / 81.0 * 200.0 / 3.0;
        assert!((e[1] - step_hz).abs() < 1e-9 && (e[1] - 37.239_210_264_958_82).abs() < 1e-9);
        assert!((e[2] - 2.0 * step_hz).abs() < 1e-9);
        assert!((e[41] - 1_721.652_188_363_654).abs() < 1e-6);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn mel_filters_match_librosa() {
        let bank = mel_filters(80);
        assert_eq!(bank.len(), 80 * 201);
        let e = mel_band_edges(80);
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() <= 1e-7 + 1e-6 * b.abs();

        // Filter 0 spans 0 … 74.48 Hz; of the 40 Hz bins only bin 1 is
        // inside: (74.478 - 40) / 37.239 × 2 / 74.478 = 0.0248626 (librosa
        // and whisper's mel_filters.npz: 0.02486259).
        let f0 = filter(&bank, 0);
        assert!(close(f0[1], 0.024_862_593_984_176_087), "{}", f0[1]);
        assert!(f0.iter().enumerate().all(|(k, &w)| (k == 1) == (w > 0.0)));

        // Filter 40 (1656.79 … 1789.06 Hz) covers bins 42, 43, 44.
        let f40 = filter(&bank, 40);
        assert!(close(f40[42], 0.005_411_105_098_683_14), "{}", f40[42]);
        assert!(close(f40[43], 0.014_735_565_741_439_09), "{}", f40[43]);
        assert!(close(f40[44], 0.006_518_189_694_660_966_5), "{}", f40[44]);

        // Filter 79 (7408.5 … 8000 Hz): peak near 7698.6 Hz; bin 200 (8 kHz) is 0.
        let f79 = filter(&bank, 79);
        assert!(close(f79[192], 0.003_164_711_739_176_461), "{}", f79[192]);
        assert!(
            close(f79[186], 0.000_366_741_679_784_925_85),
            "{}",
            f79[186]
        );
        assert_eq!(f79[200], 0.0);

        for i in 0..80 {
            let (lo, hi) = (e[i], e[i + 2]);
            let height = 2.0 / (hi - lo);
            let f = filter(&bank, i);
            for (k, &w) in f.iter().enumerate() {
                let hz = k as f64 * 40.0;
                assert!(w >= 0.0);
                // Support strictly inside the triangle, peak at most 2/(hi-lo).
                if w > 0.0 {
                    assert!(hz > lo && hz < hi, "filter {i} bin {k}");
                    assert!(f64::from(w) <= height * (1.0 + 1e-6));
                } else {
                    assert!(
                        hz <= lo || hz >= hi,
                        "filter {i} bin {k} is zero inside its triangle"
                    );
                }
            }
            // Area normalisation: wide filters integrate to ~1 on the 40 Hz grid.
            if hi - lo > 400.0 {
                let area: f64 = f.iter().map(|&w| f64::from(w) * 40.0).sum();
                assert!((area - 1.0).abs() < 0.02, "filter {i} area {area}");
            }
        }
    }

    // ---------------- bad input --------------------------------------------

    #[test]
    fn empty_model_is_truncated_at_offset_zero() {
        let fx = Fixture::new(&[]);
        match fx.convert() {
            Err(ConvertError::Truncated {
                offset: 0,
                file_len: 0,
                ..
            }) => {}
            other => panic!("expected Truncated at 0, got {other:?}"),
        }
        fx.assert_no_output();
    }

    #[test]
    fn wrong_version_and_spec_are_reported() {
        let bytes = ct2_file(99, "WhisperSpec", &[], &[]);
        match index_of(&bytes) {
            Err(ConvertError::UnsupportedVersion { found: 99, .. }) => {}
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
        let bytes = ct2_file(6, "TransformerSpec", &[], &[]);
        match index_of(&bytes) {
            Err(e @ ConvertError::NotWhisper { .. }) => {
                assert!(e.to_string().contains("TransformerSpec"))
            }
            other => panic!("expected NotWhisper, got {other:?}"),
        }
    }

    #[test]
    fn truncated_variable_reports_offset() {
        let vars = vec![(
            "encoder/conv1/bias".to_string(),
            V::F(vec![8], vec![1.0; 8]),
        )];
        let full = ct2_file(6, "WhisperSpec", &vars, &[]);
        // Cut inside the data (alias count 4 bytes + 10 data bytes missing).
        let cut = &full[..full.len() - 14];
        let data_start = (full.len() - 4 - 32) as u64;
        match index_of(cut) {
            Err(ConvertError::Truncated {
                offset,
                expected,
                needed,
                ..
            }) => {
                assert_eq!(offset, data_start);
                assert!(expected.contains("encoder/conv1/bias"), "{expected}");
                assert_eq!(needed, 10);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        let fx = Fixture::new(cut);
        assert!(matches!(fx.convert(), Err(ConvertError::Truncated { .. })));
        fx.assert_no_output();
    }

    #[test]
    fn string_length_beyond_eof_is_truncated() {
        let mut bytes = 6u32.to_le_bytes().to_vec();
        bytes.extend_from_slice(&500u16.to_le_bytes());
        bytes.extend_from_slice(b"Whisper");
        match index_of(&bytes) {
            Err(ConvertError::Truncated {
                offset: 6,
                needed: 493,
                ..
            }) => {}
            other => panic!("expected Truncated at 6, got {other:?}"),
        }
    }

    #[test]
    fn byte_count_must_match_shape() {
        let mut bytes = ct2_file(
            6,
            "WhisperSpec",
            &[("x".to_string(), V::F(vec![2], vec![1.0, 2.0]))],
            &[],
        );
        // Patch the byte count (after name, rank, one dim, dtype) from 8 to 4.
        let at = 4 + 2 + 12 + 4 + 4 + 2 + 2 + 1 + 4 + 1;
        bytes[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
        match index_of(&bytes) {
            Err(ConvertError::Malformed { offset, .. }) => assert_eq!(offset, at as u64),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn every_prefix_of_a_model_fails_cleanly() {
        let full = ct2_file(
            6,
            "WhisperSpec",
            &tiny_synthetic()[..6],
            &[("a", "encoder/conv1/bias")],
        );
        assert!(index_of(&full).is_ok());
        for n in 0..full.len() {
            assert!(index_of(&full[..n]).is_err(), "prefix {n} accepted");
        }
        // Garbage after the alias table is rejected too.
        let mut long = full.clone();
        long.push(0);
        assert!(matches!(
            index_of(&long),
            Err(ConvertError::Malformed { .. })
        ));
    }

    #[test]
    fn missing_variable_and_bad_shape_leave_no_file() {
        let mut vars = tiny_synthetic();
        vars.retain(|(n, _)| n != "decoder/layer_1/attention/linear_2/weight");
        let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &vars, &[]));
        match fx.convert() {
            Err(ConvertError::MissingVariable { name, .. }) => {
                assert_eq!(name, "decoder/layer_1/attention/linear_2/weight")
            }
            other => panic!("expected MissingVariable, got {other:?}"),
        }
        fx.assert_no_output();

        let mut vars = tiny_synthetic();
        for (n, v) in vars.iter_mut() {
            if n == "encoder/layer_0/ffn/linear_0/weight" {
                *v = V::F16(vec![24, 8], vec![0.0; 24 * 8]);
            }
        }
        let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &vars, &[]));
        match fx.convert() {
            Err(ConvertError::BadShape {
                found, expected, ..
            }) => {
                assert_eq!((found, expected), (vec![24, 8], vec![32, 8]))
            }
            other => panic!("expected BadShape, got {other:?}"),
        }
        fx.assert_no_output();
    }

    #[test]
    fn bad_tokenizer_is_reported() {
        let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &tiny_synthetic(), &[]));
        std::fs::write(
            fx.p("tokenizer.json"),
            "{\"model\": {\"vocab\": {\"a\": 0}}}",
        )
        .unwrap();
        match fx.convert() {
            Err(e @ ConvertError::Tokenizer { .. }) => {
                assert!(e.to_string().contains("<|endoftext|>"))
            }
            other => panic!("expected Tokenizer error, got {other:?}"),
        }
        std::fs::write(fx.p("tokenizer.json"), "{\"model\": ").unwrap();
        assert!(matches!(fx.convert(), Err(ConvertError::Json { .. })));
        fx.assert_no_output();
    }

    #[test]
    fn inspect_rejects_non_ggml_and_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(
            inspect_ggml(&p),
            Err(ConvertError::Truncated { offset: 0, .. })
        ));
        std::fs::write(&p, b"GGUF\0\0\0\0").unwrap();
        assert!(matches!(
            inspect_ggml(&p),
            Err(ConvertError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(
            inspect_ggml(&dir.path().join("missing.bin")),
            Err(ConvertError::Io { action: "open", .. })
        ));
    }

    // ---------------- synthetic end-to-end ---------------------------------

    /// Reads tensor `name`'s data from a ggml file as f32.
    fn ggml_tensor_data(bytes: &[u8], name: &str) -> Vec<f32> {
        let (_, tensors) = inspect_reader(BinReader::new(
            Cursor::new(bytes),
            Path::new("x"),
            bytes.len() as u64,
        ))
        .unwrap();
        // Walk the file again to find the offset (directory order).
        let mut pos = bytes.len();
        let mut end = bytes.len();
        for t in tensors.iter().rev() {
            let elems: i64 = t.dims.iter().map(|&d| i64::from(d)).product();
            let size = if t.ftype == 0 { 4 } else { 2 };
            pos = end - elems as usize * size;
            if t.name == name {
                return if t.ftype == 0 {
                    bytes[pos..end]
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect()
                } else {
                    bytes[pos..end]
                        .chunks_exact(2)
                        .map(|c| f16_to_f32(u16::from_le_bytes(c.try_into().unwrap())))
                        .collect()
                };
            }
            end = pos - (12 + 4 * t.dims.len() + t.name.len());
        }
        panic!("tensor {name} not found (last pos {pos})");
    }

    #[test]
    fn synthetic_model_converts_with_openai_layout() {
        let fx = Fixture::new(&ct2_file(
            6,
            "WhisperSpec",
            &tiny_synthetic(),
            &[("decoder/projection/weight", "decoder/embeddings/weight")],
        ));
        let report = fx.convert().unwrap();
        fx.assert_no_output_part();
        let out = fx.p("out.bin");
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(report.bytes_written, bytes.len() as u64);
        assert_eq!(
            (
                report.n_vocab,
                report.n_audio_layer,
                report.n_text_layer,
                report.n_audio_state,
                report.n_mels
            ),
            (51864, 1, 2, 8, 4)
        );
        // 7 encoder globals + 15 per encoder block + 4 decoder globals + 24 per decoder block.
        assert_eq!(report.tensors, 7 + 15 + 4 + 2 * 24);

        let (h, tensors) = inspect_ggml(&out).unwrap();
        assert_eq!(
            h,
            GgmlHeader {
                n_vocab: 51864,
                n_audio_ctx: 6,
                n_audio_state: 8,
                n_audio_head: 2,
                n_audio_layer: 1,
                n_text_ctx: 5,
                n_text_state: 8,
                n_text_head: 2,
                n_text_layer: 2,
                n_mels: 4,
                ftype: 1,
            }
        );
        assert_eq!(tensors.len(), report.tensors);
        let find = |n: &str| {
            tensors
                .iter()
                .find(|t| t.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(find("encoder.conv1.weight").dims, vec![8, 4, 3]);
        assert_eq!(find("encoder.conv1.weight").ftype, 1);
        assert_eq!(find("encoder.conv1.bias").dims, vec![8, 1]);
        assert_eq!(find("encoder.conv1.bias").ftype, 0);
        assert_eq!(find("encoder.positional_embedding").ftype, 0);
        assert_eq!(find("decoder.positional_embedding").dims, vec![5, 8]);
        assert_eq!(find("decoder.token_embedding.weight").dims, vec![51864, 8]);
        assert_eq!(
            find("decoder.blocks.1.cross_attn.key.weight").dims,
            vec![8, 8]
        );
        assert_eq!(find("encoder.blocks.0.mlp.0.weight").dims, vec![32, 8]);
        assert_eq!(find("decoder.ln.bias").ftype, 0);
        assert!(tensors.iter().all(|t| !t.name.contains("key.bias")));
        assert!(tensors
            .iter()
            .all(|t| t.name != "decoder.projection.weight"));

        // Vocabulary: 50256 tokens before <|endoftext|>, byte tokens decoded.
        let vocab_at = 4 + 44 + 8 + 4 * 201 * 4;
        assert_eq!(
            i32::from_le_bytes(bytes[vocab_at..vocab_at + 4].try_into().unwrap()),
            50256
        );
        let first_len = i32::from_le_bytes(bytes[vocab_at + 4..vocab_at + 8].try_into().unwrap());
        assert_eq!(
            (first_len, bytes[vocab_at + 8]),
            (1, 0u8),
            "token 0 is byte 0x00"
        );

        // Q/K/V rows come from the right thirds; biases from the right slices.
        let q = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.query.weight");
        let k = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.key.weight");
        let v = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.value.weight");
        assert_eq!((q[0], k[0], v[0]), (0.0, 16.0, 32.0));
        assert_eq!(v[63], 47.75);
        let vb = ggml_tensor_data(&bytes, "decoder.blocks.0.attn.value.bias");
        assert_eq!(vb, ramp(24, 100.0)[16..].to_vec());
        let qb = ggml_tensor_data(&bytes, "decoder.blocks.0.attn.query.bias");
        assert_eq!(qb, ramp(8, 100.0));
        let ck = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.key.weight");
        let cv = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.value.weight");
        assert_eq!((ck[0], cv[0]), (0.0, 16.0));
        let cvb = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.value.bias");
        assert_eq!(cvb, ramp(16, 200.0)[8..].to_vec());
        assert_eq!(
            ggml_tensor_data(&bytes, "encoder.ln_post.weight"),
            ramp(8, 3.0)
        );
        assert_eq!(
            ggml_tensor_data(&bytes, "encoder.ln_post.bias"),
            ramp(8, 4.0)
        );
        assert_eq!(ggml_tensor_data(&bytes, "encoder.conv2.bias"), ramp(8, 2.0));

        // Re-converting over an existing file replaces it atomically.
        let again = fx.convert().unwrap();
        assert_eq!(again.bytes_written, report.bytes_written);
        assert_eq!(std::fs::read(&out).unwrap(), bytes);

        // A truncated copy is rejected by inspect_ggml.
        let cut = fx.p("cut.bin");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(
            inspect_ggml(&cut),
            Err(ConvertError::Truncated { .. })
        ));
    }

    impl Fixture {
        fn assert_no_output_part(&self) {
            assert!(!self.p("out.bin.part").exists(), "out.bin.part left behind");
        }
    }

    // ---------------- real model (run via the integration suite) -----------

    fn env_path(var: &str) -> PathBuf {
        match std::env::var_os(var) {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => panic!(
                "set {var} (CALLPULSE_TEST_CT2_DIR = directory with the faster-whisper tiny.en model.bin, \
                 tokenizer.json and config.json; CALLPULSE_TEST_JFK = path to jfk.wav) to run this test"
            ),
        }
    }

    fn convert_real(out_dir: &Path) -> (ConvertReport, PathBuf) {
        let dir = env_path("CALLPULSE_TEST_CT2_DIR");
        let out = out_dir.join("ggml-tiny.en.bin");
        let report = convert_ct2_to_ggml(
            &dir.join("model.bin"),
            &dir.join("tokenizer.json"),
            &dir.join("config.json"),
            &out,
        )
        .unwrap_or_else(|e| panic!("conversion failed: {e}"));
        (report, out)
    }

    #[test]
    #[ignore = "needs CALLPULSE_TEST_CT2_DIR; run via tests/ integration"]
    fn real_tiny_en_converts_to_expected_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let (report, out) = convert_real(tmp.path());
        assert_eq!(report.bytes_written, 77_704_698);
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 77_704_698);
        assert_eq!(report.tensors, 167);
        let (h, tensors) = inspect_ggml(&out).unwrap();
        assert_eq!(
            h,
            GgmlHeader {
                n_vocab: 51864,
                n_audio_ctx: 1500,
                n_audio_state: 384,
                n_audio_head: 6,
                n_audio_layer: 4,
                n_text_ctx: 448,
                n_text_state: 384,
                n_text_head: 6,
                n_text_layer: 4,
                n_mels: 80,
                ftype: 1,
            }
        );
        assert_eq!(tensors.len(), 167);
        let dims = |n: &str| tensors.iter().find(|t| t.name == n).map(|t| t.dims.clone());
        assert_eq!(dims("encoder.conv1.weight"), Some(vec![384, 80, 3]));
        assert_eq!(dims("encoder.conv1.bias"), Some(vec![384, 1]));
        assert_eq!(dims("encoder.positional_embedding"), Some(vec![1500, 384]));
        assert_eq!(
            dims("decoder.token_embedding.weight"),
            Some(vec![51864, 384])
        );
        assert_eq!(
            dims("decoder.blocks.3.cross_attn.value.weight"),
            Some(vec![384, 384])
        );
        assert_eq!(dims("encoder.blocks.3.mlp.0.weight"), Some(vec![1536, 384]));
        assert_eq!(dims("encoder.blocks.0.attn.key.bias"), None);
    }

    #[test]
    #[ignore = "needs CALLPULSE_TEST_CT2_DIR; run via tests/ integration"]
    fn real_tiny_en_transcribes_jfk_with_whisper_rs() {
        use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

        let jfk = env_path("CALLPULSE_TEST_JFK");
        let tmp = tempfile::tempdir().unwrap();
        let (_, out) = convert_real(tmp.path());

        let mut reader =
            hound::WavReader::open(&jfk).unwrap_or_else(|e| panic!("{}: {e}", jfk.display()));
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (16_000, 1, 16)
        );
        let samples: Vec<f32> = reader
            .samples::<i16>()
            .map(|s| f32::from(s.unwrap()) / 32768.0)
            .collect();

        let ctx = WhisperContext::new_with_params(&out, WhisperContextParameters::default())
            .unwrap_or_else(|e| panic!("whisper.cpp rejected the converted model: {e:?}"));
        let mut state = ctx.create_state().unwrap();
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_language(Some("en"));
        params.set_n_threads(std::thread::available_parallelism().map_or(2, |n| n.get() as i32));
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_special(false);
        params.set_print_timestamps(false);
        state.full(params, &samples).unwrap();
        let text: String = state
            .as_iter()
            .map(|seg| {
                seg.to_str_lossy()
                    .map(|s| s.into_owned())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("transcript: {text}");
        let norm = |s: &str| {
            s.to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || c.is_whitespace())
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(
            norm(&text).contains("ask not what your country can do for you"),
            "unexpected transcript: {text}"
        );
    }
}

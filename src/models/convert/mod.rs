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

mod bytes;
mod ct2;
mod inspect;
mod mel;
mod numbers;
mod plan;
mod reader;
#[cfg(test)]
mod tests;
mod vocab;
mod write;

use bytes::*;
use ct2::*;
pub use inspect::inspect_ggml;
#[cfg(test)]
use inspect::inspect_reader;
use mel::*;
use numbers::*;
pub(crate) use numbers::{f16_to_f32, f32_to_f16};
use plan::*;
use reader::*;
use vocab::*;
pub use write::convert_ct2_to_ggml;

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

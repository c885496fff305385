use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::value::Tensor;
use tokenizers::Tokenizer;

use crate::runtime::{self, RuntimeError};

/// Embedding width of all-MiniLM-L6-v2.
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

/// all-MiniLM-L6-v2 (int8 ONNX) with mean pooling, shared between threads.
#[derive(Clone)]
pub struct OnnxEncoder {
    session: Arc<Mutex<ort::session::Session>>,
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
        let (session, device) = runtime::session_on(ort_lib, model, threads, gpu)?;
        let mut tok = Tokenizer::from_file(tokenizer).map_err(|e| EncoderError::Tokenizer {
            path: tokenizer.to_path_buf(),
            reason: e.to_string(),
        })?;
        tok.with_padding(None);
        tok.with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS,
            ..Default::default()
        }))
        .map_err(|e| EncoderError::Tokenizer {
            path: tokenizer.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(OnnxEncoder {
            session: Arc::new(Mutex::new(session)),
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

//! Speaker embeddings: the [`SpeakerEmbedder`] stage boundary, the CAM++
//! ONNX model behind it ([`SpeakerModel`]), and a deterministic stand-in for
//! tests of the surrounding logic ([`SpectralEmbedder`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::value::Tensor;

use super::cluster::normalise;
use super::fbank::{mean_normalise, N_MELS};
use super::DiarizeError;
use crate::runtime;

/// Turns windows of log mel features ([`super::fbank::Fbank::compute`], not
/// normalised) into unit-length speaker embeddings (similar speakers →
/// cosine near 1).
pub trait SpeakerEmbedder: Send + Sync {
    /// Embed `batch` windows of `frames` frames each, laid out
    /// `[batch][frames][N_MELS]` in `feats`.
    fn embed(
        &self,
        feats: &[f32],
        batch: usize,
        frames: usize,
    ) -> Result<Vec<Vec<f32>>, DiarizeError>;
}

impl<T: SpeakerEmbedder + ?Sized> SpeakerEmbedder for Arc<T> {
    fn embed(
        &self,
        feats: &[f32],
        batch: usize,
        frames: usize,
    ) -> Result<Vec<Vec<f32>>, DiarizeError> {
        (**self).embed(feats, batch, frames)
    }
}

/// The CAM++ speaker model (192-d), loaded once and shared.
#[derive(Clone)]
pub struct SpeakerModel {
    session: Arc<Mutex<ort::session::Session>>,
}

/// Fewest feature frames the model accepts: its time strides need a few.
pub const MIN_FRAMES: usize = 8;

impl SpeakerModel {
    /// Load `campplus.onnx` through the ONNX Runtime library at `ort_lib`,
    /// running on `threads` threads.
    pub fn load(ort_lib: &Path, model: &Path, threads: usize) -> Result<Self, DiarizeError> {
        let session = runtime::session(ort_lib, model, threads)?;
        Ok(SpeakerModel {
            session: Arc::new(Mutex::new(session)),
        })
    }
}

impl SpeakerEmbedder for SpeakerModel {
    fn embed(
        &self,
        feats: &[f32],
        batch: usize,
        frames: usize,
    ) -> Result<Vec<Vec<f32>>, DiarizeError> {
        if batch == 0 {
            return Ok(Vec::new());
        }
        if frames < MIN_FRAMES || feats.len() != batch * frames * N_MELS {
            return Err(DiarizeError::Input(format!(
                "{} feature values for {batch} windows of {frames} frames (need at least {MIN_FRAMES} frames of {N_MELS} bins)",
                feats.len()
            )));
        }
        let inf = |e: ort::Error| DiarizeError::Inference(e.to_string());
        // CAM++ takes each window with its bins' means removed.
        let mut input = feats.to_vec();
        input
            .chunks_exact_mut(frames * N_MELS)
            .for_each(mean_normalise);
        let x = Tensor::from_array(([batch, frames, N_MELS], input)).map_err(inf)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| DiarizeError::Inference("speaker model lock poisoned".into()))?;
        let out = session.run(ort::inputs!["feats" => x]).map_err(inf)?;
        let (shape, e) = out[0].try_extract_tensor::<f32>().map_err(inf)?;
        let dim = shape.last().copied().unwrap_or(0).max(0) as usize;
        if dim == 0 || e.len() != batch * dim {
            return Err(DiarizeError::Inference(format!(
                "speaker model returned shape {shape:?} for {batch} windows"
            )));
        }
        Ok(e.chunks_exact(dim)
            .map(|c| {
                let mut v = c.to_vec();
                normalise(&mut v);
                v
            })
            .collect())
    }
}

/// A deterministic embedder for tests: the window's mean spectral shape,
/// which tells apart signals with different spectra (tones of different
/// pitch, say) the way a speaker model tells apart voices.
pub struct SpectralEmbedder;

impl SpeakerEmbedder for SpectralEmbedder {
    fn embed(
        &self,
        feats: &[f32],
        batch: usize,
        frames: usize,
    ) -> Result<Vec<Vec<f32>>, DiarizeError> {
        let per = frames * N_MELS;
        if feats.len() != batch * per {
            return Err(DiarizeError::Input("feature size mismatch".into()));
        }
        Ok(feats
            .chunks_exact(per.max(1))
            .map(|w| {
                let mut m = vec![0f32; N_MELS];
                for fr in w.chunks_exact(N_MELS) {
                    for (a, b) in m.iter_mut().zip(fr) {
                        *a += b.max(-10.0) + 10.0;
                    }
                }
                let mean = m.iter().sum::<f32>() / N_MELS as f32;
                m.iter_mut().for_each(|v| *v -= mean);
                normalise(&mut m);
                m
            })
            .collect())
    }
}

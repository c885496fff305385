use std::path::Path;
use std::sync::{Arc, Mutex};

use ort::value::Tensor;

use crate::runtime::{self, RuntimeError};

/// Samples per VAD frame at 16 kHz (32 ms), Silero's native window.
pub const FRAME: usize = 512;
const CONTEXT: usize = 64;

/// Voice-activity errors.
#[derive(Debug, thiserror::Error)]
pub enum VadError {
    /// The model or runtime could not be loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Inference failed.
    #[error("voice activity model failed: {0}")]
    Inference(String),
}

/// Speech probability per 512-sample frame at 16 kHz.
pub trait VoiceDetector: Send {
    /// Probability in [0, 1] that `frame` (exactly [`FRAME`] samples) holds speech.
    fn speech_prob(&mut self, frame: &[f32]) -> Result<f32, VadError>;
    /// Forget the stream state (a new stream or a discontinuity).
    fn reset(&mut self);
}

/// A loaded voice-activity model, shared by every leg: hands out detectors
/// with their own stream state.
pub trait VadModel: Sync {
    /// The per-leg detector.
    type Detector: VoiceDetector;
    /// A detector with fresh state.
    fn detector(&self) -> Self::Detector;
}

impl VadModel for SileroModel {
    type Detector = SileroVad;
    fn detector(&self) -> SileroVad {
        SileroModel::detector(self)
    }
}

/// The Silero VAD ONNX model, loaded once and shared by every leg.
#[derive(Clone)]
pub struct SileroModel {
    session: Arc<Mutex<ort::session::Session>>,
}

impl SileroModel {
    /// Load `silero_vad.onnx` through the ONNX Runtime library at `ort_lib`.
    pub fn load(ort_lib: &Path, model: &Path) -> Result<Self, VadError> {
        let session = runtime::session(ort_lib, model, 1)?;
        Ok(SileroModel {
            session: Arc::new(Mutex::new(session)),
        })
    }

    /// A detector with its own recurrent state, for one leg.
    pub fn detector(&self) -> SileroVad {
        SileroVad {
            model: self.clone(),
            state: vec![0.0; 2 * 128],
            input: vec![0.0; CONTEXT + FRAME],
        }
    }
}

/// Silero VAD state for one leg.
pub struct SileroVad {
    model: SileroModel,
    state: Vec<f32>,
    /// The previous frame's last 64 samples followed by the current frame.
    input: Vec<f32>,
}

impl VoiceDetector for SileroVad {
    fn speech_prob(&mut self, frame: &[f32]) -> Result<f32, VadError> {
        if frame.len() != FRAME {
            return Err(VadError::Inference(format!(
                "frame of {} samples, expected {FRAME}",
                frame.len()
            )));
        }
        self.input[CONTEXT..].copy_from_slice(frame);
        let inf = |e: ort::Error| VadError::Inference(e.to_string());
        let x = Tensor::from_array(([1usize, CONTEXT + FRAME], self.input.clone())).map_err(inf)?;
        let st = Tensor::from_array(([2usize, 1, 128], self.state.clone())).map_err(inf)?;
        let sr = Tensor::from_array(((), vec![16_000i64])).map_err(inf)?;
        let prob = {
            let mut session = self
                .model
                .session
                .lock()
                .map_err(|_| VadError::Inference("VAD session lock poisoned".into()))?;
            let out = session
                .run(ort::inputs!["input" => x, "state" => st, "sr" => sr])
                .map_err(inf)?;
            let (_, p) = out[0].try_extract_tensor::<f32>().map_err(inf)?;
            let (_, s) = out[1].try_extract_tensor::<f32>().map_err(inf)?;
            if s.len() == self.state.len() {
                self.state.copy_from_slice(s);
            }
            p.first().copied().unwrap_or(0.0)
        };
        self.input.copy_within(FRAME.., 0);
        Ok(prob)
    }

    fn reset(&mut self) {
        self.state.iter_mut().for_each(|v| *v = 0.0);
        self.input.iter_mut().for_each(|v| *v = 0.0);
    }
}

/// A deterministic energy threshold detector, for tests of the surrounding logic.
pub struct EnergyVad {
    /// Frames with RMS above this (linear) count as speech.
    pub threshold: f32,
}

impl VoiceDetector for EnergyVad {
    fn speech_prob(&mut self, frame: &[f32]) -> Result<f32, VadError> {
        let rms = (frame.iter().map(|v| v * v).sum::<f32>() / frame.len().max(1) as f32).sqrt();
        Ok(if rms > self.threshold { 1.0 } else { 0.0 })
    }
    fn reset(&mut self) {}
}

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::analysis::TextModels;
use super::run::{run_call, Models};
use super::speakers::{prescan, Embedder};
use super::QUEUE_TURNS;
use crate::asr::{AsrError, WhisperModel};
use crate::audio::resample::ResampleError;
use crate::audio::wav::WavError;
use crate::capture::{CaptureError, Source, WavFile};
use crate::config::Config;
use crate::diarize::SpeakerModel;
use crate::event::{CallMeta, Devices, Event, SummaryEvent};
use crate::intel::emotion::EmotionHead;
use crate::intel::rules::Rule;
use crate::models::ModelPaths;
use crate::segment::{SileroModel, VadError};
use crate::sentiment::{E5Encoder, EncoderError, HeadError, PolarityHead};

/// Why a call could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Input file problem.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// Source problem (device, stdin parameters).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The input failed before any audio was read.
    #[error("{0}")]
    Input(String),
    /// Resampler.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// Voice activity.
    #[error(transparent)]
    Vad(#[from] VadError),
    /// Recognition.
    #[error(transparent)]
    Asr(#[from] AsrError),
    /// Text encoder.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// Polarity head.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// Emotion head or rules.
    #[error("{0}")]
    Intel(String),
    /// A pipeline thread died (a bug; reported instead of hanging).
    #[error("internal pipeline error: {0}")]
    Internal(String),
}

/// The loaded models, shared by every call scored with them.
#[derive(Clone)]
pub struct Engine {
    pub(super) cfg: Config,
    pub(super) whisper: WhisperModel,
    pub(super) vad: SileroModel,
    pub(super) encoder: E5Encoder,
    pub(super) head: Arc<PolarityHead>,
    pub(super) emotion: Arc<EmotionHead>,
    pub(super) intent: Arc<crate::intel::intent::IntentHead>,
    /// The speaker model, when diarisation is on.
    pub(super) speaker: Option<Embedder>,
    pub(super) rules: Vec<Rule>,
    pub(super) hints: Vec<crate::intel::assist::HintRule>,
    pub(super) empathy: Arc<crate::intel::empathy::EmpathyModel>,
}

/// The result of scoring one call.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    /// The summary event (also sent to the sink).
    pub summary: SummaryEvent,
    /// Set when the input ended in an error after some good audio: the turns
    /// before it were scored and written, but the run should fail.
    pub input_error: Option<String>,
}

/// How one run behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Call id written in every event.
    pub call_id: String,
    /// Live: emit each event as soon as it is ready (turn ids in emission
    /// order) with latency timings. Offline: turns sorted by start time at
    /// the end.
    pub live: bool,
    /// Partial cadence (None = no partials).
    pub partial_interval: Option<Duration>,
    /// Minimum turn length before the first partial.
    pub partial_min: Duration,
    /// Decode settled turns speculatively.
    pub speculate: bool,
    /// Stop after this much audio (seconds).
    pub max_seconds: Option<f64>,
    /// Set to end capture gracefully (SIGINT/SIGTERM).
    pub stop: Arc<AtomicBool>,
    /// Capture ring capacity, seconds of audio.
    pub ring_seconds: f64,
    /// Capacity of the finished-turn queue.
    pub final_queue: usize,
    /// Role of each leg, overriding `[roles]` (telephony legs know theirs).
    pub roles: Option<Vec<crate::event::Role>>,
    /// Who spoke when on each leg, from a first pass over a file (diarised
    /// legs only); without it, diarised legs are labelled live.
    pub speaker_segments: Option<Arc<Vec<Option<Vec<crate::diarize::Segment>>>>>,
    /// Agent, start time and channel, copied into the summary.
    pub meta: crate::event::CallMeta,
}

impl RunOptions {
    /// Offline scoring: no partials, ordered output.
    pub fn offline(call_id: &str) -> Self {
        RunOptions {
            call_id: call_id.into(),
            live: false,
            partial_interval: None,
            partial_min: Duration::from_millis(1500),
            speculate: false,
            max_seconds: None,
            stop: Arc::new(AtomicBool::new(false)),
            ring_seconds: 2.0,
            final_queue: QUEUE_TURNS,
            roles: None,
            speaker_segments: None,
            meta: Default::default(),
        }
    }

    /// Live streaming with the `[live]` settings of `cfg`.
    pub fn live(call_id: &str, cfg: &Config, stop: Arc<AtomicBool>) -> Self {
        let l = &cfg.live;
        RunOptions {
            call_id: call_id.into(),
            live: true,
            partial_interval: (l.partial_interval_ms > 0)
                .then(|| Duration::from_millis(l.partial_interval_ms as u64)),
            partial_min: Duration::from_millis(l.partial_min_ms as u64),
            speculate: l.speculate,
            max_seconds: None,
            stop,
            ring_seconds: l.ring_ms as f64 / 1000.0,
            final_queue: l.final_queue,
            roles: None,
            speaker_segments: None,
            meta: crate::event::CallMeta {
                started_unix_ms: Some(crate::event::now_unix_ms()),
                ..Default::default()
            },
        }
    }
}

impl Engine {
    /// Load every model once.
    pub fn load(cfg: &Config, paths: &ModelPaths) -> Result<Self, EngineError> {
        let mut whisper = WhisperModel::load(&paths.whisper, cfg.asr.clone())?;
        if let Some(lid) = &paths.language_id {
            whisper = whisper.with_language_id(&WhisperModel::load(lid, cfg.asr.clone())?)?;
        }
        let vad = SileroModel::load(&paths.ort_lib, &paths.silero)?;
        let encoder = E5Encoder::load(
            &paths.ort_lib,
            &paths.encoder,
            &paths.tokenizer,
            1,
            cfg!(feature = "ort-cuda"),
        )?;
        let head = PolarityHead::load(&cfg.heads_dir())?;
        let emotion = EmotionHead::load(&cfg.heads_dir())?;
        let intent = crate::intel::intent::IntentHead::load(&cfg.heads_dir())?;
        let rules = cfg
            .escalation
            .effective_rules()
            .map_err(EngineError::Intel)?;
        let hints = cfg.assist.effective_rules().map_err(EngineError::Intel)?;
        let empathy = crate::intel::empathy::EmpathyModel::load(&encoder)?;
        let speaker: Option<Embedder> = if cfg.diarize.enabled {
            let m = SpeakerModel::load(&paths.ort_lib, &paths.speaker, 1)
                .map_err(|e| EngineError::Intel(format!("speaker model: {e}")))?;
            Some(Arc::new(m))
        } else {
            None
        };
        Ok(Engine {
            cfg: cfg.clone(),
            whisper,
            vad,
            encoder,
            head: Arc::new(head),
            emotion: Arc::new(emotion),
            intent: Arc::new(intent),
            speaker,
            rules,
            hints,
            empathy: Arc::new(empathy),
        })
    }

    /// The text encoder (for training and evaluation).
    pub fn encoder(&self) -> &E5Encoder {
        &self.encoder
    }

    /// The configuration the engine was loaded with.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Where each model runs.
    pub fn devices(&self) -> Devices {
        Devices {
            asr: self.whisper.device().into(),
            encoder: self.encoder.device().into(),
            vad: "cpu".into(),
        }
    }

    /// Score a WAV file offline. Events go to `sink` in call order (turns
    /// sorted by start time, then the summary); `progress` gets the audio
    /// seconds read and the total.
    pub fn score_file(
        &self,
        path: &Path,
        call_id: &str,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, f64) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        self.score_file_with(path, call_id, CallMeta::default(), sink, progress)
    }

    /// [`Engine::score_file`] with the call's metadata (agent, start time)
    /// for the summary.
    pub fn score_file_with(
        &self,
        path: &Path,
        call_id: &str,
        meta: CallMeta,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, f64) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        let src = WavFile::open(path)?;
        let mut opts = RunOptions::offline(call_id);
        opts.meta = meta;
        let channels = src.info().channels as usize;
        if let (Some(embedder), true) = (&self.speaker, self.cfg.diarize.applies(channels)) {
            let legs = vec![true; channels];
            let segs = prescan(path, &legs, &self.vad, embedder, &self.cfg.diarize.options)?;
            opts.speaker_segments = Some(Arc::new(segs));
        }
        let prog = |done: f64, total: Option<f64>| progress(done, total.unwrap_or(0.0));
        self.run(Box::new(src), &opts, sink, &prog)
            .map_err(|e| match e {
                EngineError::Input(reason) => EngineError::Wav(WavError::Read {
                    path: path.to_path_buf(),
                    frame: 0,
                    reason,
                }),
                e => e,
            })
    }

    /// Run one call from `source` through the staged pipeline:
    ///
    /// capture → ring → resample → per leg: VAD + turns → ASR → prosody +
    /// sentiment → `sink` (on the calling thread).
    pub fn run(
        &self,
        source: Box<dyn Source>,
        opts: &RunOptions,
        sink: &mut dyn FnMut(Event),
        progress: &(dyn Fn(f64, Option<f64>) + Sync),
    ) -> Result<CallOutcome, EngineError> {
        let models = Models {
            cfg: &self.cfg,
            asr: &self.whisper,
            vad: &self.vad,
            text: TextModels {
                encoder: self.encoder.clone(),
                head: self.head.clone(),
                emotion: self.emotion.clone(),
                intent: self.intent.clone(),
                empathy: self.empathy.clone(),
            },
            speaker: self.speaker.clone(),
            rules: &self.rules,
            hints: &self.hints,
            devices: self.devices(),
        };
        run_call(&models, source, opts, sink, progress)
    }
}

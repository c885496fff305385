//! The TOML configuration: one file, `deny_unknown_fields`, documented defaults.
//! Every CLI flag maps to a key here; flags override the file.
//!
//! ```toml
//! [models]
//! dir = "models/store"            # where `models fetch` installs (env CALLPULSE_MODELS_DIR)
//! asr = "tiny.en"                 # or "base"
//! whisper_model = "/path/ggml-small.bin"   # optional: your own ggml file (env CALLPULSE_WHISPER_MODEL)
//! onnxruntime_lib = "/path/libonnxruntime.so"  # optional (env CALLPULSE_ORT_LIB)
//!
//! [roles]
//! channel0 = "agent"
//! channel1 = "customer"
//! mono = "unknown"
//!
//! [asr]
//! threads = 0            # 0 = all cores
//! beam_size = 0          # greedy
//! adaptive_audio_ctx = true
//! language = "en"
//! no_speech_threshold = 0.6
//!
//! [segment]
//! threshold = 0.5
//! neg_threshold = 0.35
//! min_speech_ms = 250
//! min_silence_ms = 600
//! pad_ms = 200
//! max_turn_s = 20.0
//!
//! [live]
//! partial_interval_ms = 1000   # partial results during a turn; 0 = none
//! partial_min_ms = 1500        # no partial before this much of a turn
//! speculate = true             # decode a turn as soon as its audio is settled
//! ring_ms = 10000              # capture ring: audio held before frames are dropped
//! final_queue = 32             # finished turns waiting for ASR before capture backs up
//!
//! [dynamics]                   # mood trend and shift detection (see intel::dynamics)
//! ewma_alpha = 0.5
//! cusum_k = 0.15
//! cusum_h = 0.45
//!
//! [privacy]
//! redact = false               # replace card/phone/e-mail/SSN/IBAN/account numbers by [TYPE]
//!
//! [diarize]                    # who spoke when on a mono leg (see diarize)
//! enabled = true               # mono recordings and mono live legs
//! split_channel_speakers = false   # also each leg of a two-channel call
//! [diarize.options]
//! speakers = 2                 # when known; estimated (1..max_speakers) when absent
//! max_speakers = 4
//! [diarize.roles]
//! phrases = ["thank you for calling", "how can i help", "my name is * from"]
//!
//! [escalation]                 # see intel::rules for metrics and the built-in rules
//! default_rules = true
//! webhook = "http://127.0.0.1:9000/alerts"   # optional: POST each alert as JSON
//! webhook_timeout_ms = 2000
//! webhook_retries = 3
//! [[escalation.rules]]
//! id = "customer-angry"
//! severity = "high"
//! role = "customer"
//! metric = "anger"             # frustration sentiment trend intensity sarcasm anger silence_s interruptions
//! op = ">="
//! threshold = 0.6
//! count = 2
//! window = 3
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::asr::AsrConfig;
use crate::event::Role;
use crate::segment::SegmentConfig;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// File unreadable.
    #[error("cannot read config '{path}': {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML syntax or an unknown key.
    #[error("invalid config '{path}': {reason}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// A value out of range.
    #[error("invalid config value: {0}")]
    Invalid(String),
}

/// Which Whisper model `models fetch` provides and `score` uses by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AsrModel {
    /// Whisper tiny.en: the real-time model on CPUs.
    #[default]
    #[serde(rename = "tiny.en")]
    TinyEn,
    /// Whisper base (multilingual): slower, for offline accuracy.
    #[serde(rename = "base")]
    Base,
}

/// `[models]`: where models live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Install directory (default: `models/store` in the source tree, or
    /// `$CALLPULSE_MODELS_DIR`).
    pub dir: Option<PathBuf>,
    /// Which provisioned Whisper model to use.
    pub asr: AsrModel,
    /// Use this ggml model file instead (e.g. a small or medium model).
    pub whisper_model: Option<PathBuf>,
    /// Use this ONNX Runtime library instead of the provisioned one.
    pub onnxruntime_lib: Option<PathBuf>,
}

/// `[roles]`: which party each channel carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolesConfig {
    /// Role of channel 0 in a two-channel file.
    pub channel0: Role,
    /// Role of channel 1 in a two-channel file.
    pub channel1: Role,
    /// Role of the single leg of a mono file.
    pub mono: Role,
}

impl Default for RolesConfig {
    fn default() -> Self {
        RolesConfig {
            channel0: Role::Agent,
            channel1: Role::Customer,
            mono: Role::Unknown,
        }
    }
}

impl RolesConfig {
    /// Role of leg `leg` in a file with `channels` channels.
    pub fn role(&self, leg: usize, channels: usize) -> Role {
        match (channels, leg) {
            (1, _) => self.mono,
            (_, 0) => self.channel0,
            _ => self.channel1,
        }
    }
}

/// `[live]`: streaming behaviour (`stream`, `listen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Cadence of partial results during a turn, ms of audio (0 = no partials).
    pub partial_interval_ms: u32,
    /// A turn must be this long before its first partial, ms.
    pub partial_min_ms: u32,
    /// Decode a turn speculatively once its final audio is settled (pad of
    /// silence after the speech), so the final result is ready when the turn
    /// is declared over.
    pub speculate: bool,
    /// Capture ring capacity, ms of audio. When it is full, live capture
    /// drops frames (counted); it never blocks.
    pub ring_ms: u32,
    /// Capacity of the queue of finished turns waiting for ASR.
    pub final_queue: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            partial_interval_ms: 1000,
            partial_min_ms: 1500,
            speculate: true,
            ring_ms: 10_000,
            final_queue: 32,
        }
    }
}

impl LiveConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.partial_interval_ms != 0 && !(200..=10_000).contains(&self.partial_interval_ms) {
            return Err("live.partial_interval_ms must be 0 or between 200 and 10000".into());
        }
        if self.partial_min_ms > 30_000 {
            return Err("live.partial_min_ms must be at most 30000".into());
        }
        if !(500..=600_000).contains(&self.ring_ms) {
            return Err("live.ring_ms must be between 500 and 600000".into());
        }
        if !(1..=4096).contains(&self.final_queue) {
            return Err("live.final_queue must be between 1 and 4096".into());
        }
        Ok(())
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Model locations.
    pub models: ModelsConfig,
    /// Channel roles.
    pub roles: RolesConfig,
    /// Recogniser.
    pub asr: AsrConfig,
    /// Turn segmentation.
    pub segment: SegmentConfig,
    /// Streaming.
    pub live: LiveConfig,
    /// Mood trend and shift detection.
    pub dynamics: crate::intel::dynamics::DynamicsConfig,
    /// Escalation rules and the alert webhook.
    pub escalation: crate::intel::rules::EscalationConfig,
    /// PII redaction.
    pub privacy: crate::intel::PrivacyConfig,
    /// Speaker diarisation of legs that carry several people.
    pub diarize: crate::diarize::DiarizeConfig,
}

impl Config {
    /// Load a TOML file and validate it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check every section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.asr.validate().map_err(ConfigError::Invalid)?;
        self.segment.validate().map_err(ConfigError::Invalid)?;
        self.live.validate().map_err(ConfigError::Invalid)?;
        self.dynamics.validate().map_err(ConfigError::Invalid)?;
        self.escalation.validate().map_err(ConfigError::Invalid)?;
        self.diarize
            .options
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The model directory: config, then `$CALLPULSE_MODELS_DIR`, then
    /// `models/store` in the source tree this binary was built from.
    pub fn models_dir(&self) -> PathBuf {
        if let Some(d) = &self.models.dir {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("CALLPULSE_MODELS_DIR") {
            return PathBuf::from(d);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join("store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[asr]\nbeam = 3\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("beam"), "{e}");
        std::fs::write(&p, "[segment]\nthreshold = 2.0\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(e.contains("segment.threshold"), "{e}");
        std::fs::write(
            &p,
            "[roles]\nchannel0 = \"customer\"\nchannel1 = \"agent\"\n[models]\nasr = \"base\"\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.roles.role(0, 2), Role::Customer);
        assert_eq!(c.models.asr, AsrModel::Base);
    }
}

//! The TOML configuration: one file, `deny_unknown_fields`, documented defaults.
//! Every CLI flag maps to a key here; flags override the file.
//!
//! ```toml
//! [models]
//! dir = "models/store"            # where `models fetch` installs (env CALLPULSE_MODELS_DIR)
//! asr = "tiny.en"                 # or "base"
//! whisper_model = "/path/ggml-small.bin"   # optional: your own ggml file (env CALLPULSE_WHISPER_MODEL)
//! onnxruntime_lib = "/path/libonnxruntime.so"  # optional (env CALLPULSE_ORT_LIB)
//! language_id = true             # tiny.en: flag non-English calls (uses Whisper base when installed)
//! heads = "models/store/heads"    # retrained heads (`train --install`) load from here (env CALLPULSE_HEADS_DIR)
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
//! language = "en"          # multilingual models: "auto" (per turn) or a code; flag --language
//! no_speech_threshold = 0.6
//! max_window_s = 0.0       # decode turns longer than this in pieces cut at pauses; 0 = never
//! temperature_fallback = true  # retry a failed temperature-0 decode hotter; keep it only if it passes
//! pack_s = 0.0             # offline: decode consecutive turns together in windows of up to this many seconds (24 is a good value); 0 = never
//!
//! [segment]
//! threshold = 0.5
//! neg_threshold = 0.35
//! min_speech_ms = 150          # speech (frames above neg_threshold) a turn needs to be kept
//! min_silence_ms = 600
//! pad_ms = 200
//! max_turn_s = 20.0            # a longer turn is cut at its quietest moment in the last 4 s
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
//! cusum_h = 0.4
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
//! [sip]                        # `callpulse sip`, and the SIP listener of `serve --sip`
//! listen = "127.0.0.1:5060"
//! rtp_ports = "40000-40999"    # two consecutive even ports per two-party call
//! # media_ip = "192.0.2.10"    # written in SDP answers (default: the listen address)
//! jitter_ms = 100              # packets may arrive this late and still be placed
//! answer_delay_ms = 0          # ring this long before answering
//! rtp_timeout_s = 30.0         # end a call when no RTP arrived for this long
//! max_calls = 16               # more get 486 Busy Here
//! caller_role = "customer"     # or "agent" (outbound campaigns)
//! agent_id_header = "X-Agent-Id"   # the agent id (for insights): this header, else the agent's URI user
//! # seconds = 3600             # stop after this long
//! format = "jsonl"             # or "table"
//! # out = "events.jsonl"       # default: standard output
//! # out_dir = "calls/"         # also DIR/<call-id>.jsonl per call
//!
//! [rtp]                        # `callpulse rtp`
//! # listen = "127.0.0.1:40000-40002"
//! map = []                     # e.g. ["40000=agent", "ssrc:0x1a2b=customer"]
//! mono_role = "unknown"
//! idle_s = 5.0                 # a call ends after this long without packets
//! max_calls = 0                # exit after this many calls; 0 = keep listening
//! jitter_ms = 100
//! call_id = "rtp"              # calls are rtp-1, rtp-2, ...
//! format = "jsonl"
//! # out = "events.jsonl"
//! # out_dir = "calls/"
//!
//! [serve]                      # `callpulse serve` (its SIP listener takes [sip])
//! listen = "127.0.0.1:8080"
//! # token = "..."              # better: env CALLPULSE_TOKEN
//! # sip = "127.0.0.1:5060"     # also answer SIP calls here
//! db = "callpulse-history.sqlite"
//! history = true               # false: memory only
//! retention_days = 30
//! max_upload_mb = 100
//! upload_timeout_s = 300.0     # a whole upload must arrive within this time
//! body_idle_timeout_s = 30.0   # an upload may stall this long between chunks
//! header_timeout_s = 10.0
//! max_connections = 256
//! rate = 50.0                  # requests per second per client address
//! scoring_slots = 2            # uploads scored at once
//! subscriber_buffer = 1024     # events a subscriber may fall behind
//! events_per_call = 20000      # events kept in memory per call
//! max_finished_calls = 256     # finished calls kept in memory (the rest: history)
//! finished_ttl_s = 600.0       # ... and for at most this long
//! redact = true
//! stream = []                  # WAV files replayed as live calls
//! stream_speed = 1.0
//! stream_loop = 1
//! # mic = "default"
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
//!
//! [assist]                     # hints to the agent; see intel::assist for triggers and built-ins
//! enabled = true
//! default_rules = true
//! [[assist.rules]]
//! id = "slow-down"             # replaces the built-in of the same id
//! trigger = "agent_speaking_rate"  # customer_frustration repeated_complaint agent_interruptions
//!                              # agent_speaking_rate dead_air agent_monologue customer_asks_manager
//!                              # customer_asks_cancel recovery
//! threshold = 1.5
//! severity = "low"
//! tone = "corrective"          # or "positive"
//! cooldown_turns = 6
//! message = "You are speaking {value}x your usual pace: slow down."
//!
//! [cluster]                    # NATS JetStream: worker, submit, sip --nats, serve --nats (docs/scaling.md)
//! nats = "nats://127.0.0.1:4222"   # or --nats / CALLPULSE_NATS; none: single machine
//! ack_wait_s = 30.0            # a job not reported within this long goes to another worker
//! max_attempts = 3             # then the job goes to the dead letters with its error
//! retry_delay_s = 5.0          # before a failed job is retried
//! retention_hours = 72.0       # jobs, recordings, results and dead letters are kept this long
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::asr::AsrConfig;
use crate::event::Role;
use crate::segment::SegmentConfig;
use crate::sink::Format;
use crate::telephony::listener::parse_ports;
use crate::telephony::ua::first_even;

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// With an English-only recogniser, identify each call's language with
    /// Whisper base when it is installed (`models fetch --asr base`), and
    /// flag calls in other languages instead of scoring invented English.
    pub language_id: bool,
    /// Where retrained text heads are installed (`train --install`) and
    /// loaded from, in preference to the bundled ones (default: `heads/`
    /// in the models directory; env CALLPULSE_HEADS_DIR).
    pub heads: Option<PathBuf>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            dir: None,
            asr: AsrModel::default(),
            whisper_model: None,
            onnxruntime_lib: None,
            language_id: true,
            heads: None,
        }
    }
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

/// A positive number of seconds as a duration; the message names the key.
pub fn seconds(name: &str, v: f64) -> Result<std::time::Duration, String> {
    match std::time::Duration::try_from_secs_f64(v) {
        Ok(d) if v > 0.0 => Ok(d),
        _ => Err(format!("{name} must be a positive number of seconds")),
    }
}

fn positive(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 && v < 1e12 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive number"))
    }
}

fn live_format(name: &str, f: Format) -> Result<(), String> {
    match f {
        Format::Jsonl | Format::Table => Ok(()),
        _ => Err(format!("{name}: live output is jsonl or table")),
    }
}

/// `[sip]`: the SIP user agent (`callpulse sip`, and `serve --sip`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// SIP address (UDP). `0.0.0.0:5060` takes calls from other hosts.
    pub listen: SocketAddr,
    /// RTP ports to allocate from, `LOW-HIGH`.
    pub rtp_ports: String,
    /// Address written in SDP answers and bound for RTP (default: the
    /// listen address, or 127.0.0.1 when that is unspecified).
    pub media_ip: Option<IpAddr>,
    /// Jitter buffer: packets may arrive this late and still be placed, ms.
    pub jitter_ms: u32,
    /// Ring this long before answering, ms.
    pub answer_delay_ms: u64,
    /// End a call when no RTP arrived for this long, seconds.
    pub rtp_timeout_s: f64,
    /// Most concurrent calls.
    pub max_calls: usize,
    /// Role of the calling party.
    pub caller_role: Role,
    /// The agent id of a call (in its summary, for `insights`): this
    /// header's value when the INVITE has it, else the user part of the
    /// agent's URI (To when the caller is the customer, From otherwise).
    pub agent_id_header: String,
    /// Stop after this many seconds.
    pub seconds: Option<f64>,
    /// Output format (jsonl or table).
    pub format: Format,
    /// Write events here instead of standard output.
    pub out: Option<PathBuf>,
    /// Also write each call's events to `DIR/<call-id>.jsonl`.
    pub out_dir: Option<PathBuf>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            rtp_ports: "40000-40999".into(),
            media_ip: None,
            jitter_ms: 100,
            answer_delay_ms: 0,
            rtp_timeout_s: 30.0,
            max_calls: 16,
            caller_role: Role::Customer,
            agent_id_header: "X-Agent-Id".into(),
            seconds: None,
            format: Format::Jsonl,
            out: None,
            out_dir: None,
        }
    }
}

impl SipConfig {
    /// The RTP port range, checked to hold an even port.
    pub fn ports(&self) -> Result<(u16, u16), String> {
        let (lo, hi) = parse_ports(&self.rtp_ports).map_err(|e| format!("sip.rtp_ports: {e}"))?;
        if first_even(lo, hi).is_none() {
            return Err(format!(
                "sip.rtp_ports: no even port in {lo}-{hi} (RTP uses even ports)"
            ));
        }
        Ok((lo, hi))
    }

    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        self.ports()?;
        seconds("sip.rtp_timeout_s", self.rtp_timeout_s)?;
        if let Some(s) = self.seconds {
            seconds("sip.seconds", s)?;
        }
        if !(1..=100_000).contains(&self.max_calls) {
            return Err("sip.max_calls must be between 1 and 100000".into());
        }
        if !(1..=5000).contains(&self.jitter_ms) {
            return Err("sip.jitter_ms must be between 1 and 5000".into());
        }
        live_format("sip.format", self.format)
    }
}

/// `[rtp]`: bare RTP streams (`callpulse rtp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtpConfig {
    /// Where to receive: `IP:PORT` or `IP:LOW-HIGH` (even ports).
    pub listen: Option<String>,
    /// Port or SSRC to role: `40000=agent`, `ssrc:0x1a2b=customer`.
    pub map: Vec<String>,
    /// Role of a single unmapped port.
    pub mono_role: Role,
    /// A call ends after this long without packets, seconds.
    pub idle_s: f64,
    /// Exit after this many calls (0 = keep listening).
    pub max_calls: u32,
    /// Jitter buffer, ms.
    pub jitter_ms: u32,
    /// Call id prefix (calls are PREFIX-1, PREFIX-2, ...).
    pub call_id: String,
    /// Output format (jsonl or table).
    pub format: Format,
    /// Write events here instead of standard output.
    pub out: Option<PathBuf>,
    /// Also write each call's events to `DIR/<call-id>.jsonl`.
    pub out_dir: Option<PathBuf>,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            listen: None,
            map: Vec::new(),
            mono_role: Role::Unknown,
            idle_s: 5.0,
            max_calls: 0,
            jitter_ms: 100,
            call_id: "rtp".into(),
            format: Format::Jsonl,
            out: None,
            out_dir: None,
        }
    }
}

impl RtpConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        seconds("rtp.idle_s", self.idle_s)?;
        if !(1..=5000).contains(&self.jitter_ms) {
            return Err("rtp.jitter_ms must be between 1 and 5000".into());
        }
        if self.call_id.is_empty() {
            return Err("rtp.call_id must not be empty".into());
        }
        live_format("rtp.format", self.format)
    }
}

/// `[serve]`: the monitoring server (`callpulse serve`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSection {
    /// HTTP address; any but loopback needs a token.
    pub listen: SocketAddr,
    /// Bearer token (better from the environment: `CALLPULSE_TOKEN`).
    pub token: Option<String>,
    /// Also answer SIP calls here (settings from `[sip]`).
    pub sip: Option<SocketAddr>,
    /// Call history database.
    pub db: PathBuf,
    /// Keep a history (false: memory only).
    pub history: bool,
    /// Delete finished calls older than this from the history, days.
    pub retention_days: u32,
    /// Largest upload, MB.
    pub max_upload_mb: u64,
    /// A whole upload must arrive within this time, seconds.
    pub upload_timeout_s: f64,
    /// An upload may stall this long between chunks, seconds.
    pub body_idle_timeout_s: f64,
    /// Request headers must arrive within this time, seconds.
    pub header_timeout_s: f64,
    /// Most open HTTP connections.
    pub max_connections: usize,
    /// Requests per second per client address (bursts of twice that).
    pub rate: f64,
    /// Uploads scored at once.
    pub scoring_slots: usize,
    /// A subscriber this many events behind is cut off.
    pub subscriber_buffer: usize,
    /// Events kept in memory per call.
    pub events_per_call: usize,
    /// Finished calls kept in memory (older ones are served from the history).
    pub max_finished_calls: usize,
    /// A finished call leaves memory after this long, seconds.
    pub finished_ttl_s: f64,
    /// Redact identifiers (on by default in the server).
    pub redact: bool,
    /// WAV files replayed as live calls.
    pub stream: Vec<PathBuf>,
    /// Replay speed.
    pub stream_speed: f64,
    /// Play each stream file this many times (one call).
    pub stream_loop: u32,
    /// Also score live audio from this input device.
    pub mic: Option<String>,
}

impl Default for ServeSection {
    fn default() -> Self {
        ServeSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            sip: None,
            db: PathBuf::from("callpulse-history.sqlite"),
            history: true,
            retention_days: 30,
            max_upload_mb: 100,
            upload_timeout_s: 300.0,
            body_idle_timeout_s: 30.0,
            header_timeout_s: 10.0,
            max_connections: 256,
            rate: 50.0,
            scoring_slots: 2,
            subscriber_buffer: 1024,
            events_per_call: 20_000,
            max_finished_calls: 256,
            finished_ttl_s: 600.0,
            redact: true,
            stream: Vec::new(),
            stream_speed: 1.0,
            stream_loop: 1,
            mic: None,
        }
    }
}

impl ServeSection {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("serve.upload_timeout_s", self.upload_timeout_s),
            ("serve.body_idle_timeout_s", self.body_idle_timeout_s),
            ("serve.header_timeout_s", self.header_timeout_s),
            ("serve.finished_ttl_s", self.finished_ttl_s),
        ] {
            seconds(name, v)?;
        }
        positive("serve.rate", self.rate)?;
        if !(self.stream_speed.is_finite() && (0.1..=100.0).contains(&self.stream_speed)) {
            return Err("serve.stream_speed must be between 0.1 and 100".into());
        }
        for (name, v, max) in [
            ("serve.max_upload_mb", self.max_upload_mb as usize, 1 << 20),
            ("serve.max_connections", self.max_connections, 1 << 20),
            ("serve.scoring_slots", self.scoring_slots, 64),
            ("serve.subscriber_buffer", self.subscriber_buffer, 1 << 20),
            ("serve.events_per_call", self.events_per_call, 1 << 24),
            ("serve.max_finished_calls", self.max_finished_calls, 1 << 24),
        ] {
            if !(1..=max).contains(&v) {
                return Err(format!("{name} must be between 1 and {max}"));
            }
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
    /// Agent-assist hint rules.
    pub assist: crate::intel::assist::AssistConfig,
    /// NATS JetStream: workers, jobs and events across machines.
    pub cluster: crate::cluster::ClusterConfig,
    /// PII redaction.
    pub privacy: crate::intel::PrivacyConfig,
    /// Speaker diarisation of legs that carry several people.
    pub diarize: crate::diarize::DiarizeConfig,
    /// The SIP user agent.
    pub sip: SipConfig,
    /// The RTP listener.
    pub rtp: RtpConfig,
    /// The monitoring server.
    pub serve: ServeSection,
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
        self.assist
            .effective_rules()
            .map_err(ConfigError::Invalid)?;
        self.cluster.validate().map_err(ConfigError::Invalid)?;
        self.diarize
            .options
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.sip.validate().map_err(ConfigError::Invalid)?;
        self.rtp.validate().map_err(ConfigError::Invalid)?;
        self.serve.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// Where installed heads live: config, then `$CALLPULSE_HEADS_DIR`,
    /// then `heads/` in the models directory.
    pub fn heads_dir(&self) -> PathBuf {
        if let Some(d) = &self.models.heads {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("CALLPULSE_HEADS_DIR") {
            return PathBuf::from(d);
        }
        self.models_dir().join("heads")
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
    fn the_documented_example_parses_and_matches_the_module_docs() {
        let page = include_str!("../docs/config.md");
        let example = page
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("\n```").next())
            .expect("docs/config.md has a toml example");
        let cfg: Config = toml::from_str(example).unwrap_or_else(|e| panic!("{e}"));
        cfg.validate().unwrap();
        // The page is this module's documentation: the same example.
        let module: String = include_str!("config.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            module.contains(example),
            "docs/config.md and src/config.rs differ"
        );
    }

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

    #[test]
    fn telephony_and_server_sections() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        let bad = [
            ("[sip]\nrtp_ports = \"65535\"\n", "no even port"),
            ("[sip]\nrtp_ports = \"9-3\"\n", "sip.rtp_ports"),
            ("[sip]\nformat = \"csv\"\n", "sip.format"),
            ("[rtp]\nidle_s = 0\n", "rtp.idle_s"),
            ("[serve]\nscoring_slots = 0\n", "serve.scoring_slots"),
            ("[serve]\nupload_timeout_s = -1\n", "serve.upload_timeout_s"),
            ("[serve]\nlisten_on = \"x\"\n", "listen_on"),
        ];
        for (text, want) in bad {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
        std::fs::write(
            &p,
            "[sip]\nrtp_ports = \"65534-65535\"\nmax_calls = 4\n[rtp]\nmap = [\"40000=agent\"]\n[serve]\nsip = \"127.0.0.1:5070\"\nmax_finished_calls = 10\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.sip.ports().unwrap(), (65534, 65535));
        assert_eq!((c.sip.max_calls, c.serve.max_finished_calls), (4, 10));
        assert_eq!(c.rtp.map, vec!["40000=agent".to_string()]);
        assert_eq!(c.serve.rate, 50.0, "defaults for what is not given");
    }
}

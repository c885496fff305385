//! The output schema: the one contract users integrate against.
//!
//! Every line callpulse writes is one [`Event`], tagged by `"type"` and carrying
//! [`SCHEMA_VERSION`]. Times are seconds from the start of the call (audio time),
//! converted from sample counts only here, at the output edge. The schema is
//! documented with an example in `docs/schema.md`; change it deliberately and bump
//! the version when a field changes meaning or disappears (adding a field is a
//! minor change).

use serde::{Deserialize, Serialize};

/// Version of the event schema written in every event's `schema` field.
pub const SCHEMA_VERSION: &str = "1.6";

/// The versions of the text heads behind a turn's labels (a head's
/// `head_version`: `TASK-YYYYMMDD-HASH8` of its training data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ModelVersions {
    /// The polarity head.
    pub polarity: String,
    /// The emotion head.
    pub emotion: String,
    /// The intent head.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intent: String,
}

/// Which party a leg carries.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The contact-centre agent.
    Agent,
    /// The caller.
    Customer,
    /// A party whose role is not known (e.g. a mono recording of both).
    #[default]
    Unknown,
}

impl Role {
    /// Lower-case name as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Customer => "customer",
            Role::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "agent" => Ok(Role::Agent),
            "customer" | "caller" => Ok(Role::Customer),
            "unknown" | "speaker" => Ok(Role::Unknown),
            other => Err(format!(
                "unknown role '{other}': expected agent, customer or unknown"
            )),
        }
    }
}

/// Three-way polarity label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolarityLabel {
    /// Unhappy, complaining, angry.
    Negative,
    /// Procedural or mixed without a clear lean.
    Neutral,
    /// Satisfied, thankful, pleased.
    Positive,
}

impl PolarityLabel {
    /// Lower-case name as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            PolarityLabel::Negative => "negative",
            PolarityLabel::Neutral => "neutral",
            PolarityLabel::Positive => "positive",
        }
    }
}

/// Class probabilities, summing to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Probs {
    /// P(negative).
    pub negative: f32,
    /// P(neutral).
    pub neutral: f32,
    /// P(positive).
    pub positive: f32,
}

/// The text polarity of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polarity {
    /// The winning class.
    pub label: PolarityLabel,
    /// Signed score in [-1, 1]: P(positive) - P(negative).
    pub score: f32,
    /// Class probabilities.
    pub probs: Probs,
}

/// One transcribed word with its time span (seconds from call start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// The word as transcribed, without surrounding spaces.
    pub word: String,
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
    /// Mean token probability from the recogniser, in [0, 1].
    pub probability: f32,
}

/// Prosodic features of one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prosody {
    /// Mean RMS energy over voiced frames, dBFS.
    pub energy_db_mean: f32,
    /// Range (95th - 5th percentile) of frame energy, dB.
    pub energy_db_range: f32,
    /// Mean fundamental frequency over voiced frames, Hz (null when no pitch was found).
    pub pitch_hz_mean: Option<f32>,
    /// Range (95th - 5th percentile) of F0, semitones.
    pub pitch_st_range: Option<f32>,
    /// Words per second of speech (from word timestamps).
    pub speaking_rate_wps: Option<f32>,
    /// Fraction of the turn spent in pauses (silent frames), in [0, 1].
    pub pause_ratio: f32,
    /// The same features as z-scores against this speaker's running baseline
    /// (0 until the speaker has a baseline).
    pub z: ProsodyZ,
}

/// Prosodic z-scores against the speaker's baseline of earlier turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProsodyZ {
    /// Energy z-score.
    pub energy: f32,
    /// Pitch z-score.
    pub pitch: f32,
    /// Speaking-rate z-score.
    pub rate: f32,
    /// Pause-ratio z-score.
    pub pause: f32,
}

/// Where the time went for one event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Audio time covered up to the end of this event, seconds.
    pub audio_end: f64,
    /// Wall-clock emission time, milliseconds since the Unix epoch.
    pub emitted_unix_ms: u64,
    /// Processing time per stage for this event, milliseconds.
    pub stage_ms: StageMs,
    /// Live runs only: milliseconds from the moment the audio this event
    /// waits for (the end of speech for a turn, the last sample for a
    /// partial) entered the pipeline to the emission of the event. Null offline.
    #[serde(default)]
    pub latency_ms: Option<f32>,
    /// The final result reused the speculative decoding of the settled turn.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub speculative: bool,
}

/// Processing milliseconds per pipeline stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageMs {
    /// Decoding, resampling and voice activity for this turn's audio.
    pub frontend: f32,
    /// Speech recognition.
    pub asr: f32,
    /// Prosodic features.
    pub prosody: f32,
    /// Text encoder and polarity head.
    pub sentiment: f32,
}

/// An emotion judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emotion {
    /// The most probable label.
    pub label: String,
    /// Probability of each label, in the emotion head's label order (`intel::emotion::LABELS`).
    pub probs: std::collections::BTreeMap<String, f32>,
}

/// What a turn is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// The most probable topic.
    pub label: String,
    /// Probability of each topic (`intel::intent::LABELS`).
    pub probs: std::collections::BTreeMap<String, f32>,
}

/// One of a call's topics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicShare {
    /// Topic label.
    pub topic: String,
    /// Turns labelled with it.
    pub turns: u32,
    /// Its share of the call's turns that have an intent.
    pub share: f64,
    /// Of its turns, those with negative polarity.
    #[serde(default)]
    pub negative_turns: u32,
}

/// A score with its evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    /// In [0, 1].
    pub score: f32,
    /// Words and features that raised it, e.g. `"cue: third time"`,
    /// `"negative text 0.81"`, `"energy z +2.1"`.
    pub evidence: Vec<String>,
}

/// Direction of a shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The mood got worse.
    Down,
    /// The mood got better.
    Up,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// A supervisor should listen in.
    #[default]
    Medium,
    /// A supervisor should join.
    High,
    /// Join now.
    Critical,
}

/// One speaker turn, final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnEvent {
    /// Schema version, [`SCHEMA_VERSION`].
    pub schema: String,
    /// The call this turn belongs to.
    pub call_id: String,
    /// Turn number within the call, from 0: in order of start time offline,
    /// in order of emission live.
    pub turn_id: u32,
    /// Leg (channel) index, from 0.
    pub leg: u8,
    /// Turn number on this leg, from 0; the partials of this turn carry the same.
    #[serde(default)]
    pub seq: u32,
    /// The party on that leg (on a diarised leg: the speaker's, from the
    /// opening script; see `diarize.roles`).
    pub role: Role,
    /// On a diarised leg (a mono call): who spoke, `S1`, `S2`, ... in order
    /// of first appearance. Live, the label from the clustering so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// Start of speech, seconds.
    pub start: f64,
    /// End of speech, seconds.
    pub end: f64,
    /// Transcript.
    pub text: String,
    /// Words with times.
    pub words: Vec<Word>,
    /// The spoken language (ISO 639-1): from a multilingual recogniser per
    /// turn, or from the language-ID pass over an English-only recogniser's
    /// call; absent when nothing checked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Why the turn was not scored: an English-only recogniser heard another
    /// language, so `text` is not what was said; polarity is neutral with no
    /// emotion or indicators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unscored: Option<String>,
    /// Text polarity.
    pub polarity: Polarity,
    /// The polarity score on a -5..+5 scale (score × 5, one decimal).
    #[serde(default)]
    pub score_5: f32,
    /// How strongly it was felt, in [0, 1]: text confidence fused with prosodic arousal.
    pub intensity: f32,
    /// Band of `intensity`: `low` (< 0.35), `moderate` (< 0.6), `high` (< 0.8), `very_high`.
    #[serde(default)]
    pub intensity_band: String,
    /// Emotion (text, moved by prosodic arousal).
    #[serde(default)]
    pub emotion: Option<Emotion>,
    /// What the turn is about (absent on unscored turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// Frustration, sarcasm and resignation indicators.
    #[serde(default)]
    pub indicators: Option<Indicators>,
    /// Sentences and clauses with their own polarity.
    #[serde(default)]
    pub spans: Vec<SpanPolarity>,
    /// This speaker's mood trend (EWMA) after this turn.
    #[serde(default)]
    pub trend: Option<f32>,
    /// Kinds of personal data redacted from `text` and `words`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The versions of the text heads that labelled this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelVersions>,
    /// `chat` for written conversations (chat, e-mail: no audio, so no
    /// prosody); absent for calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Prosodic features.
    pub prosody: Prosody,
    /// Timings.
    pub timings: Timings,
}

/// Indicators of one turn.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Indicators {
    /// Frustration with its evidence.
    pub frustration: Indicator,
    /// Sarcasm with its evidence.
    pub sarcasm: Indicator,
    /// A quiet, slow voice against the speaker's baseline, in [0, 1].
    pub resignation: f32,
    /// Agent turns: how close the turn is to an acknowledgement of the
    /// customer's problem or feelings ("I understand how frustrating that
    /// is"), from the sentence encoder (see `intel::empathy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empathy: Option<Indicator>,
}

/// One sentence or clause of a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanPolarity {
    /// The clause text.
    pub text: String,
    /// First character (Unicode scalar index into the turn's `text`).
    pub char_start: usize,
    /// One past the last character.
    pub char_end: usize,
    /// Start, seconds (from the word times; null when they could not be aligned).
    pub start: Option<f64>,
    /// End, seconds.
    pub end: Option<f64>,
    /// Polarity of the clause.
    pub polarity: Polarity,
}

/// A change of a speaker's mood (CUSUM on the turn-by-turn mood).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// Leg.
    pub leg: u8,
    /// Role.
    pub role: Role,
    /// `down` (worse) or `up` (better).
    pub direction: Direction,
    /// Mood level before (-1..1).
    pub from: f32,
    /// Mood level of the evidence turns.
    pub to: f32,
    /// `to - from`.
    pub magnitude: f32,
    /// When: start of the turn that completed the evidence, seconds.
    pub at: f64,
    /// That turn.
    pub turn_id: u32,
    /// Turns whose mood made the change, oldest first.
    pub evidence_turns: Vec<u32>,
}

/// The customer's mood came back up after a drop, with the agent turns in between.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveredEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// The customer's leg.
    pub leg: u8,
    /// Role (customer).
    pub role: Role,
    /// Mood at the low.
    pub from: f32,
    /// Mood now.
    pub to: f32,
    /// When, seconds.
    pub at: f64,
    /// The customer turn that showed the recovery.
    pub turn_id: u32,
    /// Agent turns between the drop and the recovery.
    pub agent_turns: Vec<u32>,
}

/// An escalation rule fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// The rule's id.
    pub rule_id: String,
    /// Its severity.
    pub severity: Severity,
    /// What it says, for people.
    pub message: String,
    /// The value that crossed the threshold.
    pub value: f32,
    /// When, seconds.
    pub at: f64,
    /// The turn that completed the condition (null for end-of-call checks).
    pub turn_id: Option<u32>,
    /// Turns that satisfied the condition.
    pub evidence_turns: Vec<u32>,
}

/// Whether a hint corrects or encourages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Something to change now.
    #[default]
    Corrective,
    /// What worked: keep doing it.
    Positive,
}

/// What made a hint fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistEvidence {
    /// The measure (the trigger's, e.g. `frustration`, `interruptions`).
    pub metric: String,
    /// Its value.
    pub value: f32,
    /// The threshold it crossed.
    pub threshold: f32,
    /// The turns behind it.
    pub turns: Vec<u32>,
    /// Words for people, e.g. `"frustration 0.71 (was 0.12)"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A hint to the agent while the call runs (agent assist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// The hint rule's id (`acknowledge-frustration`, `talk-over`, ...).
    pub hint_id: String,
    /// The trigger behind the rule.
    pub trigger: String,
    /// What the agent should do, addressed to them.
    pub message: String,
    /// How urgent.
    pub severity: Severity,
    /// Corrective or positive reinforcement.
    pub tone: Tone,
    /// The agent's leg (who the hint is for), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_leg: Option<u8>,
    /// When, seconds (the end of the turn that completed the condition).
    pub at: f64,
    /// That turn.
    pub turn_id: u32,
    /// Why.
    pub evidence: AssistEvidence,
}

/// A hint in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistRef {
    /// Hint id.
    pub hint_id: String,
    /// Corrective or positive.
    pub tone: Tone,
    /// When, seconds.
    pub at: f64,
}

/// The agent's conduct over a call (agent coaching and quality review).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentConduct {
    /// Agent turns.
    pub turns: u32,
    /// Agent turns that acknowledge the customer (the encoder's empathy
    /// indicator at or above its threshold).
    pub empathy_turns: u32,
    /// Their share of the agent's turns.
    pub empathy_share: f32,
    /// Times the agent started speaking over the customer.
    pub interruptions: u32,
    /// The agent's share of all talk time.
    pub talk_ratio: f32,
    /// Seconds nobody spoke (start to end of the call).
    pub dead_air_s: f64,
    /// The longest stretch of agent talk without a customer turn, seconds.
    pub longest_monologue_s: f64,
    /// The agent's median speaking rate, words per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaking_rate_wps: Option<f32>,
    /// Customer sentiment (mean polarity score of their first two turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_start: Option<f32>,
    /// Customer sentiment (mean of their last two turns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_end: Option<f32>,
    /// `customer_end - customer_start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<f32>,
    /// Customer turns with negative polarity.
    pub customer_negative_turns: u32,
    /// Of those, how many the agent acknowledged in their next turn.
    pub acknowledged: u32,
    /// Mean seconds from the end of a negative customer turn to the start of
    /// the agent's first acknowledging turn after it (acknowledged ones only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_acknowledge_s: Option<f64>,
    /// Hints given to the agent: corrective and positive.
    pub hints_corrective: u32,
    pub hints_positive: u32,
}

/// Who and when: what the call's metadata says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallMeta {
    /// The agent who took the call (`--agent-id`, a SIP header, or the
    /// file name pattern; see docs/insights.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// When the call started, ms since the Unix epoch (live: the clock;
    /// files: `--started-at`, else the file's modification time; chat: the
    /// first message's time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
    /// `chat` for written conversations; absent for calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl CallMeta {
    /// Nothing known.
    pub fn is_empty(&self) -> bool {
        self == &CallMeta::default()
    }
}

/// A provisional result for the turn being spoken (live only).
///
/// `committed` only grows between partials of the same turn (a word is
/// committed once two successive hypotheses agree on it, LocalAgreement-2);
/// `tentative` is the rest of the latest hypothesis. The final `turn` event
/// with the same `leg` and `seq` supersedes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// Leg index.
    pub leg: u8,
    /// Role on that leg.
    pub role: Role,
    /// Turn number on this leg.
    pub seq: u32,
    /// Start of speech, seconds.
    pub start: f64,
    /// `committed` then `tentative`.
    pub text: String,
    /// The stable prefix.
    pub committed: String,
    /// The provisional rest.
    pub tentative: String,
    /// Provisional polarity of `text`.
    pub polarity: Polarity,
    /// Timings (`audio_end` is the end of the audio decoded).
    pub timings: Timings,
}

/// Per-speaker statistics in the call summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerSummary {
    /// Leg index.
    pub leg: u8,
    /// Role on that leg.
    pub role: Role,
    /// On a diarised leg: the speaker (`S1`, ...) this summary is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// Number of turns.
    pub turns: u32,
    /// Seconds of speech.
    pub talk_time: f64,
    /// Mean polarity score over turns (null when no turn).
    pub mean_sentiment: Option<f32>,
    /// Score of the last turn.
    pub last_sentiment: Option<f32>,
    /// The most negative turn: its id, score and start time.
    pub most_negative_turn: Option<TurnRef>,
    /// Lowest polarity score.
    #[serde(default)]
    pub min_sentiment: Option<f32>,
    /// Mean score on the -5..+5 scale.
    #[serde(default)]
    pub mean_score_5: Option<f32>,
    /// Mood trend (EWMA) at the end of the call.
    #[serde(default)]
    pub trend: Option<f32>,
    /// Mood shifts detected.
    #[serde(default)]
    pub shifts: u32,
    /// Turns per emotion label.
    #[serde(default)]
    pub emotions: std::collections::BTreeMap<String, u32>,
    /// Share of all talk time, in [0, 1].
    #[serde(default)]
    pub talk_share: f32,
    /// Times this speaker started talking while the other was speaking.
    #[serde(default)]
    pub interruptions: u32,
    /// The most frustrated turn.
    #[serde(default)]
    pub peak_frustration: Option<TurnRef>,
}

/// Call-level conversation statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationSummary {
    /// Seconds when both legs spoke at once.
    pub overlap_s: f64,
    /// Silences (nobody speaking) longer than 3 s: count.
    pub long_silences: u32,
    /// Their total length, seconds.
    pub long_silence_s: f64,
    /// The longest silence, seconds.
    pub longest_silence_s: f64,
    /// Seconds nobody spoke in all (start to end of the call).
    pub non_talk_s: f64,
    /// The most frustrated turn of the call (any speaker), with its role.
    pub peak_frustration: Option<PeakRef>,
    /// Shifts in order.
    pub shifts: Vec<ShiftRef>,
    /// Alerts fired, in order.
    pub alerts: Vec<AlertRef>,
    /// Hints given to the agent, in order.
    #[serde(default)]
    pub assists: Vec<AssistRef>,
}

/// A turn with a role and a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakRef {
    /// Turn id.
    pub turn_id: u32,
    /// Role.
    pub role: Role,
    /// Score.
    pub score: f32,
    /// Start, seconds.
    pub start: f64,
}

/// A shift in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftRef {
    /// Role.
    pub role: Role,
    /// Direction.
    pub direction: Direction,
    /// When, seconds.
    pub at: f64,
    /// Magnitude.
    pub magnitude: f32,
}

/// An alert in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRef {
    /// Rule id.
    pub rule_id: String,
    /// Severity.
    pub severity: Severity,
    /// When, seconds.
    pub at: f64,
}

/// A reference to a turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRef {
    /// Turn id.
    pub turn_id: u32,
    /// Polarity score of that turn.
    pub score: f32,
    /// Start, seconds.
    pub start: f64,
}

/// The call summary, written once after the last turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryEvent {
    /// Schema version.
    pub schema: String,
    /// Call id.
    pub call_id: String,
    /// Audio duration, seconds.
    pub duration: f64,
    /// Number of turns in the call.
    pub turns: u32,
    /// One entry per leg.
    pub speakers: Vec<SpeakerSummary>,
    /// Mean polarity over the call on the -5..+5 scale.
    #[serde(default)]
    pub score_5: Option<f32>,
    /// Overlaps, silences, peak frustration, shifts and alerts.
    #[serde(default)]
    pub conversation: ConversationSummary,
    /// The call's main language (most talk time), when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Talk time per detected language, seconds.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub languages: std::collections::BTreeMap<String, f64>,
    /// Agent, start time and channel.
    #[serde(default, skip_serializing_if = "CallMeta::is_empty")]
    pub meta: CallMeta,
    /// The agent's conduct (calls with an agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conduct: Option<AgentConduct>,
    /// The call's topics (intent labels of its turns, greetings and
    /// closings left out), most frequent first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<TopicShare>,
    /// What the user should know about the whole call, e.g. that its
    /// language needs the multilingual model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Live diarisation: earlier speech that was given to another speaker
    /// after its turn had been reported (turn events keep the label they had).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelled: Vec<Relabelled>,
    /// Pipeline counters and wall time.
    pub stats: PipelineStats,
}

/// A stretch of a diarised leg whose speaker changed after it was reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relabelled {
    /// The leg (0 on a mono recording).
    pub leg: u8,
    /// Start and end, seconds from the start of the call.
    pub start: f64,
    pub end: f64,
    /// The speaker it was reported as (`S1`, ...).
    pub from: String,
    /// The speaker it belongs to now.
    pub to: String,
}

/// Pipeline counters reported in the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineStats {
    /// Wall-clock seconds spent on the call.
    pub wall_seconds: f64,
    /// Total milliseconds per stage over the call.
    pub stage_ms: StageMs,
    /// Most audio (seconds, all legs) held in the pipeline at any moment.
    pub peak_buffered_audio_s: f64,
    /// Turns the recogniser judged empty (no words), dropped.
    pub empty_turns: u32,
    /// Turns re-decoded with the full encoder window after a repetition or failure.
    pub asr_retries: u32,
    /// Live diarisation: seconds of earlier speech given to another speaker
    /// (all of it; `relabelled` lists the first stretches).
    #[serde(default)]
    pub relabelled_s: f64,
    /// Warning when the input ended early (e.g. truncated data); the turns before it are kept.
    pub input_error: Option<String>,
    /// Why the run ended: `eof`, `signal` (SIGINT/SIGTERM), `limit` (duration reached) or `error`.
    #[serde(default)]
    pub ended: String,
    /// Input frames taken from the source (per leg).
    #[serde(default)]
    pub frames_captured: u64,
    /// Input frames dropped because the capture ring was full (live only).
    #[serde(default)]
    pub frames_dropped: u64,
    /// Partial events emitted.
    #[serde(default)]
    pub partials_emitted: u32,
    /// Partial decodings skipped because ASR was busy (superseded or stale).
    #[serde(default)]
    pub partials_skipped: u32,
    /// Final turns whose speculative decoding was reused.
    #[serde(default)]
    pub speculative_hits: u32,
    /// Queue high-water marks.
    #[serde(default)]
    pub queues: QueueStats,
    /// Where each model ran.
    #[serde(default)]
    pub devices: Devices,
    /// Alerts delivered to the webhook.
    #[serde(default)]
    pub alerts_posted: u32,
    /// Alerts the webhook could not take after all retries.
    #[serde(default)]
    pub alerts_post_failed: u32,
    /// RTP transport counters per leg (telephony sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtp: Option<Vec<RtpLegStats>>,
    /// Alerts not handed to the webhook because its queue was full.
    #[serde(default)]
    pub alerts_dropped: u32,
    /// All the work done for the call, milliseconds per stage, including
    /// what no emitted turn shows (partial and unused speculative decodes,
    /// empty turns, resampling). `stage_ms` above sums emitted turns only.
    #[serde(default)]
    pub work_ms: WorkMs,
}

/// Processing milliseconds spent on a call, by stage and kind of work.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkMs {
    /// Resampling every leg to 16 kHz.
    pub resample: f32,
    /// Voice activity and turn segmentation.
    pub vad: f32,
    /// Speaker embeddings and clustering on diarised legs (live; the
    /// offline first pass is in `diarize_prescan`).
    #[serde(default)]
    pub diarize: f32,
    /// Every recogniser call (the sum of the four below).
    pub asr: f32,
    /// Decodes of finished turns (not served by a speculative decode).
    pub asr_final: f32,
    /// Decodes for partial results.
    pub asr_partial: f32,
    /// Speculative decodes of settled turns, used or not.
    pub asr_speculative: f32,
    /// The part of `asr_speculative` whose result was never used.
    pub asr_speculative_unused: f32,
    /// Decodes (final or speculative) of turns that came out empty.
    pub asr_empty: f32,
    /// Prosodic features of final turns.
    pub prosody: f32,
    /// Text encoder, heads, spans and indicators of final turns.
    pub sentiment: f32,
    /// Text encoder and polarity head of partial results.
    pub sentiment_partial: f32,
    /// Everything above (resample + vad + diarize + asr + prosody + sentiment + sentiment_partial).
    pub total: f32,
}

/// Transport counters of one RTP leg, reported in the call summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RtpLegStats {
    /// The party on this leg.
    pub role: Role,
    /// Where its packets came from and went (`ip:port -> ip:port`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Codec of the last audio packet (`PCMU` or `PCMA`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// RTP packets taken (all streams of the leg, duplicates and late included).
    pub packets: u64,
    /// Packets never received (expected - received, per stream).
    pub lost: u64,
    /// Packets that arrived after their audio was played out (dropped).
    pub late: u64,
    /// Duplicate packets (dropped).
    pub duplicates: u64,
    /// Packets that arrived after a later-numbered one (placed if in time).
    pub reordered: u64,
    /// New SSRCs after the first: each restarted the leg's stream.
    pub ssrc_changes: u32,
    /// Timestamp or sequence jumps that re-anchored the stream.
    pub jumps: u32,
    /// Packets with a payload type other than PCMU/PCMA (DTMF events, comfort noise): ignored.
    pub other_payload: u64,
    /// Datagrams that were not valid RTP.
    pub malformed: u64,
    /// Silent gaps in the call's timeline longer than the jitter buffer's
    /// maximum (30 s by default), shortened to it: the same on every leg.
    #[serde(default)]
    pub gaps_capped: u32,
}

/// Most items each queue held at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Capture ring capacity, seconds of audio.
    pub ring_capacity_s: f64,
    /// Most audio in the capture ring, seconds.
    pub ring_peak_s: f64,
    /// Resampled chunks waiting for segmentation (per leg, max).
    pub chunks_peak: usize,
    /// Finished turns waiting for ASR.
    pub finals_peak: usize,
    /// Partial requests waiting for ASR.
    pub partials_peak: usize,
    /// Events waiting for the sink.
    pub events_peak: usize,
}

/// Which device ran each model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Devices {
    /// Whisper (`cpu` or `cuda`).
    pub asr: String,
    /// Text encoder (`cpu` or `cuda`).
    pub encoder: String,
    /// Voice activity (always `cpu`).
    pub vad: String,
}

/// Every event callpulse writes, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// A final speaker turn.
    Turn(TurnEvent),
    /// A provisional result for a turn in progress (live).
    Partial(PartialEvent),
    /// A speaker's mood changed.
    Shift(ShiftEvent),
    /// The agent brought the customer back up.
    Recovered(RecoveredEvent),
    /// An escalation rule fired.
    Alert(AlertEvent),
    /// A hint to the agent.
    Assist(AssistEvent),
    /// The call summary.
    Summary(SummaryEvent),
}

impl Event {
    /// The call id of this event.
    pub fn call_id(&self) -> &str {
        match self {
            Event::Turn(t) => &t.call_id,
            Event::Partial(p) => &p.call_id,
            Event::Shift(e) => &e.call_id,
            Event::Recovered(e) => &e.call_id,
            Event::Alert(e) => &e.call_id,
            Event::Assist(e) => &e.call_id,
            Event::Summary(s) => &s.call_id,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

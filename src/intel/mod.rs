//! Conversation intelligence: what a turn means beyond its polarity, and how
//! the call develops.
//!
//! - per turn ([`TurnAnalyser`], in the analysis stage): the −5..+5 score,
//!   the intensity band, emotion ([`emotion`]), frustration / sarcasm /
//!   resignation indicators with evidence ([`indicators`]), clause spans
//!   with their own polarity ([`spans`]), and PII redaction ([`pii`]);
//! - across turns ([`Conversation`], at the sink, in call order): per-speaker
//!   mood trend and shifts ([`dynamics`]), `recovered` when the agent brings
//!   the customer back up, escalation rules ([`rules`]) firing `alert`
//!   events (also POSTed to a webhook, [`webhook`]), overlaps, interruptions,
//!   silences and the call summary.

pub mod assist;
pub mod dynamics;
pub mod emotion;
pub mod empathy;
pub mod indicators;
pub mod intent;
pub mod pii;
pub mod rules;
pub mod spans;
pub mod webhook;

use std::collections::{BTreeMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event::{
    AgentConduct, AlertEvent, AlertRef, AssistRef, ConversationSummary, Direction, Event,
    Indicators, PeakRef, Polarity, RecoveredEvent, Role, ShiftEvent, ShiftRef, SpanPolarity,
    SpeakerSummary, TurnEvent, TurnRef, Word, SCHEMA_VERSION,
};
use crate::sentiment::{EncoderError, PolarityHead, TextEncoder};
use dynamics::{DynamicsConfig, SpeakerDynamics};
use emotion::EmotionHead;
use rules::{Metric, Rule};

/// `[privacy]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Replace card numbers, phone numbers, e-mail addresses, SSNs, IBANs
    /// and account numbers in transcripts (digits or words) by their type,
    /// e.g. `[CARD_NUMBER]`, in every output.
    pub redact: bool,
}

/// Band of an intensity value.
pub fn intensity_band(i: f32) -> &'static str {
    if i < 0.35 {
        "low"
    } else if i < 0.6 {
        "moderate"
    } else if i < 0.8 {
        "high"
    } else {
        "very_high"
    }
}

/// The mood of a turn in [-1, 1], the signal of trends and shifts:
/// 0.7 × polarity score + 0.3 × (P(satisfaction) − P(anger) − P(frustration)).
pub fn mood(t: &TurnEvent) -> f32 {
    let e = |k: &str| {
        t.emotion
            .as_ref()
            .and_then(|e| e.probs.get(k).copied())
            .unwrap_or(0.0)
    };
    let m = 0.7 * t.polarity.score + 0.3 * (e("satisfaction") - e("anger") - e("frustration"));
    (m.clamp(-1.0, 1.0) * 1000.0).round() / 1000.0
}

/// Redact personal data from a transcript and its words, in place; returns
/// the kinds found.
pub fn redact_turn(text: &mut String, words: &mut Vec<Word>) -> Vec<String> {
    let (red, spans) = pii::redact(text);
    if spans.is_empty() {
        return Vec::new();
    }
    let mut kinds: Vec<String> = spans.iter().map(|s| s.kind.name().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    *text = red;
    let ws: Vec<&str> = words.iter().map(|w| w.word.as_str()).collect();
    let marks = pii::redact_words(&ws);
    let mut out: Vec<Word> = Vec::with_capacity(words.len());
    let mut prev: Option<pii::PiiKind> = None;
    for (w, m) in words.drain(..).zip(marks) {
        match m {
            Some(k) if prev == Some(k) => {
                if let Some(last) = out.last_mut() {
                    last.end = w.end;
                }
            }
            Some(k) => out.push(Word {
                word: k.tag().to_string(),
                ..w
            }),
            None => out.push(w),
        }
        prev = m;
    }
    *words = out;
    kinds
}

/// Per-turn enrichment, run in the analysis stage.
pub struct TurnAnalyser {
    emotion: EmotionHead,
    empathy: Option<std::sync::Arc<empathy::EmpathyModel>>,
    previous_score: Vec<Option<f32>>,
}

impl TurnAnalyser {
    /// For a call with `legs` legs.
    pub fn new(emotion: EmotionHead, legs: usize) -> Self {
        TurnAnalyser {
            emotion,
            empathy: None,
            previous_score: vec![None; legs],
        }
    }

    /// Score agent turns for empathy with `m`.
    pub fn with_empathy(mut self, m: std::sync::Arc<empathy::EmpathyModel>) -> Self {
        self.empathy = Some(m);
        self
    }

    /// Fill the score on the −5..+5 scale, intensity band, emotion,
    /// indicators and spans of `t`, whose text embedding is `emb`.
    pub fn enrich(
        &mut self,
        t: &mut TurnEvent,
        emb: &[f32],
        encoder: &dyn TextEncoder,
        head: &PolarityHead,
    ) -> Result<(), EncoderError> {
        t.score_5 = (t.polarity.score * 50.0).round() / 10.0;
        t.intensity_band = intensity_band(t.intensity).into();
        let arousal = crate::prosody::arousal(&t.prosody.z);
        let text_only = self.emotion.predict(emb, t.role, 0.0);
        t.emotion = Some(emotion::to_emotion(
            self.emotion.predict(emb, t.role, arousal),
        ));
        let prev = self.previous_score.get(t.leg as usize).copied().flatten();
        let sig = indicators::TurnSignals {
            text: &t.text,
            p_negative: t.polarity.probs.negative,
            p_positive: t.polarity.probs.positive,
            z: &t.prosody.z,
            arousal,
            p_anger: text_only[0],
            p_frustration: text_only[1],
            previous_score: prev,
        };
        t.indicators = Some(Indicators {
            frustration: indicators::frustration(&sig),
            sarcasm: indicators::sarcasm(&sig),
            resignation: emotion::resignation(&t.prosody.z),
            empathy: self
                .empathy
                .as_ref()
                .filter(|_| t.role == Role::Agent)
                .map(|m| m.indicator(emb)),
        });
        if let Some(p) = self.previous_score.get_mut(t.leg as usize) {
            *p = Some(t.polarity.score);
        }
        t.spans = self.spans(t, encoder, head)?;
        Ok(())
    }

    fn spans(
        &self,
        t: &TurnEvent,
        encoder: &dyn TextEncoder,
        head: &PolarityHead,
    ) -> Result<Vec<SpanPolarity>, EncoderError> {
        let ws: Vec<&str> = t.words.iter().map(|w| w.word.as_str()).collect();
        let cl = spans::clauses(&t.text, &ws);
        let pols: Vec<Polarity> = if cl.len() <= 1 {
            vec![t.polarity.clone(); cl.len()]
        } else {
            let texts: Vec<&str> = cl.iter().map(|c| c.text.as_str()).collect();
            encoder
                .embed(&texts)?
                .iter()
                .map(|e| head.polarity(e, t.role))
                .collect()
        };
        Ok(cl
            .into_iter()
            .zip(pols)
            .map(|(c, polarity)| {
                let (start, end) = match c.words {
                    Some((a, b)) => (
                        t.words.get(a).map(|w| w.start),
                        t.words.get(b - 1).map(|w| w.end),
                    ),
                    None => (None, None),
                };
                SpanPolarity {
                    text: c.text,
                    char_start: c.chars.0,
                    char_end: c.chars.1,
                    start,
                    end,
                    polarity,
                }
            })
            .collect())
    }
}

/// What the conversation tracker keeps of a turn.
#[derive(Debug, Clone)]
struct Seen {
    turn_id: u32,
    start: f64,
    end: f64,
    score: f32,
    frustration: f32,
    sarcasm: f32,
    intensity: f32,
    anger: f32,
    trend: f32,
}

impl Seen {
    fn metric(&self, m: Metric) -> Option<f32> {
        Some(match m {
            Metric::Frustration => self.frustration,
            Metric::Sentiment => self.score,
            Metric::Trend => self.trend,
            Metric::Intensity => self.intensity,
            Metric::Sarcasm => self.sarcasm,
            Metric::Anger => self.anger,
            Metric::SilenceS | Metric::Interruptions => return None,
        })
    }
}

#[derive(Debug, Default, Clone)]
struct SpeakerState {
    turns: u32,
    talk: f64,
    score_sum: f32,
    last: Option<f32>,
    min: Option<f32>,
    most_negative: Option<TurnRef>,
    peak_frustration: Option<TurnRef>,
    emotions: BTreeMap<String, u32>,
    shifts: u32,
    interruptions: u32,
    /// Words written or spoken (the share of a chat).
    words: u32,
    recent: VecDeque<Seen>,
    /// After a downward shift of the customer: (level before, level at the
    /// low, start of the turn that confirmed it).
    low: Option<(f32, f32, f64)>,
}

/// The cross-turn tracker of one call. It follows each party: each leg of
/// a call, and on a diarised leg each of its speakers.
pub struct Conversation {
    call_id: String,
    roles: Vec<Role>,
    /// Per party: its leg, and its speaker label on a diarised leg.
    parties: Vec<(u8, Option<String>)>,
    dyn_cfg: DynamicsConfig,
    dynamics: Vec<SpeakerDynamics>,
    rules: Vec<Rule>,
    /// Per rule: the speaker's turn count when it last fired.
    fired_at: Vec<Option<u32>>,
    speakers: Vec<SpeakerState>,
    counted_overlaps: HashSet<(u32, u32)>,
    overlap_s: f64,
    intervals: Vec<(f64, f64)>,
    speech_end: f64,
    agent_turns: Vec<(u32, f64)>,
    shifts: Vec<ShiftRef>,
    alerts: Vec<AlertRef>,
    peak: Option<PeakRef>,
    assistant: assist::Assistant,
    assists: Vec<AssistRef>,
    /// A written conversation: no silences, overlaps or voice.
    chat: bool,
    conduct: ConductState,
}

/// What the agent-conduct block is computed from.
#[derive(Debug, Default)]
struct ConductState {
    empathy_turns: u32,
    agent_rates: Vec<f32>,
    customer_scores: Vec<f32>,
    /// Ends of negative customer turns no agent turn has acknowledged yet.
    waiting: Vec<f64>,
    /// Seconds from each acknowledged negative customer turn to the acknowledgement.
    delays: Vec<f64>,
    customer_negative: u32,
    /// Start of the agent's current run of turns without the customer.
    agent_run: Option<f64>,
    longest_monologue: f64,
}

/// Interruption: starting to speak at least this long before the other
/// party's turn ends.
const INTERRUPT_MIN_OVERLAP_S: f64 = 0.3;
/// Silences longer than this are reported.
const LONG_SILENCE_S: f64 = 3.0;

impl Conversation {
    /// A tracker for a call whose legs carry `roles`.
    pub fn new(call_id: &str, roles: Vec<Role>, dyn_cfg: DynamicsConfig, rules: Vec<Rule>) -> Self {
        let n = roles.len();
        Conversation {
            call_id: call_id.into(),
            parties: (0..n).map(|l| (l as u8, None)).collect(),
            dyn_cfg: dyn_cfg.clone(),
            dynamics: (0..n)
                .map(|_| SpeakerDynamics::new(dyn_cfg.clone()))
                .collect(),
            fired_at: vec![None; rules.len()],
            rules,
            speakers: vec![SpeakerState::default(); n],
            roles,
            counted_overlaps: HashSet::new(),
            overlap_s: 0.0,
            intervals: Vec::new(),
            speech_end: 0.0,
            agent_turns: Vec::new(),
            shifts: Vec::new(),
            alerts: Vec::new(),
            peak: None,
            assistant: assist::Assistant::new(call_id, Vec::new(), false),
            assists: Vec::new(),
            chat: false,
            conduct: ConductState::default(),
        }
    }

    /// Give the agent hints from `rules`; `chat`: a written conversation
    /// (no silence, overlap or voice rules, and talk counted in words).
    pub fn with_assist(mut self, rules: Vec<assist::HintRule>, chat: bool) -> Self {
        self.assistant = assist::Assistant::new(&self.call_id, rules, chat);
        self.chat = chat;
        self
    }

    fn alert(
        &mut self,
        rule: usize,
        value: f32,
        at: f64,
        turn: Option<u32>,
        ev: Vec<u32>,
    ) -> Event {
        let r = &self.rules[rule];
        let message = r.description.clone().unwrap_or_else(|| {
            format!(
                "{}{:?} {} {}",
                r.role
                    .map(|x| format!("{} ", x.as_str()))
                    .unwrap_or_default(),
                r.metric,
                r.op.as_str(),
                r.threshold
            )
        });
        self.alerts.push(AlertRef {
            rule_id: r.id.clone(),
            severity: r.severity,
            at,
        });
        Event::Alert(AlertEvent {
            schema: SCHEMA_VERSION.into(),
            call_id: self.call_id.clone(),
            rule_id: r.id.clone(),
            severity: r.severity,
            message,
            value: (value * 1000.0).round() / 1000.0,
            at,
            turn_id: turn,
            evidence_turns: ev,
        })
    }

    /// The party of a turn: its leg, or on a diarised leg its speaker (the
    /// leg's own slot goes to the first speaker heard on it). A party's role
    /// follows the latest known role of its turns.
    fn party(&mut self, t: &TurnEvent) -> usize {
        let leg = (t.leg as usize).min(self.roles.len().saturating_sub(1));
        let p = match &t.speaker {
            None => leg,
            Some(sp) => {
                let key = (t.leg, Some(sp.clone()));
                match self.parties.iter().position(|p| *p == key) {
                    Some(p) => p,
                    None if self.parties.get(leg).is_some_and(|p| p.1.is_none())
                        && self.speakers[leg].turns == 0 =>
                    {
                        self.parties[leg] = key;
                        leg
                    }
                    None => {
                        self.parties.push(key);
                        self.roles.push(Role::Unknown);
                        self.speakers.push(SpeakerState::default());
                        self.dynamics
                            .push(SpeakerDynamics::new(self.dyn_cfg.clone()));
                        self.parties.len() - 1
                    }
                }
            }
        };
        if t.role != Role::Unknown {
            self.roles[p] = t.role;
        }
        p
    }

    /// Take one final turn (with its `turn_id` set), in call order; sets
    /// its `trend` and returns the shift, recovered and alert events it causes.
    pub fn on_turn(&mut self, t: &mut TurnEvent) -> Vec<Event> {
        let leg = self.party(t);
        let mut out = Vec::new();
        // Silence before this turn.
        let gap = t.start - self.speech_end;
        let first = self.intervals.is_empty();
        self.intervals.push((t.start, t.end));
        self.speech_end = self.speech_end.max(t.end);
        self.on_overlaps(leg, t, &mut out);
        let trend = self.on_mood(leg, t, &mut out);
        self.keep(leg, t, trend);
        self.on_conduct(leg, t);
        self.on_assist(leg, t, (!first).then_some(gap), &mut out);
        self.apply_rules(leg, t, gap, first, &mut out);
        out
    }

    /// The agent's parties.
    fn agent_parties(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.roles.len()).filter(|p| self.roles[*p] == Role::Agent)
    }

    /// Hints to the agent on this turn; they go out before the alerts.
    fn on_assist(&mut self, leg: usize, t: &TurnEvent, gap: Option<f64>, out: &mut Vec<Event>) {
        let recovered = out.iter().find_map(|e| match e {
            Event::Recovered(r) if r.turn_id == t.turn_id => Some(r.to - r.from),
            _ => None,
        });
        let p = |k: &str| {
            t.intent
                .as_ref()
                .and_then(|i| i.probs.get(k).copied())
                .unwrap_or(0.0)
        };
        let ind = t.indicators.clone().unwrap_or_default();
        let facts = assist::TurnFacts {
            role: self.roles[leg],
            turn_id: t.turn_id,
            start: t.start,
            end: t.end,
            gap,
            frustration: ind.frustration.score,
            anger: t
                .emotion
                .as_ref()
                .and_then(|e| e.probs.get("anger").copied())
                .unwrap_or(0.0),
            negative: t.polarity.label == crate::event::PolarityLabel::Negative,
            topic: t.intent.as_ref().map(|i| i.label.as_str()),
            p_escalation_request: p("escalation_request"),
            p_cancellation: p("cancellation"),
            rate: t.prosody.speaking_rate_wps,
            words: t.text.split_whitespace().count(),
            agent_interruptions: self
                .agent_parties()
                .map(|a| self.speakers[a].interruptions)
                .sum(),
            recovered,
            agent_leg: self.agent_parties().next().map(|a| self.parties[a].0),
        };
        for h in self.assistant.on_turn(&facts) {
            self.assists.push(AssistRef {
                hint_id: h.hint_id.clone(),
                tone: h.tone,
                at: h.at,
            });
            out.push(Event::Assist(h));
        }
    }

    /// What the agent-conduct block needs from this turn.
    fn on_conduct(&mut self, leg: usize, t: &TurnEvent) {
        let c = &mut self.conduct;
        match self.roles[leg] {
            Role::Agent => {
                let start = *c.agent_run.get_or_insert(t.start);
                c.longest_monologue = c.longest_monologue.max(t.end - start);
                if let Some(r) = t.prosody.speaking_rate_wps.filter(|_| !self.chat) {
                    c.agent_rates.push(r);
                }
                let acks = t
                    .indicators
                    .as_ref()
                    .and_then(|i| i.empathy.as_ref())
                    .is_some_and(empathy::acknowledges);
                if acks {
                    c.empathy_turns += 1;
                    for end in std::mem::take(&mut c.waiting) {
                        c.delays.push((t.start - end).max(0.0));
                    }
                }
            }
            Role::Customer => {
                c.agent_run = None;
                c.customer_scores.push(t.polarity.score);
                if t.polarity.label == crate::event::PolarityLabel::Negative {
                    c.customer_negative += 1;
                    c.waiting.push(t.end);
                }
            }
            Role::Unknown => {}
        }
    }

    /// How much party `p` said: seconds of speech, or words in a chat.
    fn amount(&self, p: usize) -> f64 {
        let s = &self.speakers[p];
        if self.chat {
            s.words as f64
        } else {
            s.talk
        }
    }

    /// The agent-conduct block (None without an agent).
    fn conduct(&self, non_talk_s: f64, total_talk: f64) -> Option<AgentConduct> {
        let agents: Vec<usize> = self.agent_parties().collect();
        if agents.is_empty() {
            return None;
        }
        let c = &self.conduct;
        let turns: u32 = agents.iter().map(|a| self.speakers[*a].turns).sum();
        let talk: f64 = agents.iter().map(|a| self.amount(*a)).sum();
        let mean =
            |v: &[f32]| (!v.is_empty()).then(|| round3(v.iter().sum::<f32>() / v.len() as f32));
        let cs = &c.customer_scores;
        let start = mean(&cs[..cs.len().min(2)]);
        let end = mean(&cs[cs.len().saturating_sub(2)..]);
        let hints = |tone| self.assists.iter().filter(|h| h.tone == tone).count() as u32;
        Some(AgentConduct {
            turns,
            empathy_turns: c.empathy_turns,
            empathy_share: if turns > 0 {
                round3(c.empathy_turns as f32 / turns as f32)
            } else {
                0.0
            },
            interruptions: agents.iter().map(|a| self.speakers[*a].interruptions).sum(),
            talk_ratio: if total_talk > 0.0 {
                round3((talk / total_talk) as f32)
            } else {
                0.0
            },
            dead_air_s: if self.chat { 0.0 } else { non_talk_s },
            longest_monologue_s: if self.chat {
                0.0
            } else {
                round3d(c.longest_monologue)
            },
            speaking_rate_wps: (!c.agent_rates.is_empty())
                .then(|| round3(assist::median(&c.agent_rates))),
            customer_start: start,
            customer_end: end,
            recovery: start.zip(end).map(|(s, e)| round3(e - s)),
            customer_negative_turns: c.customer_negative,
            acknowledged: c.delays.len() as u32,
            time_to_acknowledge_s: (!c.delays.is_empty())
                .then(|| round3d(c.delays.iter().sum::<f64>() / c.delays.len() as f64)),
            hints_corrective: hints(crate::event::Tone::Corrective),
            hints_positive: hints(crate::event::Tone::Positive),
        })
    }

    /// Overlaps and interruptions against the other legs' recent turns;
    /// rules on interruptions fire when the count crosses their threshold.
    fn on_overlaps(&mut self, leg: usize, t: &TurnEvent, out: &mut Vec<Event>) {
        for other in 0..self.speakers.len() {
            if other == leg {
                continue;
            }
            let mut hits = Vec::new();
            for o in &self.speakers[other].recent {
                let ov = t.end.min(o.end) - t.start.max(o.start);
                if ov > 0.0
                    && self
                        .counted_overlaps
                        .insert((o.turn_id.min(t.turn_id), o.turn_id.max(t.turn_id)))
                {
                    self.overlap_s += ov;
                    // Who cut in: the one who started second, well before the other ended.
                    if t.start > o.start && o.end - t.start >= INTERRUPT_MIN_OVERLAP_S {
                        hits.push(leg);
                    } else if o.start > t.start && t.end - o.start >= INTERRUPT_MIN_OVERLAP_S {
                        hits.push(other);
                    }
                }
            }
            for who in hits {
                self.speakers[who].interruptions += 1;
                // Rules on interruptions fire when the count crosses the threshold.
                for i in 0..self.rules.len() {
                    let r = &self.rules[i];
                    if r.metric == Metric::Interruptions
                        && r.role == Some(self.roles[who])
                        && self.fired_at[i].is_none()
                        && r.op
                            .holds(self.speakers[who].interruptions as f32, r.threshold)
                    {
                        self.fired_at[i] = Some(self.speakers[who].turns);
                        let v = self.speakers[who].interruptions as f32;
                        out.push(self.alert(i, v, t.start, Some(t.turn_id), vec![t.turn_id]));
                    }
                }
            }
        }
    }

    /// Mood dynamics: the turn's trend, shifts and recoveries. Returns the trend.
    fn on_mood(&mut self, leg: usize, t: &mut TurnEvent, out: &mut Vec<Event>) -> f32 {
        let m = mood(t);
        let shift = self.dynamics[leg].observe(t.turn_id, m);
        let trend = self.dynamics[leg].trend().unwrap_or(m);
        t.trend = Some((trend * 1000.0).round() / 1000.0);
        let role = self.roles[leg];
        if role == Role::Agent {
            self.agent_turns.push((t.turn_id, t.start));
        }
        let down_now = shift
            .as_ref()
            .is_some_and(|s| s.direction == Direction::Down);
        if let Some(s) = shift {
            self.speakers[leg].shifts += 1;
            self.shifts.push(ShiftRef {
                role,
                direction: s.direction,
                at: t.start,
                magnitude: s.magnitude,
            });
            out.push(Event::Shift(ShiftEvent {
                schema: SCHEMA_VERSION.into(),
                call_id: self.call_id.clone(),
                leg: t.leg,
                role,
                direction: s.direction,
                from: round3(s.from),
                to: round3(s.to),
                magnitude: round3(s.magnitude),
                at: t.start,
                turn_id: t.turn_id,
                evidence_turns: s.evidence.clone(),
            }));
            if role == Role::Customer && s.direction == Direction::Down {
                self.speakers[leg].low = Some((s.from, s.to, t.start));
            }
        }
        if let (false, Role::Customer, Some((before, low, low_start))) =
            (down_now, role, self.speakers[leg].low)
        {
            // Recovered: the customer is back at the level before the drop.
            if m >= before {
                let agent: Vec<u32> = self
                    .agent_turns
                    .iter()
                    .filter(|(_, s)| *s > low_start && *s < t.start)
                    .map(|(id, _)| *id)
                    .collect();
                if !agent.is_empty() {
                    out.push(Event::Recovered(RecoveredEvent {
                        schema: SCHEMA_VERSION.into(),
                        call_id: self.call_id.clone(),
                        leg: t.leg,
                        role,
                        from: round3(low),
                        to: round3(m),
                        at: t.start,
                        turn_id: t.turn_id,
                        agent_turns: agent,
                    }));
                }
                self.speakers[leg].low = None;
            }
        }
        trend
    }

    /// Per-speaker bookkeeping: talk, scores, peaks, emotions, recent turns.
    fn keep(&mut self, leg: usize, t: &TurnEvent, trend: f32) {
        let role = self.roles[leg];
        let ind = t.indicators.clone().unwrap_or_default();
        let seen = Seen {
            turn_id: t.turn_id,
            start: t.start,
            end: t.end,
            score: t.polarity.score,
            frustration: ind.frustration.score,
            sarcasm: ind.sarcasm.score,
            intensity: t.intensity,
            anger: t
                .emotion
                .as_ref()
                .and_then(|e| e.probs.get("anger").copied())
                .unwrap_or(0.0),
            trend,
        };
        {
            let sp = &mut self.speakers[leg];
            sp.turns += 1;
            sp.talk += t.end - t.start;
            sp.words += t.text.split_whitespace().count() as u32;
            sp.score_sum += t.polarity.score;
            sp.last = Some(t.polarity.score);
            sp.min = Some(sp.min.map_or(t.polarity.score, |m| m.min(t.polarity.score)));
            let r = |score| TurnRef {
                turn_id: t.turn_id,
                score,
                start: t.start,
            };
            if sp
                .most_negative
                .as_ref()
                .is_none_or(|m| t.polarity.score < m.score)
            {
                sp.most_negative = Some(r(t.polarity.score));
            }
            if sp
                .peak_frustration
                .as_ref()
                .is_none_or(|m| ind.frustration.score > m.score)
            {
                sp.peak_frustration = Some(r(ind.frustration.score));
            }
            if let Some(e) = &t.emotion {
                *sp.emotions.entry(e.label.clone()).or_default() += 1;
            }
            sp.recent.push_back(seen);
            if sp.recent.len() > 100 {
                sp.recent.pop_front();
            }
        }
        if self
            .peak
            .as_ref()
            .is_none_or(|p| ind.frustration.score > p.score)
        {
            self.peak = Some(PeakRef {
                turn_id: t.turn_id,
                role,
                score: ind.frustration.score,
                start: t.start,
            });
        }
    }

    /// Rules over the speaker's recent turns, and the silence before this turn.
    fn apply_rules(
        &mut self,
        leg: usize,
        t: &TurnEvent,
        gap: f64,
        first: bool,
        out: &mut Vec<Event>,
    ) {
        let role = self.roles[leg];
        for i in 0..self.rules.len() {
            let r = self.rules[i].clone();
            match r.metric {
                Metric::Interruptions => {}
                Metric::SilenceS => {
                    if !first && !self.chat && r.op.holds(gap as f32, r.threshold) {
                        let prev = self
                            .speakers
                            .iter()
                            .flat_map(|s| s.recent.iter())
                            .filter(|x| x.turn_id != t.turn_id && x.end <= t.start)
                            .max_by(|a, b| a.end.total_cmp(&b.end))
                            .map(|x| x.turn_id);
                        let ev: Vec<u32> = prev.into_iter().chain([t.turn_id]).collect();
                        out.push(self.alert(i, gap as f32, t.start, Some(t.turn_id), ev));
                    }
                }
                _ => {
                    if r.role != Some(role) {
                        continue;
                    }
                    let sp = &self.speakers[leg];
                    if sp.turns < r.min_turns {
                        continue;
                    }
                    if let Some(f) = self.fired_at[i] {
                        if sp.turns - f < r.cooldown_turns {
                            continue;
                        }
                    }
                    let window: Vec<&Seen> =
                        sp.recent.iter().rev().take(r.window as usize).collect();
                    let hits: Vec<(u32, f32)> = window
                        .iter()
                        .filter_map(|s| s.metric(r.metric).map(|v| (s.turn_id, v)))
                        .filter(|(_, v)| r.op.holds(*v, r.threshold))
                        .collect();
                    // The condition must hold on this turn and on `count` turns of the window.
                    if hits.len() >= r.count as usize
                        && hits.first().is_some_and(|h| h.0 == t.turn_id)
                    {
                        self.fired_at[i] = Some(sp.turns);
                        let v = hits[0].1;
                        let mut ev: Vec<u32> = hits.iter().map(|h| h.0).collect();
                        ev.reverse();
                        out.push(self.alert(i, v, t.start, Some(t.turn_id), ev));
                    }
                }
            }
        }
    }

    /// End of call at `duration` seconds: final silence check, then the
    /// per-speaker and conversation summaries, the call's −5..+5 score and
    /// the agent's conduct.
    pub fn finish(
        &mut self,
        duration: f64,
    ) -> (
        Vec<Event>,
        Vec<SpeakerSummary>,
        ConversationSummary,
        Option<f32>,
        Option<AgentConduct>,
    ) {
        let mut out = Vec::new();
        let trailing = duration - self.speech_end;
        if !self.intervals.is_empty() && !self.chat {
            for i in 0..self.rules.len() {
                let r = &self.rules[i];
                if r.metric == Metric::SilenceS && r.op.holds(trailing as f32, r.threshold) {
                    out.push(self.alert(i, trailing as f32, self.speech_end, None, vec![]));
                }
            }
        }
        // Union of speech, silences.
        let mut iv = self.intervals.clone();
        iv.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut silences = Vec::new();
        let mut covered = 0.0;
        let mut cur: Option<(f64, f64)> = None;
        let mut last_end = 0.0f64;
        for (s, e) in iv {
            match cur {
                Some((cs, ce)) if s <= ce => cur = Some((cs, ce.max(e))),
                Some((cs, ce)) => {
                    covered += ce - cs;
                    silences.push(s - ce);
                    last_end = ce;
                    cur = Some((s, e));
                }
                None => {
                    silences.push(s);
                    cur = Some((s, e));
                }
            }
        }
        if let Some((cs, ce)) = cur {
            covered += ce - cs;
            last_end = ce;
        }
        if duration > last_end {
            silences.push(duration - last_end);
        }
        let long: Vec<f64> = silences
            .iter()
            .copied()
            .filter(|s| *s > LONG_SILENCE_S)
            .collect();
        // Talk share: seconds of speech; in a chat, words written.
        let total_talk: f64 = (0..self.speakers.len()).map(|p| self.amount(p)).sum();
        let speakers = self
            .speakers
            .iter()
            .enumerate()
            .map(|(leg, s)| SpeakerSummary {
                leg: self.parties[leg].0,
                role: self.roles[leg],
                speaker: self.parties[leg].1.clone(),
                turns: s.turns,
                talk_time: round3d(s.talk + 0.0),
                mean_sentiment: (s.turns > 0).then(|| round3(s.score_sum / s.turns as f32)),
                last_sentiment: s.last,
                most_negative_turn: s.most_negative.clone(),
                min_sentiment: s.min,
                mean_score_5: (s.turns > 0)
                    .then(|| (s.score_sum / s.turns as f32 * 50.0).round() / 10.0),
                trend: self.dynamics[leg].trend().map(round3),
                shifts: s.shifts,
                emotions: s.emotions.clone(),
                talk_share: if total_talk > 0.0 {
                    round3((self.amount(leg) / total_talk) as f32)
                } else {
                    0.0
                },
                interruptions: s.interruptions,
                peak_frustration: s.peak_frustration.clone(),
            })
            .collect();
        let n: u32 = self.speakers.iter().map(|s| s.turns).sum();
        let sum: f32 = self.speakers.iter().map(|s| s.score_sum).sum();
        let conv = ConversationSummary {
            overlap_s: round3d(self.overlap_s),
            long_silences: long.len() as u32,
            long_silence_s: round3d(long.iter().sum()),
            longest_silence_s: round3d(silences.iter().cloned().fold(0.0, f64::max)),
            non_talk_s: round3d((duration - covered).max(0.0)),
            peak_frustration: self.peak.clone(),
            shifts: self.shifts.clone(),
            alerts: self.alerts.clone(),
            assists: self.assists.clone(),
        };
        let conduct = self.conduct(conv.non_talk_s, total_talk);
        (
            out,
            speakers,
            conv,
            (n > 0).then(|| (sum / n as f32 * 50.0).round() / 10.0),
            conduct,
        )
    }
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

fn round3d(v: f64) -> f64 {
    // + 0.0 turns the -0.0 of an empty float sum into 0.
    (v * 1000.0).round() / 1000.0 + 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PolarityLabel, Probs, Prosody, ProsodyZ, Timings};

    fn turn(id: u32, leg: u8, start: f64, end: f64, score: f32, frus: f32) -> TurnEvent {
        TurnEvent {
            schema: SCHEMA_VERSION.into(),
            call_id: "c".into(),
            turn_id: id,
            leg,
            seq: id,
            role: if leg == 0 {
                Role::Agent
            } else {
                Role::Customer
            },
            speaker: None,
            start,
            end,
            text: "x".into(),
            language: None,
            unscored: None,
            words: vec![],
            polarity: Polarity {
                label: PolarityLabel::Neutral,
                score,
                probs: Probs {
                    negative: 0.0,
                    neutral: 1.0,
                    positive: 0.0,
                },
            },
            score_5: 0.0,
            intensity: 0.5,
            intensity_band: String::new(),
            emotion: None,
            intent: None,
            indicators: Some(Indicators {
                frustration: crate::event::Indicator {
                    score: frus,
                    evidence: vec![],
                },
                ..Default::default()
            }),
            spans: vec![],
            trend: None,
            redacted: vec![],
            model: None,
            channel: None,
            prosody: Prosody {
                energy_db_mean: 0.0,
                energy_db_range: 0.0,
                pitch_hz_mean: None,
                pitch_st_range: None,
                speaking_rate_wps: None,
                pause_ratio: 0.0,
                z: ProsodyZ::default(),
            },
            timings: Timings::default(),
        }
    }

    fn conv() -> Conversation {
        Conversation::new(
            "c",
            vec![Role::Agent, Role::Customer],
            DynamicsConfig::default(),
            rules::default_rules(),
        )
    }

    fn kinds(ev: &[Event]) -> Vec<String> {
        ev.iter()
            .map(|e| match e {
                Event::Alert(a) => format!("alert:{}", a.rule_id),
                Event::Shift(s) => format!("shift:{:?}", s.direction),
                Event::Recovered(_) => "recovered".into(),
                _ => "?".into(),
            })
            .collect()
    }

    #[test]
    fn the_trend_rule_waits_for_a_third_customer_turn() {
        // Regression: the customer's first turn alone fired
        // customer-trend-negative (the trend of one turn is that turn), and a
        // calm problem statement followed by one complaint fired it too
        // (the escalation fixture, with the e5 heads).
        let mut c = conv();
        let mut t = turn(0, 1, 0.0, 3.0, -0.8, 0.1);
        assert!(kinds(&c.on_turn(&mut t)).is_empty());
        let mut t = turn(1, 0, 3.5, 5.0, 0.3, 0.0);
        assert!(kinds(&c.on_turn(&mut t)).is_empty());
        let mut t = turn(2, 1, 5.5, 8.0, -0.8, 0.1);
        assert!(kinds(&c.on_turn(&mut t)).is_empty());
        // A third negative customer turn: now the trend has evidence.
        let mut t = turn(3, 1, 8.5, 10.0, -0.8, 0.1);
        assert_eq!(
            kinds(&c.on_turn(&mut t)),
            vec!["alert:customer-trend-negative"]
        );
    }

    #[test]
    fn a_customer_drop_shifts_alerts_and_recovers() {
        let mut c = conv();
        let script = [
            (0, 0.0, 2.0, 0.6, 0.1),
            (1, 3.0, 5.0, 0.1, 0.2),
            (0, 6.0, 8.0, 0.5, 0.1),
            (1, 9.0, 11.0, 0.2, 0.2),
            (0, 12.0, 14.0, 0.4, 0.1),
            (1, 15.0, 17.0, -0.9, 0.75),
            (0, 18.0, 20.0, 0.5, 0.1),
            (1, 21.0, 23.0, -0.8, 0.8),
            (0, 24.0, 26.0, 0.6, 0.1),
            (1, 27.0, 29.0, 0.5, 0.1),
        ];
        let mut all = Vec::new();
        for (i, (leg, s, e, score, f)) in script.iter().enumerate() {
            let mut t = turn(i as u32, *leg, *s, *e, *score, *f);
            let ev = c.on_turn(&mut t);
            assert!(t.trend.is_some());
            all.push((i, kinds(&ev)));
        }
        let at = |k: &str| {
            all.iter()
                .find(|(_, v)| v.iter().any(|x| x == k))
                .map(|x| x.0)
        };
        assert_eq!(at("shift:Down"), Some(7), "{all:?}");
        assert_eq!(at("alert:customer-frustrated"), Some(7), "{all:?}");
        assert_eq!(at("recovered"), Some(9), "{all:?}");
        let (_, sp, cs, s5, _) = c.finish(30.0);
        assert_eq!(sp[1].shifts, 1);
        assert_eq!(cs.alerts.len(), 1, "{:?}", cs.alerts);
        assert_eq!(cs.peak_frustration.as_ref().map(|p| p.turn_id), Some(7));
        assert!(s5.is_some());
    }

    #[test]
    fn interruptions_overlaps_and_silences_are_counted() {
        let mut c = conv();
        let mut ev = Vec::new();
        // The agent cuts in on the customer four times (1 s before each ends).
        let mut id = 0;
        for k in 0..4 {
            let base = k as f64 * 10.0;
            let mut cu = turn(id, 1, base, base + 4.0, 0.0, 0.0);
            id += 1;
            ev.extend(c.on_turn(&mut cu));
            let mut ag = turn(id, 0, base + 3.0, base + 5.0, 0.0, 0.0);
            id += 1;
            ev.extend(c.on_turn(&mut ag));
        }
        // 22 s of silence, then one more turn.
        let mut t = turn(id, 1, 57.0, 58.0, 0.0, 0.0);
        ev.extend(c.on_turn(&mut t));
        let k = kinds(&ev);
        assert_eq!(
            k.iter()
                .filter(|x| *x == "alert:agent-talks-over-customer")
                .count(),
            1,
            "{k:?}"
        );
        assert_eq!(
            k.iter().filter(|x| *x == "alert:long-silence").count(),
            1,
            "{k:?}"
        );
        let (_, sp, cs, _, conduct) = c.finish(60.0);
        let conduct = conduct.unwrap();
        assert_eq!(conduct.interruptions, 4);
        assert_eq!(conduct.turns, 4);
        assert_eq!(sp[0].interruptions, 4);
        assert_eq!(sp[1].interruptions, 0);
        assert!((cs.overlap_s - 4.0).abs() < 1e-9);
        assert_eq!(cs.long_silences, 4, "{cs:?}"); // 5 s gaps ×3, 22 s, 2 s at the end
        assert!((cs.longest_silence_s - 22.0).abs() < 1e-9);
    }
}

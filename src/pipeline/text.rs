//! Written conversations (chat, e-mail) through the same analysis as calls:
//! each message is a turn on its role's leg (agent 0, customer 1) with the
//! text models' polarity, emotion, intent, indicators and spans, then the
//! conversation tracker (shifts, recoveries, alerts, hints) and the summary.
//! There is no audio: prosody is empty, the indicators say they are from
//! text only, and the silence, overlap and voice rules do not apply.

use std::time::Instant;

use super::engine::{Engine, EngineError};
use super::messages::Ready;
use super::resample::Ended;
use super::run::{summary, webhook, RunFacts};
use super::sink::SinkStage;
use super::stats::Shared;
use crate::capture::CaptureShared;
use crate::chat::Message;
use crate::event::{
    CallMeta, Event, Prosody, ProsodyZ, Role, StageMs, SummaryEvent, Timings, TurnEvent,
    SCHEMA_VERSION,
};
use crate::intel::{Conversation, TurnAnalyser};
use crate::sentiment::TextEncoder;

/// What the indicators of a chat turn say about their evidence.
pub const TEXT_ONLY: &str = "text only (chat: no prosody)";

fn leg_of(role: Role) -> u8 {
    u8::from(role != Role::Agent)
}

impl Engine {
    /// Score a written conversation; events go to `sink` in order (turns,
    /// then what each causes, then the summary). `meta.channel` becomes
    /// `chat`; the start time is the first message's when it has one.
    pub fn score_text(
        &self,
        messages: &[Message],
        call_id: &str,
        mut meta: CallMeta,
        sink: &mut dyn FnMut(Event),
    ) -> Result<SummaryEvent, EngineError> {
        let wall = Instant::now();
        let cfg = self.config();
        let parts = self;
        let t0_ms = messages.iter().find_map(|m| m.at_ms);
        meta.channel = Some("chat".into());
        if meta.started_unix_ms.is_none() {
            meta.started_unix_ms = t0_ms;
        }
        let conv = Conversation::new(
            call_id,
            vec![Role::Agent, Role::Customer],
            cfg.dynamics.clone(),
            parts.rules.to_vec(),
        )
        .with_assist(parts.hints.to_vec(), true);
        let mut out = SinkStage::new(false, conv, webhook(cfg)?, sink);
        let mut analyser =
            TurnAnalyser::new((*parts.emotion).clone(), 2).with_empathy(parts.empathy.clone());
        let mut seqs = [0u32; 2];
        let mut last = 0.0f64;
        for (i, m) in messages.iter().enumerate() {
            let t = Instant::now();
            // When: the message's time from the first, else its index (1 s apart).
            let at = match (m.at_ms, t0_ms, m.at_s) {
                (Some(a), Some(t0), _) => a.saturating_sub(t0) as f64 / 1000.0,
                (_, _, Some(s)) => s,
                _ => i as f64,
            };
            let at = at.max(last);
            last = at;
            let mut text = m.text.clone();
            let mut words = Vec::new();
            let redacted = if cfg.privacy.redact {
                crate::intel::redact_turn(&mut text, &mut words)
            } else {
                Vec::new()
            };
            let emb = parts
                .encoder
                .embed(&[text.as_str()])?
                .into_iter()
                .next()
                .unwrap_or_default();
            let polarity = parts.head.polarity(&emb, m.role);
            let z = ProsodyZ::default();
            let leg = leg_of(m.role);
            let mut ev = TurnEvent {
                schema: SCHEMA_VERSION.into(),
                call_id: call_id.into(),
                turn_id: 0,
                leg,
                seq: seqs[leg as usize],
                role: m.role,
                speaker: None,
                start: at,
                end: at,
                text,
                words,
                language: None,
                unscored: None,
                intensity: crate::sentiment::intensity(&polarity, &z),
                polarity,
                score_5: 0.0,
                intensity_band: String::new(),
                emotion: None,
                intent: Some(parts.intent.intent(&emb, m.role)),
                indicators: None,
                spans: Vec::new(),
                trend: None,
                redacted,
                model: Some(crate::event::ModelVersions {
                    polarity: parts.head.0.version_id(),
                    emotion: parts.emotion.0.version_id(),
                    intent: parts.intent.0.version_id(),
                }),
                channel: Some("chat".into()),
                prosody: Prosody {
                    energy_db_mean: 0.0,
                    energy_db_range: 0.0,
                    pitch_hz_mean: None,
                    pitch_st_range: None,
                    speaking_rate_wps: None,
                    pause_ratio: 0.0,
                    z,
                },
                timings: Timings {
                    audio_end: at,
                    emitted_unix_ms: 0,
                    stage_ms: StageMs::default(),
                    latency_ms: None,
                    speculative: false,
                },
            };
            seqs[leg as usize] += 1;
            analyser.enrich(&mut ev, &emb, &parts.encoder, &parts.head)?;
            if let Some(ind) = &mut ev.indicators {
                ind.frustration.evidence.push(TEXT_ONLY.into());
                ind.sarcasm.evidence.push(TEXT_ONLY.into());
            }
            ev.timings.stage_ms.sentiment = (t.elapsed().as_secs_f32() * 10_000.0).round() / 10.0;
            out.accept(Ready {
                event: Event::Turn(ev),
                seen: t,
            });
        }
        let (closing, sink) = out.close(last);
        let run = RunFacts {
            call_id,
            duration: last,
            wall_s: wall.elapsed().as_secs_f64(),
            ended: Ended::Eof,
            ring: (0, 16_000),
            input_error: None,
            devices: self.devices(),
            meta,
        };
        let s = summary(run, closing, &Shared::default(), &CaptureShared::default());
        sink(Event::Summary(s.clone()));
        Ok(s)
    }
}

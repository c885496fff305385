//! Stage 4: prosody and the text models. A final turn gets its words on the
//! call's clock, prosodic features against the speaker's baseline, the text
//! embedding, polarity, intensity, emotion, indicators and clause spans; a
//! partial gets its text and a provisional polarity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use super::agreement::join;
use super::messages::{AsrOut, FinalJob, PartialJob, Ready};
use super::stats::{elapsed_ms, high_water, round1, round3, round3f, samples_us, Shared, Work};
use super::EngineError;
use crate::asr::{AsrWord, Transcript};
use crate::diarize::roles::{assign_roles, RoleConfig, RoleTurn};
use crate::event::{Event, PartialEvent, Role, StageMs, Timings, TurnEvent, Word, SCHEMA_VERSION};
use crate::intel::emotion::EmotionHead;
use crate::intel::TurnAnalyser;
use crate::prosody::{self, Baseline};
use crate::segment::TurnAudio;
use crate::sentiment::{self, PolarityHead, TextEncoder};

/// The text models every call shares.
#[derive(Clone)]
pub(crate) struct TextModels<E: TextEncoder> {
    pub encoder: E,
    pub head: Arc<PolarityHead>,
    pub emotion: Arc<EmotionHead>,
    pub intent: Arc<crate::intel::intent::IntentHead>,
    pub empathy: Arc<crate::intel::empathy::EmpathyModel>,
}

/// Who is the agent on a diarised leg: the speaker who opens with the
/// company script (see [`crate::diarize::roles`]), read over the opening
/// turns as they come.
#[derive(Default)]
struct RoleTracker {
    opening: Vec<(usize, String, f64)>,
    roles: BTreeMap<usize, Role>,
}

impl RoleTracker {
    fn role(&mut self, cfg: &RoleConfig, speaker: usize, text: &str, start: f64) -> Role {
        if self.opening.len() < cfg.first_turns && start < cfg.within_s {
            self.opening.push((speaker, text.to_string(), start));
            let turns: Vec<RoleTurn> = self
                .opening
                .iter()
                .map(|(speaker, text, start)| RoleTurn {
                    speaker: *speaker,
                    text,
                    start: *start,
                })
                .collect();
            self.roles = assign_roles(&turns, cfg);
            // Speakers met later are customers once an agent is known.
        }
        match self.roles.get(&speaker) {
            Some(r) => *r,
            None if self.roles.values().any(|r| *r == Role::Agent) => Role::Customer,
            None => Role::Unknown,
        }
    }
}

/// Per-call analysis state: speaker baselines, the previous turn per leg.
pub(crate) struct AnalysisStage<'a, E: TextEncoder> {
    call: String,
    roles: Vec<Role>,
    /// Per leg: roles of its speakers (diarised legs).
    speaker_roles: Vec<RoleTracker>,
    role_cfg: RoleConfig,
    models: TextModels<E>,
    /// Per (leg, speaker on a diarised leg): the voice's running baseline.
    baselines: BTreeMap<(u8, Option<u32>), Baseline>,
    analyser: TurnAnalyser,
    redact: bool,
    shared: &'a Shared,
}

/// Why a turn heard by an English-only model in another language is not scored.
pub(crate) fn foreign_note(lang: &str) -> String {
    format!(
        "language '{lang}' heard by an English-only model: the transcript is unreliable and was not scored; run `callpulse models fetch --asr base` and score with `--asr base`"
    )
}

fn round_words(words: &[AsrWord], off: f64, audio_end: f64) -> Vec<Word> {
    words
        .iter()
        .map(|w| Word {
            word: w.word.clone(),
            start: round3(off + w.start),
            end: round3((off + w.end).min(audio_end)),
            probability: round3f(w.probability),
        })
        .collect()
}

impl<'a, E: TextEncoder> AnalysisStage<'a, E> {
    pub fn new(
        call: &str,
        roles: Vec<Role>,
        role_cfg: RoleConfig,
        models: TextModels<E>,
        redact: bool,
        shared: &'a Shared,
    ) -> Self {
        let legs = roles.len();
        AnalysisStage {
            call: call.into(),
            analyser: TurnAnalyser::new((*models.emotion).clone(), legs)
                .with_empathy(models.empathy.clone()),
            speaker_roles: (0..legs).map(|_| RoleTracker::default()).collect(),
            role_cfg,
            roles,
            models,
            baselines: BTreeMap::new(),
            redact,
            shared,
        }
    }

    fn role(&self, leg: u8) -> Role {
        self.roles.get(leg as usize).copied().unwrap_or_default()
    }

    /// Words, prosody, polarity and intensity of a final turn, and its text embedding.
    fn analyse(
        &mut self,
        turn: &TurnAudio,
        transcript: Transcript,
    ) -> Result<(TurnEvent, Vec<f32>), EngineError> {
        let off = turn.audio_start as f64 / 16_000.0;
        let audio_end = off + turn.samples.len() as f64 / 16_000.0;
        let mut words = round_words(&transcript.words, off, audio_end);
        let t0 = Instant::now();
        let s = (turn.start - turn.audio_start) as usize;
        let e = ((turn.end - turn.audio_start) as usize).min(turn.samples.len());
        let span = match (words.first(), words.last()) {
            (Some(a), Some(b)) if words.len() >= 2 => Some((words.len(), b.end - a.start)),
            _ => None,
        };
        let mut pros = prosody::features(&turn.samples[s.min(e)..e], &turn.frame_speech, span);
        self.baselines
            .entry((turn.leg, turn.speaker))
            .or_default()
            .score_and_update(&mut pros);
        let prosody_ms = elapsed_ms(t0);
        let (language, foreign) = (transcript.language, transcript.foreign);
        let mut text = transcript.text;
        let redacted = if self.redact {
            crate::intel::redact_turn(&mut text, &mut words)
        } else {
            Vec::new()
        };
        let t1 = Instant::now();
        let emb = self
            .models
            .encoder
            .embed(&[text.as_str()])?
            .into_iter()
            .next()
            .unwrap_or_default();
        let leg_role = self.role(turn.leg);
        let role = match (turn.speaker, self.speaker_roles.get_mut(turn.leg as usize)) {
            (Some(sp), Some(tracker)) => {
                match tracker.role(
                    &self.role_cfg,
                    sp as usize,
                    &text,
                    turn.start as f64 / 16_000.0,
                ) {
                    Role::Unknown => leg_role,
                    r => r,
                }
            }
            _ => leg_role,
        };
        let (polarity, unscored) = if foreign {
            (
                PolarityHead::from_probs(&[0.0, 1.0, 0.0]),
                Some(foreign_note(language.as_deref().unwrap_or("?"))),
            )
        } else {
            (self.models.head.polarity(&emb, role), None)
        };
        let intent = unscored
            .is_none()
            .then(|| self.models.intent.intent(&emb, role));
        let intensity = sentiment::intensity(&polarity, &pros.z);
        let sentiment_ms = elapsed_ms(t1);
        let end = round3(turn.end as f64 / 16_000.0);
        let ev = TurnEvent {
            schema: SCHEMA_VERSION.into(),
            call_id: self.call.clone(),
            turn_id: 0,
            leg: turn.leg,
            seq: turn.seq,
            role,
            speaker: turn
                .speaker
                .map(|s| crate::diarize::speaker_label(s as usize)),
            start: round3(turn.start as f64 / 16_000.0),
            end,
            text,
            words,
            language,
            unscored,
            polarity,
            score_5: 0.0,
            intensity,
            intensity_band: String::new(),
            emotion: None,
            intent,
            indicators: None,
            spans: Vec::new(),
            trend: None,
            redacted,
            channel: None,
            model: Some(crate::event::ModelVersions {
                polarity: self.models.head.0.version_id(),
                emotion: self.models.emotion.0.version_id(),
                intent: self.models.intent.0.version_id(),
            }),
            prosody: pros,
            timings: Timings {
                audio_end: end,
                emitted_unix_ms: 0,
                stage_ms: StageMs {
                    frontend: 0.0,
                    asr: 0.0,
                    prosody: round1(prosody_ms),
                    sentiment: round1(sentiment_ms),
                },
                latency_ms: None,
                speculative: false,
            },
        };
        Ok((ev, emb))
    }

    /// A final turn's event; None when the recogniser found no words.
    fn final_turn(
        &mut self,
        job: FinalJob,
        transcript: Transcript,
        asr_ms: f32,
        speculative: bool,
    ) -> Result<Option<Ready>, EngineError> {
        let c = &self.shared.counters;
        self.shared
            .gauge
            .sub(samples_us(job.turn.samples.len(), 16_000));
        if transcript.words.is_empty() {
            c.empty_turns
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Work::add(&c.work.asr_empty, asr_ms);
            return Ok(None);
        }
        let (mut ev, emb) = self.analyse(&job.turn, transcript)?;
        let t2 = Instant::now();
        if ev.unscored.is_none() {
            self.analyser
                .enrich(&mut ev, &emb, &self.models.encoder, &self.models.head)?;
        }
        ev.timings.stage_ms.sentiment += round1(elapsed_ms(t2));
        ev.timings.stage_ms.frontend = round1(job.frontend_ms);
        ev.timings.stage_ms.asr = round1(asr_ms);
        ev.timings.speculative = speculative;
        Work::add(&c.work.prosody, ev.timings.stage_ms.prosody);
        Work::add(&c.work.sentiment, ev.timings.stage_ms.sentiment);
        Ok(Some(Ready {
            event: Event::Turn(ev),
            seen: job.seen,
        }))
    }

    /// A partial result's event; None when it has no words yet.
    fn partial(
        &mut self,
        job: PartialJob,
        committed: Vec<AsrWord>,
        tentative: Vec<AsrWord>,
        asr_ms: f32,
    ) -> Result<Option<Ready>, EngineError> {
        let redact = |s: String| {
            if self.redact {
                crate::intel::pii::redact(&s).0
            } else {
                s
            }
        };
        let all: Vec<AsrWord> = committed.iter().chain(tentative.iter()).cloned().collect();
        let text = redact(join(&all));
        if text.is_empty() {
            return Ok(None);
        }
        let (committed, tentative) = (redact(join(&committed)), redact(join(&tentative)));
        let t1 = Instant::now();
        let emb = self.models.encoder.embed(&[text.as_str()])?;
        let polarity = self.models.head.polarity(
            emb.first().map(|v| v.as_slice()).unwrap_or(&[]),
            self.role(job.leg),
        );
        let sentiment_ms = elapsed_ms(t1);
        Work::add(&self.shared.counters.work.sentiment_partial, sentiment_ms);
        let audio_end = (job.audio_start + job.samples.len() as u64) as f64 / 16_000.0;
        Ok(Some(Ready {
            event: Event::Partial(PartialEvent {
                schema: SCHEMA_VERSION.into(),
                call_id: self.call.clone(),
                leg: job.leg,
                role: self.role(job.leg),
                seq: job.seq,
                start: round3(job.speech_start as f64 / 16_000.0),
                text,
                committed,
                tentative,
                polarity,
                timings: Timings {
                    audio_end: round3(audio_end),
                    emitted_unix_ms: 0,
                    stage_ms: StageMs {
                        frontend: 0.0,
                        asr: round1(asr_ms),
                        prosody: 0.0,
                        sentiment: round1(sentiment_ms),
                    },
                    latency_ms: None,
                    speculative: job.speculative,
                },
            }),
            seen: job.seen,
        }))
    }

    /// Run until the recogniser's queue closes.
    pub fn run(mut self, rx: Receiver<AsrOut>, out: Sender<Ready>) -> Result<(), EngineError> {
        for r in rx.iter() {
            let cores = self.shared.exclusive();
            let ready = match r {
                AsrOut::Final {
                    job,
                    transcript,
                    asr_ms,
                    speculative,
                } => self.final_turn(job, transcript, asr_ms, speculative)?,
                AsrOut::Partial {
                    job,
                    committed,
                    tentative,
                    asr_ms,
                } => self.partial(job, committed, tentative, asr_ms)?,
            };
            drop(cores);
            let Some(ready) = ready else { continue };
            if out.send(ready).is_err() {
                break;
            }
            high_water(&self.shared.counters.events_peak, &out);
        }
        Ok(())
    }
}

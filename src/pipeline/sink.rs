//! Stage 5, on the caller's thread: events leave the pipeline. Live, each
//! event goes out as soon as it is ready (turn ids in emission order, with
//! its latency); offline, turns are held and go out sorted by start time.
//! Every final turn passes through the conversation tracker, whose shifts,
//! recoveries and alerts follow it (alerts also to the webhook).

use std::collections::BTreeMap;

use crate::event::{now_unix_ms, ConversationSummary, Event, SpeakerSummary, StageMs, TurnEvent};
use crate::intel::webhook::{Webhook, WebhookStats};
use crate::intel::Conversation;

use super::messages::Ready;
use super::stats::{elapsed_ms, round1};

/// What the conversation tracker concluded when the call ended.
pub(crate) struct Closing {
    pub speakers: Vec<SpeakerSummary>,
    pub conversation: ConversationSummary,
    pub score_5: Option<f32>,
    /// The agent's conduct.
    pub conduct: Option<crate::event::AgentConduct>,
    /// Per-turn stage times summed over the emitted turns.
    pub stage_ms: StageMs,
    pub partials_emitted: u32,
    pub webhook: WebhookStats,
    /// Talk time per detected language.
    pub languages: BTreeMap<String, f64>,
    /// Call-level warnings (e.g. turns left unscored).
    pub warnings: Vec<String>,
    /// Turns per intent label, and those of them with negative polarity.
    pub intents: BTreeMap<String, (u32, u32)>,
}

impl Closing {
    /// The language with the most talk time.
    pub fn language(&self) -> Option<String> {
        self.languages
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(l, _)| l.clone())
    }
}

/// Orders, numbers and forwards a call's events.
pub(crate) struct SinkStage<'s> {
    live: bool,
    conv: Conversation,
    webhook: Option<Webhook>,
    held: Vec<TurnEvent>,
    next_turn_id: u32,
    totals: StageMs,
    partials_emitted: u32,
    languages: BTreeMap<String, f64>,
    intents: BTreeMap<String, (u32, u32)>,
    unscored: (u32, Option<String>),
    sink: &'s mut dyn FnMut(Event),
}

impl<'s> SinkStage<'s> {
    pub fn new(
        live: bool,
        conv: Conversation,
        webhook: Option<Webhook>,
        sink: &'s mut dyn FnMut(Event),
    ) -> Self {
        SinkStage {
            live,
            conv,
            webhook,
            held: Vec::new(),
            next_turn_id: 0,
            totals: StageMs::default(),
            partials_emitted: 0,
            languages: BTreeMap::new(),
            intents: BTreeMap::new(),
            unscored: (0, None),
            sink,
        }
    }

    /// Hand conversation events to the sink; alerts (and hints) also go to the webhook.
    fn forward(&mut self, events: Vec<Event>) {
        for e in events {
            if let (Event::Alert(_), Some(w)) = (&e, &self.webhook) {
                if let Ok(body) = serde_json::to_vec(&e) {
                    w.send(body);
                }
            }
            (self.sink)(e);
        }
    }

    /// Emit a final turn and what it causes (shifts, recoveries, alerts).
    fn emit_turn(&mut self, mut t: TurnEvent) {
        t.turn_id = self.next_turn_id;
        self.next_turn_id += 1;
        let st = &t.timings.stage_ms;
        self.totals.frontend += st.frontend;
        self.totals.asr += st.asr;
        self.totals.prosody += st.prosody;
        self.totals.sentiment += st.sentiment;
        if let Some(l) = &t.language {
            *self.languages.entry(l.clone()).or_default() += t.end - t.start;
        }
        if let Some(i) = &t.intent {
            let e = self.intents.entry(i.label.clone()).or_default();
            e.0 += 1;
            e.1 += u32::from(t.polarity.label == crate::event::PolarityLabel::Negative);
        }
        if let Some(why) = &t.unscored {
            self.unscored.0 += 1;
            self.unscored.1.get_or_insert_with(|| why.clone());
        }
        let extra = self.conv.on_turn(&mut t);
        t.timings.emitted_unix_ms = now_unix_ms();
        (self.sink)(Event::Turn(t));
        self.forward(extra);
    }

    /// Take one event from the analysis stage.
    pub fn accept(&mut self, ready: Ready) {
        let Ready { event, seen } = ready;
        match event {
            Event::Turn(mut t) if self.live => {
                t.timings.latency_ms = Some(round1(elapsed_ms(seen)));
                self.emit_turn(t);
            }
            Event::Turn(t) => self.held.push(t),
            Event::Partial(mut p) => {
                p.timings.emitted_unix_ms = now_unix_ms();
                p.timings.latency_ms = Some(round1(elapsed_ms(seen)));
                self.partials_emitted += 1;
                (self.sink)(Event::Partial(p));
            }
            other => (self.sink)(other),
        }
    }

    /// Emit the held turns (offline) and the end-of-call events; the summary
    /// itself is the caller's.
    pub fn close(mut self, duration: f64) -> (Closing, &'s mut dyn FnMut(Event)) {
        let mut held = std::mem::take(&mut self.held);
        held.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.leg.cmp(&b.leg)));
        for t in held {
            self.emit_turn(t);
        }
        let (extra, speakers, conversation, score_5, conduct) = self.conv.finish(duration);
        self.forward(extra);
        let webhook = self.webhook.take().map(|w| w.finish()).unwrap_or_default();
        let totals = std::mem::take(&mut self.totals);
        let stage_ms = StageMs {
            frontend: round1(totals.frontend),
            asr: round1(totals.asr),
            prosody: round1(totals.prosody),
            sentiment: round1(totals.sentiment),
        };
        (
            Closing {
                speakers,
                conversation,
                score_5,
                conduct,
                stage_ms,
                partials_emitted: self.partials_emitted,
                webhook,
                languages: self
                    .languages
                    .iter()
                    .map(|(l, s)| (l.clone(), (s * 1000.0).round() / 1000.0))
                    .collect(),
                intents: std::mem::take(&mut self.intents),
                warnings: match &self.unscored {
                    (n, Some(why)) => vec![format!("{n} turn(s) not scored: {why}")],
                    _ => Vec::new(),
                },
            },
            self.sink,
        )
    }
}

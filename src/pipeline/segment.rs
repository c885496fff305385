//! Stage 2, one thread per leg: voice activity and turns. Finished turns go
//! to the recogniser (never dropped: a full queue blocks); live, the open
//! turn is also offered for partial and speculative decoding (best effort: a
//! full queue skips them).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::messages::{Chunk16, FinalJob, PartialJob};
use super::speakers::LegSpeakers;
use super::stats::{elapsed_ms, high_water, samples_us, Shared, Work};
use super::EngineError;
use crate::segment::{OpenTurn, TurnAudio, TurnSegmenter, VoiceDetector};

/// When the open turn is offered for decoding.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartialPolicy {
    /// A partial every this many 16 kHz samples of a turn (None: no partials).
    pub cadence: Option<u64>,
    /// No partial before the turn has this many samples of speech.
    pub min_samples: u64,
    /// Offer the settled turn for a speculative decode.
    pub speculate: bool,
}

impl PartialPolicy {
    /// From the run options' durations.
    pub fn new(interval: Option<Duration>, min: Duration, speculate: bool) -> Self {
        let samples = |d: Duration| (d.as_secs_f64() * 16_000.0) as u64;
        PartialPolicy {
            cadence: interval.map(samples),
            min_samples: samples(min),
            speculate,
        }
    }
}

/// What of the open turn has been offered so far.
#[derive(Debug, Default)]
struct Offers {
    policy: PartialPolicy,
    /// (turn, position) of the next partial.
    next_partial: Option<(u32, u64)>,
    /// (turn, end of speech) of the last speculative offer.
    last_spec: Option<(u32, u64)>,
}

impl Offers {
    /// What to offer of the open turn at 16 kHz position `pos`: (samples, speculative).
    fn decide(&mut self, open: &OpenTurn, pad: usize, pos: u64) -> Option<(Vec<f32>, bool)> {
        if self.policy.speculate {
            if let Some(audio) = open.settled_audio(pad) {
                let key = (open.seq, open.last_speech_end);
                if self.last_spec != Some(key) {
                    self.last_spec = Some(key);
                    return Some((audio.to_vec(), true));
                }
            }
        }
        let cad = self.policy.cadence?;
        let due = match self.next_partial {
            Some((seq, at)) if seq == open.seq => at,
            _ => {
                let at = open.speech_start + self.policy.min_samples.max(cad);
                self.next_partial = Some((open.seq, at));
                at
            }
        };
        if pos >= due && open.silence < pad {
            self.next_partial = Some((open.seq, pos + cad));
            return Some((open.samples.to_vec(), false));
        }
        None
    }
}

/// One leg's segmenter and what it decided to offer so far.
pub(crate) struct SegmentStage<'a, V: VoiceDetector> {
    leg: u8,
    seg: TurnSegmenter<V>,
    offers: Offers,
    finals: Sender<FinalJob>,
    partials: Sender<PartialJob>,
    shared: &'a Shared,
    /// (16 kHz position after a chunk, when it arrived), oldest first.
    marks: VecDeque<(u64, Instant)>,
    /// Segmentation time not yet charged to a final turn.
    ms: f32,
    /// Audio the segmenter holds, microseconds (for the gauge).
    held: i64,
    /// Who spoke when, on a diarised leg.
    speakers: Option<LegSpeakers>,
}

impl<'a, V: VoiceDetector> SegmentStage<'a, V> {
    pub fn new(
        leg: u8,
        seg: TurnSegmenter<V>,
        policy: PartialPolicy,
        finals: Sender<FinalJob>,
        partials: Sender<PartialJob>,
        shared: &'a Shared,
    ) -> Self {
        SegmentStage {
            leg,
            seg,
            offers: Offers {
                policy,
                ..Offers::default()
            },
            finals,
            partials,
            shared,
            marks: VecDeque::new(),
            ms: 0.0,
            held: 0,
            speakers: None,
        }
    }

    /// Split and label this leg's turns by speaker.
    pub fn with_speakers(mut self, speakers: Option<LegSpeakers>) -> Self {
        self.speakers = speakers;
        self
    }

    /// When the audio at 16 kHz position `pos` entered the pipeline.
    fn seen_at(&self, pos: u64) -> Instant {
        self.marks
            .iter()
            .find(|(p, _)| *p >= pos)
            .or(self.marks.back())
            .map(|m| m.1)
            .unwrap_or_else(Instant::now)
    }

    /// Split and label finished turns by speaker (on a diarised leg).
    fn label(&mut self, turns: &mut Vec<TurnAudio>) -> Result<(), EngineError> {
        let Some(sp) = &mut self.speakers else {
            return Ok(());
        };
        let t0 = Instant::now();
        let _cores = self.shared.exclusive();
        let mut out = Vec::with_capacity(turns.len());
        for t in turns.drain(..) {
            out.extend(sp.label(t)?);
        }
        *turns = out;
        Work::add(&self.shared.counters.work.diarize, elapsed_ms(t0));
        Ok(())
    }

    /// Hand finished turns to the recogniser; false when it has gone away.
    fn forward(&mut self, turns: &mut Vec<TurnAudio>) -> Result<bool, EngineError> {
        self.label(turns)?;
        for t in turns.drain(..) {
            self.shared.gauge.add(samples_us(t.samples.len(), 16_000));
            let job = FinalJob {
                seen: self.seen_at(t.end),
                turn: t,
                frontend_ms: self.ms,
            };
            // Policy: finished turns are never dropped; a full queue blocks
            // here and backs up into the ring.
            if self.finals.send(job).is_err() {
                return Ok(false);
            }
            high_water(&self.shared.counters.finals_peak, &self.finals);
            self.ms = 0.0;
        }
        Ok(true)
    }

    /// Offer the open turn for a partial or speculative decode; false when
    /// the recogniser has gone away.
    fn offer_open_turn(&mut self, pos: u64, seen: Instant) -> bool {
        let pad = self.seg.pad();
        let Some(open) = self.seg.open_turn() else {
            return true;
        };
        let Some((samples, speculative)) = self.offers.decide(&open, pad, pos) else {
            return true;
        };
        let job = PartialJob {
            leg: self.leg,
            seq: open.seq,
            speech_start: open.speech_start,
            audio_start: open.audio_start,
            samples,
            seen,
            speculative,
        };
        // Policy: partials are best effort; a full queue skips them.
        match self.partials.try_send(job) {
            Ok(()) => high_water(&self.shared.counters.partials_peak, &self.partials),
            Err(TrySendError::Full(_)) => self.shared.counters.skip_partial(),
            Err(TrySendError::Disconnected(_)) => return false,
        }
        true
    }

    /// Segment one chunk; false when the recogniser has gone away.
    fn chunk(&mut self, chunk: Chunk16, turns: &mut Vec<TurnAudio>) -> Result<bool, EngineError> {
        let t0 = Instant::now();
        {
            let _cores = self.shared.exclusive();
            self.seg.push(&chunk.samples, turns)?;
        }
        let ms = elapsed_ms(t0);
        self.ms += ms;
        Work::add(&self.shared.counters.work.vad, ms);
        let gauge = &self.shared.gauge;
        gauge.sub(samples_us(chunk.samples.len(), 16_000));
        let now_held = samples_us(self.seg.buffered_samples(), 16_000);
        gauge.add(now_held - self.held);
        self.held = now_held;
        let pos = self.seg.position();
        self.marks.push_back((pos, chunk.seen));
        let keep_from = self
            .seg
            .open_turn()
            .map(|o| o.last_speech_end)
            .unwrap_or(pos)
            .saturating_sub(16_000);
        while self.marks.len() > 1 && self.marks[1].0 < keep_from {
            self.marks.pop_front();
        }
        if !self.forward(turns)? {
            return Ok(false);
        }
        Ok(self.offer_open_turn(pos, chunk.seen))
    }

    /// Run until the leg's audio ends, then close the open turn.
    pub fn run(mut self, rx: Receiver<Chunk16>) -> Result<(), EngineError> {
        let mut turns = Vec::new();
        for chunk in rx.iter() {
            if !self.chunk(chunk, &mut turns)? {
                return Ok(());
            }
        }
        let t0 = Instant::now();
        {
            let _cores = self.shared.exclusive();
            self.seg.finish(&mut turns)?;
        }
        let ms = elapsed_ms(t0);
        self.ms += ms;
        Work::add(&self.shared.counters.work.vad, ms);
        self.shared.gauge.sub(self.held);
        self.forward(&mut turns)?;
        if let Some(sp) = &self.speakers {
            self.shared.counters.relabelled(self.leg, &sp.relabelled());
        }
        Ok(())
    }
}

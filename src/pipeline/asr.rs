//! Stage 3: the recogniser. Finished turns first; partial and speculative
//! requests only when no finished turn waits. Only the newest request per
//! leg is kept; requests of turns already final are dropped; a speculative
//! decode of a settled turn is reused when the final turn holds exactly its
//! audio.

use std::time::Instant;

use crossbeam_channel::{never, select, Receiver, Sender, TryRecvError};

use super::agreement::Agreement;
use super::messages::{AsrOut, FinalJob, PartialJob};
use super::stats::{elapsed_ms, Shared, Work};
use super::EngineError;
use crate::asr::{Asr, Transcript};

/// A speculative decode kept until its turn is final.
struct Speculation {
    seq: u32,
    audio_start: u64,
    samples: usize,
    transcript: Transcript,
    ms: f32,
}

/// What the ASR loop does next.
enum Next {
    Final(FinalJob),
    Partial(PartialJob),
    Stash(PartialJob),
    PartialsClosed,
    End,
}

/// One recogniser, per-leg partial slots, agreement and speculation.
pub(crate) struct AsrStage<'a, A: Asr> {
    rec: A,
    pending: Vec<Option<PartialJob>>,
    done_seq: Vec<Option<u32>>,
    agreements: Vec<Agreement>,
    spec: Vec<Option<Speculation>>,
    shared: &'a Shared,
    /// Emit partial results (speculative decodes are kept either way).
    emit_partials: bool,
    /// Decode consecutive finished turns together in shared windows of up
    /// to this many samples, waiting for the next turns (0: never; offline
    /// scoring only).
    pack: usize,
    /// A finished turn taken from the queue that did not fit the last pack.
    held: Option<FinalJob>,
}

impl<'a, A: Asr> AsrStage<'a, A> {
    pub fn new(rec: A, legs: usize, shared: &'a Shared, emit_partials: bool, pack_s: f64) -> Self {
        AsrStage {
            rec,
            pending: (0..legs).map(|_| None).collect(),
            done_seq: vec![None; legs],
            agreements: vec![Agreement::default(); legs],
            spec: (0..legs).map(|_| None).collect(),
            shared,
            emit_partials,
            pack: (pack_s.max(0.0) * 16_000.0) as usize,
            held: None,
        }
    }

    fn skip(&self) {
        self.shared.counters.skip_partial();
    }

    /// Keep the newest request per leg; a speculative one is not displaced by
    /// a plain partial of the same turn.
    fn stash(&mut self, p: PartialJob) {
        let slot = &mut self.pending[p.leg as usize];
        let keep_old = slot
            .as_ref()
            .is_some_and(|o| o.speculative && !p.speculative && o.seq == p.seq);
        let had = slot.is_some();
        if !keep_old {
            *slot = Some(p);
        }
        if had {
            self.skip();
        }
    }

    /// The request that has waited longest, dropping stale ones.
    fn take_partial(&mut self) -> Option<PartialJob> {
        loop {
            let leg = self
                .pending
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.as_ref().map(|p| (i, p.seen)))
                .min_by_key(|x| x.1)?
                .0;
            let p = self.pending[leg].take()?;
            if self.done_seq[leg].is_some_and(|d| p.seq <= d) {
                self.skip();
                continue;
            }
            return Some(p);
        }
    }

    fn final_turn(&mut self, job: FinalJob) -> Result<AsrOut, EngineError> {
        let leg = job.turn.leg as usize;
        let t0 = Instant::now();
        let work = &self.shared.counters.work;
        let cached = self.spec[leg].take().filter(|c| {
            c.seq == job.turn.seq
                && c.audio_start == job.turn.audio_start
                && c.samples == job.turn.samples.len()
        });
        let (transcript, asr_ms, speculative) = match cached {
            Some(c) => {
                self.shared
                    .counters
                    .speculative_hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Work::add(&work.asr_speculative_used, c.ms);
                (c.transcript, c.ms, true)
            }
            None => {
                let t = self.rec.transcribe(&job.turn.samples)?;
                let ms = elapsed_ms(t0);
                Work::add(&work.asr_final, ms);
                (t, ms, false)
            }
        };
        self.finish(job, transcript, asr_ms, speculative)
    }

    /// The finished turns that follow `first`, as many as fit one decode
    /// window, decoded together (offline only: it waits for them).
    fn final_pack(
        &mut self,
        first: FinalJob,
        finals: &Receiver<FinalJob>,
    ) -> Result<Vec<AsrOut>, EngineError> {
        let gap = crate::asr::PACK_GAP;
        let mut used = first.turn.samples.len();
        let mut jobs = vec![first];
        // Offline nobody waits for a turn's words: wait for the next turn
        // until the window is full or the audio has ended.
        while used < self.pack {
            let Ok(next) = finals.recv() else {
                break;
            };
            if used + gap + next.turn.samples.len() > self.pack {
                self.held = Some(next);
                break;
            }
            used += gap + next.turn.samples.len();
            jobs.push(next);
        }
        if jobs.len() == 1 {
            let job = jobs.pop().expect("one job");
            return Ok(vec![self.final_turn(job)?]);
        }
        let t0 = Instant::now();
        let clips: Vec<&[f32]> = jobs.iter().map(|j| &j.turn.samples[..]).collect();
        let transcripts = self.rec.transcribe_packed(&clips)?;
        let ms = elapsed_ms(t0);
        Work::add(&self.shared.counters.work.asr_final, ms);
        let total = clips.iter().map(|c| c.len()).sum::<usize>().max(1) as f32;
        let shares: Vec<f32> = clips.iter().map(|c| ms * c.len() as f32 / total).collect();
        jobs.into_iter()
            .zip(transcripts)
            .zip(shares)
            .map(|((job, t), share)| self.finish(job, t, share, false))
            .collect()
    }

    /// Language check, counters and partial bookkeeping for a decoded
    /// final turn.
    fn finish(
        &mut self,
        job: FinalJob,
        mut transcript: Transcript,
        asr_ms: f32,
        speculative: bool,
    ) -> Result<AsrOut, EngineError> {
        let leg = job.turn.leg as usize;
        // A speculative decode already had its language checked while the
        // turn ran: the final does not wait for it again.
        let already_checked = speculative && transcript.language.is_some();
        if !(transcript.words.is_empty() || already_checked) {
            self.rec
                .identify_language(&job.turn.samples, &mut transcript)?;
        }
        if transcript.retried {
            self.shared
                .counters
                .asr_retries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.done_seq[leg] = Some(job.turn.seq);
        if self.pending[leg]
            .as_ref()
            .is_some_and(|p| p.seq <= job.turn.seq)
        {
            self.pending[leg] = None;
            self.skip();
        }
        Ok(AsrOut::Final {
            job,
            transcript,
            asr_ms,
            speculative,
        })
    }

    fn partial(&mut self, p: PartialJob) -> Result<Option<AsrOut>, EngineError> {
        let leg = p.leg as usize;
        let t0 = Instant::now();
        let mut t = self.rec.transcribe(&p.samples)?;
        if !t.words.is_empty() {
            // Language ID while the turn runs, off the final's critical path
            // (a call's first passes then come from its first partials).
            self.rec.identify_language(&p.samples, &mut t)?;
        }
        let asr_ms = elapsed_ms(t0);
        let work = &self.shared.counters.work;
        Work::add(
            if p.speculative {
                &work.asr_speculative
            } else {
                &work.asr_partial
            },
            asr_ms,
        );
        let (committed, tentative) = self.agreements[leg].update(p.seq, &t.words);
        if p.speculative {
            self.spec[leg] = Some(Speculation {
                seq: p.seq,
                audio_start: p.audio_start,
                samples: p.samples.len(),
                transcript: t,
                ms: asr_ms,
            });
        }
        if !self.emit_partials {
            return Ok(None);
        }
        Ok(Some(AsrOut::Partial {
            job: p,
            committed,
            tentative,
            asr_ms,
        }))
    }

    /// What to do next: a waiting final turn, else the oldest partial
    /// request, else wait for either.
    fn next(&mut self, finals: &Receiver<FinalJob>, partials: &mut Receiver<PartialJob>) -> Next {
        if let Some(f) = self.held.take() {
            return Next::Final(f);
        }
        loop {
            match partials.try_recv() {
                Ok(p) => self.stash(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    *partials = never();
                    break;
                }
            }
        }
        match finals.try_recv() {
            Ok(f) => Next::Final(f),
            Err(TryRecvError::Disconnected) => Next::End,
            Err(TryRecvError::Empty) => match self.take_partial() {
                Some(p) => Next::Partial(p),
                None => select! {
                    recv(finals) -> f => f.map(Next::Final).unwrap_or(Next::End),
                    recv(partials) -> p => p.map(Next::Stash).unwrap_or(Next::PartialsClosed),
                },
            },
        }
    }

    /// Run until the finished-turn queue closes.
    pub fn run(
        mut self,
        finals: Receiver<FinalJob>,
        mut partials: Receiver<PartialJob>,
        out: Sender<AsrOut>,
    ) -> Result<(), EngineError> {
        loop {
            let result = match self.next(&finals, &mut partials) {
                Next::Final(f) if self.pack > 0 => {
                    let results = self.final_pack(f, &finals)?;
                    if results.into_iter().any(|r| out.send(r).is_err()) {
                        break;
                    }
                    continue;
                }
                Next::Final(f) => self.final_turn(f)?,
                Next::Partial(p) => match self.partial(p)? {
                    Some(r) => r,
                    None => continue,
                },
                Next::Stash(p) => {
                    self.stash(p);
                    continue;
                }
                Next::PartialsClosed => {
                    partials = never();
                    continue;
                }
                Next::End => break,
            };
            if out.send(result).is_err() {
                break;
            }
        }
        Ok(())
    }
}

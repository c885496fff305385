//! Two-speaker mono "calls" built from clips of real speakers.
//!
//! Deterministic for a seed: speakers alternate turns, each turn made of one
//! or more of the speaker's clips in order; turn changes are either a pause
//! (0.3–1.2 s) or an overlap (0.2–0.5 s, about a third of them); the listener
//! sometimes drops a short back-channel clip ("alright", "thanks") into a long
//! turn. The reference RTTM and STM come straight from where each clip was
//! placed, so they are exact to the sample. Time is a sample index at
//! [`RATE`] until the output edge.

use super::CorpusError;
use crate::eval::rttm;
// The project's seeded SplitMix64 (same sequence on every platform).
use crate::eval::transcript::Segment;
use crate::telephony::sender::Rng;

/// Sample rate of the clips and the built call.
pub const RATE: u32 = 16_000;

/// The level each speaker is brought to (RMS over their clips, about −23 dBFS).
const TARGET_RMS: f32 = 0.07;

/// One stretch of a real speaker's speech with its words.
#[derive(Debug, Clone)]
pub struct Clip {
    /// Samples at [`RATE`], trimmed to the speech.
    pub samples: Vec<f32>,
    /// What is said.
    pub text: String,
}

/// A speaker's material.
#[derive(Debug, Clone)]
pub struct Speaker {
    /// Label used in the RTTM and STM.
    pub id: String,
    /// Turn material, in order.
    pub clips: Vec<Clip>,
    /// Short clips used as back-channels while the other speaker talks.
    pub backchannels: Vec<Clip>,
}

/// How a call is laid out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Seed of the pseudo-random choices.
    pub seed: u64,
    /// Longest turn, seconds (a turn stops taking clips past it).
    pub max_turn_s: f64,
    /// Share of turn changes that overlap.
    pub overlap_share: f64,
    /// Share of long turns that get a back-channel.
    pub backchannel_share: f64,
    /// Most turns per speaker (their clips are spread over this many turns).
    pub max_pairs: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            seed: 1,
            max_turn_s: 12.0,
            overlap_share: 0.35,
            backchannel_share: 0.6,
            max_pairs: usize::MAX,
        }
    }
}

/// A built call: the mono mix and its exact references.
#[derive(Debug, Clone)]
pub struct BuiltCall {
    /// Mono samples at [`RATE`].
    pub samples: Vec<f32>,
    /// Who spoke when (one segment per placed clip), in time order.
    pub rttm: Vec<rttm::Turn>,
    /// Transcript: one segment per turn and per back-channel, in time order.
    pub stm: Vec<Segment>,
    /// Number of turn changes that overlap.
    pub overlaps: usize,
    /// Number of back-channels placed.
    pub backchannels: usize,
}

/// Uniform in [lo, hi).
fn range(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.unit()
}

/// Uniform index below `n` (n > 0).
fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.unit() * n as f64) as usize % n.max(1)
}

fn to_samples(s: f64) -> usize {
    (s * RATE as f64).round().max(0.0) as usize
}

fn to_secs(n: usize) -> f64 {
    n as f64 / RATE as f64
}

/// Split `n` items into `k` consecutive groups whose sizes differ by at most one.
fn group_bounds(n: usize, k: usize) -> Vec<(usize, usize)> {
    (0..k).map(|i| (i * n / k, (i + 1) * n / k)).collect()
}

fn speaker_gain(s: &Speaker) -> f32 {
    let (sum, n) = s
        .clips
        .iter()
        .chain(&s.backchannels)
        .flat_map(|c| c.samples.iter())
        .fold((0.0f64, 0usize), |(a, n), v| {
            (a + (*v as f64).powi(2), n + 1)
        });
    let rms = (sum / n.max(1) as f64).sqrt() as f32;
    if rms > 1e-6 {
        TARGET_RMS / rms
    } else {
        1.0
    }
}

struct Mixer {
    out: Vec<f32>,
    rttm: Vec<rttm::Turn>,
    name: String,
}

impl Mixer {
    fn place(&mut self, clip: &Clip, gain: f32, at: usize, speaker: &str) -> usize {
        let end = at + clip.samples.len();
        if self.out.len() < end {
            self.out.resize(end, 0.0);
        }
        for (o, s) in self.out[at..end].iter_mut().zip(&clip.samples) {
            *o += s * gain;
        }
        self.rttm.push(rttm::Turn {
            file: self.name.clone(),
            start: to_secs(at),
            duration: to_secs(clip.samples.len()),
            speaker: speaker.to_string(),
        });
        end
    }
}

fn segment(speaker: &str, start: usize, end: usize, text: String) -> Segment {
    Segment {
        start: to_secs(start),
        end: to_secs(end),
        speaker: speaker.to_string(),
        channel: 0,
        text,
    }
}

/// Build a call named `name` from speakers `a` (who opens) and `b`.
pub fn build_call(
    name: &str,
    a: &Speaker,
    b: &Speaker,
    layout: &Layout,
) -> Result<BuiltCall, CorpusError> {
    let k = a.clips.len().min(b.clips.len()).min(layout.max_pairs);
    if k == 0 {
        return Err(CorpusError::Build(format!(
            "call {name}: speakers {} and {} both need at least one clip (and max_pairs > 0)",
            a.id, b.id
        )));
    }
    let mut rng = Rng::new(layout.seed);
    let gains = [speaker_gain(a), speaker_gain(b)];
    let speakers = [a, b];
    let groups = [
        group_bounds(a.clips.len(), k),
        group_bounds(b.clips.len(), k),
    ];
    let mut mix = Mixer {
        out: Vec::new(),
        rttm: Vec::new(),
        name: name.to_string(),
    };
    let mut stm = Vec::new();
    let (mut overlaps, mut backchannels) = (0, 0);
    let max_turn = to_samples(layout.max_turn_s);
    let mut prev: Option<(usize, usize)> = None; // previous turn (start, end)
    for turn in 0..2 * k {
        let who = turn % 2;
        let (spk, gain) = (speakers[who], gains[who]);
        let start = match prev {
            None => to_samples(0.5),
            Some((ps, pe)) if rng.unit() < layout.overlap_share => {
                let back = to_samples(range(&mut rng, 0.2, 0.5));
                if pe.saturating_sub(back) > ps + to_samples(0.5) {
                    overlaps += 1;
                    pe - back
                } else {
                    pe + to_samples(0.3)
                }
            }
            Some((_, pe)) => pe + to_samples(range(&mut rng, 0.3, 1.2)),
        };
        let (g0, g1) = groups[who][turn / 2];
        let mut pos = start;
        let mut words = Vec::new();
        for (j, clip) in spk.clips[g0..g1].iter().enumerate() {
            let gap = if j > 0 {
                to_samples(range(&mut rng, 0.15, 0.35))
            } else {
                0
            };
            if j > 0 && pos + gap + clip.samples.len() - start > max_turn {
                break;
            }
            pos = mix.place(clip, gain, pos + gap, &spk.id);
            words.push(clip.text.trim().to_string());
        }
        stm.push(segment(&spk.id, start, pos, words.join(" ")));
        prev = Some((start, pos));
        // The listener's back-channel, well inside a long turn.
        let other = speakers[1 - who];
        let room = pos - start;
        if room > to_samples(4.0)
            && !other.backchannels.is_empty()
            && rng.unit() < layout.backchannel_share
        {
            let bc = &other.backchannels[below(&mut rng, other.backchannels.len())];
            let latest = room.saturating_sub(to_samples(1.0) + bc.samples.len());
            if latest > to_samples(1.0) {
                let at = start + to_samples(range(&mut rng, 1.0, to_secs(latest)));
                let end = mix.place(bc, gains[1 - who], at, &other.id);
                stm.push(segment(&other.id, at, end, bc.text.clone()));
                backchannels += 1;
            }
        }
    }
    let tail = mix.out.len() + to_samples(0.5);
    mix.out.resize(tail, 0.0);
    for s in mix.out.iter_mut() {
        *s = s.clamp(-0.999, 0.999);
    }
    mix.rttm.sort_by(|x, y| x.start.total_cmp(&y.start));
    stm.sort_by(|x, y| x.start.total_cmp(&y.start));
    Ok(BuiltCall {
        samples: mix.out,
        rttm: mix.rttm,
        stm,
        overlaps,
        backchannels,
    })
}

/// The first and one-past-last sample of speech in `x`: 10 ms frames whose RMS
/// is within 30 dB of the loudest frame (and above −60 dBFS), padded by one
/// frame. `None` if there is no speech.
pub fn speech_bounds(x: &[f32]) -> Option<(usize, usize)> {
    let frame = (RATE / 100) as usize;
    let rms: Vec<f32> = x
        .chunks(frame)
        .map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).sqrt())
        .collect();
    let peak = rms.iter().cloned().fold(0.0f32, f32::max);
    let th = (peak * 0.0316).max(0.001);
    let first = rms.iter().position(|r| *r > th)?;
    let last = rms.iter().rposition(|r| *r > th)?;
    let start = first.saturating_sub(1) * frame;
    let end = ((last + 2) * frame).min(x.len());
    Some((start, end))
}

/// A clip cut from `x` between `start_s` and `end_s`, trimmed to its speech.
pub fn cut(x: &[f32], start_s: f64, end_s: f64, text: &str) -> Option<Clip> {
    let s = to_samples(start_s).min(x.len());
    let e = to_samples(end_s).min(x.len());
    let part = x.get(s..e)?;
    let (a, b) = speech_bounds(part)?;
    Some(Clip {
        samples: part[a..b].to_vec(),
        text: text.to_string(),
    })
}

/// Group timed words into phrases: a new phrase starts at a pause of at least
/// `min_gap` seconds once the current one is `min_len` long, or when adding
/// the word would pass `max_len`. Returns (start, end, text).
pub fn phrases(
    words: &[(f64, f64, String)],
    min_gap: f64,
    min_len: f64,
    max_len: f64,
) -> Vec<(f64, f64, String)> {
    let mut out: Vec<(f64, f64, String)> = Vec::new();
    let mut cur: Option<(f64, f64, Vec<&str>)> = None;
    for (s, e, w) in words {
        let split = cur.as_ref().is_some_and(|(cs, ce, _)| {
            (s - ce >= min_gap && ce - cs >= min_len) || e - cs > max_len
        });
        if split {
            if let Some((cs, ce, ws)) = cur.take() {
                out.push((cs, ce, ws.join(" ")));
            }
        }
        match cur.as_mut() {
            Some((_, ce, ws)) => {
                *ce = *e;
                ws.push(w);
            }
            None => cur = Some((*s, *e, vec![w.as_str()])),
        }
    }
    if let Some((cs, ce, ws)) = cur {
        out.push((cs, ce, ws.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(secs: f64, value: f32, text: &str) -> Clip {
        Clip {
            samples: vec![value; to_samples(secs)],
            text: text.into(),
        }
    }

    fn speakers() -> (Speaker, Speaker) {
        let a = Speaker {
            id: "A".into(),
            clips: (0..8)
                .map(|i| clip(3.0 + i as f64 * 0.2, 0.1, &format!("a{i}")))
                .collect(),
            backchannels: vec![clip(0.4, 0.1, "yeah")],
        };
        let b = Speaker {
            id: "B".into(),
            clips: (0..6).map(|i| clip(4.0, 0.2, &format!("b{i}"))).collect(),
            backchannels: vec![clip(0.5, 0.2, "right")],
        };
        (a, b)
    }

    #[test]
    fn same_seed_same_call_and_references_match_the_audio() {
        let (a, b) = speakers();
        let layout = Layout {
            seed: 7,
            ..Layout::default()
        };
        let c1 = build_call("t", &a, &b, &layout).unwrap();
        let c2 = build_call("t", &a, &b, &layout).unwrap();
        assert_eq!(c1.samples, c2.samples);
        assert_eq!(c1.rttm, c2.rttm);
        let c3 = build_call("t", &a, &b, &Layout { seed: 8, ..layout }).unwrap();
        assert_ne!(c1.rttm, c3.rttm);
        // Every RTTM segment covers non-silent audio; outside all segments it is silent.
        let mut covered = vec![false; c1.samples.len()];
        for t in &c1.rttm {
            let (s, e) = (to_samples(t.start), to_samples(t.end()));
            assert!(c1.samples[s..e].iter().all(|v| *v > 0.0), "{t:?}");
            covered[s..e].iter_mut().for_each(|c| *c = true);
        }
        let stray = c1
            .samples
            .iter()
            .zip(&covered)
            .filter(|(v, c)| **v != 0.0 && !**c)
            .count();
        assert_eq!(stray, 0);
        // Alternating turns, all clips' texts in the STM, speaker labels as given.
        assert_eq!(c1.stm.iter().filter(|s| s.text.starts_with('a')).count(), 6);
        assert!(c1
            .stm
            .iter()
            .any(|s| s.speaker == "B" && s.text.starts_with("b0")));
    }

    #[test]
    fn overlaps_and_backchannels_stay_in_their_bounds() {
        let (a, b) = speakers();
        let mut seen_overlap = 0;
        let mut seen_bc = 0;
        for seed in 0..10 {
            let c = build_call(
                "t",
                &a,
                &b,
                &Layout {
                    seed,
                    ..Layout::default()
                },
            )
            .unwrap();
            seen_overlap += c.overlaps;
            seen_bc += c.backchannels;
            // Turns (not back-channels) of different speakers overlap by 0.2–0.5 s at most.
            let turns: Vec<&Segment> = c
                .stm
                .iter()
                .filter(|s| s.text != "yeah" && s.text != "right")
                .collect();
            for w in turns.windows(2) {
                assert_ne!(w[0].speaker, w[1].speaker, "turns alternate");
                let overlap = w[0].end - w[1].start;
                assert!(overlap <= 0.5 + 1e-9, "overlap {overlap}");
                if overlap > 0.0 {
                    assert!(overlap >= 0.2 - 1e-9, "overlap {overlap}");
                }
            }
            // No turn longer than the limit (plus one clip when a single clip is longer).
            assert!(turns.iter().all(|t| t.end - t.start <= 12.0 + 1e-9));
        }
        assert!(seen_overlap > 5, "{seen_overlap}");
        assert!(seen_bc > 5, "{seen_bc}");
    }

    #[test]
    fn speakers_without_clips_are_an_error() {
        let (a, mut b) = speakers();
        b.clips.clear();
        let e = build_call("t", &a, &b, &Layout::default()).unwrap_err();
        assert!(e.to_string().contains("at least one clip"), "{e}");
    }

    #[test]
    fn speech_bounds_and_phrases() {
        let mut x = vec![0.0f32; 16_000];
        x[4000..8000].iter_mut().for_each(|v| *v = 0.2);
        let (s, e) = speech_bounds(&x).unwrap();
        assert!(s <= 4000 && s >= 3800 && e >= 8000 && e <= 8320, "{s} {e}");
        assert!(speech_bounds(&[0.0; 1000]).is_none());
        let w = |s: f64, e: f64, t: &str| (s, e, t.to_string());
        let words = vec![
            w(0.0, 0.5, "a"),
            w(0.6, 1.6, "b"),
            w(2.0, 2.5, "c"),
            w(2.6, 9.5, "d"),
        ];
        let p = phrases(&words, 0.3, 1.0, 7.0);
        assert_eq!(
            p,
            vec![w(0.0, 1.6, "a b"), w(2.0, 2.5, "c"), w(2.6, 9.5, "d")]
        );
    }
}

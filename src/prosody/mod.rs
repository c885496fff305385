//! Prosody per turn: energy, pitch (YIN), speaking rate and pauses, and each as
//! a z-score against the speaker's running baseline of earlier turns.

mod pitch;

pub use pitch::yin_f0;

use crate::event::{Prosody, ProsodyZ};

/// Energy frame length, samples at 16 kHz (20 ms).
const ENERGY_FRAME: usize = 320;
/// Frames quieter than the turn's loudest frame by more than this are not
/// counted as voiced, dB.
const VOICED_RANGE_DB: f32 = 30.0;

/// Compute a turn's features (z-scores left at zero; see [`Baseline`]).
///
/// `audio` is the turn's 16 kHz audio from `start` to `end` of speech;
/// `frame_speech` the VAD's speech flag per 32 ms frame; `word_span` the first
/// word start and last word end (seconds) with the word count.
pub fn features(audio: &[f32], frame_speech: &[bool], words: Option<(usize, f64)>) -> Prosody {
    let frame_db: Vec<f32> = audio
        .chunks(ENERGY_FRAME)
        .filter(|c| c.len() == ENERGY_FRAME)
        .map(|c| {
            let ms = c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32;
            10.0 * (ms.max(1e-10)).log10()
        })
        .collect();
    let max_db = frame_db.iter().copied().fold(f32::MIN, f32::max);
    let voiced: Vec<f32> = frame_db
        .iter()
        .copied()
        .filter(|d| *d > max_db - VOICED_RANGE_DB)
        .collect();
    let energy_db_mean = if voiced.is_empty() {
        -100.0
    } else {
        // Mean of power, in dB, over voiced frames.
        let p = voiced.iter().map(|d| 10f32.powf(d / 10.0)).sum::<f32>() / voiced.len() as f32;
        10.0 * p.max(1e-10).log10()
    };
    let energy_db_range = percentile(&voiced, 0.95) - percentile(&voiced, 0.05);

    let f0 = yin_f0(audio, max_db - 25.0);
    let pitch_hz_mean = if f0.len() >= 3 {
        Some(f0.iter().sum::<f32>() / f0.len() as f32)
    } else {
        None
    };
    let pitch_st_range = if f0.len() >= 3 {
        let hi = percentile(&f0, 0.95);
        let lo = percentile(&f0, 0.05).max(1.0);
        Some(12.0 * (hi / lo).log2())
    } else {
        None
    };
    let speaking_rate_wps = words.and_then(|(n, secs)| {
        if n >= 2 && secs > 0.3 {
            Some((n as f64 / secs) as f32)
        } else {
            None
        }
    });
    let pause_ratio = if frame_speech.is_empty() {
        0.0
    } else {
        frame_speech.iter().filter(|s| !**s).count() as f32 / frame_speech.len() as f32
    };
    Prosody {
        energy_db_mean: round2(energy_db_mean),
        energy_db_range: round2(energy_db_range.max(0.0)),
        pitch_hz_mean: pitch_hz_mean.map(round2),
        pitch_st_range: pitch_st_range.map(round2),
        speaking_rate_wps: speaking_rate_wps.map(round2),
        pause_ratio: round2(pause_ratio),
        z: ProsodyZ::default(),
    }
}

fn round2(v: f32) -> f32 {
    (v * 100.0).round() / 100.0
}

fn percentile(v: &[f32], q: f32) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((s.len() - 1) as f32 * q).round() as usize;
    s[idx.min(s.len() - 1)]
}

/// Running mean and variance (Welford).
#[derive(Debug, Clone, Default)]
struct Running {
    n: u32,
    mean: f64,
    m2: f64,
}

impl Running {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
    fn z(&self, x: f64, floor: f64) -> f32 {
        if self.n < 2 {
            return 0.0;
        }
        let sd = (self.m2 / (self.n - 1) as f64).sqrt().max(floor);
        (((x - self.mean) / sd) as f32).clamp(-5.0, 5.0)
    }
}

/// A speaker's prosodic baseline over their earlier turns.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    energy: Running,
    pitch_st: Running,
    rate: Running,
    pause: Running,
}

impl Baseline {
    /// Fill `p.z` against the turns seen so far, then add this turn.
    pub fn score_and_update(&mut self, p: &mut Prosody) {
        let e = p.energy_db_mean as f64;
        let st = p.pitch_hz_mean.map(|f| 12.0 * (f as f64 / 100.0).log2());
        let r = p.speaking_rate_wps.map(|r| r as f64);
        let pa = p.pause_ratio as f64;
        p.z = ProsodyZ {
            energy: round2(self.energy.z(e, 2.0)),
            pitch: round2(st.map(|s| self.pitch_st.z(s, 1.0)).unwrap_or(0.0)),
            rate: round2(r.map(|r| self.rate.z(r, 0.3)).unwrap_or(0.0)),
            pause: round2(self.pause.z(pa, 0.05)),
        };
        self.energy.push(e);
        if let Some(s) = st {
            self.pitch_st.push(s);
        }
        if let Some(r) = r {
            self.rate.push(r);
        }
        self.pause.push(pa);
    }
}

/// Prosodic arousal from the z-scores: louder, higher and faster than the
/// speaker's baseline is positive. Roughly in [-3, 3].
pub fn arousal(z: &ProsodyZ) -> f32 {
    (z.energy + z.pitch + 0.5 * z.rate) / 2.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amp: f32, secs: f32) -> Vec<f32> {
        (0..(secs * 16_000.0) as usize)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                // A harmonic-rich voiced-like signal.
                amp * ((2.0 * std::f32::consts::PI * hz * t).sin()
                    + 0.5 * (4.0 * std::f32::consts::PI * hz * t).sin())
            })
            .collect()
    }

    #[test]
    fn energy_and_pitch_follow_the_signal() {
        let a = features(&tone(120.0, 0.1, 1.0), &[true; 31], Some((4, 1.0)));
        let b = features(&tone(220.0, 0.4, 1.0), &[true; 31], Some((6, 1.0)));
        assert!(
            (a.pitch_hz_mean.unwrap() - 120.0).abs() < 4.0,
            "{:?}",
            a.pitch_hz_mean
        );
        assert!(
            (b.pitch_hz_mean.unwrap() - 220.0).abs() < 6.0,
            "{:?}",
            b.pitch_hz_mean
        );
        assert!((b.energy_db_mean - a.energy_db_mean - 12.04).abs() < 0.5);
        assert_eq!(a.speaking_rate_wps, Some(4.0));
    }

    #[test]
    fn baseline_z_scores_rise_for_a_louder_higher_turn() {
        let mut base = Baseline::default();
        for (hz, amp) in [(120.0, 0.1), (125.0, 0.11), (118.0, 0.095)] {
            let mut p = features(&tone(hz, amp, 1.0), &[true; 31], Some((5, 1.0)));
            base.score_and_update(&mut p);
        }
        let mut loud = features(&tone(200.0, 0.5, 1.0), &[true; 31], Some((8, 1.0)));
        base.score_and_update(&mut loud);
        assert!(
            loud.z.energy > 2.0 && loud.z.pitch > 2.0 && loud.z.rate > 2.0,
            "{:?}",
            loud.z
        );
        assert!(arousal(&loud.z) > 1.5);
    }

    #[test]
    fn silence_has_no_pitch() {
        let p = features(&vec![0.0; 16_000], &[false; 31], None);
        assert_eq!(p.pitch_hz_mean, None);
        assert_eq!(p.pause_ratio, 1.0);
    }
}

//! Speech regions for diarisation from a voice-activity detector: finer than
//! conversation turns (a pause of a few hundred ms ends a region), since a
//! speaker change usually sits in a pause.

use crate::segment::{VadError, VoiceDetector, FRAME};

/// Hysteresis and minimum lengths for [`speech_regions`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegionOptions {
    /// Speech starts when the probability reaches this.
    pub onset: f32,
    /// Speech ends when it falls below this.
    pub offset: f32,
    /// Shortest pause that splits regions, seconds.
    pub min_pause_s: f32,
    /// Regions shorter than this are dropped, seconds.
    pub min_speech_s: f32,
    /// Padding added on both sides, seconds.
    pub pad_s: f32,
}

impl Default for RegionOptions {
    fn default() -> Self {
        RegionOptions {
            onset: 0.35,
            offset: 0.2,
            min_pause_s: 0.25,
            min_speech_s: 0.2,
            pad_s: 0.05,
        }
    }
}

/// Speech regions of `audio` (16 kHz) as sample ranges, in order.
pub fn speech_regions<V: VoiceDetector + ?Sized>(
    vad: &mut V,
    audio: &[f32],
    opts: &RegionOptions,
) -> Result<Vec<(usize, usize)>, VadError> {
    vad.reset();
    let mut probs = Vec::with_capacity(audio.len() / FRAME + 1);
    for chunk in audio.chunks(FRAME) {
        let p = if chunk.len() == FRAME {
            vad.speech_prob(chunk)?
        } else {
            let mut f = chunk.to_vec();
            f.resize(FRAME, 0.0);
            vad.speech_prob(&f)?
        };
        probs.push(p);
    }
    Ok(regions_from_probs(&probs, audio.len(), opts))
}

/// The hysteresis over per-frame probabilities (pure; unit-tested).
pub fn regions_from_probs(probs: &[f32], len: usize, opts: &RegionOptions) -> Vec<(usize, usize)> {
    let secs = |s: f32| (s * 16_000.0) as usize;
    let mut raw: Vec<(usize, usize)> = Vec::new();
    let mut on: Option<usize> = None;
    for (i, &p) in probs.iter().enumerate() {
        match on {
            None if p >= opts.onset => on = Some(i * FRAME),
            Some(a) if p < opts.offset => {
                raw.push((a, i * FRAME));
                on = None;
            }
            _ => {}
        }
    }
    if let Some(a) = on {
        raw.push((a, len));
    }
    // Close short pauses, drop short speech, pad.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in raw {
        match merged.last_mut() {
            Some(last) if a - last.1 < secs(opts.min_pause_s) => last.1 = b,
            _ => merged.push((a, b)),
        }
    }
    let pad = secs(opts.pad_s);
    let mut out: Vec<(usize, usize)> = merged
        .into_iter()
        .filter(|(a, b)| b - a >= secs(opts.min_speech_s))
        .map(|(a, b)| (a.saturating_sub(pad), (b + pad).min(len)))
        .collect();
    // Padding must not make neighbours overlap.
    for i in 1..out.len() {
        if out[i].0 < out[i - 1].1 {
            let mid = (out[i].0 + out[i - 1].1) / 2;
            out[i - 1].1 = mid;
            out[i].0 = mid;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::EnergyVad;

    #[test]
    fn hysteresis_pauses_and_padding() {
        let o = RegionOptions::default();
        // 32 ms frames: speech 10 frames, pause 3 (96 ms, closed), speech 5,
        // pause 20 (640 ms, splits), speech 2 (64 ms, dropped).
        let mut p = vec![0.9; 10];
        p.extend([0.1; 3]);
        p.extend([0.9; 5]);
        p.extend([0.1; 20]);
        p.extend([0.9; 2]);
        p.extend([0.0; 5]);
        let len = p.len() * FRAME;
        let r = regions_from_probs(&p, len, &o);
        assert_eq!(r, vec![(0, 18 * FRAME + 800)]);
    }

    #[test]
    fn energy_detector_finds_a_burst() {
        let mut audio = vec![0f32; 16_000];
        audio[4_000..12_000]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| {
                *v = 0.3 * (i as f32 * 0.1).sin();
            });
        let mut vad = EnergyVad { threshold: 0.05 };
        let r = speech_regions(&mut vad, &audio, &RegionOptions::default()).unwrap();
        assert_eq!(r.len(), 1);
        let (a, b) = r[0];
        assert!(a <= 4_000 && a + 1_400 > 4_000, "{a}");
        assert!((12_000..12_000 + 1_400).contains(&b), "{b}");
    }
}

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

/// [`speech_regions`] over a stream: feed 16 kHz audio in any chunks and
/// take each region, with its audio, once no later audio can change it.
/// Memory holds the per-frame probabilities (31 floats a second) and the
/// audio since the last region handed out.
pub struct RegionStream<V: VoiceDetector> {
    vad: V,
    opts: RegionOptions,
    probs: Vec<f32>,
    frame: Vec<f32>,
    /// Audio from sample `base` on.
    audio: Vec<f32>,
    base: usize,
    /// Regions before this sample have been handed out.
    done: usize,
}

impl<V: VoiceDetector> RegionStream<V> {
    /// A stream over a fresh detector.
    pub fn new(mut vad: V, opts: RegionOptions) -> Self {
        vad.reset();
        RegionStream {
            vad,
            opts,
            probs: Vec::new(),
            frame: Vec::with_capacity(FRAME),
            audio: Vec::new(),
            base: 0,
            done: 0,
        }
    }

    /// Regions from `done` on, over the probabilities so far; `total` is the
    /// stream length in samples.
    fn regions(&self, total: usize) -> Vec<(usize, usize)> {
        let f0 = self.done / FRAME;
        let probs = self.probs.get(f0..).unwrap_or(&[]);
        regions_from_probs(probs, total - f0 * FRAME, &self.opts)
            .into_iter()
            .map(|(a, b)| ((a + f0 * FRAME).max(self.done), b + f0 * FRAME))
            .filter(|(a, b)| a < b)
            .collect()
    }

    fn emit(&mut self, regions: Vec<(usize, usize)>, out: &mut Vec<(usize, Vec<f32>)>) {
        for (a, b) in regions {
            let (i, j) = (a - self.base, (b - self.base).min(self.audio.len()));
            if i < j {
                out.push((a, self.audio[i..j].to_vec()));
            }
            self.done = b;
        }
        let keep = self.done.saturating_sub(self.base).min(self.audio.len());
        self.audio.drain(..keep);
        self.base += keep;
    }

    /// Feed samples; finished regions are appended to `out` as (start
    /// sample, audio).
    pub fn push(
        &mut self,
        samples: &[f32],
        out: &mut Vec<(usize, Vec<f32>)>,
    ) -> Result<(), VadError> {
        self.audio.extend_from_slice(samples);
        for &v in samples {
            self.frame.push(v);
            if self.frame.len() == FRAME {
                let p = self.vad.speech_prob(&self.frame)?;
                self.probs.push(p);
                self.frame.clear();
            }
        }
        let total = self.probs.len() * FRAME;
        // A region is final once a pause longer than the closing gap (plus
        // the padding) follows it.
        let margin = ((self.opts.min_pause_s + 2.0 * self.opts.pad_s) * 16_000.0) as usize + FRAME;
        let regions: Vec<(usize, usize)> = self
            .regions(total)
            .into_iter()
            .filter(|(_, b)| b + margin < total)
            .collect();
        self.emit(regions, out);
        Ok(())
    }

    /// End of the stream: hand out what is left.
    pub fn finish(&mut self, out: &mut Vec<(usize, Vec<f32>)>) -> Result<(), VadError> {
        if !self.frame.is_empty() {
            let mut f = std::mem::take(&mut self.frame);
            f.resize(FRAME, 0.0);
            self.probs.push(self.vad.speech_prob(&f)?);
        }
        let total = self.base + self.audio.len();
        let regions = self.regions(total);
        self.emit(regions, out);
        Ok(())
    }
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

    #[test]
    fn the_stream_finds_the_regions_of_the_whole() {
        // Bursts of different lengths and pauses, fed in odd-sized chunks.
        let mut audio = vec![0f32; 0];
        for (on, off) in [(0.8, 0.1), (1.2, 0.9), (0.5, 2.0), (2.5, 0.4), (0.3, 1.0)] {
            let k = (on * 16_000.0) as usize;
            audio.extend((0..k).map(|i| 0.3 * (i as f32 * 0.1).sin()));
            audio.extend(std::iter::repeat_n(0.0, (off * 16_000.0) as usize));
        }
        let whole = speech_regions(
            &mut EnergyVad { threshold: 0.05 },
            &audio,
            &RegionOptions::default(),
        )
        .unwrap();
        let mut s = RegionStream::new(EnergyVad { threshold: 0.05 }, RegionOptions::default());
        let mut got = Vec::new();
        for c in audio.chunks(3_001) {
            s.push(c, &mut got).unwrap();
        }
        s.finish(&mut got).unwrap();
        let spans: Vec<(usize, usize)> = got.iter().map(|(a, v)| (*a, a + v.len())).collect();
        assert_eq!(spans, whole);
        assert!(got.iter().all(|(a, v)| v[..] == audio[*a..a + v.len()]));
        // Audio before the last region handed out is let go.
        assert!(s.audio.len() < 16_000);
    }
}

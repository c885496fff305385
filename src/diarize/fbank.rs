//! Kaldi-style log mel filter bank features, as the CAM++ speaker model was
//! trained on: 16 kHz input in [-1, 1], 25 ms frames every 10 ms (only whole
//! frames: "snip edges"), per frame DC removal, pre-emphasis 0.97, Povey
//! window, 512-point power spectrum, 80 triangular bins on the mel scale
//! `1127 ln(1 + f/700)` from 20 Hz to 8 kHz, natural log floored at the f32
//! epsilon. No dither. Mean normalisation per utterance is a separate step
//! ([`mean_normalise`]) so that overlapping windows can share one pass.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

/// Samples per second the features are defined for.
pub const SAMPLE_RATE: usize = 16_000;
/// Samples per frame (25 ms).
pub const FRAME_LEN: usize = 400;
/// Samples between frames (10 ms).
pub const FRAME_SHIFT: usize = 160;
/// Mel bins per frame.
pub const N_MELS: usize = 80;
const N_FFT: usize = 512;
const PREEMPH: f32 = 0.97;
const LOW_HZ: f64 = 20.0;

/// The feature extractor: window, mel matrix and FFT plan, built once.
pub struct Fbank {
    window: Vec<f32>,
    /// Per mel bin: first FFT bin and the triangle's weights from there.
    mel: Vec<(usize, Vec<f32>)>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl Default for Fbank {
    fn default() -> Self {
        Self::new()
    }
}

fn mel(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

impl Fbank {
    /// Build the extractor.
    pub fn new() -> Self {
        let n = FRAME_LEN as f64;
        let window = (0..FRAME_LEN)
            .map(|i| {
                let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1.0)).cos();
                hann.powf(0.85) as f32
            })
            .collect();
        let (lo, hi) = (mel(LOW_HZ), mel(SAMPLE_RATE as f64 / 2.0));
        let step = (hi - lo) / (N_MELS + 1) as f64;
        let bin_hz = SAMPLE_RATE as f64 / N_FFT as f64;
        let mel = (0..N_MELS)
            .map(|b| {
                let (l, c, r) = (
                    lo + b as f64 * step,
                    lo + (b + 1) as f64 * step,
                    lo + (b + 2) as f64 * step,
                );
                let w: Vec<(usize, f32)> = (0..N_FFT / 2)
                    .filter_map(|i| {
                        let m = mel(i as f64 * bin_hz);
                        let v = ((m - l) / (c - l)).min((r - m) / (r - c));
                        (v > 0.0).then_some((i, v as f32))
                    })
                    .collect();
                let first = w.first().map(|p| p.0).unwrap_or(0);
                (first, w.into_iter().map(|p| p.1).collect())
            })
            .collect();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Fbank { window, mel, fft }
    }

    /// Number of whole frames in `n` samples.
    pub fn frames(n: usize) -> usize {
        if n < FRAME_LEN {
            0
        } else {
            1 + (n - FRAME_LEN) / FRAME_SHIFT
        }
    }

    /// Log mel energies of `samples` (16 kHz, [-1, 1]), frame-major:
    /// `frames(len) * N_MELS` values, not mean-normalised.
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let n = Self::frames(samples.len());
        let mut out = Vec::with_capacity(n * N_MELS);
        let mut buf = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; N_FFT / 2];
        for f in 0..n {
            let frame = &samples[f * FRAME_SHIFT..f * FRAME_SHIFT + FRAME_LEN];
            let mean = frame.iter().map(|&x| x as f64).sum::<f64>() / FRAME_LEN as f64;
            let mut prev = frame[0] as f64 - mean;
            for (i, &x) in frame.iter().enumerate() {
                let cur = x as f64 - mean;
                buf[i] = ((cur - PREEMPH as f64 * prev) as f32) * self.window[i];
                prev = cur;
            }
            buf[FRAME_LEN..].fill(0.0);
            // Lengths are fixed by the plan, so this cannot fail.
            if self
                .fft
                .process_with_scratch(&mut buf, &mut spec, &mut scratch)
                .is_err()
            {
                out.extend(std::iter::repeat_n(f32::EPSILON.ln(), N_MELS));
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.norm_sqr();
            }
            for (first, w) in &self.mel {
                let e: f32 = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
                out.push(e.max(f32::EPSILON).ln());
            }
        }
        out
    }
}

/// Subtract each bin's mean over the frames (CAM++'s input normalisation).
pub fn mean_normalise(feats: &mut [f32]) {
    let n = feats.len() / N_MELS;
    if n == 0 {
        return;
    }
    let mut mean = [0f64; N_MELS];
    for fr in feats.chunks_exact(N_MELS) {
        for (m, &v) in mean.iter_mut().zip(fr) {
            *m += v as f64;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    for fr in feats.chunks_exact_mut(N_MELS) {
        for (v, m) in fr.iter_mut().zip(&mean) {
            *v -= *m as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, secs: f64, amp: f64) -> Vec<f32> {
        (0..(secs * SAMPLE_RATE as f64) as usize)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / SAMPLE_RATE as f64).sin())
                    as f32
            })
            .collect()
    }

    #[test]
    fn frame_count_snips_edges() {
        assert_eq!(Fbank::frames(399), 0);
        assert_eq!(Fbank::frames(400), 1);
        assert_eq!(Fbank::frames(559), 1);
        assert_eq!(Fbank::frames(560), 2);
        assert_eq!(Fbank::frames(16_000), 98);
        assert_eq!(
            Fbank::new().compute(&tone(440.0, 1.0, 0.5)).len(),
            98 * N_MELS
        );
    }

    #[test]
    fn a_tone_peaks_in_the_bin_that_covers_its_frequency() {
        let fb = Fbank::new();
        for hz in [300.0, 1000.0, 3000.0, 6000.0] {
            let f = fb.compute(&tone(hz, 0.2, 0.5));
            let fr = &f[5 * N_MELS..6 * N_MELS];
            let best = (0..N_MELS)
                .max_by(|&a, &b| fr[a].total_cmp(&fr[b]))
                .unwrap();
            // Centre of bin b on the mel scale.
            let step = (mel(8000.0) - mel(20.0)) / 81.0;
            let centre = mel(20.0) + (best + 1) as f64 * step;
            assert!(
                (centre - mel(hz)).abs() < step,
                "{hz} Hz peaked in bin {best}"
            );
        }
    }

    #[test]
    fn level_changes_only_shift_the_log_energies() {
        // Doubling the amplitude adds ln 4 to every bin; mean normalisation removes it.
        let fb = Fbank::new();
        let a = fb.compute(&tone(700.0, 0.3, 0.1));
        let b = fb.compute(&tone(700.0, 0.3, 0.2));
        for (x, y) in a.iter().zip(&b).take(N_MELS * 3) {
            if *x > -10.0 {
                assert!((y - x - 4f32.ln()).abs() < 1e-3, "{x} {y}");
            }
        }
        let (mut a, mut b) = (a, b);
        mean_normalise(&mut a);
        mean_normalise(&mut b);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-3 || *x < -10.0);
        }
    }

    #[test]
    fn digital_silence_hits_the_floor_and_a_constant_is_removed() {
        let fb = Fbank::new();
        let f = fb.compute(&[0.25f32; 800]);
        assert!(f.iter().all(|&v| (v - f32::EPSILON.ln()).abs() < 1e-6));
    }

    #[test]
    fn matches_a_kaldi_reference_frame() {
        // Frame 0 of the first 400 samples of a 1 kHz + 2.5 kHz mixture,
        // computed independently in float64 (numpy, same definition).
        let x: Vec<f32> = (0..400)
            .map(|i| {
                let t = i as f64 / 16000.0;
                (0.3 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()
                    + 0.1 * (2.0 * std::f64::consts::PI * 2500.0 * t).sin()) as f32
            })
            .collect();
        let f = Fbank::new().compute(&x);
        for (bin, want) in REFERENCE {
            // Bins far below the peaks carry f32 rounding noise from the FFT.
            let tol = if *want > -8.0 { 2e-3 } else { 0.1 };
            assert!(
                (f[*bin] - want).abs() < tol,
                "bin {bin}: {} vs {want}",
                f[*bin]
            );
        }
    }

    /// (bin, log energy) from the float64 reference.
    const REFERENCE: &[(usize, f32)] = &[
        (20, -10.0878),
        (30, -5.3291),
        (38, -11.8958),
        (45, -6.6841),
        (50, -6.8322),
        (70, -15.9424),
    ];
}

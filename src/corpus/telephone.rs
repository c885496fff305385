//! The telephone band: what a G.711 (PCMU) call does to 16 kHz speech.
//!
//! Band-limit to 300–3400 Hz (second-order Butterworth high- and low-pass,
//! the voice band of ITU-T G.712), resample to 8 kHz with the project's
//! anti-aliased resampler, then mu-law encode and decode each sample with
//! [`crate::audio::g711`]. The result is what a receiver of the call hears.

use crate::audio::g711::{linear_to_mulaw, mulaw_to_linear};
use crate::audio::resample::{LegResampler, ResampleError};

/// The telephone sample rate.
pub const PHONE_RATE: u32 = 8_000;

/// A direct-form-I biquad section.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    /// Butterworth (Q = 1/√2) low- or high-pass at `f0` Hz for sample rate `fs`
    /// (the bilinear-transform designs of the audio-EQ cookbook).
    fn butterworth(f0: f64, fs: f64, high: bool) -> Biquad {
        let w0 = 2.0 * std::f64::consts::PI * f0 / fs;
        let alpha = w0.sin() / (2.0 * std::f64::consts::FRAC_1_SQRT_2);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Biquad {
            b: [b0 / a0, b1 / a0, b0 / a0],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
        }
    }

    fn run(&self, x: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for s in x.iter_mut() {
            let x0 = *s as f64;
            let y0 =
                self.b[0] * x0 + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            x2 = x1;
            x1 = x0;
            y2 = y1;
            y1 = y0;
            *s = y0 as f32;
        }
    }
}

/// Limit `samples` (at `rate` Hz) to the 300–3400 Hz voice band, in place.
pub fn band_limit(samples: &mut [f32], rate: u32) {
    let fs = rate as f64;
    Biquad::butterworth(300.0, fs, true).run(samples);
    Biquad::butterworth(3400.0_f64.min(fs * 0.45), fs, false).run(samples);
}

/// Mu-law encode and decode (the quantisation of a PCMU call).
pub fn mulaw_round_trip(samples: &mut [f32]) {
    for s in samples.iter_mut() {
        let v = (*s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        *s = mulaw_to_linear(linear_to_mulaw(v)) as f32 / 32768.0;
    }
}

/// The 8 kHz G.711 mu-law version of one channel of audio at `rate` Hz.
pub fn phone_band(samples: &[f32], rate: u32) -> Result<Vec<f32>, ResampleError> {
    let mut x = samples.to_vec();
    band_limit(&mut x, rate);
    let mut out = Vec::with_capacity(samples.len() * PHONE_RATE as usize / rate as usize + 8);
    let mut r = LegResampler::to_rate(rate, PHONE_RATE)?;
    r.push(&x, &mut out)?;
    r.finish(&mut out)?;
    mulaw_round_trip(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, secs: f64) -> Vec<f32> {
        (0..(rate as f64 * secs) as usize)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as f32
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    #[test]
    fn voice_band_passes_and_the_rest_is_cut() {
        let pass = phone_band(&tone(1000.0, 16_000, 1.0), 16_000).unwrap();
        assert!((pass.len() as i64 - 8000).abs() <= 1, "{}", pass.len());
        // 1 kHz keeps its level (0.5 amplitude → RMS 0.354), within G.711 noise.
        let r = rms(&pass[800..7200]);
        assert!((r - 0.3536).abs() < 0.02, "{r}");
        // 100 Hz (below the band) and 6 kHz (above 4 kHz Nyquist) are cut.
        let low = phone_band(&tone(100.0, 16_000, 1.0), 16_000).unwrap();
        assert!(rms(&low[800..7200]) < 0.1, "{}", rms(&low[800..7200]));
        let high = phone_band(&tone(6000.0, 16_000, 1.0), 16_000).unwrap();
        assert!(rms(&high[800..7200]) < 0.01, "{}", rms(&high[800..7200]));
    }

    #[test]
    fn mulaw_quantises_like_g711() {
        let mut x = vec![0.0, 0.25, -0.25, 0.999];
        mulaw_round_trip(&mut x);
        assert_eq!(x[0], 0.0);
        // mu-law's step near 0.25 full scale is 1/128 of the segment: error < 2%.
        assert!(
            (x[1] - 0.25).abs() < 0.005 && (x[2] + 0.25).abs() < 0.005,
            "{x:?}"
        );
        assert!(x[3] > 0.97);
    }
}

//! Per-leg resampling to 16 kHz with rubato's FFT resampler (band-limited,
//! anti-aliased), fed in arbitrary chunk sizes.
//!
//! Real-time contract (after rubato): buffers are sized once at construction;
//! [`LegResampler::push`] appends to a caller-owned output `Vec` whose capacity
//! is reused. The resampler's delay is trimmed so output sample `n` lines up with
//! input time `n / 16000` s.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::MODEL_RATE;

/// Errors from building or running the resampler.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// The resampler could not be built for this rate.
    #[error("cannot resample from {rate} Hz: {reason}")]
    Construction {
        /// Input rate.
        rate: u32,
        /// Cause.
        reason: String,
    },
    /// Processing failed (a buffer sizing bug, reported rather than panicking).
    #[error("resampling failed: {0}")]
    Process(String),
}

const CHUNK: usize = 1024;

/// Resamples one leg to 16 kHz.
pub struct LegResampler {
    inner: Option<Fft<f32>>,
    input: Vec<f32>,
    out_buf: Vec<f32>,
    to_trim: usize,
    in_total: u64,
    out_total: u64,
    ratio: f64,
}

impl LegResampler {
    /// A resampler from `input_rate` to 16 kHz (a pass-through at 16 kHz).
    pub fn new(input_rate: u32) -> Result<Self, ResampleError> {
        Self::to_rate(input_rate, MODEL_RATE)
    }

    /// A resampler from `input_rate` to `output_rate`.
    pub fn to_rate(input_rate: u32, output_rate: u32) -> Result<Self, ResampleError> {
        if input_rate == output_rate {
            return Ok(LegResampler {
                inner: None,
                input: Vec::new(),
                out_buf: Vec::new(),
                to_trim: 0,
                in_total: 0,
                out_total: 0,
                ratio: 1.0,
            });
        }
        let fft = Fft::<f32>::new(
            input_rate as usize,
            output_rate as usize,
            CHUNK,
            1,
            FixedSync::Input,
        )
        .map_err(|e| ResampleError::Construction {
            rate: input_rate,
            reason: e.to_string(),
        })?;
        let out_max = fft.output_frames_max();
        let to_trim = fft.output_delay();
        Ok(LegResampler {
            inner: Some(fft),
            input: Vec::with_capacity(CHUNK * 4),
            out_buf: vec![0.0; out_max],
            to_trim,
            in_total: 0,
            out_total: 0,
            ratio: output_rate as f64 / input_rate as f64,
        })
    }

    /// Feed input samples; resampled samples are appended to `out`.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> Result<(), ResampleError> {
        self.in_total += samples.len() as u64;
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(samples);
            self.out_total += samples.len() as u64;
            return Ok(());
        };
        self.input.extend_from_slice(samples);
        let mut consumed = 0;
        while self.input.len() - consumed >= fft.input_frames_next() {
            let need = fft.input_frames_next();
            let (n_in, n_out) = run(
                fft,
                &self.input[consumed..consumed + need],
                &mut self.out_buf,
                None,
            )?;
            consumed += n_in;
            Self::emit(
                &self.out_buf[..n_out],
                &mut self.to_trim,
                &mut self.out_total,
                out,
            );
        }
        self.input.drain(..consumed);
        Ok(())
    }

    fn emit(chunk: &[f32], to_trim: &mut usize, out_total: &mut u64, out: &mut Vec<f32>) {
        let skip = (*to_trim).min(chunk.len());
        *to_trim -= skip;
        out.extend_from_slice(&chunk[skip..]);
        *out_total += (chunk.len() - skip) as u64;
    }

    /// Flush what is left at the end of the stream, so the output length is
    /// `ceil(input_len * 16000 / input_rate)`.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), ResampleError> {
        let Some(fft) = self.inner.as_mut() else {
            return Ok(());
        };
        let expected = (self.in_total as f64 * self.ratio).ceil() as u64;
        // Zero-padding pushes the tail (and the filter delay) out; a few chunks suffice.
        for _ in 0..64 {
            if self.out_total >= expected {
                break;
            }
            let need = fft.input_frames_next();
            self.input.resize(need, 0.0);
            let (_, n_out) = run(fft, &self.input, &mut self.out_buf, None)?;
            self.input.clear();
            Self::emit(
                &self.out_buf[..n_out],
                &mut self.to_trim,
                &mut self.out_total,
                out,
            );
        }
        let excess = self.out_total.saturating_sub(expected) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.out_total -= excess as u64;
        Ok(())
    }
}

fn run(
    fft: &mut Fft<f32>,
    input: &[f32],
    out: &mut [f32],
    idx: Option<&Indexing>,
) -> Result<(usize, usize), ResampleError> {
    let frames_in = input.len();
    let frames_out = out.len();
    let a_in = SequentialSlice::new(input, 1, frames_in)
        .map_err(|e| ResampleError::Process(e.to_string()))?;
    let mut a_out = SequentialSlice::new_mut(out, 1, frames_out)
        .map_err(|e| ResampleError::Process(e.to_string()))?;
    fft.process_into_buffer(&a_in, &mut a_out, idx)
        .map_err(|e| ResampleError::Process(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    fn resample_in_chunks(input: &[f32], rate: u32, chunk: usize) -> Vec<f32> {
        let mut r = LegResampler::new(rate).unwrap();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            r.push(c, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn length_and_alignment_are_exact() {
        for rate in [8_000, 11_025, 22_050, 44_100, 48_000] {
            let input = tone(rate, 440.0, 1.3);
            let out = resample_in_chunks(&input, rate, 777);
            let expected = (input.len() as f64 * 16_000.0 / rate as f64).ceil() as usize;
            assert_eq!(out.len(), expected, "rate {rate}");
            // A 440 Hz tone keeps its phase: compare with the ideal 16 kHz tone mid-signal.
            let ideal = tone(16_000, 440.0, 1.3);
            let mid = 8_000;
            let err: f32 = (mid..mid + 400)
                .map(|i| (out[i] - ideal[i]).abs())
                .sum::<f32>()
                / 400.0;
            // Within half a sample of the ideal phase at 16 kHz (non-integer ratios
            // leave a fractional delay).
            assert!(err < 0.05, "rate {rate}: mean error {err}");
        }
    }

    #[test]
    fn aliasing_is_filtered() {
        // 7 kHz at 48 kHz is above the 16 kHz Nyquist limit after downsampling... but
        // still below 8 kHz; 10 kHz must be removed.
        let input = tone(48_000, 10_000.0, 1.0);
        let out = resample_in_chunks(&input, 48_000, 1000);
        let rms = (out[2000..14000].iter().map(|v| v * v).sum::<f32>() / 12000.0).sqrt();
        assert!(rms < 0.005, "10 kHz leaked through: rms {rms}");
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let input = tone(8_000, 300.0, 0.9);
        let a = resample_in_chunks(&input, 8_000, 160);
        let b = resample_in_chunks(&input, 8_000, 4096);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5);
        }
    }
}

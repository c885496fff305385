//! The mel filter bank whisper.cpp expects in the file.

use super::*;

/// Slaney mel scale (librosa `hz_to_mel(htk=False)`).
pub(super) fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

/// Inverse of [`hz_to_mel`] (librosa `mel_to_hz(htk=False)`).
pub(super) fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Band edges (Hz) of an `n_mels`-band Slaney filter bank from 0 to Nyquist:
/// `n_mels + 2` points, as librosa's `mel_frequencies`.
pub(super) fn mel_band_edges(n_mels: usize) -> Vec<f64> {
    let n = n_mels + 2;
    let max_mel = hz_to_mel(SAMPLE_RATE / 2.0);
    let step = max_mel / (n - 1) as f64;
    (0..n)
        .map(|i| {
            let m = if i + 1 == n { max_mel } else { i as f64 * step };
            mel_to_hz(m)
        })
        .collect()
}

/// librosa `filters.mel(sr=16000, n_fft=400, n_mels=n_mels)` as float32,
/// row-major `[n_mels][201]`: triangular filters on the Slaney mel scale,
/// each scaled by `2 / (f_hi - f_lo)` (Slaney area normalisation).
pub(super) fn mel_filters(n_mels: usize) -> Vec<f32> {
    let edges = mel_band_edges(n_mels);
    let bin_hz = SAMPLE_RATE / N_FFT as f64;
    let mut out = Vec::with_capacity(n_mels * N_FFT_BINS);
    for w in edges.windows(3) {
        let (lo, mid, hi) = match *w {
            [a, b, c] => (a, b, c),
            _ => continue,
        };
        let enorm = 2.0 / (hi - lo);
        for k in 0..N_FFT_BINS {
            let f = k as f64 * bin_hz;
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            // librosa stores the triangle in a float32 array, then scales it in place.
            let tri = lower.min(upper).max(0.0) as f32;
            out.push((f64::from(tri) * enorm) as f32);
        }
    }
    out
}

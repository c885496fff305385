//! YIN fundamental-frequency tracker (de Cheveigné & Kawahara, 2002) on audio
//! decimated to 8 kHz.

const RATE: f32 = 8_000.0;
const WINDOW: usize = 320; // 40 ms at 8 kHz
const HOP: usize = 160; // 20 ms
const F0_MIN: f32 = 60.0;
const F0_MAX: f32 = 450.0;
const THRESHOLD: f32 = 0.15;

/// F0 estimates (Hz) for the voiced 20 ms hops of 16 kHz `audio` whose energy
/// is above `min_db` dBFS.
pub fn yin_f0(audio: &[f32], min_db: f32) -> Vec<f32> {
    // Decimate by 2 with a short low-pass (pitch lives far below 4 kHz).
    let x: Vec<f32> = audio
        .chunks_exact(2)
        .enumerate()
        .map(|(i, c)| {
            let prev = if i > 0 { audio[2 * i - 1] } else { c[0] };
            0.25 * prev + 0.5 * c[0] + 0.25 * c[1]
        })
        .collect();
    let tau_min = (RATE / F0_MAX) as usize;
    let tau_max = (RATE / F0_MIN) as usize;
    let mut d = vec![0.0f32; tau_max + 1];
    let mut out = Vec::new();
    let mut start = 0;
    while start + WINDOW + tau_max <= x.len() {
        let w = &x[start..start + WINDOW + tau_max];
        start += HOP;
        let energy = w[..WINDOW].iter().map(|v| v * v).sum::<f32>() / WINDOW as f32;
        if 10.0 * energy.max(1e-10).log10() < min_db {
            continue;
        }
        for (tau, dv) in d.iter_mut().enumerate().skip(1) {
            let mut s = 0.0;
            for j in 0..WINDOW {
                let diff = w[j] - w[j + tau];
                s += diff * diff;
            }
            *dv = s;
        }
        // Cumulative mean normalised difference.
        let mut running = 0.0;
        d[0] = 1.0;
        for (tau, dv) in d.iter_mut().enumerate().skip(1) {
            running += *dv;
            *dv = if running > 0.0 {
                *dv * tau as f32 / running
            } else {
                1.0
            };
        }
        let mut found = None;
        let mut tau = tau_min;
        while tau < tau_max {
            if d[tau] < THRESHOLD {
                while tau + 1 < tau_max && d[tau + 1] < d[tau] {
                    tau += 1;
                }
                found = Some(tau);
                break;
            }
            tau += 1;
        }
        if let Some(t) = found {
            // Parabolic interpolation around the minimum.
            let (a, b, c) = (d[t - 1], d[t], d[t + 1]);
            let denom = a - 2.0 * b + c;
            let shift = if denom.abs() > 1e-9 {
                0.5 * (a - c) / denom
            } else {
                0.0
            };
            let period = t as f32 + shift.clamp(-1.0, 1.0);
            if period > 0.0 {
                out.push(RATE / period);
            }
        }
    }
    out
}

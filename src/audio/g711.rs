//! ITU-T G.711 companding: mu-law (PCMU) and A-law (PCMA), 8-bit codes to
//! 16-bit linear PCM and back. Decoding is by table, built from the standard's
//! segment/quantisation rules.

/// Bias added before mu-law encoding (G.711: 0x84 = 132).
const MU_BIAS: i32 = 0x84;
/// Largest magnitude mu-law can encode before clipping.
const MU_CLIP: i32 = 32635;

/// Decode one mu-law code to linear PCM (−32124..=32124).
pub fn mulaw_to_linear(code: u8) -> i16 {
    MU_TABLE[code as usize]
}

/// Decode one A-law code to linear PCM (−32256..=32256).
pub fn alaw_to_linear(code: u8) -> i16 {
    A_TABLE[code as usize]
}

const fn mulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + MU_BIAS) << exponent) - MU_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode(i as u8)
        } else {
            mulaw_decode(i as u8)
        };
        i += 1;
    }
    t
}

static MU_TABLE: [i16; 256] = build(false);
static A_TABLE: [i16; 256] = build(true);

/// Encode linear PCM to mu-law.
pub fn linear_to_mulaw(sample: i16) -> u8 {
    let s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0 };
    let mag = s.abs().min(MU_CLIP) + MU_BIAS;
    let mut exponent = 7;
    while exponent > 0 && mag & (0x4000 >> (7 - exponent)) == 0 {
        exponent -= 1;
    }
    let mantissa = (mag >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// Encode linear PCM to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = sample as i32;
    let (sign, mag) = if s >= 0 { (0x80, s) } else { (0, -s - 1) };
    let mag = mag.min(0x7FFF);
    let code = if mag < 256 {
        mag >> 4
    } else {
        let mut exponent = 1;
        while exponent < 7 && mag >= (256 << exponent) {
            exponent += 1;
        }
        (exponent << 4) | ((mag >> (exponent + 3)) & 0x0F)
    };
    ((sign | code) ^ 0x55) as u8
}

/// Byte encodings of raw audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// G.711 mu-law, 8 bits per sample.
    Mulaw,
    /// G.711 A-law, 8 bits per sample.
    Alaw,
    /// Signed 16-bit little-endian PCM.
    S16le,
}

impl Encoding {
    /// Bytes per sample.
    pub fn sample_bytes(self) -> usize {
        match self {
            Encoding::Mulaw | Encoding::Alaw => 1,
            Encoding::S16le => 2,
        }
    }

    /// Decode whole samples from `bytes` into `out` as f32 in [-1, 1];
    /// returns the bytes consumed (a trailing partial sample is left).
    pub fn decode(self, bytes: &[u8], out: &mut Vec<f32>) -> usize {
        const SCALE: f32 = 1.0 / 32768.0;
        match self {
            Encoding::Mulaw => {
                out.extend(bytes.iter().map(|&b| mulaw_to_linear(b) as f32 * SCALE));
                bytes.len()
            }
            Encoding::Alaw => {
                out.extend(bytes.iter().map(|&b| alaw_to_linear(b) as f32 * SCALE));
                bytes.len()
            }
            Encoding::S16le => {
                let n = bytes.len() / 2 * 2;
                out.extend(
                    bytes[..n]
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 * SCALE),
                );
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mulaw_reference_values() {
        // G.711 Table 2: code 0xFF and 0x7F are +0/-0, 0x80/0x00 the extremes.
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
        // Segment boundaries: first step of segment 1 and last of segment 0.
        assert_eq!(mulaw_to_linear(0xEF), 132);
        assert_eq!(mulaw_to_linear(0xFE), 8);
        assert_eq!(mulaw_to_linear(0xF0), 120);
        assert_eq!(mulaw_to_linear(0x8F), 16764);
    }

    #[test]
    fn alaw_reference_values() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn encode_decode_round_trips_within_a_step() {
        for s in (-32000i32..32000).step_by(37) {
            let s = s as i16;
            let mu = mulaw_to_linear(linear_to_mulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            // Quantisation error is at most half a step: 1/32 of the magnitude in the top segment.
            let tol = (s as i32).abs() / 16 + 16;
            assert!((mu - s as i32).abs() <= tol, "mu-law {s} -> {mu}");
            assert!((a - s as i32).abs() <= tol, "A-law {s} -> {a}");
        }
        // Every code decodes and re-encodes to itself (except mu-law's negative zero).
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law code {c:#x}");
            if c != 0x7F {
                assert_eq!(linear_to_mulaw(mulaw_to_linear(c)), c, "mu-law code {c:#x}");
            }
        }
    }

    #[test]
    fn s16le_keeps_a_partial_sample() {
        let mut out = Vec::new();
        let used = Encoding::S16le.decode(&[0x00, 0x40, 0xFF], &mut out);
        assert_eq!(used, 2);
        assert_eq!(out, vec![0.5]);
    }
}

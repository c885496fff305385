//! Number formats: f16 <-> f32 and CTranslate2 dtypes.

use super::*;

/// Converts an IEEE half-precision value to `f32` (exact).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: man × 2^-24.
            let v = man as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Converts `f32` to IEEE half precision, rounding to nearest, ties to even.
pub(crate) fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        let nan = if man != 0 {
            0x0200 | (man >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let mut half = (m >> shift) as u16;
        let rem = m & ((1u32 << shift) - 1);
        let halfway = 1u32 << (shift - 1);
        if rem > halfway || (rem == halfway && half & 1 == 1) {
            half += 1;
        }
        return sign | half;
    }
    let mut half = ((e as u32) << 10 | (man >> 13)) as u16;
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) {
        // A carry into the exponent is the correct result (up to infinity).
        half += 1;
    }
    sign | half
}

/// Appends the floating-point values in `raw` (little-endian `dtype`) to `out`.
/// Integer types are converted numerically (used only for scalars and
/// quantized weights, which are rescaled by the caller).
pub(super) fn decode_floats(raw: &[u8], dtype: Ct2Dtype, out: &mut Vec<f32>) {
    match dtype {
        Ct2Dtype::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Ct2Dtype::F16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
        ),
        Ct2Dtype::Bf16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)),
        ),
        Ct2Dtype::I8 => out.extend(raw.iter().map(|&b| f32::from(b as i8))),
        Ct2Dtype::I16 => out.extend(
            raw.chunks_exact(2)
                .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]]))),
        ),
        Ct2Dtype::I32 => out.extend(
            raw.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
    }
}

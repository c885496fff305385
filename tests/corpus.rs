//! The speech corpus (real recordings and built two-speaker calls) and
//! `eval asr`: provisioning, files and durations, reference consistency,
//! WER arithmetic, and WER bounds of the current engine on real speech.
//!
//! Everything is provisioned with `callpulse models fetch --corpus`; a
//! missing recording fails the test.

mod common;

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use callpulse::config::Config;
use callpulse::corpus::install::read_wav;
use callpulse::corpus::telephone::band_limit;
use callpulse::corpus::{Corpus, Entry, Kind};
use callpulse::eval::{rttm, transcript};
use common::run;

/// The corpus, provisioned once per test process.
fn corpus() -> Corpus {
    static CORPUS: OnceLock<Mutex<Option<Corpus>>> = OnceLock::new();
    let lock = CORPUS.get_or_init(|| Mutex::new(None));
    let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = guard.as_ref() {
        return c.clone();
    }
    let out = run(&["models", "fetch", "--corpus", "--quiet"]);
    assert!(
        out.status.success(),
        "`callpulse models fetch --corpus` failed (these tests need the speech corpus):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = Config::default()
        .models_dir()
        .join(callpulse::corpus::COMPONENT);
    let c = Corpus::load(&dir).expect("corpus.json after provisioning");
    *guard = Some(c.clone());
    c
}

fn samples(c: &Corpus, file: &str) -> (u32, Vec<Vec<f32>>) {
    read_wav(&c.path(file)).unwrap_or_else(|e| panic!("{e}"))
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn span(x: &[f32], rate: u32, start: f64, end: f64) -> &[f32] {
    let s = ((start * rate as f64) as usize).min(x.len());
    let e = ((end * rate as f64) as usize).min(x.len()).max(s);
    &x[s..e]
}

#[test]
fn corpus_provisions_with_the_expected_files_and_durations() {
    let c = corpus();
    let expect = [
        ("jfk", 11.0, 1),
        ("librivox-0870", 7.1, 1),
        ("librispeech-61", 4.9, 1),
        ("mfa-acoustic", 26.72, 1),
        ("mfa-cold", 25.72, 1),
        ("mfa-two-channel", 52.44, 2),
        ("sonnet", 53.27, 1),
        ("debate-aepyx", 169.15, 1),
        ("es-mls", 14.8, 1),
        ("ja-cv", 6.5, 1),
        ("sv-nst-4", 7.0, 1),
    ];
    for (id, secs, channels) in expect {
        let e = c.get(id).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (e.duration_s - secs).abs() < 0.1,
            "{id}: {} s, expected {secs}",
            e.duration_s
        );
        assert_eq!(e.channels, channels, "{id}");
        assert!(!e.licence.is_empty() && !e.source.is_empty(), "{id}");
    }
    for e in &c.entries {
        let (rate, ch) = samples(&c, &e.wav);
        assert_eq!(rate, 16_000, "{}", e.wav);
        assert_eq!(ch.len(), e.channels as usize, "{}", e.wav);
        let secs = ch[0].len() as f64 / 16_000.0;
        assert!(
            (secs - e.duration_s).abs() < 0.002,
            "{}: {secs} vs {}",
            e.id,
            e.duration_s
        );
        // The telephone version: 8 kHz, same length, band-limited but not silent.
        let (rate8, ch8) = samples(&c, &e.wav_8k);
        assert_eq!((rate8, ch8.len()), (8_000, ch.len()), "{}", e.wav_8k);
        let secs8 = ch8[0].len() as f64 / 8_000.0;
        assert!(
            (secs8 - secs).abs() < 0.01,
            "{}: {secs8} vs {secs}",
            e.wav_8k
        );
        // Same level as the 16 kHz audio in the voice band (some recordings
        // carry a DC offset or hum below 300 Hz that the band limit removes).
        let mut band = ch[0].clone();
        band_limit(&mut band, 16_000);
        let (wide, narrow) = (rms(&band), rms(&ch8[0]));
        assert!(
            narrow > 0.8 * wide && narrow < 1.2 * wide,
            "{}: rms {wide} → {narrow}",
            e.id
        );
    }
    let calls: Vec<&Entry> = c.entries.iter().filter(|e| e.kind == Kind::Call).collect();
    assert!(calls.len() >= 4, "{} calls", calls.len());
    let mut mixed = 0;
    for call in &calls {
        assert!(
            (60.0..=120.0).contains(&call.duration_s),
            "{}: {} s",
            call.id,
            call.duration_s
        );
        assert_eq!(call.speakers.len(), 2, "{}", call.id);
        if call.speakers.iter().any(|s| s.ends_with("(f)")) {
            mixed += 1;
        }
    }
    assert!(
        mixed >= 1 && mixed < calls.len(),
        "male/female and same-sex pairs"
    );
    let pairs: std::collections::HashSet<Vec<String>> =
        calls.iter().map(|c| c.speakers.clone()).collect();
    assert_eq!(
        pairs.len(),
        calls.len(),
        "each call has its own speaker pair"
    );
}

fn stm(c: &Corpus, e: &Entry) -> Vec<transcript::StmLine> {
    let name = e
        .stm
        .as_ref()
        .unwrap_or_else(|| panic!("{} has no STM", e.id));
    let p = c.path(name);
    transcript::parse_stm(&p, &std::fs::read_to_string(&p).unwrap())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn rttm_of(c: &Corpus, e: &Entry) -> Vec<rttm::Turn> {
    let name = e
        .rttm
        .as_ref()
        .unwrap_or_else(|| panic!("{} has no RTTM", e.id));
    rttm::load(&c.path(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn stm_and_rttm_agree_with_the_audio() {
    let c = corpus();
    for e in &c.entries {
        if e.stm.is_some() {
            let lines = stm(&c, e);
            assert!(!lines.is_empty(), "{}", e.id);
            for l in &lines {
                let s = &l.segment;
                assert!(
                    s.start <= s.end && s.end <= e.duration_s + 0.05,
                    "{}: {s:?}",
                    e.id
                );
                assert_eq!(l.file, e.id);
            }
            let words: usize = lines
                .iter()
                .map(|l| callpulse::eval::wer::normalise(&l.segment.text).len())
                .sum();
            assert_eq!(words, e.words, "{}", e.id);
        }
        let Some(_) = &e.rttm else { continue };
        let turns = rttm_of(&c, e);
        assert!(
            turns.iter().all(|t| t.end() <= e.duration_s + 0.05),
            "{}",
            e.id
        );
        let (_, ch) = samples(&c, &e.wav);
        // Each speaker is louder inside their own segments than in the silence between all segments.
        let mut speakers: Vec<&str> = turns.iter().map(|t| t.speaker.as_str()).collect();
        speakers.sort();
        speakers.dedup();
        let expected = match e.id.as_str() {
            "debate-aepyx" => 4,
            _ => 2,
        };
        assert_eq!(speakers.len(), expected, "{}: {speakers:?}", e.id);
        for (k, spk) in speakers.iter().enumerate() {
            let leg = if e.channels == 2 { k } else { 0 };
            let inside: Vec<f32> = turns
                .iter()
                .filter(|t| t.speaker == *spk)
                .flat_map(|t| span(&ch[leg], 16_000, t.start, t.end()).to_vec())
                .collect();
            assert!(rms(&inside) > 0.01, "{} {spk}: rms {}", e.id, rms(&inside));
        }
    }
}

#[test]
fn built_calls_are_silent_outside_their_rttm_and_match_their_stm() {
    let c = corpus();
    for e in c.entries.iter().filter(|e| e.kind == Kind::Call) {
        let turns = rttm_of(&c, e);
        let (_, ch) = samples(&c, &e.wav);
        let x = &ch[0];
        let mut covered = vec![false; x.len()];
        for t in &turns {
            let s = (t.start * 16_000.0).round() as usize;
            let end = ((t.end() * 16_000.0).round() as usize).min(x.len());
            covered[s..end].iter_mut().for_each(|c| *c = true);
        }
        let stray = x
            .iter()
            .zip(&covered)
            .filter(|(v, c)| **v != 0.0 && !**c)
            .count();
        assert_eq!(stray, 0, "{}: audio outside every RTTM segment", e.id);
        // Overlapped speech exists (turn changes with overlap, back-channels).
        let mut overlap = 0.0;
        for (i, a) in turns.iter().enumerate() {
            for b in &turns[i + 1..] {
                if a.speaker != b.speaker {
                    overlap += (a.end().min(b.end()) - a.start.max(b.start)).max(0.0);
                }
            }
        }
        assert!(overlap > 0.2, "{}: {overlap} s of overlap", e.id);
        // Every RTTM segment lies inside an STM line of the same speaker.
        let lines = stm(&c, e);
        for t in &turns {
            assert!(
                lines.iter().any(|l| l.segment.speaker == t.speaker
                    && l.segment.start <= t.start + 1e-3
                    && t.end() <= l.segment.end + 1e-3),
                "{}: {t:?} has no STM line",
                e.id
            );
        }
    }
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["eval", "asr", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    assert!(
        out.status.success(),
        "eval asr failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("eval asr --json prints JSON")
}

#[test]
fn eval_asr_is_zero_against_itself_and_counts_a_hand_made_pair() {
    let c = corpus();
    let mut args = Vec::new();
    for e in c.entries.iter().filter(|e| e.stm.is_some()) {
        let p = c.path(e.stm.as_ref().unwrap()).display().to_string();
        args.push(p.clone());
        args.push(p);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = eval_json(&refs);
    assert_eq!(r["wer"], 0.0);
    assert!(r["total"]["ref_words"].as_u64().unwrap() > 500);

    let d = tempfile::tempdir().unwrap();
    let reference = d.path().join("ref.txt");
    let hyp = d.path().join("hyp.jsonl");
    std::fs::write(&reference, "The cat sat on the mat.\nIt's 42 degrees!\n").unwrap();
    // Turns out of order on purpose: eval puts them in time order.
    std::fs::write(
        &hyp,
        concat!(
            r#"{"type":"turn","start":4.0,"text":"it is forty-two degrees","leg":0}"#,
            "\n",
            r#"{"type":"turn","start":0.5,"text":"the cat sit on mat uh","leg":0}"#,
            "\n",
            r#"{"type":"summary","duration":6.0}"#,
            "\n"
        ),
    )
    .unwrap();
    let r = eval_json(&[reference.to_str().unwrap(), hyp.to_str().unwrap()]);
    let f = &r["files"][0];
    assert_eq!(
        (f["sub"].as_u64(), f["del"].as_u64(), f["ins"].as_u64()),
        (Some(1), Some(1), Some(0)),
        "{r}"
    );
    assert_eq!(f["ref_words"], 11);
    let out = run(&["eval", "asr", reference.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pairs"));
}

/// WER of the current engine on real speech, scored in one process
/// (`eval asr --audio ... --ref ...`). Bounds: measured on this machine
/// (see docs/corpus.md) plus a margin of about 5 points.
#[test]
fn wer_bounds_on_real_recordings() {
    let c = corpus();
    let cases: [(&str, bool, f64); 5] = [
        ("jfk", false, 0.05),           // measured 0.0%
        ("librivox-0870", false, 0.05), // measured 0.0%
        ("mfa-acoustic", false, 0.13),  // measured 7.9%
        ("call-mf-1", false, 0.26),     // measured 21.2%
        ("call-mf-1", true, 0.29),      // measured 23.6% (8 kHz G.711)
    ];
    common::models();
    let mut args: Vec<String> = Vec::new();
    for (id, narrow, _) in &cases {
        let e = c.get(id).unwrap();
        let wav = if *narrow { &e.wav_8k } else { &e.wav };
        args.extend(["--audio".into(), c.path(wav).display().to_string()]);
        args.extend([
            "--ref".into(),
            c.path(e.stm.as_ref().unwrap()).display().to_string(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = eval_json(&refs);
    let mut report = String::new();
    for (f, (id, narrow, bound)) in r["files"].as_array().unwrap().iter().zip(&cases) {
        let w = f["wer"].as_f64().unwrap();
        report.push_str(&format!(
            "{id}{}: {:.1}% (bound {:.0}%)\n",
            if *narrow { " 8k" } else { "" },
            w * 100.0,
            bound * 100.0
        ));
        assert!(Path::new(f["hypothesis"].as_str().unwrap()).exists());
    }
    eprintln!("{report}");
    for (f, (id, _, bound)) in r["files"].as_array().unwrap().iter().zip(&cases) {
        assert!(
            f["wer"].as_f64().unwrap() <= *bound,
            "{id} over its bound:\n{report}"
        );
    }
}

/// No invented text on long turns of real speech: a read sonnet (turns up to
/// 15 s) and a spontaneous monologue (a 20 s turn, forced to split) decode
/// without the made-up closing phrases Whisper adds to long windows. Measured
/// on this machine: sonnet 7.4% WER with no insertion, mfa-cold3 5.2% with 1.
#[test]
fn no_invented_text_on_long_real_monologues() {
    let c = corpus();
    common::models();
    let cases = [("sonnet", 0.12), ("mfa-cold3", 0.10)];
    let mut args: Vec<String> = Vec::new();
    for (id, _) in &cases {
        let e = c.get(id).unwrap();
        args.extend(["--audio".into(), c.path(&e.wav).display().to_string()]);
        args.extend([
            "--ref".into(),
            c.path(e.stm.as_ref().unwrap()).display().to_string(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = eval_json(&refs);
    for (f, (id, bound)) in r["files"].as_array().unwrap().iter().zip(&cases) {
        let n = |k: &str| f[k].as_u64().unwrap();
        assert!(n("ins") <= 2, "{id}: {} words inserted: {f}", n("ins"));
        assert!(n("hyp_words") <= n("ref_words") + 2, "{id}: {f}");
        assert!(f["wer"].as_f64().unwrap() <= *bound, "{id}: {f}");
    }
}

/// Live diarisation on a mono call: speech whose speaker changed after its
/// turn went out is listed in the summary, under the label the turn event
/// carried and the one it has now.
#[test]
fn live_mono_call_reports_relabelled_speech_in_the_summary() {
    let c = corpus();
    common::models();
    let e = c.get("call-mf-1").expect("call-mf-1 in the corpus");
    let wav = c.path(&e.wav);
    let out = run(&["stream", wav.to_str().unwrap(), "--speed", "8"]);
    assert!(
        out.status.success(),
        "stream failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = common::events(&out.stdout);
    let summary = ev.last().expect("events");
    assert_eq!(summary["type"], "summary");
    let turns = common::turns(&ev);
    assert!(
        turns.iter().all(|t| t["speaker"].is_string()),
        "speaker on every turn"
    );
    let relabelled = summary["relabelled"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!("relabelled: {relabelled:?}");
    // Measured: this call's live clustering moves about 4 s from a third
    // speaker back to S1 once more of the call is heard.
    assert!(!relabelled.is_empty(), "nothing relabelled in the summary");
    let mut total = 0.0;
    for r in &relabelled {
        let (start, end) = (r["start"].as_f64().unwrap(), r["end"].as_f64().unwrap());
        assert!(end - start >= 0.2 - 1e-9, "{r}");
        assert_ne!(r["from"], r["to"], "{r}");
        assert_eq!(r["leg"], 0, "{r}");
        total += end - start;
        // The label it went out with is the one a turn event carried there.
        let sent = turns.iter().any(|t| {
            t["speaker"] == r["from"]
                && t["start"].as_f64().unwrap() < end
                && t["end"].as_f64().unwrap() > start
        });
        assert!(sent, "no turn labelled {} over {start}-{end}", r["from"]);
    }
    let stat = summary["stats"]["relabelled_s"].as_f64().unwrap();
    assert!(
        (stat - total).abs() < 0.05,
        "relabelled_s {stat} vs {total}"
    );
}

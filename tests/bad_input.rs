//! Bad input gets a clear error and a non-zero exit, never a panic.

mod common;

use std::path::Path;

use common::*;

fn expect_error(path: &Path, needle: &str) {
    let out = run(&["score", path.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code for {}: {err}",
        path.display()
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

fn wav_header(format_tag: u16, channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block = channels * bits.div_ceil(8);
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&format_tag.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * block as u32).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&bits.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v
}

#[test]
fn broken_files_are_refused_with_a_reason() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);

    std::fs::write(p("empty.wav"), b"").unwrap();
    expect_error(&p("empty.wav"), "is empty");

    let good = std::fs::read(fixture("jfk.wav")).unwrap();
    std::fs::write(p("header.wav"), &good[..20]).unwrap();
    expect_error(&p("header.wav"), "not a readable WAV");

    std::fs::write(p("text.wav"), b"this is not audio at all, just text\n").unwrap();
    expect_error(&p("text.wav"), "not a readable WAV");

    let mut adpcm = wav_header(2, 1, 16_000, 4, 1000);
    adpcm.extend(vec![0u8; 1000]);
    std::fs::write(p("adpcm.wav"), adpcm).unwrap();
    expect_error(&p("adpcm.wav"), "unsupported WAV encoding");

    let mut three = wav_header(1, 3, 16_000, 16, 600);
    three.extend(vec![0u8; 600]);
    std::fs::write(p("three.wav"), three).unwrap();
    expect_error(&p("three.wav"), "has 3 channels");

    let mut zero = wav_header(1, 1, 0, 16, 600);
    zero.extend(vec![0u8; 600]);
    std::fs::write(p("zero.wav"), zero).unwrap();
    expect_error(&p("zero.wav"), "sample rate");

    expect_error(&p("does-not-exist.wav"), "cannot open");
}

#[test]
fn truncated_data_keeps_the_good_turns_and_fails() {
    models();
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("call_friendly.wav")).unwrap();
    // Cut the data after ~20 s of 37 s: the header still declares the full length.
    let cut = 44 + 20 * 16_000 * 4;
    let p = d.path().join("cut.wav");
    std::fs::write(&p, &good[..cut]).unwrap();
    let out = run(&["score", p.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(!err.contains("panicked"));
    let ev = events(&out.stdout);
    let n = turns(&ev).len();
    assert!((4..=6).contains(&n), "turns before the cut: {n}");
    let summary = ev.last().unwrap();
    assert!(summary["stats"]["input_error"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}

#[test]
fn batch_reports_failures_and_goes_on() {
    models();
    let d = tempfile::tempdir().unwrap();
    let inp = d.path().join("in");
    std::fs::create_dir_all(inp.join("sub")).unwrap();
    std::fs::copy(fixture("jfk.wav"), inp.join("a.wav")).unwrap();
    std::fs::copy(fixture("jfk.wav"), inp.join("sub/b.wav")).unwrap();
    std::fs::write(inp.join("sub/broken.wav"), b"nope").unwrap();
    let out_dir = d.path().join("out");
    let out = run(&[
        "score",
        inp.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--jobs",
        "2",
        "--quiet",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.wav"), "{err}");
    for id in ["a", "b"] {
        let text = std::fs::read_to_string(out_dir.join(format!("{id}.jsonl"))).unwrap();
        assert!(text.contains("\"type\":\"summary\""), "{id}: {text}");
    }
    let csv = std::fs::read_to_string(out_dir.join("summaries.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows.iter()
            .any(|r| r.starts_with("broken,") && r.contains(",failed,")),
        "{csv}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains(",ok,")).count(),
        2,
        "{csv}"
    );
}

#[test]
fn a_reader_that_stops_early_ends_the_output_without_a_panic() {
    // `callpulse models list | head -1`, `eval ... | head`: the reader
    // closes the pipe before the output is written. That ends the process
    // quietly, as it does other Unix tools, not with a panic.
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let models = tempfile::tempdir().unwrap();
    for args in [&["models", "list"][..], &["models", "list", "--json"]] {
        let mut child = bin()
            .args(args)
            .env("CALLPULSE_MODELS_DIR", models.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.success() || out.status.signal() == Some(13),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

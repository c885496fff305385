//! Shared helpers for the integration tests: the binary, provisioned models,
//! fixture scripts, word error rate, a child's peak memory, and (in
//! [`net`]) the one HTTP and WebSocket client the tests use.
#![allow(dead_code)]

pub mod net;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("audio-fixtures").join(name)
}

/// The binary under test: this build, or `CALLPULSE_TEST_BIN` (to run the
/// tests against another build, e.g. to see a regression test fail on the
/// commit before its fix).
pub fn bin() -> Command {
    match std::env::var_os("CALLPULSE_TEST_BIN") {
        Some(p) => Command::new(p),
        None => Command::new(env!("CARGO_BIN_EXE_callpulse")),
    }
}

static MODELS: Once = Once::new();

/// Provision the models with the project's own command; a failure fails the test.
pub fn models() {
    MODELS.call_once(|| {
        let out = bin()
            .args(["models", "fetch", "--data", "--quiet"])
            .output()
            .expect("run callpulse models fetch");
        assert!(
            out.status.success(),
            "`callpulse models fetch` failed (tests need the models):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run callpulse")
}

/// Score a file to JSON-lines events.
pub fn score(path: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    models();
    let mut args = vec!["score", path.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    events(&out.stdout)
}

/// Parse JSON-lines events from a command's stdout.
pub fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct ScriptTurn {
    pub speaker: String,
    pub channel: u8,
    pub text: String,
    pub polarity: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, serde::Deserialize)]
pub struct Script {
    pub turns: Vec<ScriptTurn>,
}

pub fn script(name: &str) -> Script {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// The project's documented WER normaliser (`callpulse::eval::wer`): lower
/// case, no punctuation, contractions expanded, numbers spelled out.
pub fn normalise(s: &str) -> Vec<String> {
    callpulse::eval::wer::normalise(s)
}

/// Word error rate of `hyp` against `reference`, through the same code as
/// `callpulse eval asr`.
pub fn wer(reference: &str, hyp: &str) -> f64 {
    callpulse::eval::wer::score(reference, hyp).wer()
}

/// Wait for a child to exit, failing with `what` after `timeout`.
pub fn wait_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let t = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(t.elapsed() < timeout, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A value in kB from `/proc/PID/status` (`VmRSS`, `VmHWM`: the peak).
pub fn proc_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Wait for `child` to exit while watching its peak resident memory
/// (`VmHWM`, polled every 20 ms: it only grows, so the last reading is the
/// peak up to that moment). Over `limit_kb`, the child is killed and the
/// test fails, before the machine runs short. Returns the exit status and
/// the peak in kB.
pub fn wait_within_memory(
    child: &mut std::process::Child,
    limit_kb: u64,
    timeout: std::time::Duration,
    what: &str,
) -> (std::process::ExitStatus, u64) {
    let t = std::time::Instant::now();
    let mut peak = 0;
    loop {
        if let Some(kb) = proc_kb(child.id(), "VmHWM:") {
            peak = peak.max(kb);
        }
        if peak > limit_kb {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: peak RSS {} MB over the limit of {} MB",
                peak / 1024,
                limit_kb / 1024
            );
        }
        if let Some(s) = child.try_wait().unwrap() {
            return (s, peak);
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: still running after {timeout:?} (peak RSS {} MB)",
                peak / 1024
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Run `cmd` to its end under [`wait_within_memory`], collecting its
/// output; returns the output and the peak RSS in kB.
pub fn output_within_memory(
    cmd: &mut Command,
    limit_kb: u64,
    timeout: std::time::Duration,
    what: &str,
) -> (Output, u64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut c = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(c.stdout.take().unwrap()));
    let err = drain(Box::new(c.stderr.take().unwrap()));
    let (status, peak) = wait_within_memory(&mut c, limit_kb, timeout, what);
    let output = Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    (output, peak)
}

pub fn turns(events: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    events.iter().filter(|e| e["type"] == "turn").collect()
}

#[test]
fn wer_normaliser_counts_what_it_should() {
    assert_eq!(
        wer("You have been very helpful.", "you've been very helpful"),
        0.0
    );
    assert_eq!(wer("Four days offline", "4 days offline"), 0.0);
    assert!((wer("a b c d", "a x c") - 0.5).abs() < 1e-9);
}

/// `prog` as root: directly when the tests run as root, else through
/// `sudo -n` (sipp and tshark need raw sockets).
pub fn as_root(prog: &str) -> Command {
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() == "0" {
        Command::new(prog)
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", prog]);
        c
    }
}

/// One sipp call placed from `dir` (which holds `call.pcap`, `packets` RTP
/// packets long) to `target`, with `tests/sipp/uac_pcap.xml` offering
/// `payloads` and labelling its two m= lines `labels`. sipp listens on
/// `sip_port` and `media_port`; its Call-ID starts with `cid_prefix-`.
#[allow(clippy::too_many_arguments)]
pub fn sipp_uac(
    dir: &Path,
    target: &str,
    packets: u64,
    payloads: &str,
    labels: [&str; 2],
    sip_port: u16,
    media_port: u16,
    cid_prefix: &str,
) -> std::process::Child {
    let xml = std::fs::read_to_string(root().join("tests/sipp/uac_pcap.xml"))
        .unwrap()
        .replace("PAUSE_MS", &(packets * 20 + 1500).to_string())
        .replace("PAYLOADS", payloads)
        .replace("LABEL0", labels[0])
        .replace("LABEL1", labels[1]);
    std::fs::write(dir.join("uac.xml"), xml).unwrap();
    as_root("sipp")
        .current_dir(dir)
        .args([
            target,
            "-sf",
            "uac.xml",
            "-i",
            "127.0.0.1",
            "-p",
            &sip_port.to_string(),
            "-mp",
            &media_port.to_string(),
            "-s",
            "support",
            "-m",
            "1",
            "-cid_str",
            &format!("{cid_prefix}-%u-%p@%s"),
            "-nostdin",
            "-timeout",
            "120s",
            "-timeout_error",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

//! A real cluster on loopback (issue 16): `nats-server -js`, two
//! `callpulse worker`s and `callpulse submit --wait` with 12 recordings and
//! one poison file. One worker is killed (SIGKILL) while it holds a job:
//! every result must exist exactly once, the killed worker's job must be
//! redelivered and finished, and the poison file must land in the dead
//! letters. The other worker drains on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::*;

/// The two tests each run a cluster: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Recogniser threads for each of two workers sharing this machine.
/// whisper.cpp's threads spin while they wait, so two processes that each
/// take every core slow each other down many times over (docs/scaling.md):
/// a CI machine with more cores than this one once left four of six live
/// calls unscored after 90 s.
fn half_the_cores() -> String {
    let n = std::thread::available_parallelism().map_or(2, |n| n.get());
    (n / 2).max(1).to_string()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` with its stderr lines sent to the returned channel.
fn spawn_lines(mut cmd: Command) -> (Proc, Receiver<String>) {
    let mut c = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let err = c.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    (Proc(c), rx)
}

/// `nats-server -js` on loopback `port`, storing under `dir`, once it is
/// ready. Returns the process and its URL.
fn nats_server(dir: &std::path::Path, port: u16) -> (Proc, String) {
    let mut cmd = Command::new("nats-server");
    cmd.args(["-js", "-sd"])
        .arg(dir.join("js"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()]);
    let (p, rx) = spawn_lines(cmd);
    wait_for(&rx, "Server is ready", 30, &mut Vec::new());
    std::thread::spawn(move || for _ in rx {});
    (p, format!("nats://127.0.0.1:{port}"))
}

/// Lines until one contains `what` (all lines seen are kept in `log`).
fn wait_for(rx: &Receiver<String>, what: &str, secs: u64, log: &mut Vec<String>) -> String {
    let t = Instant::now();
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(l.clone());
            if l.contains(what) {
                return l;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "no '{what}' within {secs} s: {log:#?}"
        );
    }
}

/// The first `secs` seconds of a WAV file.
fn cut(src: &Path, dst: &Path, secs: f64) {
    let mut r = hound::WavReader::open(src).unwrap();
    let spec = r.spec();
    let n = (secs * spec.sample_rate as f64) as usize * spec.channels as usize;
    let mut w = hound::WavWriter::create(dst, spec).unwrap();
    for s in r.samples::<i16>().take(n) {
        w.write_sample(s.unwrap()).unwrap();
    }
    w.finalize().unwrap();
}

fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let fixtures = [
        "call_escalation",
        "call_friendly",
        "call_calm",
        "call_signals",
        "call_prosody",
        "call_talkover",
        "call_es",
        "call_de",
        "call_fr",
        "call_escalation_8k",
        "jfk",
    ];
    for (i, f) in fixtures.iter().enumerate() {
        let p = dir.join(format!("rec{i:02}_{f}.wav"));
        cut(&fixture(&format!("{f}.wav")), &p, 10.0);
        out.push(p);
    }
    // A variant: the friendly call's second stretch.
    let p = dir.join("rec11_friendly_b.wav");
    cut(&fixture("call_friendly.wav"), &p, 14.0);
    out.push(p);
    out
}

/// A WAV header callpulse refuses (six channels): a poison job.
fn poison(dir: &Path) -> PathBuf {
    let p = dir.join("poison.wav");
    let spec = hound::WavSpec {
        channels: 6,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&p, spec).unwrap();
    for i in 0..16_000 * 6 {
        w.write_sample((i % 100) as i16).unwrap();
    }
    w.finalize().unwrap();
    p
}

#[test]
fn two_workers_a_crash_and_a_poison_job_every_result_exactly_once() {
    let _g = serial();
    models();
    assert!(
        Command::new("nats-server")
            .arg("--version")
            .output()
            .is_ok(),
        "nats-server is needed (Debian package nats-server; .ci/run installs it)"
    );
    let d = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(d.path(), 14_222);

    let rec_dir = d.path().join("rec");
    std::fs::create_dir_all(&rec_dir).unwrap();
    let mut files = recordings(&rec_dir);
    assert_eq!(files.len(), 12);
    files.push(poison(&rec_dir));

    let shared = d.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let worker = |name: &str| {
        let mut c = bin();
        c.args([
            "worker",
            "--nats",
            &url,
            "--name",
            name,
            "--ack-wait-s",
            "6",
            "--max-attempts",
            "2",
            "--retry-delay-s",
            "0.5",
            "--allow-urls",
            "--threads",
            &half_the_cores(),
        ]);
        c.arg("--allow-path").arg(&shared);
        spawn_lines(c)
    };
    let (mut w1, w1_rx) = worker("w1");
    let (w2, w2_rx) = worker("w2");
    let (mut w1_log, mut w2_log) = (Vec::new(), Vec::new());
    wait_for(&w1_rx, "ready on", 120, &mut w1_log);
    wait_for(&w2_rx, "ready on", 120, &mut w2_log);

    let out_dir = d.path().join("results");
    let mut s = bin();
    s.args([
        "submit",
        "--nats",
        &url,
        "--wait",
        "--quiet",
        "--timeout-s",
        "600",
    ])
    .arg("--out-dir")
    .arg(&out_dir)
    .args(&files);
    let mut sub = s
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Kill w1 as soon as it holds a job.
    let started = wait_for(&w1_rx, "started", 120, &mut w1_log);
    w1.0.kill().unwrap();
    let _ = w1.0.wait();
    let held = started
        .split("job ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();

    // The submit returns when every job has a result or a dead letter.
    let t = Instant::now();
    let status = loop {
        if let Some(st) = sub.try_wait().unwrap() {
            break st;
        }
        while let Ok(l) = w2_rx.try_recv() {
            w2_log.push(l);
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "submit never returned: {w2_log:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(sub.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "one job failed: {err}");
    assert!(err.contains("12 of 13 calls scored (1 failed)"), "{err}");
    assert!(
        err.contains("poison failed") && err.contains("6 channels"),
        "{err}"
    );

    // Every result once, as files and as objects.
    let mut results: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    results.sort();
    assert_eq!(results.len(), 12, "{results:?}");
    for r in &results {
        let body = std::fs::read_to_string(out_dir.join(r)).unwrap();
        let ev: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summaries: Vec<&serde_json::Value> =
            ev.iter().filter(|e| e["type"] == "summary").collect();
        assert_eq!(summaries.len(), 1, "{r}: one summary");
        assert_eq!(
            format!("{}.jsonl", summaries[0]["call_id"].as_str().unwrap()),
            *r
        );
        assert!(ev.iter().any(|e| e["type"] == "turn"), "{r} has turns");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (objects, dead) = rt.block_on(async {
        use futures_util::StreamExt;
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let store = js.get_object_store("callpulse-results").await.unwrap();
        let mut names = Vec::new();
        let mut list = store.list().await.unwrap();
        while let Some(o) = list.next().await {
            let o = o.unwrap();
            if !o.deleted {
                names.push((o.name.clone(), o.description.clone().unwrap_or_default()));
            }
        }
        let mut stream = js.get_stream("CALLPULSE_DEAD").await.unwrap();
        let n = stream.info().await.unwrap().state.messages;
        let m = stream
            .get_last_raw_message_by_subject("callpulse.dead.score")
            .await
            .unwrap();
        (names, (n, String::from_utf8_lossy(&m.payload).to_string()))
    });
    assert_eq!(objects.len(), 12, "{objects:?}");
    let mut uniq: Vec<&String> = objects.iter().map(|o| &o.0).collect();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 12, "one object per call");
    // The killed worker's job was finished by w2 on a later attempt.
    let (_, desc) = objects
        .iter()
        .find(|o| o.1.contains(&format!("\"job_id\":\"{held}\"")))
        .unwrap_or_else(|| panic!("no result for the held job {held}: {objects:?}"));
    let desc: serde_json::Value = serde_json::from_str(desc).unwrap();
    assert_eq!(desc["worker"], "w2", "{desc}");
    assert!(
        desc["attempt"].as_u64().unwrap() >= 2,
        "redelivered: {desc}"
    );
    assert!(
        w2_log
            .iter()
            .any(|l| l.contains(&format!("job {held}")) && l.contains("done")),
        "{w2_log:#?}"
    );
    // One dead letter: the poison job, with its error and attempts.
    assert_eq!(dead.0, 1);
    let dl: serde_json::Value = serde_json::from_str(&dead.1).unwrap();
    assert!(
        dl["job"]["call_id"].as_str().unwrap().starts_with("poison"),
        "{dl}"
    );
    assert_eq!(dl["attempts"], 2, "{dl}");
    assert!(dl["error"].as_str().unwrap().contains("6 channels"), "{dl}");

    // Jobs that name a shared path or a URL instead of uploading the audio.
    std::fs::copy(fixture("jfk.wav"), shared.join("shared_jfk.wav")).unwrap();
    std::fs::copy(fixture("jfk.wav"), shared.join("url_jfk.wav")).unwrap();
    let _http = Proc(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "18277",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&shared)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let out2 = d.path().join("results2");
    let r = bin()
        .args([
            "submit",
            "--nats",
            &url,
            "--wait",
            "--quiet",
            "--shared-paths",
        ])
        .arg(shared.join("shared_jfk.wav"))
        .arg("http://127.0.0.1:18277/url_jfk.wav")
        .arg("--out-dir")
        .arg(&out2)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for id in ["shared_jfk", "url_jfk"] {
        let body = std::fs::read_to_string(out2.join(format!("{id}.jsonl"))).unwrap();
        assert!(
            body.contains("\"type\":\"turn\"") && body.contains("\"type\":\"summary\""),
            "{id}"
        );
    }

    // w2 drains on SIGTERM and reports what it did.
    unsafe_sigterm(w2.0.id());
    let t = Instant::now();
    let line = wait_for(&w2_rx, "stopped;", 30, &mut w2_log);
    assert!(line.contains("dead letters"), "{line}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

fn unsafe_sigterm(pid: u32) {
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Live calls across workers: sipp places 6 concurrent calls through
/// Kamailio (deploy/kamailio, dispatcher round-robin) to two `callpulse sip`
/// workers that publish their events on NATS; `serve --nats` shows them all.
#[test]
fn kamailio_spreads_six_live_calls_over_two_sip_workers_and_serve_sees_them() {
    let _g = serial();
    models();
    for (tool, pkg) in [
        ("nats-server", "nats-server"),
        ("kamailio", "kamailio"),
        ("sipp", "sip-tester"),
    ] {
        assert!(
            Command::new(tool).arg("-v").output().is_ok(),
            "{tool} is needed (Debian package {pkg}; .ci/run installs it)"
        );
    }
    let d = tempfile::tempdir().unwrap();
    let (_nats, url) = nats_server(d.path(), 14_223);
    let url = url.as_str();
    let mut log = Vec::new();

    let mut serve = bin();
    serve.args([
        "serve",
        "--listen",
        "127.0.0.1:18090",
        "--no-history",
        "--nats",
        url,
    ]);
    let (_serve, serve_rx) = spawn_lines(serve);
    wait_for(&serve_rx, "serving on", 120, &mut log);
    std::thread::spawn(move || for _ in serve_rx {});

    let mut workers = Vec::new();
    for (i, port) in [5181, 5182].iter().enumerate() {
        let out = d.path().join(format!("w{i}"));
        let mut c = bin();
        c.args([
            "sip",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rtp-ports",
            &format!("{}-{}", 42_000 + 100 * i, 42_099 + 100 * i),
            "--nats",
            url,
            "--max-calls",
            "4",
            "--threads",
            &half_the_cores(),
        ])
        .arg("--out-dir")
        .arg(&out);
        let (p, rx) = spawn_lines(c);
        wait_for(&rx, "SIP on udp", 120, &mut log);
        // Keep each worker's log for a failure message.
        let wlog = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let keep = wlog.clone();
        std::thread::spawn(move || {
            for l in rx {
                keep.lock().unwrap().push(l);
            }
        });
        workers.push((p, out, wlog));
    }
    let list = d.path().join("dispatcher.list");
    std::fs::write(
        &list,
        "1 sip:127.0.0.1:5181 0 0 duid=w1;maxload=0\n1 sip:127.0.0.1:5182 0 0 duid=w2;maxload=0\n",
    )
    .unwrap();
    let mut kam = Command::new("kamailio");
    kam.args([
        "-f",
        root()
            .join("deploy/kamailio/kamailio.cfg")
            .to_str()
            .unwrap(),
        "-DD",
        "-E",
        "-n",
        "2",
    ])
    .arg("-A")
    .arg("LISTEN=udp:127.0.0.1:5180")
    .arg("-A")
    .arg(format!("DSLIST=\"{}\"", list.display()))
    .arg("-w")
    .arg(d.path());
    let (_kam, kam_rx) = spawn_lines(kam);
    let mut kam_log = Vec::new();
    wait_for(&kam_rx, "INFO", 30, &mut kam_log);
    std::thread::sleep(Duration::from_secs(2));

    // A WebSocket subscriber on serve's event stream, before the calls.
    let mut ws = common::net::Ws::connect("127.0.0.1:18090", "/v1/events");
    let hello = ws.next_text(Duration::from_secs(10)).expect("hello");
    assert!(hello.contains("\"hello\""), "{hello}");

    // Six calls at once, each playing 10 s of a fixture from a pcap.
    let mut sipps = Vec::new();
    for i in 0..6 {
        let dir = d.path().join(format!("call{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("call.wav");
        let src = ["call_friendly", "call_escalation", "call_calm"][i % 3];
        cut(&fixture(&format!("{src}.wav")), &wav, 10.0);
        let out = run(&[
            "rtp-send",
            wav.to_str().unwrap(),
            "--pcap",
            dir.join("call.pcap").to_str().unwrap(),
            "--codec",
            "pcmu",
            "--to",
            "127.0.0.1:6000,127.0.0.1:6002",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rep: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let packets = rep["streams"][0]["injected"]["packets"].as_u64().unwrap();
        let child = sipp_uac(
            &dir,
            "127.0.0.1:5180",
            packets,
            "0 8",
            ["agent", "customer"],
            5280 + i as u16,
            6300 + 100 * i as u16,
            &format!("kcall{i}"),
        );
        sipps.push(child);
    }
    for c in sipps {
        let out = c.wait_with_output().unwrap();
        while let Ok(l) = kam_rx.try_recv() {
            kam_log.push(l);
        }
        assert!(
            out.status.success(),
            "sipp failed ({:?}):\n{}\n{}\nkamailio: {kam_log:#?}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every call scored once, by one of the two workers; both had calls.
    let t = Instant::now();
    let per_worker = loop {
        let counts: Vec<Vec<String>> = workers
            .iter()
            .map(|(_, dir, _)| {
                std::fs::read_dir(dir)
                    .map(|r| {
                        r.filter_map(|e| e.ok())
                            .map(|e| e.path())
                            .filter(|p| {
                                std::fs::read_to_string(p)
                                    .is_ok_and(|b| b.contains("\"type\":\"summary\""))
                            })
                            .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        if counts.iter().map(|c| c.len()).sum::<usize>() >= 6 {
            break counts;
        }
        if t.elapsed() > Duration::from_secs(240) {
            let tails: Vec<Vec<String>> = workers
                .iter()
                .map(|(_, _, l)| {
                    let l = l.lock().unwrap();
                    l[l.len().saturating_sub(40)..].to_vec()
                })
                .collect();
            panic!("calls not all scored after 240 s: {counts:?}\nworker logs: {tails:#?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut all: Vec<&String> = per_worker.iter().flatten().collect();
    assert_eq!(all.len(), 6, "{per_worker:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "each call scored once: {per_worker:?}");
    assert!(
        per_worker.iter().all(|w| !w.is_empty()),
        "both workers got calls: {per_worker:?}"
    );
    // serve --nats lists them all, with their summaries.
    let t = Instant::now();
    loop {
        let (c, b) = common::net::get("127.0.0.1:18090", "/v1/calls", "");
        assert_eq!(c, 200);
        let j: serde_json::Value = serde_json::from_str(&b).unwrap();
        let recent: Vec<&str> = j["recent"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["summary"].is_object())
            .map(|c| c["call_id"].as_str().unwrap())
            .collect();
        if all.iter().all(|id| recent.contains(&id.as_str())) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "serve shows {recent:?}, want {all:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // ... and its event stream carried every call's turns and summary.
    let mut with_summary = std::collections::BTreeSet::new();
    let mut with_turns = std::collections::BTreeSet::new();
    let t = Instant::now();
    while with_summary.len() < 6 && t.elapsed() < Duration::from_secs(30) {
        let Some(m) = ws.next_text(Duration::from_secs(2)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&m).unwrap();
        let id = v["call_id"].as_str().unwrap_or("").to_string();
        match v["type"].as_str() {
            Some("summary") => {
                with_summary.insert(id);
            }
            Some("turn") => {
                with_turns.insert(id);
            }
            _ => {}
        }
    }
    let want: std::collections::BTreeSet<String> = all.iter().map(|s| s.to_string()).collect();
    assert_eq!(with_summary, want, "summaries on the WebSocket");
    assert_eq!(with_turns, want, "turns on the WebSocket");
    let (_, h) = common::net::get("127.0.0.1:18090", "/healthz", "");
    assert!(h.contains("\"nats\":\"connected\""), "{h}");
    let (_, m) = common::net::get("127.0.0.1:18090", "/metrics", "");
    for k in [
        "callpulse_nats_connected 1",
        "callpulse_queue_pending 0",
        "callpulse_dead_letters 0",
    ] {
        assert!(m.contains(k), "{k} in {m}");
    }
}

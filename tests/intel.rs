//! Conversation intelligence on real fixtures with the real models: shifts,
//! alerts, sarcasm, spans, prosody-driven emotion, redaction, the webhook,
//! evaluation and the HTML report.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::*;

fn of_type<'a>(ev: &'a [serde_json::Value], t: &str) -> Vec<&'a serde_json::Value> {
    ev.iter().filter(|e| e["type"] == t).collect()
}

/// Script turns voiced with the angry preset (amplitude >= 100).
fn angry_windows(script_file: &str) -> Vec<(f64, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(script_file)).unwrap()).unwrap();
    v["turns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["voice"]["amplitude"].as_u64().unwrap() >= 100)
        .map(|t| (t["start"].as_f64().unwrap(), t["end"].as_f64().unwrap()))
        .collect()
}

fn script_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// The scored turn that overlaps a script turn most (same channel).
fn turn_for<'a>(ev: &'a [serde_json::Value], st: &serde_json::Value) -> &'a serde_json::Value {
    let (s, e) = (st["start"].as_f64().unwrap(), st["end"].as_f64().unwrap());
    turns(ev)
        .into_iter()
        .filter(|t| t["leg"] == st["channel"])
        .max_by(|a, b| {
            let ov = |t: &serde_json::Value| {
                t["end"].as_f64().unwrap().min(e) - t["start"].as_f64().unwrap().max(s)
            };
            ov(a).total_cmp(&ov(b))
        })
        .expect("a turn for the script line")
}

#[test]
fn escalation_shifts_and_alerts_at_the_angry_turns_and_the_friendly_call_has_none() {
    let ev = score(&fixture("call_escalation.wav"), &[]);
    let angry = angry_windows("call_escalation.script.json");
    assert!(!angry.is_empty());
    let first_angry = angry[0].0;
    let in_angry = |at: f64| angry.iter().any(|(s, e)| at >= s - 0.3 && at <= *e);
    let shifts: Vec<_> = of_type(&ev, "shift")
        .into_iter()
        .filter(|s| s["role"] == "customer" && s["direction"] == "down")
        .collect();
    assert!(!shifts.is_empty(), "no customer shift down");
    for s in &shifts {
        let at = s["at"].as_f64().unwrap();
        assert!(in_angry(at), "shift at {at} is not at an angry turn: {s}");
        assert!(s["to"].as_f64().unwrap() < s["from"].as_f64().unwrap());
        assert!(!s["evidence_turns"].as_array().unwrap().is_empty());
    }
    let alerts = of_type(&ev, "alert");
    assert!(!alerts.is_empty(), "no alert");
    for a in &alerts {
        let at = a["at"].as_f64().unwrap();
        assert!(
            at >= first_angry - 0.3,
            "alert before the customer got angry: {a}"
        );
        assert!(in_angry(at), "alert at {at} is not at an angry turn: {a}");
    }
    // The customer calms down after the agent's offer: recovered, with that agent turn.
    let rec = of_type(&ev, "recovered");
    assert_eq!(rec.len(), 1, "{rec:?}");
    assert!(!rec[0]["agent_turns"].as_array().unwrap().is_empty());
    // The summary carries them.
    let s = ev.last().unwrap();
    assert_eq!(
        s["conversation"]["alerts"].as_array().unwrap().len(),
        alerts.len()
    );
    // Every customer shift, down and up (the recovery may shift up).
    let customer_shifts = of_type(&ev, "shift")
        .into_iter()
        .filter(|s| s["role"] == "customer")
        .count();
    assert_eq!(
        s["speakers"][1]["shifts"].as_u64().unwrap() as usize,
        customer_shifts
    );
    let share: f64 = s["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["talk_share"].as_f64().unwrap())
        .sum();
    assert!((share - 1.0).abs() < 0.01);
    let peak = &s["conversation"]["peak_frustration"];
    assert_eq!(peak["role"], "customer");
    assert!(in_angry(peak["start"].as_f64().unwrap()));
    // Every turn carries the intelligence fields.
    for t in turns(&ev) {
        assert!(t["emotion"]["label"].is_string());
        assert!(t["indicators"]["frustration"]["score"].is_number());
        assert!(["low", "moderate", "high", "very_high"]
            .contains(&t["intensity_band"].as_str().unwrap()));
        let s5 = t["score_5"].as_f64().unwrap();
        assert!((s5 - t["polarity"]["score"].as_f64().unwrap() * 5.0).abs() < 0.06);
        assert!(t["trend"].is_number());
    }

    let friendly = score(&fixture("call_friendly.wav"), &[]);
    assert!(
        of_type(&friendly, "shift").is_empty(),
        "{:?}",
        of_type(&friendly, "shift")
    );
    assert!(
        of_type(&friendly, "alert").is_empty(),
        "{:?}",
        of_type(&friendly, "alert")
    );
}

#[test]
fn sarcastic_lines_are_flagged_with_evidence_and_a_mixed_turn_has_opposite_spans() {
    let ev = score(&fixture("call_signals.wav"), &[]);
    let sc = script_json("call_signals.script.json");
    let mut sarcastic = 0;
    for st in sc["turns"].as_array().unwrap() {
        let t = turn_for(&ev, st);
        let s = t["indicators"]["sarcasm"]["score"].as_f64().unwrap();
        match st["polarity"].as_str().unwrap() {
            "sarcastic" => {
                sarcastic += 1;
                assert!(
                    s >= 0.5,
                    "not flagged: {} -> {}",
                    st["text"],
                    t["indicators"]
                );
                let evid = t["indicators"]["sarcasm"]["evidence"].as_array().unwrap();
                assert!(evid
                    .iter()
                    .any(|e| e.as_str().unwrap().starts_with("positive word")));
            }
            "mixed" => {
                let spans = t["spans"].as_array().unwrap();
                assert!(spans.len() >= 2, "{t}");
                let scores: Vec<f64> = spans
                    .iter()
                    .map(|s| s["polarity"]["score"].as_f64().unwrap())
                    .collect();
                assert!(
                    scores.iter().any(|s| *s > 0.1) && scores.iter().any(|s| *s < -0.1),
                    "spans of the mixed turn: {scores:?}"
                );
                let text = t["text"].as_str().unwrap();
                for sp in spans {
                    let (a, b) = (
                        sp["char_start"].as_u64().unwrap() as usize,
                        sp["char_end"].as_u64().unwrap() as usize,
                    );
                    let piece: String = text.chars().skip(a).take(b - a).collect();
                    assert_eq!(piece, sp["text"].as_str().unwrap());
                    assert!(sp["start"].as_f64().unwrap() >= t["start"].as_f64().unwrap() - 0.3);
                    assert!(sp["end"].as_f64().unwrap() <= t["end"].as_f64().unwrap() + 0.3);
                }
            }
            _ if st["speaker"] == "customer" => {
                assert!(
                    s < 0.5,
                    "sincere line flagged: {} -> {}",
                    st["text"],
                    t["indicators"]
                );
            }
            _ => {}
        }
    }
    assert_eq!(sarcastic, 2);
}

#[test]
fn arousal_raises_anger_and_frustration_and_a_quiet_slow_voice_raises_resignation() {
    let ev = score(&fixture("call_prosody.wav"), &[]);
    let sc = script_json("call_prosody.script.json");
    let lines = sc["turns"].as_array().unwrap();
    let (angry, resigned) = (turn_for(&ev, &lines[4]), turn_for(&ev, &lines[5]));
    assert_eq!(
        normalise(angry["text"].as_str().unwrap()),
        normalise(resigned["text"].as_str().unwrap()),
        "the comparison needs the same words"
    );
    let hot = |t: &serde_json::Value| {
        t["emotion"]["probs"]["anger"].as_f64().unwrap()
            + t["emotion"]["probs"]["frustration"].as_f64().unwrap()
    };
    assert!(
        hot(angry) > hot(resigned) + 0.1,
        "anger+frustration: angry {} resigned {}",
        hot(angry),
        hot(resigned)
    );
    let res = |t: &serde_json::Value| t["indicators"]["resignation"].as_f64().unwrap();
    assert!(res(resigned) > 0.5, "{}", resigned["indicators"]);
    assert!(res(angry) < 0.2, "{}", angry["indicators"]);
    let fr = |t: &serde_json::Value| t["indicators"]["frustration"]["score"].as_f64().unwrap();
    assert!(fr(angry) > fr(resigned));
    assert!(angry["indicators"]["frustration"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().starts_with("energy z")
            || e.as_str().unwrap().starts_with("pitch z")));
}

#[test]
fn redaction_removes_a_spoken_card_number_and_email_from_every_field() {
    let plain = score(&fixture("call_signals.wav"), &[]);
    let red = score(&fixture("call_signals.wav"), &["--redact"]);
    let sc = script_json("call_signals.script.json");
    let lines = sc["turns"].as_array().unwrap();
    let card_line = lines
        .iter()
        .find(|t| t["text"].as_str().unwrap().contains("nine two nine"))
        .unwrap();
    let mail_line = lines
        .iter()
        .find(|t| t["text"].as_str().unwrap().contains("gmail"))
        .unwrap();
    // Without redaction the digits are there (so the test means something).
    let digits = |s: &str| s.chars().filter(|c| c.is_ascii_digit()).count();
    assert!(digits(turn_for(&plain, card_line)["text"].as_str().unwrap()) >= 8);
    let card = turn_for(&red, card_line);
    let text = card["text"].as_str().unwrap();
    assert!(text.contains("[CARD_NUMBER]"), "{text}");
    assert_eq!(digits(text), 0, "{text}");
    assert_eq!(card["redacted"], serde_json::json!(["card_number"]));
    for w in card["words"].as_array().unwrap() {
        assert_eq!(digits(w["word"].as_str().unwrap()), 0, "{w}");
    }
    for sp in card["spans"].as_array().unwrap() {
        assert_eq!(digits(sp["text"].as_str().unwrap()), 0);
    }
    let mail = turn_for(&red, mail_line);
    assert!(
        mail["text"].as_str().unwrap().contains("[EMAIL]"),
        "{}",
        mail["text"]
    );
    assert!(!mail["text"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("gmail"));
}

/// A local HTTP server that records POST bodies and answers 500 to the first one.
fn hook_server() -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(false).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        let mut n = 0;
        l.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let mut idle_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut req = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let k = c.read(&mut buf).unwrap_or(0);
                        if k == 0 {
                            break;
                        }
                        req.extend_from_slice(&buf[..k]);
                        let s = String::from_utf8_lossy(&req).to_string();
                        if let Some(h) = s.find("\r\n\r\n") {
                            let len: usize = s
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length").then_some(v)
                                })
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if req.len() >= h + 4 + len {
                                if n > 0 {
                                    bodies.push(s[h + 4..].to_string());
                                }
                                break;
                            }
                        }
                    }
                    let status = if n == 0 { "500 Busy" } else { "200 OK" };
                    n += 1;
                    let _ = c.write_all(
                        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                    );
                    idle_since = std::time::Instant::now();
                }
                Err(_) => {
                    if !bodies.is_empty() && idle_since.elapsed() > Duration::from_secs(5) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        bodies
    });
    (port, t)
}

#[test]
fn alerts_are_posted_to_the_webhook_with_a_retry() {
    models();
    let (port, server) = hook_server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[escalation]\nwebhook = \"http://127.0.0.1:{port}/alerts\"\nwebhook_timeout_ms = 2000\nwebhook_retries = 2\n"
        ),
    )
    .unwrap();
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "score",
        fixture("call_escalation.wav").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out.stdout);
    let alerts = of_type(&ev, "alert");
    let bodies = server.join().unwrap();
    assert_eq!(bodies.len(), alerts.len(), "{bodies:?}");
    for (b, a) in bodies.iter().zip(&alerts) {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(&v, *a);
    }
    let s = ev.last().unwrap();
    assert_eq!(
        s["stats"]["alerts_posted"].as_u64().unwrap() as usize,
        alerts.len()
    );
    assert_eq!(s["stats"]["alerts_post_failed"], 0);
}

#[test]
fn bad_rules_are_refused_with_the_rule_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[[escalation.rules]]\nid = \"too-angry\"\nrole = \"customer\"\nmetric = \"anger\"\nop = \">=\"\nthreshold = 7\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "score",
        fixture("jfk.wav").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("too-angry") && err.contains("threshold"),
        "{err}"
    );
}

#[test]
fn eval_reports_calibration_emotion_and_a_call_against_its_script() {
    models();
    let out = run(&["eval", "polarity", "yelp", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ece = r["ece"].as_f64().unwrap();
    assert!((0.0..0.2).contains(&ece), "{ece}");
    assert!(r["binary_accuracy"].as_f64().unwrap() > 0.8);

    let out = run(&[
        "eval",
        "emotion",
        root().join("data/support_heldout.jsonl").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["labels"].as_array().unwrap().len(), 6);
    assert!(r["n"].as_u64().unwrap() >= 360);

    let dir = tempfile::tempdir().unwrap();
    let events_file = dir.path().join("call.jsonl");
    let out = run(&[
        "score",
        fixture("call_escalation.wav").to_str().unwrap(),
        "-o",
        events_file.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success());
    let out = run(&[
        "eval",
        "call",
        events_file.to_str().unwrap(),
        "--labels",
        fixture("call_escalation.script.json").to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["matched"], 10);
    assert_eq!(r["unmatched"], 0);
    let conf = r["polarity_confusion"].as_array().unwrap();
    let total: u64 = conf
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 10);
    let acc = r["polarity_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let ev_dir = tempfile::tempdir().unwrap();
    let events_file = ev_dir.path().join("call.jsonl");
    models();
    let out = run(&[
        "score",
        fixture("call_escalation.wav").to_str().unwrap(),
        "-o",
        events_file.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success());
    let html = ev_dir.path().join("report.html");
    let out = run(&[
        "report",
        events_file.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing is fetched from anywhere.
    for bad in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script src",
        "@import",
    ] {
        assert!(!page.contains(bad), "report references '{bad}'");
    }
    assert!(page.contains("<svg id=\"timeline\""));
    assert!(page.contains("class=\"alert-mark\"") && page.contains("class=\"shift-mark\""));

    let browser = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromium is installed by .ci/run");
    let profile = tempfile::tempdir().unwrap();
    let shot = ev_dir.path().join("report.png");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ];
    let url = format!("file://{}", html.display());
    let out = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--window-size=1100,1400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((w, h), (1100, 1400));
    assert!(
        png.len() > 30_000,
        "a blank page would compress to almost nothing: {} bytes",
        png.len()
    );
    // The rendered DOM has the chart, the marks and the transcript.
    let out = Command::new(browser)
        .args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("turn-dot"), "chart dots missing");
    assert!(dom.contains("alert-mark") && dom.contains("ALERT"));
    assert!(dom.contains("cancel my account"));
    // Keep the screenshot where a person can look at it.
    let keep = root().join("target").join("report-escalation.png");
    let _ = std::fs::copy(&shot, keep);
}

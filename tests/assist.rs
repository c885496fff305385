//! Agent assist, agent conduct, chat and e-mail input, and insights across
//! calls (issue 15): real models on the scripted fixtures and on generated
//! written conversations.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

fn kinds(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?");
            match t {
                "assist" => format!("assist:{}", e["hint_id"].as_str().unwrap()),
                "alert" => format!("alert:{}", e["rule_id"].as_str().unwrap()),
                t => t.to_string(),
            }
        })
        .collect()
}

fn summary(ev: &[Value]) -> &Value {
    ev.iter()
        .find(|e| e["type"] == "summary")
        .expect("a summary")
}

fn read_events(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn hints_come_before_the_alert_on_talk_over_and_not_on_the_friendly_call() {
    models();
    let d = tempfile::tempdir().unwrap();
    let out = run(&[
        "score",
        "--quiet",
        fixture("call_escalation.wav").to_str().unwrap(),
        fixture("call_friendly.wav").to_str().unwrap(),
        fixture("call_talkover.wav").to_str().unwrap(),
        "--out-dir",
        d.path().to_str().unwrap(),
        "--agent-id",
        "alex",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Escalation: a hint when the customer first turns, before any alert.
    let ev = read_events(&d.path().join("call_escalation.jsonl"));
    let k = kinds(&ev);
    let first_hint = k
        .iter()
        .position(|x| x.starts_with("assist:"))
        .expect("a hint");
    let first_alert = k
        .iter()
        .position(|x| x.starts_with("alert:"))
        .expect("an alert");
    assert!(first_hint < first_alert, "{k:?}");
    assert_eq!(k[first_hint], "assist:acknowledge-frustration", "{k:?}");
    let hint = &ev[first_hint];
    let alert = &ev[first_alert];
    assert!(
        hint["turn_id"].as_u64() < alert["turn_id"].as_u64(),
        "{hint} {alert}"
    );
    assert_eq!(hint["tone"], "corrective");
    assert_eq!(hint["agent_leg"], 0);
    assert_eq!(hint["evidence"]["metric"], "frustration");
    assert!(hint["evidence"]["value"].as_f64().unwrap() >= 0.5, "{hint}");
    // The hint is about a customer turn.
    let turn = ev
        .iter()
        .find(|e| e["type"] == "turn" && e["turn_id"] == hint["turn_id"])
        .unwrap();
    assert_eq!(turn["role"], "customer");
    let s = summary(&ev);
    assert_eq!(s["schema"], "1.6");
    assert_eq!(s["meta"]["agent_id"], "alex");
    assert!(s["meta"]["started_unix_ms"].as_u64().is_some());
    let hints = ev.iter().filter(|e| e["type"] == "assist").count();
    assert_eq!(
        s["conversation"]["assists"].as_array().unwrap().len(),
        hints
    );
    // Conduct: from the turns themselves.
    let c = &s["conduct"];
    let agent_turns: Vec<&Value> = ev
        .iter()
        .filter(|e| e["type"] == "turn" && e["role"] == "agent")
        .collect();
    assert_eq!(c["turns"].as_u64().unwrap() as usize, agent_turns.len());
    let empathic = agent_turns
        .iter()
        .filter(|t| t["indicators"]["empathy"]["score"].as_f64().unwrap() >= 0.5)
        .count();
    assert_eq!(c["empathy_turns"].as_u64().unwrap() as usize, empathic);
    assert!(
        empathic >= 1,
        "'I understand, and I will gladly fix this for you' acknowledges"
    );
    let cust: Vec<f64> = ev
        .iter()
        .filter(|e| e["type"] == "turn" && e["role"] == "customer")
        .map(|t| t["polarity"]["score"].as_f64().unwrap())
        .collect();
    let start = (cust[0] + cust[1]) / 2.0;
    let end = (cust[cust.len() - 2] + cust[cust.len() - 1]) / 2.0;
    assert!(
        (c["customer_start"].as_f64().unwrap() - start).abs() < 2e-3,
        "{c}"
    );
    assert!(
        (c["customer_end"].as_f64().unwrap() - end).abs() < 2e-3,
        "{c}"
    );
    assert!(
        c["recovery"].as_f64().unwrap() > 0.0,
        "the customer ends calmer: {c}"
    );
    assert_eq!(
        c["customer_negative_turns"].as_u64().unwrap() as usize,
        ev.iter()
            .filter(|e| e["type"] == "turn"
                && e["role"] == "customer"
                && e["polarity"]["label"] == "negative")
            .count()
    );
    assert!(
        c["hints_positive"].as_u64().unwrap() >= 1,
        "the recovery is praised: {c}"
    );

    // Friendly: nothing but positive reinforcement.
    let ev = read_events(&d.path().join("call_friendly.jsonl"));
    let corrective: Vec<&Value> = ev
        .iter()
        .filter(|e| e["type"] == "assist" && e["tone"] != "positive")
        .collect();
    assert!(corrective.is_empty(), "{corrective:?}");
    assert_eq!(summary(&ev)["conduct"]["hints_corrective"], 0);

    // Talk-over: the agent cuts in three times.
    let ev = read_events(&d.path().join("call_talkover.jsonl"));
    let h = ev
        .iter()
        .find(|e| e["type"] == "assist" && e["hint_id"] == "talk-over")
        .unwrap_or_else(|| panic!("no talk-over hint: {:?}", kinds(&ev)));
    assert_eq!(h["evidence"]["metric"], "interruptions");
    assert!(h["evidence"]["value"].as_f64().unwrap() >= 2.0, "{h}");
    assert!(
        h["message"].as_str().unwrap().contains("talked over"),
        "{h}"
    );
    let c = &summary(&ev)["conduct"];
    assert!(c["interruptions"].as_u64().unwrap() >= 2, "{c}");
    // The report shows hints and the conduct block.
    let html = d.path().join("t.html");
    let out = run(&[
        "report",
        d.path().join("call_talkover.jsonl").to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let page = std::fs::read_to_string(html).unwrap();
    assert!(page.contains("id=\"conduct\"") && page.contains("HINT to the agent talk-over"));
}

#[test]
fn a_chat_escalation_and_an_e_mail_thread_go_through_the_same_analysis() {
    models();
    let ev = score(
        &root().join("tests/fixtures/chat_escalation.txt"),
        &["--text"],
    );
    let k = kinds(&ev);
    let turns: Vec<&Value> = ev.iter().filter(|e| e["type"] == "turn").collect();
    assert_eq!(turns.len(), 11);
    assert!(turns.iter().all(|t| t["channel"] == "chat"));
    let shift = ev
        .iter()
        .find(|e| e["type"] == "shift" && e["role"] == "customer" && e["direction"] == "down")
        .unwrap_or_else(|| panic!("no downward shift: {k:?}"));
    let alert = ev
        .iter()
        .position(|e| e["type"] == "alert" && e["rule_id"] == "customer-frustrated")
        .unwrap_or_else(|| panic!("no alert: {k:?}"));
    let hint = k
        .iter()
        .position(|x| x == "assist:acknowledge-frustration")
        .unwrap_or_else(|| panic!("no hint: {k:?}"));
    assert!(hint < alert, "{k:?}");
    assert!(k.contains(&"assist:manager-request".to_string()), "{k:?}");
    assert!(shift["turn_id"].as_u64() <= ev[alert]["turn_id"].as_u64());
    // Without audio: no prosody, and the evidence says so.
    let angry = turns
        .iter()
        .find(|t| t["polarity"]["label"] == "negative")
        .unwrap();
    let evidence: Vec<&str> = angry["indicators"]["frustration"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        evidence.contains(&"text only (chat: no prosody)"),
        "{evidence:?}"
    );
    assert!(angry["intent"]["label"].is_string());
    // Times from the [HH:MM:SS] stamps.
    assert_eq!(turns[1]["start"], 35.0);
    let s = summary(&ev);
    assert_eq!(s["meta"]["channel"], "chat");
    assert_eq!(s["conduct"]["dead_air_s"], 0.0);
    assert!(!s["topics"].as_array().unwrap().is_empty());

    // An e-mail thread: one message per turn, quotes and signature gone.
    let ev = score(&root().join("tests/fixtures/email_thread.eml"), &["--text"]);
    let turns: Vec<&Value> = ev.iter().filter(|e| e["type"] == "turn").collect();
    let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["customer", "agent", "customer"]);
    for t in &turns {
        let text = t["text"].as_str().unwrap();
        assert!(!text.contains('>') && !text.contains("wrote:"), "{text}");
    }
    assert_eq!(
        turns[2]["text"],
        "This is not good enough. I want a refund today, not another excuse."
    );
    assert_eq!(turns[2]["polarity"]["label"], "negative");
    // Mon, 30 Nov 2026 09:12:00 +0000.
    assert_eq!(
        summary(&ev)["meta"]["started_unix_ms"],
        1_796_029_920_000u64
    );
    assert_eq!(turns[1]["start"], 2.0 * 3600.0 + 28.0 * 60.0);
    // A transcript that is neither gets a named error and no model load.
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.txt");
    std::fs::write(&bad, "hello there\nno roles here\n").unwrap();
    let out = run(&["score", "--text", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("agent:"), "{err}");
}

#[test]
fn assist_rules_come_from_the_config_and_bad_rules_are_refused() {
    models();
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[assist]\ndefault_rules = false\n[[assist.rules]]\nid = \"calm-them\"\ntrigger = \"customer_frustration\"\nthreshold = 0.4\nseverity = \"high\"\nmessage = \"Calm them down ({value})\"\n",
    )
    .unwrap();
    let chat = root().join("tests/fixtures/chat_escalation.txt");
    let ev = score(&chat, &["--text", "--config", cfg.to_str().unwrap()]);
    let hints: Vec<&Value> = ev.iter().filter(|e| e["type"] == "assist").collect();
    assert!(!hints.is_empty());
    assert!(
        hints.iter().all(|h| h["hint_id"] == "calm-them"),
        "{hints:?}"
    );
    assert_eq!(hints[0]["severity"], "high");
    assert!(hints[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("Calm them down (0."));
    std::fs::write(
        &cfg,
        "[[assist.rules]]\nid = \"too-loud\"\ntrigger = \"dead_air\"\nthreshold = -3\nmessage = \"x\"\n",
    )
    .unwrap();
    let out = run(&[
        "--config",
        cfg.to_str().unwrap(),
        "score",
        "--text",
        chat.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("too-loud") && err.contains("threshold"),
        "{err}"
    );
}

/// A generated conversation: the agent, the topic line, and how it goes.
fn conversation(agent: &str, topic: &str, outcome: usize, k: usize) -> String {
    let opening = [
        "Hello, thanks for contacting support. How can I help?",
        "Hi, you are through to customer care, what can I do for you?",
    ][k % 2];
    let problem = match topic {
        "billing" => "I was charged twice for my subscription this month.",
        "delivery" => "My parcel was due last Tuesday and it still has not arrived.",
        "fault" => "My internet keeps dropping every evening since the weekend.",
        _ => "I cannot log in to my account, it says my password is wrong.",
    };
    let mut lines = vec![
        format!("agent: {opening}"),
        format!("customer: Hi. {problem}"),
        "agent: Let me check that for you, one moment please.".to_string(),
    ];
    match outcome {
        // Angry, then won back.
        0 => lines.extend([
            "customer: This is the third time I have had to contact you about this, it is ridiculous.".to_string(),
            "customer: I am really fed up, nobody ever fixes anything.".to_string(),
            "agent: I completely understand your frustration and I am sorry. I have fixed it and added a credit to your account.".to_string(),
            "customer: Thank you, that is great, I really appreciate your help.".to_string(),
        ]),
        // Angry to the end.
        1 => lines.extend([
            "customer: This is absolutely unacceptable, you have wasted hours of my time.".to_string(),
            "agent: I can open a ticket, it will take five working days.".to_string(),
            "customer: Five days? That is a joke. I want to cancel and speak to a manager.".to_string(),
            "customer: Terrible service, I am furious.".to_string(),
        ]),
        // Calm and pleasant.
        _ => lines.extend([
            "customer: No problem, thanks for looking into it.".to_string(),
            "agent: All sorted, you will see the change by tomorrow.".to_string(),
            "customer: Wonderful, thank you so much for the quick help.".to_string(),
        ]),
    }
    lines.push("agent: You are welcome, have a lovely day.".to_string());
    let _ = agent;
    lines.join("\n") + "\n"
}

#[test]
fn insights_over_generated_calls_match_a_direct_count() {
    models();
    let d = tempfile::tempdir().unwrap();
    let (src, out) = (d.path().join("chats"), d.path().join("scored"));
    std::fs::create_dir_all(&src).unwrap();
    let agents = ["ana", "ben", "chen", "dara"];
    let topics = ["billing", "delivery", "fault", "login"];
    for i in 0..24 {
        let (agent, topic, outcome) = (agents[i % 4], topics[(i / 4) % 4], (i * 7 / 3) % 3);
        let day = 23 + i % 6; // 2026-11-23 .. 2026-11-28
        let name = format!("{agent}_2026-11-{day:02}_c{i:02}.txt");
        std::fs::write(src.join(name), conversation(agent, topic, outcome, i)).unwrap();
    }
    let r = run(&[
        "score",
        "--quiet",
        "--text",
        src.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
        "--name-pattern",
        "{agent}_{date}_*",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // The direct count, from the JSON lines.
    let mut calls = 0;
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
    let mut alerts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut escalated, mut negative, mut hints) = (0, 0, 0);
    let mut topic_calls: BTreeMap<String, usize> = BTreeMap::new();
    for f in std::fs::read_dir(&out).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let ev = read_events(&p);
        calls += 1;
        let s = summary(&ev);
        *per_agent
            .entry(s["meta"]["agent_id"].as_str().unwrap().into())
            .or_default() += 1;
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        *per_day
            .entry(format!(
                "2026-11-{}",
                &name.split('_').nth(1).unwrap()[8..10]
            ))
            .or_default() += 1;
        let mut seen = Vec::new();
        let mut esc = false;
        for a in ev.iter().filter(|e| e["type"] == "alert") {
            let rule = a["rule_id"].as_str().unwrap().to_string();
            let e = alerts.entry(rule.clone()).or_default();
            e.0 += 1;
            if !seen.contains(&rule) {
                e.1 += 1;
                seen.push(rule);
            }
            esc |= a["severity"] != "low";
        }
        escalated += usize::from(esc);
        negative += usize::from(s["conduct"]["customer_end"].as_f64().unwrap() < -0.2);
        hints += ev.iter().filter(|e| e["type"] == "assist").count();
        for t in s["topics"].as_array().unwrap() {
            *topic_calls
                .entry(t["topic"].as_str().unwrap().into())
                .or_default() += 1;
        }
    }
    assert_eq!(calls, 24);
    assert!(negative > 0 && negative < 24, "outcomes vary: {negative}");
    assert!(!alerts.is_empty());

    let r = run(&["insights", out.to_str().unwrap(), "--json", "--by", "agent"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    let o = &j["overall"];
    assert_eq!(o["calls"], 24);
    assert_eq!(
        o["escalation"]["count"].as_u64().unwrap() as usize,
        escalated
    );
    assert_eq!(o["negative"]["count"].as_u64().unwrap() as usize, negative);
    assert_eq!(o["hints"].as_u64().unwrap() as usize, hints);
    let lo = o["negative"]["ci95"][0].as_f64().unwrap();
    let hi = o["negative"]["ci95"][1].as_f64().unwrap();
    let share = negative as f64 / 24.0;
    assert!(lo < share && share < hi, "{lo} {share} {hi}");
    for g in j["groups"].as_array().unwrap() {
        assert_eq!(
            g["outcomes"]["calls"].as_u64().unwrap() as usize,
            per_agent[g["key"].as_str().unwrap()],
            "{g}"
        );
    }
    for g in j["trend"].as_array().unwrap() {
        assert_eq!(
            g["outcomes"]["calls"].as_u64().unwrap() as usize,
            per_day[g["key"].as_str().unwrap()],
            "{g}"
        );
    }
    let by_rule: BTreeMap<String, (usize, usize)> = j["alerts_by_rule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_string(),
                (
                    r["alerts"].as_u64().unwrap() as usize,
                    r["calls"].as_u64().unwrap() as usize,
                ),
            )
        })
        .collect();
    assert_eq!(by_rule, alerts);
    for t in j["topics"].as_array().unwrap() {
        assert_eq!(
            t["calls"].as_u64().unwrap() as usize,
            topic_calls[t["topic"].as_str().unwrap()]
        );
    }
    // Filters: two days, one agent.
    let r = run(&[
        "insights",
        out.to_str().unwrap(),
        "--json",
        "--since",
        "2026-11-24",
        "--until",
        "2026-11-25",
    ]);
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        j["overall"]["calls"].as_u64().unwrap() as usize,
        per_day["2026-11-24"] + per_day["2026-11-25"]
    );
    let r = run(&[
        "insights",
        out.to_str().unwrap(),
        "--json",
        "--agent",
        "ben",
    ]);
    let j: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(
        j["overall"]["calls"].as_u64().unwrap() as usize,
        per_agent["ben"]
    );
    // The HTML report renders its charts in headless Chromium.
    let html = d.path().join("insights.html");
    let r = run(&[
        "insights",
        out.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(r.status.success());
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("<circle class=\"point\"").count(),
        per_day.len()
    );
    assert!(page.contains("id=\"topics\"") && page.contains("id=\"agents\""));
    let png = d.path().join("insights.png");
    let shot = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1100,1400",
            &format!("--user-data-dir={}", d.path().join("profile").display()),
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("chromium is needed (Debian package chromium; .ci/run installs it)");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    std::fs::copy(&png, root().join("target/insights-report.png")).unwrap();
    // Bad input: a file that is not scored output.
    let bad = d.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"type\":\"summary\",\"x\":1}\n").unwrap();
    let r = run(&["insights", bad.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("line 1"));
}

//! End-to-end scoring on real fixtures with the real models.

mod common;

use common::*;

#[test]
fn jfk_transcript_has_its_known_words() {
    let ev = score(&fixture("jfk.wav"), &[]);
    let text: String = turns(&ev)
        .iter()
        .map(|t| t["text"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let words = normalise(&text);
    for w in [
        "fellow",
        "americans",
        "ask",
        "not",
        "country",
        "do",
        "for",
        "you",
    ] {
        assert!(words.iter().any(|x| x == w), "'{w}' missing from: {text}");
    }
    // Every turn has word times inside the turn, in order.
    for t in turns(&ev) {
        let ws = t["words"].as_array().unwrap();
        assert!(!ws.is_empty());
        let mut last = 0.0;
        for w in ws {
            let (s, e) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
            assert!(s >= last - 0.05 && e >= s, "word times out of order: {w}");
            last = s;
        }
    }
    let summary = ev.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["speakers"][0]["role"], "unknown");
}

fn check_scripted_call(file: &str, script_file: &str, max_turn_wer: f64) -> Vec<serde_json::Value> {
    let ev = score(&fixture(file), &[]);
    let sc = script(script_file);
    let got = turns(&ev);
    assert_eq!(
        got.len(),
        sc.turns.len(),
        "turn count: got {:?}",
        got.iter().map(|t| t["text"].clone()).collect::<Vec<_>>()
    );
    // Both roles appear.
    for role in ["agent", "customer"] {
        assert!(got.iter().any(|t| t["role"] == role), "no {role} turn");
    }
    for (t, s) in got.iter().zip(&sc.turns) {
        let text = t["text"].as_str().unwrap();
        assert_eq!(t["role"], s.speaker.as_str(), "role of '{}'", s.text);
        assert_eq!(t["leg"].as_u64().unwrap(), s.channel as u64);
        let (start, end) = (t["start"].as_f64().unwrap(), t["end"].as_f64().unwrap());
        assert!(
            (start - s.start).abs() <= 0.5,
            "start {start} vs script {} ('{}')",
            s.start,
            s.text
        );
        assert!(
            (end - s.end).abs() <= 0.5,
            "end {end} vs script {} ('{}')",
            s.end,
            s.text
        );
        let w = wer(&s.text, text);
        assert!(
            w <= max_turn_wer,
            "WER {w:.2} > {max_turn_wer}: '{}' vs '{text}'",
            s.text
        );
    }
    ev
}

/// espeak amplitude of the script line with `text`.
fn sc_voice_amplitude(text: &str, script_file: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(script_file)).unwrap()).unwrap();
    v["turns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["text"] == text)
        .and_then(|t| t["voice"]["amplitude"].as_u64())
        .unwrap_or(0)
}

#[test]
fn escalation_call_matches_its_script_and_the_angry_turns_are_negative() {
    let ev = check_scripted_call("call_escalation.wav", "call_escalation.script.json", 0.15);
    let sc = script("call_escalation.script.json");
    let got = turns(&ev);
    let mut angry = 0;
    for (t, s) in got.iter().zip(&sc.turns) {
        if s.speaker == "customer" && s.polarity == "negative" {
            angry += 1;
            assert_eq!(
                t["polarity"]["label"], "negative",
                "angry turn not negative: {}",
                t["text"]
            );
            // The turns voiced angry (loudest preset) must be clearly negative;
            // the merely frustrated one only needs the negative label.
            let loud = sc_voice_amplitude(&s.text, "call_escalation.script.json") >= 100;
            if loud {
                assert!(
                    t["polarity"]["score"].as_f64().unwrap() < -0.3,
                    "angry turn only mildly negative: {}",
                    t["polarity"]["score"]
                );
            }
        }
    }
    assert!(angry >= 3);
    // The angry customer turns are louder than the calm ones and register as arousal.
    let cust: Vec<_> = got
        .iter()
        .zip(&sc.turns)
        .filter(|(_, s)| s.speaker == "customer")
        .collect();
    let calm_e = cust[0].0["prosody"]["energy_db_mean"].as_f64().unwrap();
    let angry_max = cust
        .iter()
        .filter(|(_, s)| s.polarity == "negative")
        .map(|(t, _)| t["prosody"]["energy_db_mean"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert!(
        angry_max > calm_e + 3.0,
        "angry {angry_max} dB vs calm {calm_e} dB"
    );
    let summary = ev.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let customer = summary["speakers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "customer")
        .unwrap();
    assert!(customer["mean_sentiment"].as_f64().unwrap() < 0.0);
    assert_eq!(customer["turns"], 5);
}

#[test]
fn friendly_call_matches_its_script_and_the_friendly_turns_are_positive() {
    let ev = check_scripted_call("call_friendly.wav", "call_friendly.script.json", 0.15);
    let sc = script("call_friendly.script.json");
    for (t, s) in turns(&ev).iter().zip(&sc.turns) {
        // Customers' friendly lines read positive; an agent's scripted
        // greeting may read neutral (the role-aware heads read agents'
        // politeness formulas as neutral, see data/EMOTION_GUIDELINE.md).
        if s.polarity == "positive" && s.speaker == "customer" {
            assert_eq!(
                t["polarity"]["label"], "positive",
                "friendly turn not positive: {}",
                t["text"]
            );
        }
        // Known miss of the e5 heads (2026-11-30): the agent's "It is only a
        // little more per month with no setup fee" reads negative. The
        // customer, whose mood drives shifts and alerts, never does.
        if s.speaker == "customer" {
            assert_ne!(
                t["polarity"]["label"], "negative",
                "negative customer turn in a friendly call: {}",
                t["text"]
            );
        }
    }
    assert!(!ev
        .iter()
        .any(|e| e["type"] == "alert" || e["type"] == "shift"));
}

#[test]
fn mulaw_8khz_call_keeps_roles_and_turns() {
    // 8 kHz through G.711 mu-law: recognition degrades but turns, roles and
    // timing must hold.
    let ev = score(&fixture("call_escalation_8k.wav"), &[]);
    let sc = script("call_escalation_8k.script.json");
    let got = turns(&ev);
    assert_eq!(got.len(), sc.turns.len());
    let mut errors = 0.0;
    let mut words = 0.0;
    for (t, s) in got.iter().zip(&sc.turns) {
        assert_eq!(t["role"], s.speaker.as_str());
        assert!((t["start"].as_f64().unwrap() - s.start).abs() <= 0.5);
        let n = normalise(&s.text).len() as f64;
        errors += wer(&s.text, t["text"].as_str().unwrap()) * n;
        words += n;
    }
    let total = errors / words;
    assert!(
        total <= 0.4,
        "overall WER on the 8 kHz mu-law call: {total:.2}"
    );
}

#[test]
fn swapped_roles_follow_the_flag() {
    let ev = score(
        &fixture("call_friendly.wav"),
        &["--roles", "customer,agent", "--format", "jsonl"],
    );
    let first = turns(&ev)[0];
    assert_eq!(first["leg"], 0);
    assert_eq!(first["role"], "customer");
}

#[test]
fn ten_minute_file_is_scored_without_holding_its_audio() {
    // 16 loops of the escalation call at 48 kHz stereo: 10.6 min, 244 MB as f32.
    models();
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.wav");
    let mut r = hound::WavReader::open(fixture("call_escalation.wav")).unwrap();
    let samples: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&long, spec).unwrap();
    for _ in 0..16 {
        // Upsample 3x by repetition (the resampler filters it back down).
        for f in samples.chunks(2) {
            for _ in 0..3 {
                w.write_sample(f[0]).unwrap();
                w.write_sample(f[1]).unwrap();
            }
        }
    }
    w.finalize().unwrap();
    let out = run(&[
        "score",
        long.to_str().unwrap(),
        "--quiet",
        "--format",
        "jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = events(&out.stdout);
    let summary = ev.last().unwrap();
    let duration = summary["duration"].as_f64().unwrap();
    assert!(duration > 600.0, "duration {duration}");
    assert!(turns(&ev).len() >= 150, "turns {}", turns(&ev).len());
    let peak = summary["stats"]["peak_buffered_audio_s"].as_f64().unwrap();
    // Bounded by the queues, not by the file: well under a minute of audio in flight.
    assert!(peak < 30.0, "peak buffered audio {peak} s");
}

#[test]
fn silence_and_noise_invent_no_words() {
    // 5 s of digital silence, 10 s of white noise, 5 s of a low hum: no turn
    // may come out (no "Thanks for watching" on noise).
    models();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noise.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&p, spec).unwrap();
    let mut seed: u32 = 12345;
    for i in 0..20 * 16_000 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = ((seed >> 16) as f32 / 32768.0 - 1.0) * 0.05;
        let t = i as f32 / 16_000.0;
        let v = if t < 5.0 {
            0.0
        } else if t < 15.0 {
            noise
        } else {
            0.02 * (2.0 * std::f32::consts::PI * 120.0 * t).sin()
        };
        let s = (v * 32767.0) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let ev = score(&p, &[]);
    assert!(turns(&ev).is_empty(), "invented turns: {:?}", turns(&ev));
    let summary = ev.last().unwrap();
    assert_eq!(summary["turns"], 0);
    assert_eq!(summary["speakers"][0]["talk_time"], 0.0);
}

#[test]
fn g711_wav_recordings_score_like_their_pcm_decode() {
    // Regression: μ-law and A-law WAV files (format tags 7 and 6, the usual
    // call-recording formats) were refused. sox writes the G.711 file; its
    // turns must be the turns of the same audio as 16-bit PCM.
    let d = tempfile::tempdir().unwrap();
    let law = d.path().join("call-ulaw.wav");
    let pcm = d.path().join("call-pcm.wav");
    let src = fixture("call_escalation_8k.wav");
    let sox = |args: &[&std::ffi::OsStr]| {
        let st = std::process::Command::new("sox")
            .args(args)
            .status()
            .expect("sox is needed: apt-get install sox");
        assert!(st.success());
    };
    sox(&[
        src.as_os_str(),
        "-e".as_ref(),
        "u-law".as_ref(),
        law.as_os_str(),
    ]);
    sox(&[
        law.as_os_str(),
        "-e".as_ref(),
        "signed-integer".as_ref(),
        "-b".as_ref(),
        "16".as_ref(),
        pcm.as_os_str(),
    ]);
    let key = |ev: &[serde_json::Value]| {
        turns(ev)
            .iter()
            .map(|t| {
                (
                    t["role"].to_string(),
                    t["start"].to_string(),
                    t["text"].to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = key(&score(&law, &[]));
    assert!(a.len() >= 8, "{a:?}");
    assert_eq!(a, key(&score(&pcm, &[])));
}

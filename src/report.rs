//! Reports on a scored call: a self-contained HTML page (sentiment timeline
//! per speaker as inline SVG, the transcript coloured by polarity, shifts
//! and alerts marked) and the evaluation of a scored call against per-turn
//! labels.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::event::{Event, PolarityLabel, Role, SummaryEvent, TurnEvent};

/// Read the events of a JSON-lines file. Lines that are not events are
/// reported with their line number.
pub fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Event = serde_json::from_str(line).map_err(|e| {
            format!(
                "{} line {}: not a callpulse event ({e})",
                path.display(),
                i + 1
            )
        })?;
        out.push(e);
    }
    if out.is_empty() {
        return Err(format!("{}: no events", path.display()));
    }
    Ok(out)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn mmss(t: f64) -> String {
    let t = t.max(0.0);
    format!("{:02}:{:05.2}", (t / 60.0) as u64, t % 60.0)
}

fn role_colour(r: Role) -> &'static str {
    match r {
        Role::Agent => "#2563eb",
        Role::Customer => "#ea580c",
        Role::Unknown => "#6b7280",
    }
}

/// Background for a polarity score: red for negative, green for positive.
fn polarity_bg(score: f32) -> String {
    let a = (score.abs() * 0.45 + 0.05).min(0.5);
    if score < -0.15 {
        format!("rgba(220,38,38,{a:.2})")
    } else if score > 0.15 {
        format!("rgba(22,163,74,{a:.2})")
    } else {
        "rgba(107,114,128,0.10)".into()
    }
}

/// Render the events of one call as a self-contained HTML page.
pub fn render_html(events: &[Event]) -> String {
    let turns: Vec<&TurnEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::Turn(t) => Some(t),
            _ => None,
        })
        .collect();
    let summary: Option<&SummaryEvent> = events.iter().find_map(|e| match e {
        Event::Summary(s) => Some(s),
        _ => None,
    });
    let call_id = turns
        .first()
        .map(|t| t.call_id.clone())
        .or_else(|| summary.map(|s| s.call_id.clone()))
        .unwrap_or_default();
    let duration = summary
        .map(|s| s.duration)
        .unwrap_or_else(|| turns.iter().map(|t| t.end).fold(0.0, f64::max))
        .max(1.0);
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>callpulse report: {id}</title>
<style>
body{{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#111827;background:#fff}}
h1{{font-size:20px;margin:0 0 4px}} h2{{font-size:16px;margin:24px 0 8px}}
.muted{{color:#6b7280}} table{{border-collapse:collapse}} td,th{{padding:4px 8px;text-align:left;vertical-align:top}}
th{{border-bottom:1px solid #d1d5db;font-weight:600}} .turn td{{border-bottom:1px solid #f3f4f6}}
.role-agent{{color:#2563eb;font-weight:600}} .role-customer{{color:#ea580c;font-weight:600}} .role-unknown{{color:#6b7280;font-weight:600}}
.alert{{color:#b91c1c;font-weight:600}} .shift{{color:#7c3aed;font-weight:600}} .ok{{color:#15803d;font-weight:600}}
.badge{{display:inline-block;border-radius:8px;padding:0 6px;font-size:12px;background:#f3f4f6;margin-right:4px}}
.ev{{font-size:12px;color:#6b7280}} svg text{{font:11px system-ui,sans-serif}}
</style></head><body>
<h1>Call {id}</h1>
<div class="muted">{dur} · {n} turns{score}</div>
"#,
        id = esc(&call_id),
        dur = mmss(duration),
        n = turns.len(),
        score = summary
            .and_then(|s| s.score_5)
            .map(|v| format!(" · call score {v:+.1} on −5..+5"))
            .unwrap_or_default()
    );
    // Speakers.
    if let Some(s) = summary {
        h.push_str("<h2>Speakers</h2><table><tr><th>role</th><th>turns</th><th>talk</th><th>mean</th><th>min</th><th>last</th><th>trend</th><th>shifts</th><th>interruptions</th><th>emotions</th></tr>");
        for sp in &s.speakers {
            let f = |v: Option<f32>| v.map(|x| format!("{x:+.2}")).unwrap_or("–".into());
            let emos: Vec<String> = sp
                .emotions
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = write!(
                h,
                "<tr><td class=\"role-{r}\">{r}</td><td>{}</td><td>{:.1} s ({:.0}%)</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                sp.turns,
                sp.talk_time,
                sp.talk_share * 100.0,
                f(sp.mean_sentiment),
                f(sp.min_sentiment),
                f(sp.last_sentiment),
                f(sp.trend),
                sp.shifts,
                sp.interruptions,
                esc(&emos.join(", ")),
                r = sp.role.as_str()
            );
        }
        h.push_str("</table>");
    }
    // Timeline.
    let (w, ht, ml, mr, mt, mb) = (1000.0, 280.0, 40.0, 10.0, 20.0, 30.0);
    let x = |t: f64| ml + (t / duration) * (w - ml - mr);
    let y = |v: f32| mt + (1.0 - (v as f64 + 1.0) / 2.0) * (ht - mt - mb);
    let _ = write!(
        h,
        r##"<h2>Sentiment timeline</h2><svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" viewBox="0 0 {w} {ht}" role="img" aria-label="sentiment per speaker over time">
<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#e5e7eb"/>
<line x1="{ml}" x2="{xr}" y1="{y0}" y2="{y0}" stroke="#d1d5db" stroke-dasharray="4 3"/>
<text x="4" y="{yt}">+1</text><text x="4" y="{y0t}">0</text><text x="4" y="{yb}">−1</text>
"##,
        pw = w - ml - mr,
        ph = ht - mt - mb,
        xr = w - mr,
        y0 = y(0.0),
        yt = y(1.0) + 4.0,
        y0t = y(0.0) + 4.0,
        yb = y(-1.0),
    );
    // Time ticks every 10% of the call.
    for k in 0..=10 {
        let t = duration * k as f64 / 10.0;
        let _ = write!(
            h,
            r##"<text x="{}" y="{}" text-anchor="{}" fill="#6b7280">{}</text>"##,
            x(t),
            ht - 10.0,
            match k {
                0 => "start",
                10 => "end",
                _ => "middle",
            },
            mmss(t)
        );
    }
    let mut roles: Vec<(u8, Role)> = turns.iter().map(|t| (t.leg, t.role)).collect();
    roles.sort();
    roles.dedup();
    for (leg, role) in &roles {
        let mine: Vec<&&TurnEvent> = turns.iter().filter(|t| t.leg == *leg).collect();
        let c = role_colour(*role);
        let pts: Vec<String> = mine
            .iter()
            .filter_map(|t| {
                t.trend
                    .map(|v| format!("{:.1},{:.1}", x((t.start + t.end) / 2.0), y(v)))
            })
            .collect();
        if pts.len() > 1 {
            let _ = write!(
                h,
                r#"<polyline class="trend" data-role="{}" points="{}" fill="none" stroke="{c}" stroke-width="2" opacity="0.6"/>"#,
                role.as_str(),
                pts.join(" ")
            );
        }
        for t in mine {
            let _ = write!(
                h,
                r#"<circle class="turn-dot" data-role="{r}" cx="{:.1}" cy="{:.1}" r="5" fill="{c}"><title>{} {r}: {:+.2} {}</title></circle>"#,
                x((t.start + t.end) / 2.0),
                y(t.polarity.score),
                mmss(t.start),
                t.polarity.score,
                esc(&t.text),
                r = role.as_str()
            );
        }
    }
    for e in events {
        match e {
            Event::Shift(s) => {
                let xs = x(s.at);
                let _ = write!(
                    h,
                    r##"<g class="shift-mark"><line x1="{xs:.1}" x2="{xs:.1}" y1="{}" y2="{}" stroke="#7c3aed" stroke-dasharray="3 3"/><text x="{:.1}" y="{}" fill="#7c3aed">{} {}</text><title>{} shift {:?} {:+.2} → {:+.2}</title></g>"##,
                    mt,
                    ht - mb,
                    xs + 3.0,
                    mt + 12.0,
                    if s.direction == crate::event::Direction::Down {
                        "▼"
                    } else {
                        "▲"
                    },
                    s.role.as_str(),
                    s.role.as_str(),
                    s.direction,
                    s.from,
                    s.to,
                );
            }
            Event::Alert(a) => {
                let xa = x(a.at);
                let _ = write!(
                    h,
                    r##"<g class="alert-mark"><polygon points="{:.1},{} {:.1},{} {:.1},{}" fill="#dc2626"/><title>alert {} ({:?}) at {}</title></g>"##,
                    xa - 6.0,
                    mt + 2.0,
                    xa + 6.0,
                    mt + 2.0,
                    xa,
                    mt + 12.0,
                    esc(&a.rule_id),
                    a.severity,
                    mmss(a.at)
                );
            }
            _ => {}
        }
    }
    h.push_str("</svg>");
    let legend: Vec<String> = roles
        .iter()
        .map(|(_, r)| {
            format!(
                "<span style=\"color:{}\">● {}</span>",
                role_colour(*r),
                r.as_str()
            )
        })
        .collect();
    let _ = write!(
        h,
        "<div class=\"muted\">{} · dots: turn polarity, lines: mood trend · <span class=\"shift\">▼▲ shifts</span> · <span class=\"alert\">▲ alerts</span></div>",
        legend.join(" ")
    );
    // Events list.
    let marks: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Shift(s) => Some(format!(
                "<li class=\"shift\">{} {} mood shift {:?}: {:+.2} → {:+.2} (turns {:?})</li>",
                mmss(s.at),
                s.role.as_str(),
                s.direction,
                s.from,
                s.to,
                s.evidence_turns
            )),
            Event::Recovered(r) => Some(format!(
                "<li class=\"ok\">{} customer recovered {:+.2} → {:+.2} after agent turns {:?}</li>",
                mmss(r.at),
                r.from,
                r.to,
                r.agent_turns
            )),
            Event::Alert(a) => Some(format!(
                "<li class=\"alert\">{} ALERT {} ({:?}): {} (turns {:?})</li>",
                mmss(a.at),
                esc(&a.rule_id),
                a.severity,
                esc(&a.message),
                a.evidence_turns
            )),
            _ => None,
        })
        .collect();
    if !marks.is_empty() {
        let _ = write!(
            h,
            "<h2>Shifts and alerts</h2><ul id=\"marks\">{}</ul>",
            marks.join("")
        );
    }
    // Transcript.
    h.push_str("<h2>Transcript</h2><table id=\"transcript\"><tr><th>time</th><th>role</th><th>score</th><th>emotion</th><th>text</th></tr>");
    for t in &turns {
        let emo = t
            .emotion
            .as_ref()
            .map(|e| e.label.clone())
            .unwrap_or_default();
        let mut badges = String::new();
        if let Some(ind) = &t.indicators {
            if ind.frustration.score >= 0.5 {
                let _ = write!(
                    badges,
                    "<span class=\"badge\" title=\"{}\">frustration {:.2}</span>",
                    esc(&ind.frustration.evidence.join("; ")),
                    ind.frustration.score
                );
            }
            if ind.sarcasm.score >= 0.5 {
                let _ = write!(
                    badges,
                    "<span class=\"badge\" title=\"{}\">sarcasm {:.2}</span>",
                    esc(&ind.sarcasm.evidence.join("; ")),
                    ind.sarcasm.score
                );
            }
        }
        let body = if t.spans.len() > 1 {
            t.spans
                .iter()
                .map(|s| {
                    format!(
                        "<span class=\"span\" style=\"background:{}\" title=\"{:+.2}\">{}</span>",
                        polarity_bg(s.polarity.score),
                        s.polarity.score,
                        esc(&s.text)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            esc(&t.text)
        };
        let _ = write!(
            h,
            "<tr class=\"turn\" data-label=\"{lab}\" style=\"background:{bg}\"><td>{}</td><td class=\"role-{r}\">{r}</td><td>{:+.1}</td><td>{}</td><td>{body} {badges}</td></tr>",
            mmss(t.start),
            t.score_5,
            esc(&emo),
            lab = match t.polarity.label {
                PolarityLabel::Negative => "negative",
                PolarityLabel::Neutral => "neutral",
                PolarityLabel::Positive => "positive",
            },
            bg = polarity_bg(t.polarity.score),
            r = t.role.as_str()
        );
    }
    h.push_str("</table>");
    if let Some(s) = summary {
        let c = &s.conversation;
        let _ = write!(
            h,
            "<h2>Call</h2><div>overlap {:.1} s · non-talk {:.1} s · silences over 3 s: {} ({:.1} s, longest {:.1} s){}</div>",
            c.overlap_s,
            c.non_talk_s,
            c.long_silences,
            c.long_silence_s,
            c.longest_silence_s,
            c.peak_frustration
                .as_ref()
                .map(|p| format!(" · peak frustration {:.2} ({} at {})", p.score, p.role.as_str(), mmss(p.start)))
                .unwrap_or_default()
        );
    }
    h.push_str("<p class=\"muted\">Generated by callpulse. Scores are model estimates, not facts about people.</p></body></html>\n");
    h
}

/// The gold labels of a fixture script.
#[derive(Debug, serde::Deserialize)]
struct ScriptTurn {
    channel: u8,
    start: f64,
    end: f64,
    polarity: String,
    #[serde(default)]
    emotion: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Script {
    turns: Vec<ScriptTurn>,
}

/// Evaluation of a scored call against per-turn labels.
#[derive(Debug, Serialize)]
pub struct CallEval {
    /// Events file.
    pub file: String,
    /// Turns with a gold label.
    pub matched: usize,
    /// Turns of the call without one.
    pub unmatched: usize,
    /// Polarity label accuracy.
    pub polarity_accuracy: f64,
    /// Polarity macro-F1 over gold classes present.
    pub polarity_macro_f1: f64,
    /// Confusion, rows gold [negative, neutral, positive].
    pub polarity_confusion: [[usize; 3]; 3],
    /// Expected calibration error of the three-way probabilities.
    pub polarity_ece: f64,
    /// Emotion accuracy (turns with a gold emotion).
    pub emotion_accuracy: Option<f64>,
    /// Emotion pairs (gold, predicted).
    pub emotion_pairs: Vec<(String, String)>,
}

impl CallEval {
    /// Plain text.
    pub fn to_text(&self) -> String {
        let n = ["negative", "neutral", "positive"];
        let mut s = format!(
            "{}: {} turns with labels ({} without)\n  polarity accuracy {:.1}%, macro-F1 {:.3}, calibration error {:.3}\n  confusion (rows gold, columns predicted):\n  {:>10} {:>9} {:>9} {:>9}\n",
            self.file,
            self.matched,
            self.unmatched,
            self.polarity_accuracy * 100.0,
            self.polarity_macro_f1,
            self.polarity_ece,
            "",
            n[0],
            n[1],
            n[2]
        );
        for (i, r) in self.polarity_confusion.iter().enumerate() {
            s.push_str(&format!(
                "  {:>10} {:>9} {:>9} {:>9}\n",
                n[i], r[0], r[1], r[2]
            ));
        }
        if let Some(a) = self.emotion_accuracy {
            s.push_str(&format!(
                "  emotion accuracy {:.1}% over {} turns\n",
                a * 100.0,
                self.emotion_pairs.len()
            ));
        }
        s
    }
}

fn pidx(s: &str) -> Option<usize> {
    match s {
        "negative" => Some(0),
        "neutral" => Some(1),
        "positive" => Some(2),
        _ => None,
    }
}

/// Evaluate the turns of a scored call. Gold labels come from `script` (a
/// fixture script: each scored turn takes the label of the script turn on
/// the same channel it overlaps most) or, without one, from `label` and
/// `emotion_label` fields in the turn events themselves.
pub fn eval_call(events: &Path, script: Option<&Path>) -> Result<CallEval, String> {
    let text = std::fs::read_to_string(events)
        .map_err(|e| format!("cannot read {}: {e}", events.display()))?;
    let mut turns: Vec<(TurnEvent, serde_json::Value)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("{} line {}: {e}", events.display(), i + 1))?;
        if v.get("type").and_then(|t| t.as_str()) == Some("turn") {
            let t: TurnEvent = serde_json::from_value(v.clone())
                .map_err(|e| format!("{} line {}: {e}", events.display(), i + 1))?;
            turns.push((t, v));
        }
    }
    if turns.is_empty() {
        return Err(format!("{}: no turn events", events.display()));
    }
    let script: Option<Script> = match script {
        Some(p) => Some(
            serde_json::from_str(
                &std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            )
            .map_err(|e| format!("{}: not a fixture script ({e})", p.display()))?,
        ),
        None => None,
    };
    let mut conf = [[0usize; 3]; 3];
    let mut calib = Vec::new();
    let mut emo = Vec::new();
    let mut unmatched = 0;
    for (t, raw) in &turns {
        let (gold, gold_emo) = match &script {
            Some(s) => {
                let best = s
                    .turns
                    .iter()
                    .filter(|g| g.channel == t.leg)
                    .map(|g| (g, t.end.min(g.end) - t.start.max(g.start)))
                    .filter(|(_, ov)| *ov > 0.0)
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                match best {
                    Some((g, _)) => (pidx(&g.polarity), g.emotion.clone()),
                    None => (None, None),
                }
            }
            None => (
                raw.get("label").and_then(|l| l.as_str()).and_then(pidx),
                raw.get("emotion_label")
                    .and_then(|l| l.as_str())
                    .map(String::from),
            ),
        };
        let Some(g) = gold else {
            unmatched += 1;
            continue;
        };
        let pred = match t.polarity.label {
            PolarityLabel::Negative => 0,
            PolarityLabel::Neutral => 1,
            PolarityLabel::Positive => 2,
        };
        conf[g][pred] += 1;
        let pr = [
            t.polarity.probs.negative,
            t.polarity.probs.neutral,
            t.polarity.probs.positive,
        ];
        calib.push((pr[pred], pred == g));
        if let (Some(ge), Some(pe)) = (gold_emo, t.emotion.as_ref()) {
            emo.push((ge, pe.label.clone()));
        }
    }
    let matched: usize = conf.iter().flatten().sum();
    let f1 = crate::train::scores(&conf.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).1;
    let r4 = |v: f64| (v * 1e4).round() / 1e4;
    Ok(CallEval {
        file: events.display().to_string(),
        matched,
        unmatched,
        polarity_accuracy: r4(
            (0..3).map(|i| conf[i][i]).sum::<usize>() as f64 / matched.max(1) as f64
        ),
        polarity_macro_f1: r4(f1),
        polarity_confusion: conf,
        polarity_ece: r4(crate::train::ece(&calib, 10)),
        emotion_accuracy: (!emo.is_empty())
            .then(|| r4(emo.iter().filter(|(a, b)| a == b).count() as f64 / emo.len() as f64)),
        emotion_pairs: emo,
    })
}

//! The insights report as one HTML page with inline SVG charts (no
//! scripts, no external files): the trend of customer sentiment per day
//! with its 95% interval and the call volume, topics by negative share,
//! alerts by rule, and the agents' outcomes and conduct.

use std::fmt::Write;

use super::{By, MeanCi, Report, ShareCi};
use crate::report::esc;

fn pct(s: &ShareCi) -> String {
    match (s.share, s.ci95) {
        (Some(v), Some((a, b))) => format!(
            "{:.0}% <span class=\"ci\">({}/{}, {:.0}–{:.0}%)</span>",
            v * 100.0,
            s.count,
            s.of,
            a * 100.0,
            b * 100.0
        ),
        _ => "–".into(),
    }
}

fn mean(m: &MeanCi) -> String {
    match (m.mean, m.ci95) {
        (Some(v), Some((a, b))) => format!("{v:+.2} <span class=\"ci\">[{a:+.2}, {b:+.2}]</span>"),
        (Some(v), None) => format!("{v:+.2}"),
        _ => "–".into(),
    }
}

/// Customer sentiment at the end per day (dots and 95% whiskers on −1..1)
/// over the call volume (bars).
fn trend_svg(h: &mut String, r: &Report) {
    let g = &r.trend;
    let (w, ht, left, top, bottom) = (760.0, 260.0, 44.0, 16.0, 46.0);
    let plot_h = ht - top - bottom;
    let n = g.len().max(1) as f64;
    let step = (w - left - 10.0) / n;
    let max_calls = g.iter().map(|x| x.outcomes.calls).max().unwrap_or(1).max(1) as f64;
    let y = |v: f64| top + (1.0 - (v + 1.0) / 2.0) * plot_h;
    let _ = write!(
        h,
        r##"<h2>Trend</h2><svg id="trend" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" viewBox="0 0 {w} {ht}" role="img" aria-label="customer sentiment at the end of calls per day, with call volume">"##
    );
    for v in [-1.0, -0.5, 0.0, 0.5, 1.0] {
        let _ = write!(
            h,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="{}" /><text x="4" y="{:.1}">{v:+.1}</text>"##,
            w - 10.0,
            if v == 0.0 { "#9ca3af" } else { "#e5e7eb" },
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (i, gr) in g.iter().enumerate() {
        let x = left + step * (i as f64 + 0.5);
        let bh = gr.outcomes.calls as f64 / max_calls * plot_h * 0.4;
        let _ = write!(
            h,
            r##"<rect class="volume" x="{:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#dbeafe"><title>{} calls on {}</title></rect>"##,
            x - step * 0.35,
            top + plot_h - bh,
            step * 0.7,
            gr.outcomes.calls,
            esc(&gr.key)
        );
        let o = &gr.outcomes.sentiment_end;
        if let Some((a, b)) = o.ci95 {
            let _ = write!(
                h,
                r##"<line class="ci" x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#1d4ed8" />"##,
                y(a.clamp(-1.0, 1.0)),
                y(b.clamp(-1.0, 1.0))
            );
        }
        if let Some(m) = o.mean {
            let _ = write!(
                h,
                r##"<circle class="point" cx="{x:.1}" cy="{:.1}" r="4" fill="#1d4ed8"><title>{}: end sentiment {m:+.2} over {} calls</title></circle>"##,
                y(m),
                esc(&gr.key),
                o.n
            );
        }
        if g.len() <= 16 || i % (g.len() / 12 + 1) == 0 {
            let _ = write!(
                h,
                r##"<text x="{x:.1}" y="{:.1}" text-anchor="end" transform="rotate(-35 {x:.1} {:.1})">{}</text>"##,
                ht - bottom + 14.0,
                ht - bottom + 14.0,
                esc(&gr.key)
            );
        }
    }
    h.push_str("</svg><p class=\"ci\">Dots: mean customer sentiment over the last two customer turns, with its 95% interval; bars: calls per day.</p>");
}

/// One bar: its label, share, 95% interval and the note after it.
type BarRow = (String, f64, Option<(f64, f64)>, String);

/// Horizontal bars of shares with their 95% whiskers.
fn bars_svg(h: &mut String, id: &str, label: &str, rows: &[BarRow]) {
    let (w, row, left) = (900.0, 24.0, 190.0);
    let ht = row * rows.len() as f64 + 24.0;
    let span = w - left - 150.0;
    let _ = write!(
        h,
        r##"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{ht}" viewBox="0 0 {w} {ht}" role="img" aria-label="{}">"##,
        esc(label)
    );
    for (i, (name, v, ci, note)) in rows.iter().enumerate() {
        let yy = 8.0 + row * i as f64;
        let _ = write!(
            h,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{left}" y="{yy:.1}" width="{:.1}" height="{:.1}" fill="#f87171"><title>{}: {:.0}%</title></rect>"##,
            left - 6.0,
            yy + 13.0,
            esc(name),
            (v.clamp(0.0, 1.0) * span).max(1.0),
            row - 8.0,
            esc(name),
            v * 100.0
        );
        if let Some((a, b)) = ci {
            let _ = write!(
                h,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#7f1d1d" />"##,
                left + a * span,
                left + b * span,
                yy + (row - 8.0) / 2.0,
                yy + (row - 8.0) / 2.0
            );
        }
        let _ = write!(
            h,
            r##"<text x="{:.1}" y="{:.1}">{}</text>"##,
            left + span + 8.0,
            yy + 13.0,
            esc(note)
        );
    }
    h.push_str("</svg>");
}

/// The page's style, scoped to `.insights`.
const STYLE: &str = "<style>
.insights{font:14px system-ui,sans-serif;color:#111827;max-width:1100px}
.insights h1{font-size:20px} .insights h2{font-size:16px;margin-top:28px}
.insights table{border-collapse:collapse} .insights td,.insights th{border-bottom:1px solid #e5e7eb;padding:4px 10px;text-align:left;vertical-align:top}
.insights .ci{color:#6b7280;font-size:12px} .insights .kpi{display:inline-block;margin:0 28px 12px 0} .insights .kpi b{display:block;font-size:20px}
.insights svg{width:auto;height:auto;background:none;border:0} .insights svg text{font:11px system-ui,sans-serif}
</style>";

/// The page.
pub fn render(r: &Report) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>callpulse insights</title></head><body style=\"margin:24px\">{}</body></html>\n",
        fragment(r)
    )
}

/// The report without the page around it (style, headline, charts,
/// tables), for the dashboard.
pub fn fragment(r: &Report) -> String {
    let mut h = String::from(STYLE);
    let o = &r.overall;
    let _ = write!(
        h,
        r##"<div class="insights"><h1>callpulse insights</h1>
<div id="scope">{} calls{}{}</div>
<div id="kpis"><span class="kpi">calls<b>{}</b></span><span class="kpi">customer start → end<b>{} → {}</b></span><span class="kpi">negative calls<b>{}</b></span><span class="kpi">recovered<b>{}</b></span><span class="kpi">escalated<b>{}</b></span><span class="kpi">hints to agents<b>{}</b></span></div>"##,
        o.calls,
        match (&r.from, &r.to) {
            (Some(a), Some(b)) => format!(", {} to {}", esc(a), esc(b)),
            _ => String::new(),
        },
        r.filter
            .agent
            .as_ref()
            .map(|a| format!(", agent {}", esc(a)))
            .unwrap_or_default(),
        o.calls,
        mean(&o.sentiment_start),
        mean(&o.sentiment_end),
        pct(&o.negative),
        pct(&o.recovery),
        pct(&o.escalation),
        o.hints
    );
    trend_svg(&mut h, r);
    if !r.topics.is_empty() {
        h.push_str("<h2>Topics by share of negative calls</h2>");
        let rows: Vec<_> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.topic.replace('_', " "),
                    t.negative_calls.share.unwrap_or(0.0),
                    t.negative_calls.ci95,
                    format!(
                        "{} calls, {}/{} turns negative",
                        t.calls, t.negative_turns, t.turns
                    ),
                )
            })
            .collect();
        bars_svg(&mut h, "topics", "topics by share of negative calls", &rows);
    }
    if !r.alerts_by_rule.is_empty() {
        h.push_str("<h2>Alerts by rule</h2>");
        let rows: Vec<_> = r
            .alerts_by_rule
            .iter()
            .map(|a| {
                (
                    a.rule.clone(),
                    a.share_of_calls,
                    None,
                    format!("{} alerts in {} calls", a.alerts, a.calls),
                )
            })
            .collect();
        bars_svg(
            &mut h,
            "alerts",
            "share of calls with each alert rule",
            &rows,
        );
    }
    h.push_str("<h2>Agents</h2><table id=\"agents\"><tr><th>agent</th><th>calls</th><th>customer end</th><th>recovered</th><th>escalated</th><th>empathy share</th><th>interruptions / call</th><th>talk ratio</th><th>dead air, s</th></tr>");
    for a in &r.agents {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.agent),
            a.outcomes.calls,
            mean(&a.outcomes.sentiment_end),
            pct(&a.outcomes.recovery),
            pct(&a.outcomes.escalation),
            mean(&a.empathy_share),
            mean(&a.interruptions_per_call),
            mean(&a.talk_ratio),
            mean(&a.dead_air_s)
        );
    }
    h.push_str("</table>");
    if r.by != By::Day && r.by != By::Agent {
        let _ = write!(h, "<h2>By {:?}</h2><table id=\"groups\"><tr><th>group</th><th>calls</th><th>start</th><th>end</th><th>negative</th><th>escalated</th></tr>", r.by);
        for g in &r.groups {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.key),
                g.outcomes.calls,
                mean(&g.outcomes.sentiment_start),
                mean(&g.outcomes.sentiment_end),
                pct(&g.outcomes.negative),
                pct(&g.outcomes.escalation)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"ci\">Definitions: docs/insights.md. Intervals are 95%: normal for means, Wilson for shares.</p></div>");
    h
}

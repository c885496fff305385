//! Insights across calls: volume, customer sentiment at the start and the
//! end, recovery and escalation rates, alerts by rule, topics by negative
//! share, per-agent conduct and outcomes, and the trend over time with 95%
//! confidence intervals. Read from scored calls' summaries (JSONL files) or
//! the server's history; the same report serves `callpulse insights`
//! (text, JSON, HTML) and `GET /v1/insights`.
//!
//! Definitions (also in docs/insights.md):
//! - customer sentiment at the start / end: the summary's
//!   `conduct.customer_start` / `customer_end` (mean polarity of the
//!   customer's first / last two turns, −1..1);
//! - a **negative call** ends below [`NEGATIVE_END`];
//! - a call **needs recovery** when the customer started below
//!   [`NEGATIVE_END`] or shifted down during the call; it **recovered** when
//!   such a call did not end negative;
//! - an **escalated** call has an alert of severity medium or higher.

pub mod html;
pub mod meta;
pub mod time;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{Direction, Event, Role, Severity, SummaryEvent};

/// Below this customer end sentiment a call is negative.
pub const NEGATIVE_END: f32 = -0.2;

/// One call as insights see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub agent: Option<String>,
    pub started_unix_ms: Option<u64>,
    pub channel: String,
    pub duration_s: f64,
    pub customer_start: Option<f32>,
    pub customer_end: Option<f32>,
    pub negative: bool,
    pub needs_recovery: bool,
    pub recovered: bool,
    pub escalated: bool,
    pub alerts: Vec<String>,
    /// (topic, turns, negative turns).
    pub topics: Vec<(String, u32, u32)>,
    pub empathy_share: Option<f32>,
    pub interruptions: Option<u32>,
    pub talk_ratio: Option<f32>,
    pub dead_air_s: Option<f64>,
    pub hints: u32,
}

impl CallRecord {
    /// From a call's summary; `started_fallback` when the summary has no start time.
    pub fn from_summary(s: &SummaryEvent, started_fallback: Option<u64>) -> Self {
        let k = s.conduct.as_ref();
        let start = k.and_then(|k| k.customer_start);
        let end = k.and_then(|k| k.customer_end);
        let negative = end.is_some_and(|e| e < NEGATIVE_END);
        let dropped = s
            .conversation
            .shifts
            .iter()
            .any(|x| x.role == Role::Customer && x.direction == Direction::Down);
        let needs_recovery = start.is_some_and(|v| v < NEGATIVE_END) || dropped;
        CallRecord {
            call_id: s.call_id.clone(),
            agent: s.meta.agent_id.clone(),
            started_unix_ms: s.meta.started_unix_ms.or(started_fallback),
            channel: s.meta.channel.clone().unwrap_or_else(|| "voice".into()),
            duration_s: s.duration,
            customer_start: start,
            customer_end: end,
            negative,
            needs_recovery,
            recovered: needs_recovery && end.is_some() && !negative,
            escalated: s
                .conversation
                .alerts
                .iter()
                .any(|a| a.severity >= Severity::Medium),
            alerts: s
                .conversation
                .alerts
                .iter()
                .map(|a| a.rule_id.clone())
                .collect(),
            topics: s
                .topics
                .iter()
                .map(|t| (t.topic.clone(), t.turns, t.negative_turns))
                .collect(),
            empathy_share: k.map(|k| k.empathy_share),
            interruptions: k.map(|k| k.interruptions),
            talk_ratio: k.map(|k| k.talk_ratio),
            dead_air_s: k.map(|k| k.dead_air_s),
            hints: s.conversation.assists.len() as u32,
        }
    }
}

/// A mean with its 95% confidence interval (normal approximation; none
/// below two values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: Option<f64>,
    pub ci95: Option<(f64, f64)>,
}

/// A share with its 95% Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShareCi {
    pub count: usize,
    pub of: usize,
    pub share: Option<f64>,
    pub ci95: Option<(f64, f64)>,
}

fn r4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Mean and 95% interval of `v`.
pub fn mean_ci(v: &[f64]) -> MeanCi {
    let n = v.len();
    if n == 0 {
        return MeanCi {
            n,
            mean: None,
            ci95: None,
        };
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let ci = (n >= 2).then(|| {
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        let h = 1.96 * (var / n as f64).sqrt();
        (r4(m - h), r4(m + h))
    });
    MeanCi {
        n,
        mean: Some(r4(m)),
        ci95: ci,
    }
}

/// Share `k` of `n` with its Wilson 95% interval.
pub fn share_ci(k: usize, n: usize) -> ShareCi {
    if n == 0 {
        return ShareCi {
            count: k,
            of: n,
            share: None,
            ci95: None,
        };
    }
    let (p, nf, z) = (k as f64 / n as f64, n as f64, 1.96f64);
    let den = 1.0 + z * z / nf;
    let c = (p + z * z / (2.0 * nf)) / den;
    let h = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / den;
    ShareCi {
        count: k,
        of: n,
        share: Some(r4(p)),
        ci95: Some((r4((c - h).max(0.0)), r4((c + h).min(1.0)))),
    }
}

/// Outcomes of a set of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    pub calls: usize,
    pub sentiment_start: MeanCi,
    pub sentiment_end: MeanCi,
    pub negative: ShareCi,
    pub recovery: ShareCi,
    pub escalation: ShareCi,
    pub alerts: usize,
    pub hints: usize,
}

/// The outcomes of `calls`.
pub fn outcomes(calls: &[&CallRecord]) -> Outcomes {
    let vals = |f: fn(&CallRecord) -> Option<f32>| -> Vec<f64> {
        calls
            .iter()
            .filter_map(|c| f(c))
            .map(|x| x as f64)
            .collect()
    };
    let with_end = calls.iter().filter(|c| c.customer_end.is_some()).count();
    let need = calls.iter().filter(|c| c.needs_recovery).count();
    Outcomes {
        calls: calls.len(),
        sentiment_start: mean_ci(&vals(|c| c.customer_start)),
        sentiment_end: mean_ci(&vals(|c| c.customer_end)),
        negative: share_ci(calls.iter().filter(|c| c.negative).count(), with_end),
        recovery: share_ci(calls.iter().filter(|c| c.recovered).count(), need),
        escalation: share_ci(calls.iter().filter(|c| c.escalated).count(), calls.len()),
        alerts: calls.iter().map(|c| c.alerts.len()).sum(),
        hints: calls.iter().map(|c| c.hints as usize).sum(),
    }
}

/// Alerts of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: String,
    pub alerts: usize,
    pub calls: usize,
    pub share_of_calls: f64,
}

/// One topic across calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRow {
    pub topic: String,
    pub calls: usize,
    pub turns: u32,
    pub negative_turns: u32,
    pub negative_turn_share: f64,
    /// Of the calls with this topic, the negative ones.
    pub negative_calls: ShareCi,
}

/// One agent's calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRow {
    pub agent: String,
    pub outcomes: Outcomes,
    pub empathy_share: MeanCi,
    pub interruptions_per_call: MeanCi,
    pub talk_ratio: MeanCi,
    pub dead_air_s: MeanCi,
}

/// One group of `--by`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    pub outcomes: Outcomes,
}

/// How to group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum By {
    /// Per agent.
    Agent,
    /// Per day (UTC) of the call's start.
    #[default]
    Day,
    /// Per ISO week (its Monday).
    Week,
    /// Per topic (a call counts for each of its topics).
    Topic,
}

/// Which calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// Calls that started at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// ... and before this time.
    pub until_ms: Option<u64>,
    /// Only this agent's calls.
    pub agent: Option<String>,
    /// The grouping.
    #[serde(default)]
    pub by: By,
}

impl Filter {
    fn keeps(&self, c: &CallRecord) -> bool {
        let t = c.started_unix_ms;
        (self.since_ms.is_none() || t.is_some_and(|t| t >= self.since_ms.unwrap_or(0)))
            && (self.until_ms.is_none() || t.is_some_and(|t| t < self.until_ms.unwrap_or(0)))
            && (self.agent.is_none() || c.agent == self.agent)
    }
}

/// The insights report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub filter: Filter,
    /// First and last call start in the set.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Calls read, and those left out by the filter or without a summary.
    pub calls_read: usize,
    pub overall: Outcomes,
    pub alerts_by_rule: Vec<RuleCount>,
    pub topics: Vec<TopicRow>,
    pub agents: Vec<AgentRow>,
    pub by: By,
    pub groups: Vec<Group>,
    /// Per day: the trend over time.
    pub trend: Vec<Group>,
}

/// The key of a call's time group.
fn time_key(c: &CallRecord, week: bool) -> String {
    match c.started_unix_ms {
        Some(t) if week => time::week(t),
        Some(t) => time::day(t),
        None => "unknown".into(),
    }
}

fn grouped<'a>(
    calls: &[&'a CallRecord],
    key: impl Fn(&CallRecord) -> Vec<String>,
) -> BTreeMap<String, Vec<&'a CallRecord>> {
    let mut m: BTreeMap<String, Vec<&CallRecord>> = BTreeMap::new();
    for c in calls {
        for k in key(c) {
            m.entry(k).or_default().push(c);
        }
    }
    m
}

/// Build the report over `records` with `filter`.
pub fn report(records: &[CallRecord], filter: &Filter) -> Report {
    let calls: Vec<&CallRecord> = records.iter().filter(|c| filter.keeps(c)).collect();
    let times: Vec<u64> = calls.iter().filter_map(|c| c.started_unix_ms).collect();
    let mut rules: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for c in &calls {
        let mut seen: Vec<&String> = Vec::new();
        for a in &c.alerts {
            let e = rules.entry(a.clone()).or_default();
            e.0 += 1;
            if !seen.contains(&a) {
                e.1 += 1;
                seen.push(a);
            }
        }
    }
    let mut alerts_by_rule: Vec<RuleCount> = rules
        .into_iter()
        .map(|(rule, (alerts, n))| RuleCount {
            rule,
            alerts,
            calls: n,
            share_of_calls: r4(n as f64 / calls.len().max(1) as f64),
        })
        .collect();
    alerts_by_rule.sort_by(|a, b| b.alerts.cmp(&a.alerts).then(a.rule.cmp(&b.rule)));
    let by_topic = grouped(&calls, |c| c.topics.iter().map(|t| t.0.clone()).collect());
    let mut topics: Vec<TopicRow> = by_topic
        .iter()
        .map(|(t, cs)| {
            let (turns, neg) = cs
                .iter()
                .flat_map(|c| c.topics.iter().filter(|x| &x.0 == t))
                .fold((0, 0), |a, x| (a.0 + x.1, a.1 + x.2));
            let with_end = cs.iter().filter(|c| c.customer_end.is_some()).count();
            TopicRow {
                topic: t.clone(),
                calls: cs.len(),
                turns,
                negative_turns: neg,
                negative_turn_share: r4(neg as f64 / turns.max(1) as f64),
                negative_calls: share_ci(cs.iter().filter(|c| c.negative).count(), with_end),
            }
        })
        .collect();
    topics.sort_by(|a, b| {
        b.negative_calls
            .share
            .unwrap_or(0.0)
            .total_cmp(&a.negative_calls.share.unwrap_or(0.0))
            .then(b.calls.cmp(&a.calls))
            .then(a.topic.cmp(&b.topic))
    });
    let agent_key = |c: &CallRecord| vec![c.agent.clone().unwrap_or_else(|| "unknown".into())];
    let agents = grouped(&calls, agent_key)
        .into_iter()
        .map(|(agent, cs)| {
            let m = |f: fn(&CallRecord) -> Option<f64>| {
                mean_ci(&cs.iter().filter_map(|c| f(c)).collect::<Vec<_>>())
            };
            AgentRow {
                agent,
                outcomes: outcomes(&cs),
                empathy_share: m(|c| c.empathy_share.map(f64::from)),
                interruptions_per_call: m(|c| c.interruptions.map(f64::from)),
                talk_ratio: m(|c| c.talk_ratio.map(f64::from)),
                dead_air_s: m(|c| c.dead_air_s),
            }
        })
        .collect();
    let groups_of = |by: By| -> Vec<Group> {
        let g = match by {
            By::Agent => grouped(&calls, agent_key),
            By::Day => grouped(&calls, |c| vec![time_key(c, false)]),
            By::Week => grouped(&calls, |c| vec![time_key(c, true)]),
            By::Topic => by_topic.clone(),
        };
        g.into_iter()
            .map(|(key, cs)| Group {
                key,
                outcomes: outcomes(&cs),
            })
            .collect()
    };
    Report {
        filter: filter.clone(),
        from: times.iter().min().map(|t| time::iso(*t)),
        to: times.iter().max().map(|t| time::iso(*t)),
        calls_read: records.len(),
        overall: outcomes(&calls),
        alerts_by_rule,
        topics,
        agents,
        by: filter.by,
        groups: groups_of(filter.by),
        trend: groups_of(By::Day),
    }
}

/// The summaries in a scored call's events (one per call in the stream).
pub fn summaries(events: &[Event]) -> Vec<&SummaryEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Summary(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn fmt_mean(m: &MeanCi) -> String {
    match (m.mean, m.ci95) {
        (Some(v), Some((a, b))) => format!("{v:+.2} [{a:+.2}, {b:+.2}]"),
        (Some(v), None) => format!("{v:+.2}"),
        _ => "–".into(),
    }
}

fn fmt_share(s: &ShareCi) -> String {
    match (s.share, s.ci95) {
        (Some(v), Some((a, b))) => format!(
            "{:.0}% ({}/{}) [{:.0}–{:.0}%]",
            v * 100.0,
            s.count,
            s.of,
            a * 100.0,
            b * 100.0
        ),
        _ => "–".into(),
    }
}

impl Report {
    /// For people.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let o = &self.overall;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} calls ({} read){}",
            o.calls,
            self.calls_read,
            match (&self.from, &self.to) {
                (Some(a), Some(b)) => format!(", {a} to {b}"),
                _ => String::new(),
            }
        );
        let _ = writeln!(
            s,
            "customer sentiment: start {} -> end {} (mean [95% CI])",
            fmt_mean(&o.sentiment_start),
            fmt_mean(&o.sentiment_end)
        );
        let _ = writeln!(s, "negative calls: {}", fmt_share(&o.negative));
        let _ = writeln!(
            s,
            "recovered (of calls that needed it): {}",
            fmt_share(&o.recovery)
        );
        let _ = writeln!(s, "escalated: {}", fmt_share(&o.escalation));
        let _ = writeln!(s, "alerts: {}, hints to agents: {}", o.alerts, o.hints);
        if !self.alerts_by_rule.is_empty() {
            let _ = writeln!(s, "\nalerts by rule:");
            for r in &self.alerts_by_rule {
                let _ = writeln!(
                    s,
                    "  {:<28} {:>4} alerts in {:>4} calls ({:.0}%)",
                    r.rule,
                    r.alerts,
                    r.calls,
                    r.share_of_calls * 100.0
                );
            }
        }
        if !self.topics.is_empty() {
            let _ = writeln!(s, "\ntopics by negative share of calls:");
            for t in &self.topics {
                let _ = writeln!(
                    s,
                    "  {:<20} {:>4} calls  negative {}  negative turns {}/{}",
                    t.topic,
                    t.calls,
                    fmt_share(&t.negative_calls),
                    t.negative_turns,
                    t.turns
                );
            }
        }
        let _ = writeln!(s, "\nagents:");
        for a in &self.agents {
            let _ = writeln!(
                s,
                "  {:<14} {:>4} calls  end {}  recovered {}  escalated {}  empathy {}  interruptions/call {}",
                a.agent,
                a.outcomes.calls,
                fmt_mean(&a.outcomes.sentiment_end),
                fmt_share(&a.outcomes.recovery),
                fmt_share(&a.outcomes.escalation),
                fmt_mean(&a.empathy_share),
                fmt_mean(&a.interruptions_per_call)
            );
        }
        let by = match self.by {
            By::Agent => "agent",
            By::Day => "day",
            By::Week => "week",
            By::Topic => "topic",
        };
        let _ = writeln!(s, "\nby {by}:");
        for g in &self.groups {
            let _ = writeln!(
                s,
                "  {:<14} {:>4} calls  start {}  end {}  negative {}  escalated {}",
                g.key,
                g.outcomes.calls,
                fmt_mean(&g.outcomes.sentiment_start),
                fmt_mean(&g.outcomes.sentiment_end),
                fmt_share(&g.outcomes.negative),
                fmt_share(&g.outcomes.escalation)
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let m = mean_ci(&[1.0, 2.0, 3.0]);
        assert_eq!(m.mean, Some(2.0));
        let (a, b) = m.ci95.unwrap();
        assert!((b - 2.0 - 1.96 / 3f64.sqrt()).abs() < 1e-3 && (2.0 - a - (b - 2.0)).abs() < 1e-3);
        assert_eq!(mean_ci(&[0.5]).ci95, None);
        // Wilson: 3 of 10 -> [0.108, 0.603].
        let s = share_ci(3, 10);
        assert_eq!(s.share, Some(0.3));
        let (a, b) = s.ci95.unwrap();
        assert!(
            (a - 0.1078).abs() < 1e-3 && (b - 0.6032).abs() < 1e-3,
            "{a} {b}"
        );
        assert_eq!(share_ci(0, 0).share, None);
    }
}

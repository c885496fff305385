//! `insights`: aggregate scored calls (their summaries) across calls.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use callpulse::insights::time::{parse_time, parse_until};
use callpulse::insights::{self, By, CallRecord, Filter};

#[derive(Args, Debug)]
pub struct InsightsArgs {
    /// Scored calls: JSON lines of events from `score` (files, or
    /// directories searched for .jsonl); each call's summary is read.
    #[arg(value_name = "SCORED", required_unless_present = "db")]
    inputs: Vec<PathBuf>,
    /// Read the calls from a `serve` history database instead.
    #[arg(long, value_name = "HISTORY.sqlite")]
    db: Option<PathBuf>,
    /// Calls that started on or after this time (2026-11-01, 2026-11-01T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Calls that started before this time (a bare date includes that day).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this agent's calls.
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// The breakdown: per agent, day, week or topic.
    #[arg(long, value_enum, default_value_t = By::Day)]
    by: By,
    /// Print JSON (the same as GET /v1/insights).
    #[arg(long, conflicts_with = "html")]
    json: bool,
    /// Write an HTML report with charts here.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("jsonl"))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Every summary in `path`: lines that are not summaries are skipped
/// unread beyond their type, so big event files load fast.
fn records_of(path: &Path, out: &mut Vec<CallRecord>) -> Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if !line.contains("\"type\":\"summary\"") {
            continue;
        }
        let s: callpulse::event::SummaryEvent =
            serde_json::from_str::<callpulse::event::Event>(line)
                .ok()
                .and_then(|e| match e {
                    callpulse::event::Event::Summary(s) => Some(s),
                    _ => None,
                })
                .with_context(|| {
                    format!(
                        "{} line {}: not a callpulse summary event",
                        path.display(),
                        i + 1
                    )
                })?;
        out.push(CallRecord::from_summary(&s, None));
        n += 1;
    }
    Ok(n)
}

fn records_of_db(path: &Path) -> Result<Vec<CallRecord>> {
    if !path.is_file() {
        bail!("{}: no such history database", path.display());
    }
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut st = c
        .prepare("SELECT started_ms, summary FROM calls WHERE summary IS NOT NULL")
        .with_context(|| format!("{}: not a callpulse history database", path.display()))?;
    let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (started, json) = row?;
        if let Ok(s) = serde_json::from_str::<callpulse::event::SummaryEvent>(&json) {
            out.push(CallRecord::from_summary(&s, Some(started as u64)));
        }
    }
    Ok(out)
}

pub fn run(a: InsightsArgs) -> Result<i32> {
    let time = |s: &Option<String>, what: &str, end: bool| -> Result<Option<u64>> {
        s.as_deref()
            .map(|v| {
                if end { parse_until(v) } else { parse_time(v) }
                    .map_err(|e| anyhow::anyhow!("--{what}: {e}"))
            })
            .transpose()
    };
    let filter = Filter {
        since_ms: time(&a.since, "since", false)?,
        until_ms: time(&a.until, "until", true)?,
        agent: a.agent.clone(),
        by: a.by,
    };
    let mut records = Vec::new();
    if let Some(db) = &a.db {
        records = records_of_db(db)?;
    }
    for p in &a.inputs {
        let mut files = Vec::new();
        if p.is_dir() {
            walk(p, &mut files).with_context(|| format!("cannot list {}", p.display()))?;
            files.sort();
            if files.is_empty() {
                bail!("no .jsonl files under {}", p.display());
            }
        } else {
            files.push(p.clone());
        }
        for f in files {
            if records_of(&f, &mut records)? == 0 {
                eprintln!(
                    "callpulse: {}: no summary (an unfinished call?), left out",
                    f.display()
                );
            }
        }
    }
    if records.is_empty() {
        bail!("no scored calls found: give `score` output (JSON lines with summaries) or --db");
    }
    let r = insights::report(&records, &filter);
    if let Some(out) = &a.html {
        std::fs::write(out, insights::html::render(&r))
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {} ({} calls)", out.display(), r.overall.calls);
    } else if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.to_text());
    }
    Ok(0)
}

//! `report`: render a scored call as a self-contained HTML page.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

pub use callpulse::report::eval_call as eval_call_lib;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Events of one call (JSON lines from `score` or `stream`).
    events: PathBuf,
    /// Write the HTML report here.
    #[arg(long, value_name = "OUT.html")]
    html: PathBuf,
}

pub fn run(a: ReportArgs) -> Result<i32> {
    let events = callpulse::report::read_events(&a.events).map_err(anyhow::Error::msg)?;
    let mut ids: Vec<&str> = events.iter().map(|e| e.call_id()).collect();
    ids.sort();
    ids.dedup();
    if ids.len() > 1 {
        anyhow::bail!(
            "{} holds {} calls ({}); a report covers one: score with --out-dir to get one file per call",
            a.events.display(),
            ids.len(),
            ids.join(", ")
        );
    }
    let html = callpulse::report::render_html(&events);
    std::fs::write(&a.html, html).with_context(|| format!("cannot write {}", a.html.display()))?;
    eprintln!("wrote {}", a.html.display());
    Ok(0)
}

pub fn eval_call(events: &Path, labels: Option<&Path>) -> Result<callpulse::report::CallEval> {
    eval_call_lib(events, labels).map_err(anyhow::Error::msg)
}

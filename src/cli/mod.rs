//! Subcommands, one file each.

mod annotate;
mod bench;
mod cluster;
mod diarize;
mod insights;
mod live;
mod models;
mod report;
mod score;
mod serve;
mod telephony;
mod train;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use callpulse::config::{AsrModel, Config};
use callpulse::event::Role;

/// callpulse: how each party on a support call feels, turn by turn.
///
/// Scores calls (WAV files, live replays, raw audio on stdin or a microphone;
/// one or two channels: agent and customer) with speech recognition
/// (whisper.cpp), prosody and a text sentiment model, all on this machine.
/// Models are fetched from the package registries on first use.
#[derive(Parser, Debug)]
#[command(name = "callpulse", version, propagate_version = true)]
pub struct Cli {
    /// TOML config file (see `docs/config.md`); flags override it.
    #[arg(long, global = true, value_name = "FILE", env = "CALLPULSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log pipeline progress to stderr (or set CALLPULSE_LOG=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub cmd: Command,
}

/// Model selection flags shared by the commands that load models.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelArgs {
    /// Whisper model to use: tiny.en (real-time) or base (multilingual, slower). [config: models.asr]
    #[arg(long, value_parser = parse_asr)]
    pub asr: Option<AsrModel>,
    /// Use this whisper.cpp ggml model file instead. [config: models.whisper_model; env CALLPULSE_WHISPER_MODEL]
    #[arg(long, value_name = "FILE")]
    pub whisper_model: Option<PathBuf>,
    /// Models directory. [config: models.dir; env CALLPULSE_MODELS_DIR]
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime library to load. [config: models.onnxruntime_lib; env CALLPULSE_ORT_LIB]
    #[arg(long, value_name = "FILE")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Recogniser threads (0 = all cores). [config: asr.threads]
    #[arg(long)]
    pub threads: Option<u32>,
    /// Beam width (0 = greedy). [config: asr.beam_size]
    #[arg(long)]
    pub beam_size: Option<u32>,
    /// Spoken language for a multilingual model (`--asr base`): `auto`
    /// detects it per turn, or a code such as es, de, fr, pt, it.
    /// [config: asr.language]
    #[arg(long, value_name = "auto|CODE", value_parser = parse_language)]
    pub language: Option<String>,
    /// Where retrained text heads are installed and loaded from.
    /// [config: models.heads; env CALLPULSE_HEADS_DIR]
    #[arg(long, value_name = "DIR")]
    pub heads_dir: Option<PathBuf>,
}

fn parse_language(s: &str) -> Result<String, String> {
    callpulse::asr::whisper::validate_language(s)?;
    Ok(s.to_string())
}

fn parse_asr(s: &str) -> Result<AsrModel, String> {
    match s {
        "tiny.en" | "tiny" => Ok(AsrModel::TinyEn),
        "base" => Ok(AsrModel::Base),
        o => Err(format!("unknown model '{o}': expected tiny.en or base")),
    }
}

impl ModelArgs {
    fn apply(&self, cfg: &mut Config) {
        if let Some(a) = self.asr {
            cfg.models.asr = a;
        }
        if let Some(p) = &self.whisper_model {
            cfg.models.whisper_model = Some(p.clone());
        }
        if let Some(p) = &self.models_dir {
            cfg.models.dir = Some(p.clone());
        }
        if let Some(p) = &self.onnxruntime_lib {
            cfg.models.onnxruntime_lib = Some(p.clone());
        }
        if let Some(t) = self.threads {
            cfg.asr.threads = t;
        }
        if let Some(b) = self.beam_size {
            cfg.asr.beam_size = b;
        }
        if let Some(l) = &self.language {
            cfg.asr.language = l.clone();
        }
        if let Some(d) = &self.heads_dir {
            cfg.models.heads = Some(d.clone());
        }
    }
}

/// Roles and privacy flags shared by the commands that score a call.
#[derive(Args, Debug, Clone, Default)]
pub struct CallArgs {
    /// Roles of channel 0 and 1, e.g. `customer,agent`. [config: roles.channel0/channel1]
    #[arg(long, value_name = "ROLE0,ROLE1")]
    pub roles: Option<String>,
    /// Role of a single-channel input's speaker. [config: roles.mono]
    #[arg(long, value_name = "ROLE")]
    pub mono_role: Option<Role>,
    /// Redact card/phone numbers, e-mail addresses and other identifiers in
    /// transcripts (digits or words) as [TYPE]. [config: privacy.redact]
    #[arg(long)]
    pub redact: bool,
    /// The number of speakers on a diarised (mono) leg, when known;
    /// estimated (1 to 4) otherwise. [config: diarize.options.speakers]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub speakers: Option<u32>,
    /// Do not diarise mono legs (every turn of a mono call is one party).
    /// [config: diarize.enabled = false]
    #[arg(long)]
    pub no_diarize: bool,
    /// Also diarise each leg of a two-channel call (a leg that carries
    /// several people, e.g. a conference leg). [config: diarize.split_channel_speakers]
    #[arg(long)]
    pub split_channel_speakers: bool,
}

impl CallArgs {
    /// Write the flags into `cfg`.
    pub fn apply(&self, cfg: &mut Config) -> Result<()> {
        if let Some(r) = &self.roles {
            let parts: Vec<&str> = r.split(',').collect();
            if parts.len() != 2 {
                anyhow::bail!("--roles takes two roles, e.g. `agent,customer`");
            }
            cfg.roles.channel0 = parts[0].parse().map_err(anyhow::Error::msg)?;
            cfg.roles.channel1 = parts[1].parse().map_err(anyhow::Error::msg)?;
        }
        if let Some(m) = self.mono_role {
            cfg.roles.mono = m;
        }
        if self.redact {
            cfg.privacy.redact = true;
        }
        if let Some(n) = self.speakers {
            cfg.diarize.options.speakers = Some(n as usize);
        }
        if self.no_diarize {
            cfg.diarize.enabled = false;
        }
        if self.split_channel_speakers {
            cfg.diarize.split_channel_speakers = true;
        }
        Ok(())
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Score recorded calls: per-turn transcript, prosody and sentiment, then a call summary.
    Score(score::ScoreArgs),
    /// Replay a WAV file in real time (or N× faster), or read raw audio from
    /// stdin, through the live pipeline: partial and final turns as they happen.
    Stream(live::StreamArgs),
    /// Score live audio from a microphone or other input device.
    Listen(live::ListenArgs),
    /// List audio input devices (for `listen --device`).
    Devices,
    /// Answer SIP calls (UDP) and score each one live from its RTP (G.711).
    Sip(telephony::SipArgs),
    /// Receive RTP streams (G.711) on UDP ports and score them live as a call.
    Rtp(telephony::RtpArgs),
    /// Find the calls in a packet capture (pcap/pcapng: SIP + RTP) and score each one.
    Pcap(telephony::PcapArgs),
    /// Live monitoring server: WebSocket/SSE events, HTTP scoring API, call history, dashboard, metrics.
    Serve(Box<serve::ServeArgs>),
    /// Send a WAV file as G.711 RTP streams (or write them to a pcap), with optional loss, reordering and duplicates.
    RtpSend(telephony::RtpSendArgs),
    /// Fetch, list and locate models.
    Models(models::ModelsArgs),
    /// Human labelling with Label Studio: export scored calls as tasks,
    /// import the labels, measure agreement, calibrate the model.
    Annotate(annotate::AnnotateArgs),
    /// Train the polarity or emotion head.
    Train(train::TrainArgs),
    /// Evaluate polarity or emotion on labelled sentences, a scored call against per-turn labels, or transcripts (WER).
    Eval(train::EvalArgs),
    /// Who spoke when on one channel: print speaker segments as RTTM.
    Diarize(diarize::DiarizeArgs),
    /// Render a scored call as a self-contained HTML report.
    Report(report::ReportArgs),
    /// Aggregate scored calls: volume, customer sentiment start to end,
    /// recovery and escalation rates, alerts by rule, topics by negative
    /// share, per-agent conduct, trend over time.
    Insights(insights::InsightsArgs),
    /// Take scoring jobs from NATS JetStream (recordings from `submit`),
    /// score them and store the results. Run one per machine (--jobs for
    /// more at once): whisper.cpp's threads spin, so workers sharing a
    /// machine need [asr] threads = cores / workers (docs/scaling.md).
    Worker(cluster::WorkerArgs),
    /// Upload recordings to NATS JetStream and queue them for the workers;
    /// --wait collects the results.
    Submit(cluster::SubmitArgs),
    /// Measure speed: real-time factor and time per stage.
    Bench(bench::BenchArgs),
}

pub fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

pub fn run(cli: Cli) -> Result<i32> {
    let cfg = load_config(&cli.config)?;
    match cli.cmd {
        Command::Score(a) => score::run(cfg, a),
        Command::Stream(a) => live::stream(cfg, a),
        Command::Listen(a) => live::listen(cfg, a),
        Command::Devices => live::devices(),
        Command::Sip(a) => telephony::sip(cfg, a),
        Command::Rtp(a) => telephony::rtp(cfg, a),
        Command::Pcap(a) => telephony::pcap(cfg, a),
        Command::RtpSend(a) => telephony::rtp_send(a),
        Command::Serve(a) => serve::run(cfg, *a),
        Command::Models(a) => models::run(cfg, a),
        Command::Annotate(a) => annotate::run(cfg, a),
        Command::Train(a) => train::run_train(cfg, a),
        Command::Eval(a) => train::run_eval(cfg, a),
        Command::Diarize(a) => diarize::run(cfg, a),
        Command::Report(a) => report::run(a),
        Command::Insights(a) => insights::run(a),
        Command::Worker(a) => cluster::worker(cfg, a),
        Command::Submit(a) => cluster::submit(cfg, a),
        Command::Bench(a) => bench::run(cfg, a),
    }
}

/// Is stderr a terminal (for progress bars)?
pub fn stderr_is_tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

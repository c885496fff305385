//! `worker` and `submit`: scoring across machines on NATS JetStream
//! (see `callpulse::cluster` and docs/scaling.md).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use callpulse::cluster::{self, submit::Outcome, submit::Upload, worker::WorkerOptions};
use callpulse::config::Config;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// NATS server with JetStream, e.g. nats://127.0.0.1:4222. [config: cluster.nats]
    #[arg(long, value_name = "URL", env = "CALLPULSE_NATS")]
    nats: Option<String>,
    /// Jobs scored at once; they share the loaded models.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// This worker's name (logs, heartbeats, results); default: host-pid.
    #[arg(long)]
    name: Option<String>,
    /// A job not reported within this long goes to another worker, seconds. [config: cluster.ack_wait_s]
    #[arg(long, value_name = "S")]
    ack_wait_s: Option<f64>,
    /// Attempts before a job goes to the dead letters. [config: cluster.max_attempts]
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Wait before a failed job is retried, seconds. [config: cluster.retry_delay_s]
    #[arg(long, value_name = "S")]
    retry_delay_s: Option<f64>,
    /// Jobs may name files under this directory (a file system every
    /// worker shares; `submit --shared-paths`). Repeatable; default none.
    #[arg(long, value_name = "DIR")]
    allow_path: Vec<PathBuf>,
    /// Jobs may name http(s) URLs for this worker to fetch (`submit URL`).
    #[arg(long)]
    allow_urls: bool,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// WAV recordings, directories (searched for .wav), or http(s) URLs the
    /// workers fetch themselves.
    #[arg(required = true, value_name = "FILE|DIR|URL")]
    inputs: Vec<PathBuf>,
    /// Queue the files' paths instead of uploading them: every worker
    /// reads the same file system (an NFS or object-store mount).
    #[arg(long)]
    shared_paths: bool,
    /// NATS server with JetStream. [config: cluster.nats]
    #[arg(long, value_name = "URL", env = "CALLPULSE_NATS")]
    nats: Option<String>,
    /// The agent of these calls (for insights).
    #[arg(long, value_name = "ID")]
    agent_id: Option<String>,
    /// Wait for the results (or dead letters) and write them to --out-dir.
    #[arg(long)]
    wait: bool,
    /// With --wait: one `<call_id>.jsonl` per call here.
    #[arg(long, value_name = "DIR", requires = "wait")]
    out_dir: Option<PathBuf>,
    /// With --wait: give up after this long, seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_s: u64,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

fn nats_url(cfg: &Config, flag: &Option<String>) -> Result<String> {
    flag.clone().or_else(|| cfg.cluster.nats.clone()).context(
        "no NATS server: pass --nats nats://HOST:4222 (or set cluster.nats, or CALLPULSE_NATS)",
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the network runtime")
}

pub fn worker(mut cfg: Config, a: WorkerArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    if let Some(v) = a.ack_wait_s {
        cfg.cluster.ack_wait_s = v;
    }
    if let Some(v) = a.max_attempts {
        cfg.cluster.max_attempts = v;
    }
    if let Some(v) = a.retry_delay_s {
        cfg.cluster.retry_delay_s = v;
    }
    cfg.validate()?;
    let url = nats_url(&cfg, &a.nats)?;
    let name = a.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let stop = super::live::stop_on_signals()?;
    let rt = runtime()?;
    // Connect before loading the models: a wrong URL fails in seconds.
    let c = rt
        .block_on(async {
            let client = cluster::connect(&url, &format!("callpulse-worker-{name}")).await?;
            cluster::setup(client, &cfg.cluster).await
        })
        .map_err(anyhow::Error::msg)?;
    if (c.ack_wait.as_secs_f64() - cfg.cluster.ack_wait_s).abs() > 0.5
        || c.max_deliver != cfg.cluster.max_attempts as i64 + 2
    {
        eprintln!(
            "callpulse worker {name}: note: the queue's consumer was created with ack_wait {:.0} s and {} deliveries; those apply, not ack_wait_s {} / max_attempts {} (delete the consumer `{}` to change them)",
            c.ack_wait.as_secs_f64(),
            c.max_deliver,
            cfg.cluster.ack_wait_s,
            cfg.cluster.max_attempts,
            cluster::names::CONSUMER
        );
    }
    let engine = super::telephony::load_engine(&cfg)?;
    eprintln!(
        "callpulse worker {name}: ready on {url} with {} slot(s); SIGTERM drains",
        a.jobs
    );
    let mut allow_paths = Vec::new();
    for d in &a.allow_path {
        allow_paths.push(
            std::fs::canonicalize(d).with_context(|| format!("--allow-path {}", d.display()))?,
        );
    }
    let o = WorkerOptions {
        name: name.clone(),
        jobs: a.jobs as usize,
        cfg: cfg.cluster.clone(),
        stop: stop.clone(),
        allow_paths,
        allow_urls: a.allow_urls,
    };
    let stats = rt
        .block_on(cluster::worker::run(engine, Arc::new(c), o))
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "callpulse worker {name}: stopped; {} done, {} already stored, {} retried, {} dead letters",
        stats.done.load(Ordering::SeqCst),
        stats.already_stored.load(Ordering::SeqCst),
        stats.retried.load(Ordering::SeqCst),
        stats.dead.load(Ordering::SeqCst)
    );
    Ok(0)
}

pub fn submit(cfg: Config, a: SubmitArgs) -> Result<i32> {
    cfg.validate()?;
    let url = nats_url(&cfg, &a.nats)?;
    let mut files = Vec::new();
    let is_url = |p: &PathBuf| {
        let s = p.to_string_lossy();
        s.starts_with("http://") || s.starts_with("https://")
    };
    for p in &a.inputs {
        if is_url(p) {
            files.push(p.clone());
        } else if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot list {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("no .wav files in {}", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    // Check every file before uploading any.
    for f in files.iter().filter(|f| !is_url(f)) {
        cluster::submit::check_wav(f).map_err(anyhow::Error::msg)?;
    }
    let ids = super::score::call_ids(&files, callpulse::telephony::ua::safe_call_id);
    let uploads: Vec<Upload> = files
        .iter()
        .zip(ids)
        .map(|(f, call_id)| Upload {
            path: f.clone(),
            shared: a.shared_paths,
            call_id,
            agent_id: a.agent_id.clone(),
            started_unix_ms: super::score::modified_ms(f),
        })
        .collect();
    let rt = runtime()?;
    let c = rt
        .block_on(async {
            let client = cluster::connect(&url, "callpulse-submit").await?;
            cluster::setup(client, &cfg.cluster).await
        })
        .map_err(anyhow::Error::msg)?;
    let bar = (!a.quiet && super::stderr_is_tty()).then(|| {
        let b = ProgressBar::new(uploads.len() as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.set_message("queued");
        b
    });
    let say = |m: String| match &bar {
        Some(b) => b.println(m),
        None if !a.quiet => eprintln!("{m}"),
        None => {}
    };
    let since_ms = callpulse::event::now_unix_ms().saturating_sub(1000);
    let jobs = rt
        .block_on(cluster::submit::submit(&c, &uploads, &|j, dup| {
            if let Some(b) = &bar {
                b.inc(1);
            }
            say(format!(
                "callpulse: queued {} as job {}{}",
                j.call_id,
                j.job_id,
                if dup {
                    " (already queued: not queued again)"
                } else {
                    ""
                }
            ));
        }))
        .map_err(anyhow::Error::msg)?;
    if !a.wait {
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        println!(
            "{}",
            serde_json::to_string(&jobs.iter().map(|j| &j.job_id).collect::<Vec<_>>())?
        );
        return Ok(0);
    }
    if let Some(b) = &bar {
        b.set_position(0);
        b.set_message("finished");
    }
    if let Some(d) = &a.out_dir {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let (results, missing) = rt
        .block_on(cluster::submit::wait(
            &c,
            &jobs,
            Duration::from_secs(a.timeout_s),
            since_ms,
            &|id, o| {
                if let Some(b) = &bar {
                    b.inc(1);
                }
                if let Outcome::Dead(e) = o {
                    // Failures are printed even with --quiet.
                    let m = format!("callpulse: {id} failed: {e}");
                    match &bar {
                        Some(b) => b.println(m),
                        None => eprintln!("{m}"),
                    }
                }
            },
        ))
        .map_err(anyhow::Error::msg)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let mut failed = 0;
    for (id, o) in &results {
        match o {
            Outcome::Done(body) => {
                if let Some(d) = &a.out_dir {
                    let p = d.join(format!("{id}.jsonl"));
                    std::fs::write(&p, body)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
            }
            Outcome::Dead(_) => failed += 1,
        }
    }
    eprintln!(
        "callpulse: {} of {} calls scored ({failed} failed)",
        results.len() - failed,
        results.len() + missing
    );
    if missing > 0 {
        bail!(
            "{missing} of {} jobs not finished after {} s; the finished ones are written (are workers running? `callpulse worker --nats URL`)",
            jobs.len(),
            a.timeout_s
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

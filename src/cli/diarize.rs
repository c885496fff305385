use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use callpulse::config::Config;
use callpulse::diarize::der::{self, DerScore, Turn};
use callpulse::diarize::regions::{speech_regions, RegionOptions};
use callpulse::diarize::{self, DiarizeOptions, SpeakerModel};
use callpulse::models::{self, Component};
use callpulse::segment::SileroModel;

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct DiarizeArgs {
    /// WAV file (any rate; resampled to 16 kHz).
    file: PathBuf,
    /// The number of speakers, when known (estimated otherwise).
    #[arg(long)]
    speakers: Option<usize>,
    /// Most speakers the estimate may give.
    #[arg(long, default_value_t = 4)]
    max_speakers: usize,
    /// Average cosine similarity below which speakers stay apart (estimated count).
    #[arg(long)]
    cluster_threshold: Option<f32>,
    /// Speakers whose centroids are more alike than this are merged (estimated count).
    #[arg(long)]
    centroid_threshold: Option<f32>,
    /// Adjacent windows less alike than this mark a speaker change.
    #[arg(long)]
    change_threshold: Option<f32>,
    /// Fill pauses up to this long (seconds) inside one speaker's turn.
    #[arg(long)]
    fill_gap: Option<f32>,
    /// Speech starts where the VAD's probability reaches this.
    #[arg(long)]
    vad_onset: Option<f32>,
    /// Speech ends where it falls below this.
    #[arg(long)]
    vad_offset: Option<f32>,
    /// Channel to diarise (0 = first).
    #[arg(long, default_value_t = 0)]
    leg: usize,
    /// Write the RTTM here instead of standard output.
    #[arg(long, value_name = "FILE")]
    rttm: Option<PathBuf>,
    /// File id in the RTTM (default: the WAV's file stem).
    #[arg(long)]
    id: Option<String>,
    /// Speaker model threads.
    #[arg(long, default_value_t = 1)]
    model_threads: usize,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn run(mut cfg: Config, a: DiarizeArgs) -> Result<i32> {
    a.models.apply(&mut cfg);
    let d = DiarizeOptions::default();
    let opts = DiarizeOptions {
        speakers: a.speakers,
        max_speakers: a.max_speakers,
        cluster_threshold: a.cluster_threshold.unwrap_or(d.cluster_threshold),
        change_threshold: a.change_threshold.unwrap_or(d.change_threshold),
        centroid_threshold: a.centroid_threshold.unwrap_or(d.centroid_threshold),
        fill_gap_s: a.fill_gap.unwrap_or(d.fill_gap_s),
        ..d
    };
    opts.validate()?;
    let paths = models::ensure(
        &cfg,
        &[
            Component::runtime(),
            Component::SileroVad,
            Component::SpeakerModel,
        ],
        false,
    )?;
    let audio = diarize::read_leg(&a.file, a.leg)?;
    let t0 = Instant::now();
    let vad = SileroModel::load(&paths.ort_lib, &paths.silero)?;
    let r = RegionOptions::default();
    let region_opts = RegionOptions {
        onset: a.vad_onset.unwrap_or(r.onset),
        offset: a.vad_offset.unwrap_or(r.offset),
        ..r
    };
    let regions = speech_regions(&mut vad.detector(), &audio, &region_opts)?;
    let t_vad = t0.elapsed().as_secs_f64();
    let model = SpeakerModel::load(&paths.ort_lib, &paths.speaker, a.model_threads)?;
    let t1 = Instant::now();
    let segs = diarize::diarize(&model, &audio, &regions, &opts)?;
    let t_diar = t1.elapsed().as_secs_f64();
    let id = a.id.clone().unwrap_or_else(|| {
        a.file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "audio".into())
    });
    let turns: Vec<Turn> = segs
        .iter()
        .map(|s| Turn {
            file: id.clone(),
            start: s.start_s(),
            duration: s.end_s() - s.start_s(),
            speaker: s.label(),
        })
        .collect();
    let rttm = der::write_rttm(&turns);
    match &a.rttm {
        Some(p) => {
            std::fs::write(p, rttm).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{rttm}"),
    }
    let secs = audio.len() as f64 / 16_000.0;
    let speech: f64 = regions.iter().map(|(s, e)| (e - s) as f64 / 16_000.0).sum();
    let speakers = segs.iter().map(|s| s.speaker + 1).max().unwrap_or(0);
    eprintln!(
        "{}: {secs:.1} s audio, {speech:.1} s speech in {} regions, {speakers} speaker(s); VAD {t_vad:.2} s, diarisation {t_diar:.2} s ({:.1} ms per second of speech)",
        a.file.display(),
        regions.len(),
        1000.0 * t_diar / speech.max(1e-9),
    );
    Ok(0)
}

#[derive(Serialize)]
struct FileRow {
    file: String,
    der: f64,
    missed: f64,
    false_alarm: f64,
    confusion: f64,
    reference_s: f64,
}

fn row(file: &str, s: &DerScore) -> FileRow {
    let t = s.total.max(1) as f64;
    FileRow {
        file: file.to_string(),
        der: s.der(),
        missed: s.missed as f64 / t,
        false_alarm: s.false_alarm as f64 / t,
        confusion: s.confusion as f64 / t,
        reference_s: s.total as f64 / der::FRAMES_PER_SECOND,
    }
}

fn read_turns(path: &Path) -> Result<Vec<Turn>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_rttm =
        path.extension().is_some_and(|e| e == "rttm") || text.trim_start().starts_with("SPEAKER");
    Ok(if is_rttm {
        der::parse_rttm(path, &text)?
    } else {
        der::parse_events(&text).with_context(|| format!("in {}", path.display()))?
    })
}

/// `eval diarization REF.rttm HYP`: HYP is an RTTM or callpulse events.
pub fn eval(reference: &str, hypothesis: Option<&Path>, json: bool) -> Result<i32> {
    let Some(hyp_path) = hypothesis else {
        bail!("eval diarization needs two files: REF.rttm and EVENTS.jsonl (or HYP.rttm)");
    };
    let reference = read_turns(Path::new(reference))?;
    let mut hyp = read_turns(hyp_path)?;
    let ref_files: std::collections::BTreeSet<&str> =
        reference.iter().map(|t| t.file.as_str()).collect();
    let hyp_files: std::collections::BTreeSet<String> =
        hyp.iter().map(|t| t.file.clone()).collect();
    // One call against one reference file: the ids need not match.
    if ref_files.len() == 1 && hyp_files.len() == 1 {
        let f = ref_files
            .iter()
            .next()
            .map(|s| s.to_string())
            .unwrap_or_default();
        hyp.iter_mut().for_each(|t| t.file = f.clone());
    }
    let (per, total) = der::score(&reference, &hyp);
    let rows: Vec<FileRow> = per.iter().map(|(f, s)| row(f, s)).collect();
    let total = row("TOTAL", &total);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "files": rows, "total": total }))?
        );
    } else {
        println!(
            "{:<32} {:>7} {:>7} {:>7} {:>7} {:>9}",
            "file", "DER%", "miss%", "FA%", "conf%", "ref s"
        );
        for r in rows.iter().chain(std::iter::once(&total)) {
            println!(
                "{:<32} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>9.1}",
                r.file,
                100.0 * r.der,
                100.0 * r.missed,
                100.0 * r.false_alarm,
                100.0 * r.confusion,
                r.reference_s
            );
        }
    }
    Ok(0)
}

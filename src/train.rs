//! Training and evaluating the text heads (polarity and emotion).
//!
//! **Data.** The project's support-call lines (`data/support_train.jsonl`,
//! CC0: English, Spanish, German, French, Portuguese and Italian, agent and
//! customer, labelled by `data/EMOTION_GUIDELINE.md`), and for polarity also
//! the UCI Sentiment Labelled Sentences of the npm package `sentiment` 5.0.2
//! (`amazon.json` + `imdb.json`). `data/support_heldout.jsonl` and the UCI
//! `yelp.json` are held out: no training or tuning step reads them.
//!
//! **Model.** A multinomial logistic regression (linfa-logistic) over the
//! multilingual-e5-small embedding, with the speaker's role entering as
//! [`RoleFeatures`]: not at all, as a bias per role, or as agent-specific
//! weights on top of the shared ones. Every support line is also trained a
//! second time without its role, so a turn whose role is unknown (a mono
//! call) gets the shared weights. The role treatment and the L2 penalty are
//! chosen by 5-fold cross-validated macro-F1 on the training lines; the
//! calibration temperature is then fitted on the chosen model's out-of-fold
//! logits (maximum likelihood), and the final model is fitted on all of them.

use std::collections::BTreeMap;
use std::path::Path;

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::event::{PolarityLabel, Role};
use crate::sentiment::{softmax, EncoderError, LinearHead, RoleFeatures, TextEncoder, HEAD_FORMAT};

/// Training and evaluation errors.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Data file unreadable or malformed.
    #[error("cannot read labelled data '{path}': {reason}")]
    Data {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        reason: String,
    },
    /// Encoder failure.
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    /// The optimiser failed.
    #[error("training failed: {0}")]
    Fit(String),
}

/// One labelled line.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Text.
    pub text: String,
    /// Speaker role (unknown when the data has none).
    pub role: Role,
    /// Language code, when the data says.
    pub lang: Option<String>,
    /// Gold polarity, when labelled.
    pub polarity: Option<PolarityLabel>,
    /// Gold emotion (index into `intel::emotion::LABELS`), when labelled.
    pub emotion: Option<usize>,
    /// Gold intent (index into `intel::intent::LABELS`), when labelled.
    pub intent: Option<usize>,
}

fn parse_polarity(s: &str) -> Option<PolarityLabel> {
    match s {
        "positive" => Some(PolarityLabel::Positive),
        "negative" => Some(PolarityLabel::Negative),
        "neutral" => Some(PolarityLabel::Neutral),
        _ => None,
    }
}

/// One record; Err names what is wrong with it.
fn parse_record(v: &serde_json::Value) -> Result<Option<Labelled>, String> {
    let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
        return Err("no `text` field".into());
    };
    let text = text.trim().to_string();
    if text.is_empty() {
        return Ok(None);
    }
    let polarity = match (v.get("class"), v.get("polarity").or_else(|| v.get("label"))) {
        (Some(c), _) if c.is_i64() => Some(if c.as_i64() == Some(1) {
            PolarityLabel::Positive
        } else {
            PolarityLabel::Negative
        }),
        (_, Some(p)) if !p.is_null() => {
            let s = p.as_str().unwrap_or_default();
            Some(parse_polarity(s).ok_or_else(|| {
                format!("unknown polarity '{s}' (expected negative, neutral or positive)")
            })?)
        }
        _ => None,
    };
    let emotion = match v.get("emotion").and_then(|e| e.as_str()) {
        Some(e) => Some(crate::intel::emotion::label_index(e).ok_or_else(|| {
            format!(
                "unknown emotion '{e}' (expected one of {})",
                crate::intel::emotion::LABELS.join(", ")
            )
        })?),
        None => None,
    };
    let intent = match v.get("intent").and_then(|e| e.as_str()) {
        Some(e) => Some(crate::intel::intent::label_index(e).ok_or_else(|| {
            format!(
                "unknown intent '{e}' (expected one of {})",
                crate::intel::intent::LABELS.join(", ")
            )
        })?),
        None => None,
    };
    if polarity.is_none() && emotion.is_none() && intent.is_none() {
        return Ok(None);
    }
    let role = match v
        .get("role")
        .or_else(|| v.get("speaker"))
        .and_then(|r| r.as_str())
    {
        Some("agent") => Role::Agent,
        Some("customer") => Role::Customer,
        _ => Role::Unknown,
    };
    let lang = v.get("lang").and_then(|l| l.as_str()).map(String::from);
    Ok(Some(Labelled {
        text,
        role,
        lang,
        polarity,
        emotion,
        intent,
    }))
}

/// Read labelled lines: a JSON array of `{text, class}` (class 0/1, the
/// `sentiment` package's format) or JSON lines of `{text, polarity|label,
/// emotion, role|speaker, lang}`. Empty texts and records without any label
/// are skipped; an unknown label is an error naming the line.
pub fn load_labelled(path: &Path) -> Result<Vec<Labelled>, TrainError> {
    let err = |reason: String| TrainError::Data {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    if text.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        for (i, r) in v.iter().enumerate() {
            out.extend(parse_record(r).map_err(|e| err(format!("record {}: {e}", i + 1)))?);
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
            out.extend(parse_record(&v).map_err(|e| err(format!("line {}: {e}", i + 1)))?);
        }
    }
    if out.is_empty() {
        return Err(err("no labelled sentences found".into()));
    }
    Ok(out)
}

/// Today's UTC date as `YYYYMMDD` (the date part of a head's version).
pub fn utc_date_compact() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}{m:02}{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Embed texts in batches of 32, calling `progress(done, total)`.
pub fn embed_all(
    enc: &dyn TextEncoder,
    texts: &[&str],
    progress: &dyn Fn(usize, usize),
) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        out.extend(enc.embed(chunk)?);
        progress(out.len(), texts.len());
    }
    Ok(out)
}

/// Index of a polarity label in [`crate::sentiment::POLARITY_LABELS`] order.
pub fn polarity_index(l: PolarityLabel) -> usize {
    match l {
        PolarityLabel::Negative => 0,
        PolarityLabel::Neutral => 1,
        PolarityLabel::Positive => 2,
    }
}

/// One training example: features' source and its class.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    /// The sentence embedding.
    pub emb: &'a [f32],
    /// The role it is spoken in.
    pub role: Role,
    /// Class index.
    pub y: usize,
}

fn fit(
    rows: &[(Vec<f32>, usize)],
    k: usize,
    alpha: f64,
) -> Result<(Vec<Vec<f32>>, Vec<f32>), TrainError> {
    let d = rows.first().map(|r| r.0.len()).unwrap_or(0);
    let xa = Array2::from_shape_fn((rows.len(), d), |(i, j)| rows[i].0[j] as f64);
    let ya = Array1::from_iter(rows.iter().map(|r| r.1));
    let m = MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(300)
        .fit(&Dataset::new(xa, ya))
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // Map the model's class order to ours; an absent class never wins.
    let mut w = vec![vec![0.0f32; d]; k];
    let mut b = vec![-30.0f32; k];
    for (c, &cls) in m.classes().iter().enumerate() {
        for (j, wj) in w[cls].iter_mut().enumerate() {
            *wj = m.params()[[j, c]] as f32;
        }
        b[cls] = m.intercept()[c] as f32;
    }
    Ok((w, b))
}

/// Training rows of `lines` (each with its role, and again without it)
/// plus `extra` (role unknown).
fn rows(mode: RoleFeatures, lines: &[&Row], extra: &[Row]) -> Vec<(Vec<f32>, usize)> {
    let mut out = Vec::new();
    for r in lines {
        out.push((mode.features(r.emb, r.role), r.y));
        if mode != RoleFeatures::None && r.role != Role::Unknown {
            out.push((mode.features(r.emb, Role::Unknown), r.y));
        }
    }
    out.extend(
        extra
            .iter()
            .map(|r| (mode.features(r.emb, Role::Unknown), r.y)),
    );
    out
}

fn logits(w: &[Vec<f32>], b: &[f32], f: &[f32]) -> Vec<f32> {
    w.iter()
        .zip(b)
        .map(|(wk, bk)| wk.iter().zip(f).map(|(a, x)| a * x).sum::<f32>() + bk)
        .collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

/// Accuracy and macro-F1 (over the gold classes present) of a confusion
/// matrix, rows gold, columns predicted.
pub fn scores(conf: &[Vec<usize>]) -> (f64, f64) {
    let k = conf.len();
    let total: usize = conf.iter().flatten().sum();
    let correct: usize = (0..k).map(|i| conf[i][i]).sum();
    let present: Vec<usize> = (0..k)
        .filter(|&i| conf[i].iter().sum::<usize>() > 0)
        .collect();
    let f1: f64 = present.iter().map(|&c| class_scores(conf, c).2).sum();
    (
        correct as f64 / total.max(1) as f64,
        f1 / present.len().max(1) as f64,
    )
}

/// Precision, recall and F1 of class `c`.
pub fn class_scores(conf: &[Vec<usize>], c: usize) -> (f64, f64, f64) {
    let tp = conf[c][c] as f64;
    let pred: usize = conf.iter().map(|r| r[c]).sum();
    let gold: usize = conf[c].iter().sum();
    let p = if pred > 0 { tp / pred as f64 } else { 0.0 };
    let r = if gold > 0 { tp / gold as f64 } else { 0.0 };
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f)
}

/// Expected calibration error of (confidence, correct) pairs over `bins`
/// equal-width bins: Σ |bin| / n × |accuracy(bin) − mean confidence(bin)|.
pub fn ece(pairs: &[(f32, bool)], bins: usize) -> f64 {
    let mut acc = vec![(0usize, 0usize, 0.0f64); bins];
    for &(c, ok) in pairs {
        let b = ((c.clamp(0.0, 1.0) * bins as f32) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += ok as usize;
        acc[b].2 += c as f64;
    }
    let n = pairs.len().max(1) as f64;
    acc.iter()
        .filter(|b| b.0 > 0)
        .map(|(k, ok, sc)| (*k as f64 / n) * (*ok as f64 / *k as f64 - sc / *k as f64).abs())
        .sum()
}

/// The temperature that maximises the likelihood of `gold` under
/// `softmax(logits / T)`.
pub fn fit_temperature(logits: &[Vec<f32>], gold: &[usize]) -> f32 {
    let nll = |t: f32| -> f64 {
        logits
            .iter()
            .zip(gold)
            .map(|(z, &g)| -(softmax(z, t)[g].max(1e-9) as f64).ln())
            .sum()
    };
    let mut best = (f64::MAX, 1.0f32);
    for i in 5..=100 {
        let t = i as f32 * 0.05;
        let v = nll(t);
        if v < best.0 {
            best = (v, t);
        }
    }
    best.1
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// One cross-validated candidate.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Role treatment.
    pub role_features: RoleFeatures,
    /// L2 penalty.
    pub alpha: f64,
    /// 5-fold CV accuracy on the support lines.
    pub cv_accuracy: f64,
    /// 5-fold CV macro-F1 on the support lines.
    pub cv_macro_f1: f64,
}

/// What training a head reports.
#[derive(Debug, Clone, Serialize)]
pub struct HeadReport {
    /// `polarity` or `emotion`.
    pub task: String,
    /// Support lines trained on.
    pub support_lines: usize,
    /// Extra (review) sentences trained on.
    pub extra_sentences: usize,
    /// Support lines per class.
    pub counts: Vec<usize>,
    /// Every candidate tried.
    pub candidates: Vec<Candidate>,
    /// The chosen one.
    pub chosen: Candidate,
    /// Its out-of-fold confusion (rows gold, columns predicted).
    pub cv_confusion: Vec<Vec<usize>>,
    /// Fitted temperature.
    pub temperature: f32,
    /// Out-of-fold ECE before calibration.
    pub cv_ece_uncalibrated: f64,
    /// Out-of-fold ECE after calibration (same data the temperature was fitted on).
    pub cv_ece_calibrated: f64,
}

/// What to train.
pub struct HeadSpec<'a> {
    /// `polarity` or `emotion`.
    pub task: &'a str,
    /// Class labels.
    pub labels: &'a [&'a str],
    /// Encoder description written into the head.
    pub encoder: &'a str,
    /// Role treatments to try.
    pub modes: &'a [RoleFeatures],
    /// L2 penalties to try.
    pub alphas: &'a [f64],
}

/// Cross-validate one candidate; returns its out-of-fold logits.
fn cross_validate(
    spec: &HeadSpec,
    support: &[Row],
    extra: &[Row],
    mode: RoleFeatures,
    alpha: f64,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let folds = 5;
    let mut oof = vec![Vec::new(); support.len()];
    for f in 0..folds {
        let train: Vec<&Row> = support
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != f)
            .map(|(_, r)| r)
            .collect();
        let (w, b) = fit(&rows(mode, &train, extra), spec.labels.len(), alpha)?;
        for (i, r) in support.iter().enumerate().filter(|(i, _)| i % folds == f) {
            oof[i] = logits(&w, &b, &mode.features(r.emb, r.role));
        }
    }
    Ok(oof)
}

fn confusion(k: usize, logits: &[Vec<f32>], support: &[Row]) -> Vec<Vec<usize>> {
    let mut conf = vec![vec![0usize; k]; k];
    for (z, r) in logits.iter().zip(support) {
        conf[r.y][argmax(z)] += 1;
    }
    conf
}

fn calibration_pairs(logits: &[Vec<f32>], support: &[Row], t: f32) -> Vec<(f32, bool)> {
    logits
        .iter()
        .zip(support)
        .map(|(z, r)| {
            let p = softmax(z, t);
            let best = argmax(&p);
            (p[best], best == r.y)
        })
        .collect()
}

/// Train a head on `support` (and `extra`, which are always in the
/// training folds and never scored): choose the role treatment and penalty
/// by 5-fold CV macro-F1, fit the temperature on out-of-fold logits, then
/// fit on everything.
pub fn train_head(
    spec: &HeadSpec,
    support: &[Row],
    extra: &[Row],
    progress: &dyn Fn(&str),
) -> Result<(LinearHead, HeadReport), TrainError> {
    let k = spec.labels.len();
    let mut candidates = Vec::new();
    let mut best: Option<(Candidate, Vec<Vec<f32>>)> = None;
    for &mode in spec.modes {
        for &alpha in spec.alphas {
            let oof = cross_validate(spec, support, extra, mode, alpha)?;
            let (acc, f1) = scores(&confusion(k, &oof, support));
            progress(&format!(
                "{}: role {mode:?}, alpha {alpha}: CV accuracy {acc:.3}, macro-F1 {f1:.3}",
                spec.task
            ));
            let c = Candidate {
                role_features: mode,
                alpha,
                cv_accuracy: round4(acc),
                cv_macro_f1: round4(f1),
            };
            candidates.push(c.clone());
            if best.as_ref().is_none_or(|b| f1 > b.0.cv_macro_f1 + 1e-9) {
                best = Some((c, oof));
            }
        }
    }
    let (chosen, oof) = best.ok_or_else(|| TrainError::Fit("no candidate".into()))?;
    let gold: Vec<usize> = support.iter().map(|r| r.y).collect();
    let temperature = fit_temperature(&oof, &gold);
    let cv_confusion = confusion(k, &oof, support);
    let mut counts = vec![0usize; k];
    for r in support {
        counts[r.y] += 1;
    }
    progress(&format!(
        "{}: fitting on all {} lines (role {:?}, alpha {}), temperature {temperature}",
        spec.task,
        support.len(),
        chosen.role_features,
        chosen.alpha
    ));
    let all: Vec<&Row> = support.iter().collect();
    let (w, b) = fit(&rows(chosen.role_features, &all, extra), k, chosen.alpha)?;
    let report = HeadReport {
        task: spec.task.into(),
        support_lines: support.len(),
        extra_sentences: extra.len(),
        counts,
        candidates,
        cv_confusion,
        temperature,
        cv_ece_uncalibrated: round4(ece(&calibration_pairs(&oof, support, 1.0), 10)),
        cv_ece_calibrated: round4(ece(&calibration_pairs(&oof, support, temperature), 10)),
        chosen: chosen.clone(),
    };
    let head = LinearHead {
        format: HEAD_FORMAT.into(),
        version: 2,
        task: spec.task.into(),
        encoder: spec.encoder.into(),
        labels: spec.labels.iter().map(|s| s.to_string()).collect(),
        role_features: chosen.role_features,
        dim: support.first().map(|r| r.emb.len()).unwrap_or(0),
        weights: w
            .into_iter()
            .map(|r| r.into_iter().map(|v| (v * 1e5).round() / 1e5).collect())
            .collect(),
        bias: b.into_iter().map(|v| (v * 1e5).round() / 1e5).collect(),
        temperature,
        training: serde_json::to_value(&report).unwrap_or_default(),
        head_version: None,
        data_sha256: None,
    };
    Ok((head, report))
}

/// Scores of one slice of an evaluation (a language, a role).
#[derive(Debug, Clone, Serialize)]
pub struct SliceReport {
    /// Lines.
    pub n: usize,
    /// Label accuracy.
    pub accuracy: f64,
    /// Macro-F1 over the gold classes present.
    pub macro_f1: f64,
}

/// Per-class scores.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// Label.
    pub label: String,
    /// Gold lines of this class.
    pub n: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// An evaluation of a head on labelled lines.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// File evaluated.
    pub file: String,
    /// `polarity` or `emotion`.
    pub task: String,
    /// Lines with a gold label for the task.
    pub n: usize,
    /// Label accuracy.
    pub accuracy: f64,
    /// Macro-F1 over the gold classes present.
    pub macro_f1: f64,
    /// Polarity only: accuracy of the sign of the score on lines whose gold
    /// is positive or negative.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_accuracy: Option<f64>,
    /// Expected calibration error of the top class (10 bins). For binary
    /// gold (no neutral lines) it is that of P(positive | not neutral).
    pub ece: f64,
    /// Class labels, in the confusion matrix's order.
    pub labels: Vec<String>,
    /// Rows gold, columns predicted.
    pub confusion: Vec<Vec<usize>>,
    /// Per gold class.
    pub per_class: Vec<ClassReport>,
    /// Per language, when the lines carry `lang`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_language: BTreeMap<String, SliceReport>,
    /// Per speaker role, when the lines carry one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub per_role: BTreeMap<String, SliceReport>,
}

/// A prediction of one line: class probabilities.
pub type Predict<'a> = dyn Fn(&[f32], Role) -> Vec<f32> + 'a;

/// Evaluate `predict` on `data` for `task`: lines without that task's gold are skipped.
pub fn evaluate(
    enc: &dyn TextEncoder,
    task: &str,
    labels: &[&str],
    predict: &Predict,
    data: &[Labelled],
    file: &str,
) -> Result<EvalReport, TrainError> {
    let gold_of = |l: &Labelled| match task {
        "polarity" => l.polarity.map(polarity_index),
        "intent" => l.intent,
        _ => l.emotion,
    };
    let lines: Vec<(&Labelled, usize)> = data
        .iter()
        .filter_map(|l| gold_of(l).map(|g| (l, g)))
        .collect();
    let x = embed_all(
        enc,
        &lines
            .iter()
            .map(|(l, _)| l.text.as_str())
            .collect::<Vec<_>>(),
        &|_, _| {},
    )?;
    Ok(evaluate_embedded(task, labels, predict, &lines, &x, file))
}

/// [`evaluate`] on lines already embedded: each with its gold class index
/// and, in `x`, its embedding.
pub fn evaluate_embedded(
    task: &str,
    labels: &[&str],
    predict: &Predict,
    lines: &[(&Labelled, usize)],
    x: &[Vec<f32>],
    file: &str,
) -> EvalReport {
    let k = labels.len();
    let mut conf = vec![vec![0usize; k]; k];
    let mut slices: BTreeMap<(bool, String), Vec<Vec<usize>>> = BTreeMap::new();
    let binary_gold = task == "polarity" && !lines.iter().any(|(_, g)| *g == 1);
    let (mut calib, mut bin) = (Vec::new(), (0usize, 0usize));
    for (v, (l, g)) in x.iter().zip(lines) {
        let p = predict(v, l.role);
        let best = argmax(&p);
        conf[*g][best] += 1;
        if let Some(lang) = &l.lang {
            slices
                .entry((true, lang.clone()))
                .or_insert_with(|| vec![vec![0; k]; k])[*g][best] += 1;
        }
        if l.role != Role::Unknown {
            let role = format!("{:?}", l.role).to_lowercase();
            slices
                .entry((false, role))
                .or_insert_with(|| vec![vec![0; k]; k])[*g][best] += 1;
        }
        if task == "polarity" && *g != 1 {
            bin.0 += 1;
            bin.1 += ((p[2] > p[0]) == (*g == 2)) as usize;
        }
        calib.push(if binary_gold {
            let pp = p[2] / (p[0] + p[2]).max(1e-9);
            (pp.max(1.0 - pp), (pp >= 0.5) == (*g == 2))
        } else {
            (p[best], best == *g)
        });
    }
    let (accuracy, macro_f1) = scores(&conf);
    let slice = |c: &Vec<Vec<usize>>| {
        let (a, f) = scores(c);
        SliceReport {
            n: c.iter().flatten().sum(),
            accuracy: round4(a),
            macro_f1: round4(f),
        }
    };
    let per = |lang: bool| {
        slices
            .iter()
            .filter(|((l, _), _)| *l == lang)
            .map(|((_, name), c)| (name.clone(), slice(c)))
            .collect()
    };
    EvalReport {
        file: file.into(),
        task: task.into(),
        n: lines.len(),
        accuracy: round4(accuracy),
        macro_f1: round4(macro_f1),
        binary_accuracy: (task == "polarity").then(|| round4(bin.1 as f64 / bin.0.max(1) as f64)),
        ece: round4(ece(&calib, 10)),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        per_class: (0..k)
            .filter(|&c| conf[c].iter().sum::<usize>() > 0)
            .map(|c| {
                let (p, r, f) = class_scores(&conf, c);
                ClassReport {
                    label: labels[c].into(),
                    n: conf[c].iter().sum(),
                    precision: round4(p),
                    recall: round4(r),
                    f1: round4(f),
                }
            })
            .collect(),
        confusion: conf,
        per_language: per(true),
        per_role: per(false),
    }
}

impl EvalReport {
    /// A plain-text rendering.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{} ({}): {} lines\n  accuracy {:.1}%, macro-F1 {:.3}, expected calibration error {:.3}\n",
            self.file,
            self.task,
            self.n,
            self.accuracy * 100.0,
            self.macro_f1,
            self.ece
        );
        if let Some(b) = self.binary_accuracy {
            s.push_str(&format!(
                "  binary accuracy (sign of the score, non-neutral gold): {:.1}%\n",
                b * 100.0
            ));
        }
        for c in &self.per_class {
            s.push_str(&format!(
                "  {:<13} n {:>4}  precision {:.3}  recall {:.3}  F1 {:.3}\n",
                c.label, c.n, c.precision, c.recall, c.f1
            ));
        }
        for (title, m) in [("language", &self.per_language), ("role", &self.per_role)] {
            for (name, r) in m {
                s.push_str(&format!(
                    "  {title} {name:<9} n {:>4}  accuracy {:.1}%  macro-F1 {:.3}\n",
                    r.n,
                    r.accuracy * 100.0,
                    r.macro_f1
                ));
            }
        }
        s.push_str("  confusion (rows gold, columns predicted):\n  ");
        s.push_str(&format!("{:>13}", ""));
        for l in &self.labels {
            s.push_str(&format!(" {:>7}", &l[..l.len().min(7)]));
        }
        s.push('\n');
        for (i, row) in self.confusion.iter().enumerate() {
            if row.iter().sum::<usize>() == 0 {
                continue;
            }
            s.push_str(&format!("  {:>13}", self.labels[i]));
            for v in row {
                s.push_str(&format!(" {v:>7}"));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_error_of_perfect_and_overconfident_predictions() {
        // 80% confident and right 80% of the time: calibrated.
        let mut v: Vec<(f32, bool)> = (0..100).map(|i| (0.85, i % 5 != 0)).collect();
        assert!(ece(&v, 10) < 0.06);
        // 95% confident and right half the time: off by 0.45.
        v = (0..100).map(|i| (0.95, i % 2 == 0)).collect();
        assert!((ece(&v, 10) - 0.45).abs() < 1e-6);
    }

    #[test]
    fn civil_dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn macro_f1_of_a_confusion_matrix() {
        let c = vec![vec![2, 0], vec![1, 1]];
        let (acc, f1) = scores(&c);
        assert!((acc - 0.75).abs() < 1e-9);
        // F1: class 0 = 0.8, class 1 = 0.6667.
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
        // A class with no gold lines is left out of the mean.
        let c = vec![vec![2, 0, 0], vec![0, 0, 0], vec![0, 1, 3]];
        assert!((scores(&c).1 - (1.0 + 6.0 / 7.0) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn temperature_fit_undoes_overconfidence() {
        // Logits 6 apart but right only ~73% of the time: T > 1.
        let mut z = Vec::new();
        let mut g = Vec::new();
        for i in 0..100 {
            z.push(vec![3.0, -3.0]);
            g.push(usize::from(i % 4 == 0));
        }
        let t = fit_temperature(&z, &g);
        assert!(t > 2.5 && t < 8.0, "{t}");
    }

    #[test]
    fn a_head_learns_separable_classes_and_uses_the_role() {
        // Class 0 on axis 0, class 1 on axis 1; agents' axis-0 lines are class 2.
        let embs: Vec<Vec<f32>> = (0..90)
            .map(|i| {
                let j = (i % 7) as f32 * 0.01;
                match i % 3 {
                    0 => vec![1.0, j, 0.0],
                    1 => vec![j, 1.0, 0.0],
                    _ => vec![1.0, j, 0.0],
                }
            })
            .collect();
        let rows: Vec<Row> = embs
            .iter()
            .enumerate()
            .map(|(i, e)| Row {
                emb: e,
                role: if i % 3 == 2 {
                    Role::Agent
                } else {
                    Role::Customer
                },
                y: i % 3,
            })
            .collect();
        let spec = HeadSpec {
            task: "polarity",
            labels: &["negative", "neutral", "positive"],
            encoder: "test",
            modes: &[RoleFeatures::None, RoleFeatures::Bias],
            alphas: &[0.1],
        };
        let (head, report) = train_head(&spec, &rows, &[], &|_| {}).unwrap();
        assert_eq!(report.chosen.role_features, RoleFeatures::Bias);
        assert!(report.chosen.cv_macro_f1 > 0.95, "{report:?}");
        let p = head.probs(&[1.0, 0.0, 0.0], Role::Agent);
        assert_eq!(argmax(&p), 2);
        assert_eq!(argmax(&head.probs(&[1.0, 0.0, 0.0], Role::Customer)), 0);
        assert!(report.temperature > 0.0);
    }

    #[test]
    fn loads_every_format_and_names_bad_lines() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        std::fs::write(&a, r#"[{"text":"good","class":1},{"text":"","class":0},{"text":"bad","class":0},{"text":"x","class":null}]"#).unwrap();
        let v = load_labelled(&a).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].polarity, Some(PolarityLabel::Positive));
        let b = d.path().join("b.jsonl");
        std::fs::write(
            &b,
            "{\"text\":\"ok then\",\"label\":\"neutral\"}\n\n{\"id\":\"es-1\",\"text\":\"Vale, gracias\",\"lang\":\"es\",\"role\":\"agent\",\"polarity\":\"positive\",\"emotion\":\"satisfaction\",\"sarcasm\":false,\"mixed\":false}\n",
        )
        .unwrap();
        let v = load_labelled(&b).unwrap();
        assert_eq!(v[0].polarity, Some(PolarityLabel::Neutral));
        assert_eq!(
            (v[1].role, v[1].lang.as_deref(), v[1].emotion),
            (Role::Agent, Some("es"), Some(4))
        );
        std::fs::write(&b, "{broken\n").unwrap();
        assert!(load_labelled(&b)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        std::fs::write(&b, "{\"text\":\"x\",\"emotion\":\"rage\"}\n").unwrap();
        let e = load_labelled(&b).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("rage"), "{e}");
    }
}

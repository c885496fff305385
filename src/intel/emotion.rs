//! Emotion per turn: a multinomial logistic regression over the sentence
//! embedding (trained by `callpulse train emotion` on
//! `data/support_emotion.jsonl`), adjusted by prosodic arousal.
//!
//! Taxonomy for support calls (see `data/EMOTION_GUIDELINE.md`): anger,
//! frustration, anxiety, confusion, satisfaction, neutral.
//!
//! Prosody: the text decides the emotion, the voice moves it. With `a` the
//! speaker's arousal against their own baseline (energy, pitch and rate
//! z-scores, [`crate::prosody::arousal`]), the logits move by
//! `+0.8·max(a, 0)` for anger, `+0.5·max(a, 0)` for frustration and
//! `-0.5·max(a, 0)` for neutral and satisfaction; low energy with a slow rate
//! gives the separate `resignation` score (see [`resignation`]).

use linfa::prelude::*;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::event::{Emotion, ProsodyZ};

/// The labels, in the head's order.
pub const LABELS: [&str; 6] = [
    "anger",
    "frustration",
    "anxiety",
    "confusion",
    "satisfaction",
    "neutral",
];

/// Index of a label.
pub fn label_index(s: &str) -> Option<usize> {
    LABELS.iter().position(|l| *l == s)
}

/// The emotion head built into the binary (`models/emotion-head.json`).
pub const BUNDLED_EMOTION_HEAD: &str = include_str!("../../models/emotion-head.json");

/// Logit shift per unit of positive arousal, per label (same order as [`LABELS`]).
pub const AROUSAL_SHIFT: [f32; 6] = [0.8, 0.5, 0.0, 0.0, -0.5, -0.5];

/// A trained emotion head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmotionHead {
    /// Format tag, `callpulse-emotion-head`.
    pub format: String,
    /// Label order.
    pub labels: Vec<String>,
    /// Weights, one row per label.
    pub weights: Vec<Vec<f32>>,
    /// Biases per label.
    pub bias: Vec<f32>,
    /// Training record.
    #[serde(default)]
    pub training: serde_json::Value,
}

impl EmotionHead {
    /// Parse a head file.
    pub fn from_json(s: &str) -> Result<Self, String> {
        let h: EmotionHead = serde_json::from_str(s).map_err(|e| e.to_string())?;
        if h.format != "callpulse-emotion-head" {
            return Err(format!(
                "format '{}' is not callpulse-emotion-head",
                h.format
            ));
        }
        if h.labels != LABELS || h.weights.len() != 6 || h.bias.len() != 6 {
            return Err("the head must have the six labels in order".into());
        }
        Ok(h)
    }

    /// The bundled head.
    pub fn bundled() -> Result<Self, String> {
        Self::from_json(BUNDLED_EMOTION_HEAD)
    }

    /// Text-only logits.
    pub fn logits(&self, x: &[f32]) -> [f32; 6] {
        let mut z = [0.0f32; 6];
        for (k, zk) in z.iter_mut().enumerate() {
            *zk = self.bias[k]
                + self.weights[k]
                    .iter()
                    .zip(x)
                    .map(|(w, v)| w * v)
                    .sum::<f32>();
        }
        z
    }

    /// Probabilities from an embedding and the speaker's arousal.
    pub fn predict(&self, x: &[f32], arousal: f32) -> [f32; 6] {
        let mut z = self.logits(x);
        let a = arousal.max(0.0);
        for (zk, s) in z.iter_mut().zip(AROUSAL_SHIFT) {
            *zk += s * a;
        }
        softmax(z)
    }

    /// As an [`Emotion`].
    pub fn emotion(&self, x: &[f32], arousal: f32) -> Emotion {
        to_emotion(self.predict(x, arousal))
    }
}

/// Package probabilities.
pub fn to_emotion(p: [f32; 6]) -> Emotion {
    let best = (0..6).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(5);
    Emotion {
        label: LABELS[best].into(),
        probs: LABELS
            .iter()
            .zip(p)
            .map(|(l, v)| (l.to_string(), (v * 1000.0).round() / 1000.0))
            .collect(),
    }
}

fn softmax(z: [f32; 6]) -> [f32; 6] {
    let m = z.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f32> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f32 = e.iter().sum();
    let mut out = [0.0; 6];
    for (o, v) in out.iter_mut().zip(e) {
        *o = v / s;
    }
    out
}

/// Resignation in [0, 1]: a quiet, slow voice against the speaker's own
/// baseline (energy z below 0 and rate z below 0), scaled so that one
/// standard deviation down on both gives about 0.5.
pub fn resignation(z: &ProsodyZ) -> f32 {
    let low = (-z.energy).max(0.0) + 0.5 * (-z.pitch).max(0.0) + (-z.rate).max(0.0);
    let v = 1.0 - (-low / 2.0).exp();
    (v * 1000.0).round() / 1000.0
}

/// Cross-validation result of a training run.
#[derive(Debug, Clone, Serialize)]
pub struct EmotionReport {
    /// Examples.
    pub n: usize,
    /// Per-label counts.
    pub counts: Vec<usize>,
    /// L2 penalty chosen.
    pub alpha: f64,
    /// 5-fold cross-validated accuracy.
    pub cv_accuracy: f64,
    /// 5-fold cross-validated macro-F1.
    pub cv_macro_f1: f64,
    /// Confusion matrix, rows = gold, columns = predicted, in [`LABELS`] order.
    pub confusion: Vec<Vec<usize>>,
}

fn fit(x: &[Vec<f32>], y: &[usize], alpha: f64) -> Result<(Vec<Vec<f32>>, Vec<f32>), String> {
    let d = x.first().map(|v| v.len()).unwrap_or(0);
    let xa = Array2::from_shape_fn((x.len(), d), |(i, j)| x[i][j] as f64);
    let ya = Array1::from_iter(y.iter().copied());
    let ds = Dataset::new(xa, ya);
    let m = MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(300)
        .fit(&ds)
        .map_err(|e| e.to_string())?;
    // Map the model's class order to ours.
    let classes = m.classes().to_vec();
    let mut w = vec![vec![0.0f32; d]; 6];
    let mut b = vec![-30.0f32; 6];
    for (c, &k) in classes.iter().enumerate() {
        for (j, wj) in w[k].iter_mut().enumerate() {
            *wj = m.params()[[j, c]] as f32;
        }
        b[k] = m.intercept()[c] as f32;
    }
    Ok((w, b))
}

/// Macro-F1 and accuracy of a confusion matrix.
pub fn scores(conf: &[Vec<usize>]) -> (f64, f64) {
    let k = conf.len();
    let total: usize = conf.iter().flatten().sum();
    let correct: usize = (0..k).map(|i| conf[i][i]).sum();
    let mut f1 = 0.0;
    for (i, row) in conf.iter().enumerate() {
        let tp = row[i] as f64;
        let pred: usize = conf.iter().map(|r| r[i]).sum();
        let gold: usize = row.iter().sum();
        let p = if pred > 0 { tp / pred as f64 } else { 0.0 };
        let r = if gold > 0 { tp / gold as f64 } else { 0.0 };
        f1 += if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
    }
    (correct as f64 / total.max(1) as f64, f1 / k.max(1) as f64)
}

/// Train on embeddings `x` with labels `y` (indices into [`LABELS`]):
/// choose the L2 penalty by 5-fold cross-validated macro-F1, then fit on all.
pub fn train(
    x: &[Vec<f32>],
    y: &[usize],
    progress: &dyn Fn(&str),
) -> Result<(EmotionHead, EmotionReport), String> {
    let folds = 5;
    let mut best: Option<(f64, f64, Vec<Vec<usize>>, f64)> = None;
    for alpha in [0.3, 1.0, 3.0, 10.0] {
        progress(&format!("cross-validating alpha {alpha}"));
        let mut conf = vec![vec![0usize; 6]; 6];
        for k in 0..folds {
            let (mut tx, mut ty) = (Vec::new(), Vec::new());
            for (i, (v, &l)) in x.iter().zip(y).enumerate() {
                if i % folds != k {
                    tx.push(v.clone());
                    ty.push(l);
                }
            }
            let (w, b) = fit(&tx, &ty, alpha)?;
            let head = EmotionHead {
                format: "callpulse-emotion-head".into(),
                labels: LABELS.iter().map(|s| s.to_string()).collect(),
                weights: w,
                bias: b,
                training: serde_json::Value::Null,
            };
            for (i, (v, &l)) in x.iter().zip(y).enumerate() {
                if i % folds == k {
                    let z = head.logits(v);
                    let p = (0..6).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap_or(5);
                    conf[l][p] += 1;
                }
            }
        }
        let (acc, f1) = scores(&conf);
        progress(&format!("  accuracy {acc:.3}, macro-F1 {f1:.3}"));
        if best.as_ref().is_none_or(|b| f1 > b.1) {
            best = Some((acc, f1, conf, alpha));
        }
    }
    let (acc, f1, conf, alpha) = best.ok_or("no data")?;
    progress(&format!(
        "fitting on all {} examples (alpha {alpha})",
        x.len()
    ));
    let (w, b) = fit(x, y, alpha)?;
    let mut counts = vec![0usize; 6];
    for &l in y {
        counts[l] += 1;
    }
    let report = EmotionReport {
        n: x.len(),
        counts,
        alpha,
        cv_accuracy: (acc * 1000.0).round() / 1000.0,
        cv_macro_f1: (f1 * 1000.0).round() / 1000.0,
        confusion: conf,
    };
    let head = EmotionHead {
        format: "callpulse-emotion-head".into(),
        labels: LABELS.iter().map(|s| s.to_string()).collect(),
        weights: w
            .into_iter()
            .map(|r| r.into_iter().map(|v| (v * 1e5).round() / 1e5).collect())
            .collect(),
        bias: b,
        training: serde_json::to_value(&report).unwrap_or_default(),
    };
    Ok((head, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arousal_moves_anger_up_and_neutral_down() {
        let mut h = EmotionHead {
            format: "callpulse-emotion-head".into(),
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            weights: vec![vec![0.0; 2]; 6],
            bias: vec![0.0; 6],
            training: serde_json::Value::Null,
        };
        h.bias[5] = 1.0;
        let calm = h.predict(&[0.0, 0.0], 0.0);
        let loud = h.predict(&[0.0, 0.0], 2.0);
        assert!(loud[0] > calm[0] && loud[1] > calm[1] && loud[5] < calm[5]);
        // Negative arousal does not invent calm.
        assert_eq!(h.predict(&[0.0, 0.0], -3.0), calm);
        assert_eq!(to_emotion(calm).label, "neutral");
    }

    #[test]
    fn resignation_needs_a_quiet_slow_voice() {
        let z = |energy, rate| ProsodyZ {
            energy,
            pitch: 0.0,
            rate,
            pause: 0.0,
        };
        assert_eq!(resignation(&z(0.0, 0.0)), 0.0);
        assert_eq!(resignation(&z(2.0, 1.0)), 0.0);
        assert!(resignation(&z(-1.0, -1.0)) > 0.5);
        assert!(resignation(&z(-2.0, -2.0)) > resignation(&z(-1.0, -0.5)));
    }

    #[test]
    fn macro_f1_of_a_confusion_matrix() {
        let c = vec![vec![2, 0], vec![1, 1]];
        let (acc, f1) = scores(&c);
        assert!((acc - 0.75).abs() < 1e-9);
        // F1: class 0 = 0.8, class 1 = 0.6667.
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }
}

use serde::{Deserialize, Serialize};

use crate::event::{Polarity, PolarityLabel, Probs, Role};

/// The polarity head trained by `callpulse train polarity`, committed at
/// `models/polarity-head.json` and built into the binary.
pub const BUNDLED_HEAD: &str = include_str!("../../models/polarity-head.json");

/// The file format tag of a head.
pub const HEAD_FORMAT: &str = "callpulse-linear-head";

/// Polarity labels in the polarity head's order.
pub const POLARITY_LABELS: [&str; 3] = ["negative", "neutral", "positive"];

/// Head file errors.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Not valid JSON of the expected shape.
    #[error("invalid head file: {0}")]
    Parse(String),
}

/// How the speaker's role enters a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RoleFeatures {
    /// The role is not used.
    #[default]
    None,
    /// Two indicator features (agent, customer): a bias per role.
    Bias,
    /// The indicators plus the embedding again, multiplied by the agent
    /// indicator: agents get weights of their own on top of the shared ones.
    Interaction,
}

impl RoleFeatures {
    /// Feature width for an embedding of `dim`.
    pub fn width(self, dim: usize) -> usize {
        match self {
            RoleFeatures::None => dim,
            RoleFeatures::Bias => dim + 2,
            RoleFeatures::Interaction => 2 * dim + 2,
        }
    }

    /// The feature vector of an embedding spoken by `role`. An unknown role
    /// sets no role feature: the shared weights alone (heads are trained on
    /// every line a second time without its role).
    pub fn features(self, emb: &[f32], role: Role) -> Vec<f32> {
        let (agent, customer) = match role {
            Role::Agent => (1.0, 0.0),
            Role::Customer => (0.0, 1.0),
            Role::Unknown => (0.0, 0.0),
        };
        let mut v = Vec::with_capacity(self.width(emb.len()));
        v.extend_from_slice(emb);
        if self == RoleFeatures::Interaction {
            v.extend(emb.iter().map(|x| x * agent));
        }
        if self != RoleFeatures::None {
            v.push(agent);
            v.push(customer);
        }
        v
    }
}

/// A multinomial logistic regression over sentence embeddings (and,
/// optionally, the speaker's role), with a temperature fitted on
/// out-of-fold predictions for calibration: `softmax((W·f + b) / T)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearHead {
    /// Format tag, [`HEAD_FORMAT`].
    pub format: String,
    /// Format version (2).
    pub version: u32,
    /// `polarity` or `emotion`.
    pub task: String,
    /// Which encoder (and prefix) produced the embeddings it was trained on.
    pub encoder: String,
    /// Class labels, in the order of `weights`.
    pub labels: Vec<String>,
    /// How the role enters.
    pub role_features: RoleFeatures,
    /// Embedding width.
    pub dim: usize,
    /// One row per label, [`RoleFeatures::width`] wide.
    pub weights: Vec<Vec<f32>>,
    /// Bias per label.
    pub bias: Vec<f32>,
    /// Calibration temperature (logits are divided by it).
    pub temperature: f32,
    /// Free-form training record (data, counts, cross-validated figures).
    #[serde(default)]
    pub training: serde_json::Value,
    /// The head's version, `TASK-YYYYMMDD-HASH8` (HASH8: the start of
    /// `data_sha256`), reported in every turn event's `model` block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_version: Option<String>,
    /// SHA-256 of the training data ([`data_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sha256: Option<String>,
}

/// The hash that versions a head's training data: SHA-256 over one line
/// `NAME<TAB>SHA256(CONTENTS)` per file, in training order.
pub fn data_sha256(files: &[(String, Vec<u8>)]) -> String {
    use sha2::{Digest, Sha256};
    let mut all = Sha256::new();
    for (name, bytes) in files {
        let h = Sha256::digest(bytes);
        all.update(format!("{name}\t{h:x}\n").as_bytes());
    }
    format!("{:x}", all.finalize())
}

impl LinearHead {
    /// Parse and check a head file for `task` with `labels`.
    pub fn from_json(s: &str, task: &str, labels: &[&str]) -> Result<Self, HeadError> {
        let h: LinearHead = serde_json::from_str(s).map_err(|e| HeadError::Parse(e.to_string()))?;
        let bad = |m: String| Err(HeadError::Parse(m));
        if h.format != HEAD_FORMAT || h.version != 2 {
            return bad(format!(
                "format '{}' version {} is not {HEAD_FORMAT} version 2 (retrain with `callpulse train {task}`)",
                h.format, h.version
            ));
        }
        if h.task != task || h.labels != labels {
            return bad(format!(
                "a '{}' head with labels {:?}, expected '{task}' with {labels:?}",
                h.task, h.labels
            ));
        }
        let width = h.role_features.width(h.dim);
        if h.dim == 0
            || h.weights.len() != labels.len()
            || h.bias.len() != labels.len()
            || h.weights.iter().any(|r| r.len() != width)
        {
            return bad(format!(
                "weights must be {} rows of {width} and {} biases",
                labels.len(),
                labels.len()
            ));
        }
        if !(h.temperature.is_finite() && h.temperature > 0.0) {
            return bad("the temperature must be positive".into());
        }
        Ok(h)
    }

    /// The version reported in events (`TASK-unversioned` for a head
    /// trained before heads carried one).
    pub fn version_id(&self) -> String {
        self.head_version
            .clone()
            .unwrap_or_else(|| format!("{}-unversioned", self.task))
    }

    /// The `task` head installed in `heads_dir` (`TASK-head.json`, written
    /// by `callpulse train TASK --install`; a clear error naming the file
    /// when it is not a head for `task`), else the `bundled` one.
    pub fn load(
        heads_dir: &std::path::Path,
        task: &str,
        labels: &[&str],
        bundled: &str,
    ) -> Result<Self, HeadError> {
        let path = heads_dir.join(format!("{task}-head.json"));
        match std::fs::read_to_string(&path) {
            Ok(s) => Self::from_json(&s, task, labels)
                .map_err(|e| HeadError::Parse(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::from_json(bundled, task, labels)
            }
            Err(e) => Err(HeadError::Parse(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Uncalibrated logits of an embedding spoken by `role`.
    pub fn logits(&self, emb: &[f32], role: Role) -> Vec<f32> {
        let f = self.role_features.features(emb, role);
        self.weights
            .iter()
            .zip(&self.bias)
            .map(|(w, b)| w.iter().zip(&f).map(|(a, x)| a * x).sum::<f32>() + b)
            .collect()
    }

    /// Calibrated probabilities.
    pub fn probs(&self, emb: &[f32], role: Role) -> Vec<f32> {
        softmax(&self.logits(emb, role), self.temperature)
    }
}

/// `softmax(z / t)`.
pub fn softmax(z: &[f32], t: f32) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f32> = z.iter().map(|v| ((v - m) / t).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Three-way polarity (negative / neutral / positive) from a sentence
/// embedding and the speaker's role. The score is `P(positive) −
/// P(negative)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolarityHead(pub LinearHead);

impl PolarityHead {
    /// Parse a head file.
    pub fn from_json(s: &str) -> Result<Self, HeadError> {
        LinearHead::from_json(s, "polarity", &POLARITY_LABELS).map(PolarityHead)
    }

    /// The head built into the binary.
    pub fn bundled() -> Result<Self, HeadError> {
        Self::from_json(BUNDLED_HEAD)
    }

    /// The head installed in `heads_dir` (`polarity-head.json`, written by
    /// `callpulse train polarity --install`), else the bundled one.
    pub fn load(heads_dir: &std::path::Path) -> Result<Self, HeadError> {
        LinearHead::load(heads_dir, "polarity", &POLARITY_LABELS, BUNDLED_HEAD).map(PolarityHead)
    }

    /// Polarity from class probabilities in [`POLARITY_LABELS`] order.
    pub fn from_probs(p: &[f32]) -> Polarity {
        let (neg, neu, pos) = (p[0], p[1], p[2]);
        let label = if neu >= neg && neu >= pos {
            PolarityLabel::Neutral
        } else if pos > neg {
            PolarityLabel::Positive
        } else {
            PolarityLabel::Negative
        };
        Polarity {
            label,
            score: round3(pos - neg),
            probs: Probs {
                negative: round3(neg),
                neutral: round3(neu),
                positive: round3(pos),
            },
        }
    }

    /// Polarity of an embedding spoken by `role`.
    pub fn polarity(&self, emb: &[f32], role: Role) -> Polarity {
        Self::from_probs(&self.0.probs(emb, role))
    }
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(role_features: RoleFeatures) -> LinearHead {
        let dim = 2;
        let w = role_features.width(dim);
        let mut weights = vec![vec![0.0; w]; 3];
        // Negative on axis 0, positive on axis 1.
        weights[0][0] = 4.0;
        weights[2][1] = 4.0;
        if role_features != RoleFeatures::None {
            // Agents lean neutral.
            weights[1][w - 2] = 3.0;
        }
        LinearHead {
            format: HEAD_FORMAT.into(),
            version: 2,
            task: "polarity".into(),
            encoder: "test".into(),
            labels: POLARITY_LABELS.iter().map(|s| s.to_string()).collect(),
            role_features,
            dim,
            weights,
            bias: vec![0.0, 1.0, 0.0],
            temperature: 1.0,
            training: serde_json::Value::Null,
            head_version: None,
            data_sha256: None,
        }
    }

    #[test]
    fn features_follow_the_role() {
        let e = [0.5, -1.0];
        assert_eq!(
            RoleFeatures::None.features(&e, Role::Agent),
            vec![0.5, -1.0]
        );
        assert_eq!(
            RoleFeatures::Bias.features(&e, Role::Customer),
            vec![0.5, -1.0, 0.0, 1.0]
        );
        assert_eq!(
            RoleFeatures::Interaction.features(&e, Role::Agent),
            vec![0.5, -1.0, 0.5, -1.0, 1.0, 0.0]
        );
        assert_eq!(
            RoleFeatures::Interaction.features(&e, Role::Unknown),
            vec![0.5, -1.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn polarity_reads_the_probabilities_and_the_role_moves_them() {
        let h = PolarityHead(head(RoleFeatures::Bias));
        let p = h.polarity(&[1.0, 0.0], Role::Customer);
        assert_eq!(p.label, PolarityLabel::Negative);
        assert!(p.score < -0.5);
        let s = p.probs.negative + p.probs.neutral + p.probs.positive;
        assert!((s - 1.0).abs() < 0.01);
        // The same words from an agent lean neutral.
        assert_eq!(
            h.polarity(&[1.0, 0.0], Role::Agent).label,
            PolarityLabel::Neutral
        );
        assert_eq!(
            h.polarity(&[0.0, 1.5], Role::Unknown).label,
            PolarityLabel::Positive
        );
    }

    #[test]
    fn temperature_softens_without_changing_the_label() {
        let mut h = head(RoleFeatures::None);
        let sharp = PolarityHead(h.clone()).polarity(&[1.0, 0.0], Role::Unknown);
        h.temperature = 3.0;
        let soft = PolarityHead(h).polarity(&[1.0, 0.0], Role::Unknown);
        assert_eq!(sharp.label, soft.label);
        assert!(soft.probs.negative < sharp.probs.negative);
    }

    #[test]
    fn bad_head_files_are_refused_with_the_reason() {
        assert!(PolarityHead::from_json("{}").is_err());
        assert!(PolarityHead::from_json("not json").is_err());
        let mut h = head(RoleFeatures::Bias);
        h.temperature = 0.0;
        let e = PolarityHead::from_json(&serde_json::to_string(&h).unwrap()).unwrap_err();
        assert!(e.to_string().contains("temperature"));
        let mut h = head(RoleFeatures::Bias);
        h.weights[1].pop();
        assert!(PolarityHead::from_json(&serde_json::to_string(&h).unwrap()).is_err());
        let mut h = head(RoleFeatures::None);
        h.task = "emotion".into();
        let e = PolarityHead::from_json(&serde_json::to_string(&h).unwrap()).unwrap_err();
        assert!(e.to_string().contains("expected 'polarity'"));
        let mut h = head(RoleFeatures::None);
        h.version = 1;
        let e = PolarityHead::from_json(&serde_json::to_string(&h).unwrap()).unwrap_err();
        assert!(e.to_string().contains("retrain"));
    }
}

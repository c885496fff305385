use serde::{Deserialize, Serialize};

use crate::event::{Polarity, PolarityLabel, Probs};

/// The polarity head trained by `callpulse train polarity`, committed at
/// `models/polarity-head.json` and built into the binary.
pub const BUNDLED_HEAD: &str = include_str!("../../models/polarity-head.json");

/// Head file errors.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// Not valid JSON of the expected shape.
    #[error("invalid polarity head: {0}")]
    Parse(String),
}

/// A logistic-regression polarity head over sentence embeddings, with a
/// three-way read-out.
///
/// With `z = w·x + b` the binary logit (positive vs negative), the class
/// probabilities are `softmax([-z/(2T), c, z/(2T)])` for negative, neutral and
/// positive: `T` (temperature) and `c` (the neutral offset) are fitted on
/// training data. Neutral wins exactly when `|z| < 2·T·c`, the neutral band.
/// The score is `P(positive) - P(negative)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolarityHead {
    /// Format tag, `callpulse-polarity-head`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Which encoder produced the embeddings it was trained on.
    pub encoder: String,
    /// Weights, one per embedding dimension.
    pub weights: Vec<f32>,
    /// Bias.
    pub bias: f32,
    /// Temperature T.
    pub temperature: f32,
    /// Neutral logit offset c.
    pub neutral_offset: f32,
    /// Free-form training record (data, counts, cross-validated accuracy).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl PolarityHead {
    /// Parse a head file.
    pub fn from_json(s: &str) -> Result<Self, HeadError> {
        let h: PolarityHead =
            serde_json::from_str(s).map_err(|e| HeadError::Parse(e.to_string()))?;
        if h.format != "callpulse-polarity-head" {
            return Err(HeadError::Parse(format!(
                "format '{}' is not callpulse-polarity-head",
                h.format
            )));
        }
        if h.weights.is_empty() || h.temperature <= 0.0 || !h.temperature.is_finite() {
            return Err(HeadError::Parse(
                "empty weights or non-positive temperature".into(),
            ));
        }
        Ok(h)
    }

    /// The head built into the binary.
    pub fn bundled() -> Result<Self, HeadError> {
        Self::from_json(BUNDLED_HEAD)
    }

    /// The binary logit for an embedding.
    pub fn logit(&self, x: &[f32]) -> f32 {
        self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + self.bias
    }

    /// Three-way polarity from a binary logit.
    pub fn polarity_from_logit(&self, z: f32) -> Polarity {
        let h = z / (2.0 * self.temperature);
        let logits = [-h, self.neutral_offset, h];
        let m = logits.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
        let s: f32 = e.iter().sum();
        let probs = Probs {
            negative: round3(e[0] / s),
            neutral: round3(e[1] / s),
            positive: round3(e[2] / s),
        };
        let label = if e[1] >= e[0] && e[1] >= e[2] {
            PolarityLabel::Neutral
        } else if e[2] > e[0] {
            PolarityLabel::Positive
        } else {
            PolarityLabel::Negative
        };
        Polarity {
            label,
            score: round3((e[2] - e[0]) / s),
            probs,
        }
    }

    /// Polarity of an embedding.
    pub fn polarity(&self, x: &[f32]) -> Polarity {
        self.polarity_from_logit(self.logit(x))
    }
}

fn round3(v: f32) -> f32 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(t: f32, c: f32) -> PolarityHead {
        PolarityHead {
            format: "callpulse-polarity-head".into(),
            version: 1,
            encoder: "test".into(),
            weights: vec![1.0, -1.0],
            bias: 0.0,
            temperature: t,
            neutral_offset: c,
            training: serde_json::Value::Null,
        }
    }

    #[test]
    fn neutral_band_is_where_the_docs_say() {
        let h = head(1.5, 1.0);
        // Band: |z| < 2*T*c = 3.
        assert_eq!(h.polarity_from_logit(2.9).label, PolarityLabel::Neutral);
        assert_eq!(h.polarity_from_logit(3.1).label, PolarityLabel::Positive);
        assert_eq!(h.polarity_from_logit(-3.1).label, PolarityLabel::Negative);
        let p = h.polarity_from_logit(-20.0);
        assert!(p.score < -0.9 && p.score >= -1.0);
        let s = p.probs.negative + p.probs.neutral + p.probs.positive;
        assert!((s - 1.0).abs() < 0.01);
        assert_eq!(h.polarity(&[2.0, 8.0]).label, PolarityLabel::Negative);
    }

    #[test]
    fn bad_head_files_are_refused() {
        assert!(PolarityHead::from_json("{}").is_err());
        assert!(PolarityHead::from_json("not json").is_err());
        let mut h = head(0.0, 0.0);
        h.temperature = 0.0;
        assert!(PolarityHead::from_json(&serde_json::to_string(&h).unwrap()).is_err());
    }
}

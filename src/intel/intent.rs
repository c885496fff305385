//! What a turn is about: a support topic from the intent head (a
//! multinomial logistic regression over the same sentence embedding as
//! polarity and emotion), trained by `callpulse train intent` on
//! `data/intent_train.jsonl` (CC0, six languages; taxonomy and rules in
//! `data/INTENT_TAXONOMY.md`).

use std::collections::BTreeMap;

use crate::event::{Intent, Role, TopicShare};
use crate::sentiment::{HeadError, LinearHead};

/// The labels, in the head's order.
pub const LABELS: [&str; 11] = [
    "billing",
    "technical_fault",
    "cancellation",
    "service_complaint",
    "praise",
    "account_access",
    "order_delivery",
    "plan_change",
    "appointment",
    "escalation_request",
    "greeting_closing",
];

/// The label for turns without a topic (greetings, hold, goodbyes): not
/// counted among a call's topics.
pub const NO_TOPIC: &str = "greeting_closing";

/// Index of a label.
pub fn label_index(s: &str) -> Option<usize> {
    LABELS.iter().position(|l| *l == s)
}

/// The intent head built into the binary (`models/intent-head.json`).
pub const BUNDLED_INTENT_HEAD: &str = include_str!("../../models/intent-head.json");

/// The intent head.
#[derive(Debug, Clone, PartialEq)]
pub struct IntentHead(pub LinearHead);

impl IntentHead {
    /// Parse a head file.
    pub fn from_json(s: &str) -> Result<Self, HeadError> {
        LinearHead::from_json(s, "intent", &LABELS).map(IntentHead)
    }

    /// The bundled head.
    pub fn bundled() -> Result<Self, HeadError> {
        Self::from_json(BUNDLED_INTENT_HEAD)
    }

    /// The head installed in `heads_dir` (`intent-head.json`, written by
    /// `callpulse train intent --install`), else the bundled one.
    pub fn load(heads_dir: &std::path::Path) -> Result<Self, HeadError> {
        LinearHead::load(heads_dir, "intent", &LABELS, BUNDLED_INTENT_HEAD).map(IntentHead)
    }

    /// The intent of an embedding spoken by `role`.
    pub fn intent(&self, x: &[f32], role: Role) -> Intent {
        to_intent(&self.0.probs(x, role))
    }
}

/// Package probabilities in [`LABELS`] order.
pub fn to_intent(p: &[f32]) -> Intent {
    let best = (0..p.len())
        .max_by(|&a, &b| p[a].total_cmp(&p[b]))
        .unwrap_or(LABELS.len() - 1);
    Intent {
        label: LABELS[best].into(),
        probs: LABELS
            .iter()
            .zip(p)
            .map(|(l, v)| (l.to_string(), (v * 1000.0).round() / 1000.0))
            .collect(),
    }
}

/// A call's topics from its turns' intent labels (turns, negative turns):
/// each topic's turns and share of the turns that have an intent, most
/// frequent first; turns without a topic ([`NO_TOPIC`]) count in the
/// denominator only.
pub fn topics(counts: &BTreeMap<String, (u32, u32)>) -> Vec<TopicShare> {
    let total: u32 = counts.values().map(|c| c.0).sum();
    let mut v: Vec<TopicShare> = counts
        .iter()
        .filter(|(l, _)| l.as_str() != NO_TOPIC)
        .map(|(l, (n, neg))| TopicShare {
            topic: l.clone(),
            turns: *n,
            share: ((*n as f64 / total.max(1) as f64) * 1000.0).round() / 1000.0,
            negative_turns: *neg,
        })
        .collect();
    v.sort_by(|a, b| b.turns.cmp(&a.turns).then(a.topic.cmp(&b.topic)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_head_loads_with_every_label() {
        let h = IntentHead::bundled().unwrap();
        assert_eq!(h.0.labels, LABELS);
        assert!(h.0.head_version.as_deref().unwrap().starts_with("intent-"));
    }

    #[test]
    fn topics_leave_out_greetings_and_sort_by_turns() {
        let c: BTreeMap<String, (u32, u32)> = [
            ("greeting_closing".to_string(), (4, 0)),
            ("billing".to_string(), (3, 2)),
            ("cancellation".to_string(), (1, 0)),
        ]
        .into();
        let t = topics(&c);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].topic.as_str(), t[0].turns, t[0].share),
            ("billing", 3, 0.375)
        );
        assert_eq!(t[0].negative_turns, 2);
        assert_eq!(t[1].topic, "cancellation");
        let p = [0.1, 0.7, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2];
        assert_eq!(to_intent(&p).label, "technical_fault");
    }
}

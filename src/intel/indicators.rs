//! Frustration and sarcasm indicators, each a score in [0, 1] with the
//! evidence that produced it: the words matched and the features used.
//!
//! Frustration = 0.35·negativity + 0.25·arousal + 0.25·cues + 0.15·emotion,
//! where negativity is P(negative) of the text, arousal the speaker's
//! positive prosodic arousal squashed to [0, 1], cues the strongest matched
//! cue phrase (repeat contact, waiting, "again", "third time", demands to
//! cancel or for a manager...), and emotion P(anger) + P(frustration).
//!
//! Sarcasm needs positive surface words ("great", "wonderful", "thanks a
//! lot") *and* a reason to doubt them: a negative context in the same turn
//! ("another hold queue", "charged twice"), a negative reading of the whole
//! turn by the text model or the emotion head, the speaker's previous turn
//! being negative, or incongruent prosody (aroused voice on positive words).

use crate::event::{Indicator, ProsodyZ};

/// Cue phrases of frustration and their weight.
const FRUSTRATION_CUES: [(&str, f32); 34] = [
    ("third time", 1.0),
    ("fourth time", 1.0),
    ("second time", 0.8),
    ("how many times", 1.0),
    ("every time", 0.7),
    ("again", 0.6),
    ("still", 0.5),
    ("nothing has changed", 1.0),
    ("nothing's changed", 1.0),
    ("keep calling", 0.9),
    ("called before", 0.8),
    ("already told", 0.9),
    ("already called", 0.9),
    ("on hold", 0.8),
    ("been waiting", 0.8),
    ("waiting for", 0.6),
    ("waited", 0.7),
    ("hours", 0.5),
    ("weeks", 0.5),
    ("days", 0.4),
    ("since monday", 0.5),
    ("cancel", 0.9),
    ("manager", 0.9),
    ("supervisor", 0.9),
    ("complaint", 0.8),
    ("ridiculous", 1.0),
    ("unacceptable", 1.0),
    ("useless", 0.9),
    ("terrible", 0.8),
    ("fed up", 1.0),
    ("sick of", 1.0),
    ("enough", 0.5),
    ("transferred", 0.6),
    ("twice", 0.6),
];

/// Positive surface words that sarcasm wears.
const POSITIVE_SURFACE: [&str; 18] = [
    "great",
    "wonderful",
    "fantastic",
    "perfect",
    "brilliant",
    "lovely",
    "amazing",
    "awesome",
    "excellent",
    "terrific",
    "marvellous",
    "marvelous",
    "super",
    "nice",
    "thanks a lot",
    "thanks a bunch",
    "just what i needed",
    "love",
];

/// Words that make a situation negative.
const NEGATIVE_CONTEXT: [&str; 26] = [
    "another",
    "again",
    "hold",
    "queue",
    "charged",
    "charge",
    "twice",
    "broken",
    "down",
    "wait",
    "waiting",
    "nothing",
    "still",
    "never",
    "cancel",
    "lost",
    "late",
    "fee",
    "fees",
    "disconnected",
    "transferred",
    "outage",
    "no one",
    "nobody",
    "pay",
    "hours",
];

/// Lower-case words of `text`, without punctuation, joined by single spaces
/// and padded with spaces (so phrase matching works on word boundaries).
fn norm(text: &str) -> String {
    let mut s = String::from(" ");
    for w in text.split_whitespace() {
        let w: String = w
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .flat_map(|c| c.to_lowercase())
            .collect();
        if !w.is_empty() {
            s.push_str(&w);
            s.push(' ');
        }
    }
    s
}

fn has(n: &str, phrase: &str) -> bool {
    n.contains(&format!(" {phrase} "))
}

/// Positive prosodic arousal squashed to [0, 1] (0 at or below baseline).
fn arousal01(a: f32) -> f32 {
    1.0 - (-a.max(0.0)).exp()
}

fn prosody_evidence(z: &ProsodyZ) -> Vec<String> {
    let mut v = Vec::new();
    if z.energy >= 1.0 {
        v.push(format!("energy z {:+.1}", z.energy));
    }
    if z.pitch >= 1.0 {
        v.push(format!("pitch z {:+.1}", z.pitch));
    }
    if z.rate >= 1.0 {
        v.push(format!("rate z {:+.1}", z.rate));
    }
    v
}

/// Inputs for the indicators of one turn.
#[derive(Debug, Clone)]
pub struct TurnSignals<'a> {
    /// Transcript.
    pub text: &'a str,
    /// P(negative) of the text.
    pub p_negative: f32,
    /// P(positive) of the text.
    pub p_positive: f32,
    /// Prosodic z-scores against the speaker's baseline.
    pub z: &'a ProsodyZ,
    /// Prosodic arousal (signed).
    pub arousal: f32,
    /// P(anger), P(frustration) from the emotion head (text only, before prosody).
    pub p_anger: f32,
    /// As above.
    pub p_frustration: f32,
    /// Polarity score of the speaker's previous turn, if any.
    pub previous_score: Option<f32>,
}

/// The frustration indicator.
pub fn frustration(s: &TurnSignals) -> Indicator {
    let n = norm(s.text);
    let mut ev = Vec::new();
    let mut cue = 0.0f32;
    for (phrase, w) in FRUSTRATION_CUES {
        if has(&n, phrase) {
            ev.push(format!("cue: {phrase}"));
            cue = cue.max(w);
        }
    }
    // Several cues add up a little.
    let extra = (ev.len().saturating_sub(1) as f32 * 0.1).min(0.3);
    let cues = (cue + extra).min(1.0);
    let neg = s.p_negative;
    if neg >= 0.5 {
        ev.push(format!("negative text {neg:.2}"));
    }
    let ar = arousal01(s.arousal);
    ev.extend(prosody_evidence(s.z));
    let emo = (s.p_anger + s.p_frustration).min(1.0);
    if emo >= 0.5 {
        ev.push(format!("emotion anger+frustration {emo:.2}"));
    }
    let score = 0.35 * neg + 0.25 * ar + 0.25 * cues + 0.15 * emo;
    Indicator {
        score: (score.clamp(0.0, 1.0) * 1000.0).round() / 1000.0,
        evidence: ev,
    }
}

/// The sarcasm indicator.
pub fn sarcasm(s: &TurnSignals) -> Indicator {
    let n = norm(s.text);
    let surface: Vec<&str> = POSITIVE_SURFACE
        .iter()
        .copied()
        .filter(|w| has(&n, w))
        .collect();
    if surface.is_empty() {
        return Indicator::default();
    }
    let mut ev: Vec<String> = surface
        .iter()
        .map(|w| format!("positive word: {w}"))
        .collect();
    let context: Vec<&str> = NEGATIVE_CONTEXT
        .iter()
        .copied()
        .filter(|w| has(&n, w))
        .collect();
    let mut doubt = 0.0f32;
    if !context.is_empty() {
        doubt += 0.5;
        ev.extend(context.iter().map(|w| format!("negative context: {w}")));
    }
    let emo = s.p_anger + s.p_frustration;
    if emo >= 0.4 {
        doubt += 0.3;
        ev.push(format!("emotion anger+frustration {emo:.2}"));
    }
    if s.p_negative > s.p_positive {
        doubt += 0.3;
        ev.push(format!("text reads negative {:.2}", s.p_negative));
    }
    if let Some(prev) = s.previous_score.filter(|p| *p < -0.3) {
        doubt += 0.2;
        ev.push(format!("previous turn negative {prev:.2}"));
    }
    if s.arousal > 1.0 {
        doubt += 0.2;
        ev.push(format!("aroused voice {:+.1}", s.arousal));
    }
    if doubt == 0.0 {
        return Indicator::default();
    }
    // Sincere thanks ("great, thank you so much") stay low: no doubt, no score.
    let score = (0.2 + doubt).min(1.0);
    Indicator {
        score: (score * 1000.0).round() / 1000.0,
        evidence: ev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig<'a>(text: &'a str, neg: f32, pos: f32, z: &'a ProsodyZ) -> TurnSignals<'a> {
        TurnSignals {
            text,
            p_negative: neg,
            p_positive: pos,
            z,
            arousal: 0.0,
            p_anger: 0.0,
            p_frustration: 0.0,
            previous_score: None,
        }
    }

    #[test]
    fn frustration_counts_cues_negativity_and_arousal() {
        let z = ProsodyZ::default();
        let calm = frustration(&sig("Can you confirm the address?", 0.1, 0.2, &z));
        assert!(calm.score < 0.2, "{calm:?}");
        assert!(calm.evidence.is_empty());
        let f = frustration(&sig(
            "This is the third time I've called, nothing has changed.",
            0.9,
            0.0,
            &z,
        ));
        assert!(f.score > 0.55, "{f:?}");
        assert!(f.evidence.iter().any(|e| e == "cue: third time"));
        let hot_z = ProsodyZ {
            energy: 2.5,
            pitch: 1.5,
            rate: 0.0,
            pause: 0.0,
        };
        let mut s = sig(
            "This is the third time I've called, nothing has changed.",
            0.9,
            0.0,
            &hot_z,
        );
        s.arousal = 2.0;
        let hot = frustration(&s);
        assert!(hot.score > f.score + 0.15);
        assert!(hot.evidence.iter().any(|e| e.starts_with("energy z")));
    }

    #[test]
    fn sarcasm_needs_positive_words_and_a_reason_to_doubt_them() {
        let z = ProsodyZ::default();
        let s = sarcasm(&sig("Oh great, another hold queue.", 0.4, 0.5, &z));
        assert!(s.score >= 0.5, "{s:?}");
        assert!(s.evidence.iter().any(|e| e == "positive word: great"));
        assert!(s.evidence.iter().any(|e| e == "negative context: another"));
        let sincere = sarcasm(&sig("That's great, thank you so much.", 0.02, 0.95, &z));
        assert_eq!(sincere.score, 0.0, "{sincere:?}");
        let none = sarcasm(&sig("My router is broken.", 0.9, 0.0, &z));
        assert_eq!(none.score, 0.0);
    }
}

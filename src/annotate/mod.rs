//! The annotation loop with Label Studio: export scored calls as labelling
//! tasks with the model's labels as pre-annotations ([`export`]), import the
//! annotators' labels ([`import`]), measure agreement and adjudicate a gold
//! set ([`agreement`], [`gold`]), and calibrate the model against that gold
//! ([`calibrate`]). `callpulse train --extra gold.jsonl` closes the loop.
//!
//! The taxonomy is written once, here: [`config_xml`] builds Label Studio's
//! labelling config from it, import checks labels against it, and
//! `data/EMOTION_GUIDELINE.md` says how to apply it. See `docs/annotation.md`.

pub mod agreement;
pub mod calibrate;
pub mod export;
pub mod gold;
pub mod import;

use serde::{Deserialize, Serialize};

use crate::event::Role;

/// Polarity choices (control `polarity`, and the span labels `span_polarity`).
pub const POLARITY: [&str; 3] = ["negative", "neutral", "positive"];
/// Emotion choices (control `emotion`), the emotion head's labels.
pub const EMOTION: [&str; 6] = crate::intel::emotion::LABELS;
/// Indicator choices (control `indicators`, several may be ticked).
pub const INDICATORS: [&str; 2] = ["frustration", "sarcasm"];
/// Intensity is a 1–5 rating (control `intensity`): 1 calm, 5 extreme.
pub const INTENSITY_MAX: u8 = 5;

/// The names of the controls in the labelling config.
pub mod control {
    /// Turn polarity (single choice).
    pub const POLARITY: &str = "polarity";
    /// Turn emotion (single choice).
    pub const EMOTION: &str = "emotion";
    /// Intensity rating.
    pub const INTENSITY: &str = "intensity";
    /// Frustration and sarcasm flags (multiple choice).
    pub const INDICATORS: &str = "indicators";
    /// Polarity of stretches of the text.
    pub const SPANS: &str = "span_polarity";
    /// The text object the controls label.
    pub const TEXT: &str = "text";
}

/// Label Studio's labelling config for callpulse tasks; with `audio`, the
/// task's `audio` clip is shown with a player.
pub fn config_xml(audio: bool) -> String {
    let choices = |labels: &[&str]| {
        labels
            .iter()
            .map(|l| format!("    <Choice value=\"{l}\"/>\n"))
            .collect::<String>()
    };
    let mut s = String::from(
        "<View>\n  <!-- callpulse annotation taxonomy; guideline: data/EMOTION_GUIDELINE.md, docs/annotation.md -->\n",
    );
    s.push_str("  <Header value=\"Call $call_id, turn $turn_id ($start s to $end s)\"/>\n");
    s.push_str("  <Text name=\"context\" value=\"$context\" granularity=\"word\"/>\n");
    if audio {
        s.push_str("  <Audio name=\"audio\" value=\"$audio\"/>\n");
    }
    s.push_str("  <Header value=\"$role says:\"/>\n");
    s.push_str(&format!(
        "  <Text name=\"{}\" value=\"$text\" granularity=\"word\"/>\n",
        control::TEXT
    ));
    s.push_str(&format!(
        "  <Labels name=\"{}\" toName=\"{}\">\n{}  </Labels>\n",
        control::SPANS,
        control::TEXT,
        POLARITY
            .iter()
            .map(|l| format!("    <Label value=\"{l}\"/>\n"))
            .collect::<String>()
    ));
    s.push_str(&format!(
        "  <Header value=\"Polarity of the whole turn\"/>\n  <Choices name=\"{}\" toName=\"{}\" choice=\"single\" showInline=\"true\" required=\"true\">\n{}  </Choices>\n",
        control::POLARITY,
        control::TEXT,
        choices(&POLARITY)
    ));
    s.push_str(&format!(
        "  <Header value=\"Emotion\"/>\n  <Choices name=\"{}\" toName=\"{}\" choice=\"single\" showInline=\"true\" required=\"true\">\n{}  </Choices>\n",
        control::EMOTION,
        control::TEXT,
        choices(&EMOTION)
    ));
    s.push_str(&format!(
        "  <Header value=\"Intensity (1 calm, {INTENSITY_MAX} extreme)\"/>\n  <Rating name=\"{}\" toName=\"{}\" maxRating=\"{INTENSITY_MAX}\"/>\n",
        control::INTENSITY,
        control::TEXT
    ));
    s.push_str(&format!(
        "  <Choices name=\"{}\" toName=\"{}\" choice=\"multiple\" showInline=\"true\">\n{}  </Choices>\n",
        control::INDICATORS,
        control::TEXT,
        choices(&INDICATORS)
    ));
    s.push_str("</View>\n");
    s
}

/// A labelled stretch of a turn's text: Unicode scalar offsets into `text`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLabel {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// Polarity label.
    pub label: String,
}

/// One annotator's labels of one turn: a line of `labels.jsonl`, the
/// project's labelled-data format (it loads in `train` and `eval` too:
/// `text`, `role`, `lang`, `polarity`, `emotion`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelLine {
    /// The item: `CALL_ID/TURN_ID`.
    pub item: String,
    /// Call id.
    pub call_id: String,
    /// Turn id within the call.
    pub turn_id: u32,
    /// Label Studio's task id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    /// Speaker role.
    pub role: Role,
    /// Language, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The turn's text as the annotator saw it.
    pub text: String,
    /// Annotator id (Label Studio's user id or e-mail).
    pub annotator: String,
    /// Seconds the annotator spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time: Option<f64>,
    /// Turn polarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polarity: Option<String>,
    /// Turn emotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotion: Option<String>,
    /// Intensity, 1 to 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<u8>,
    /// Frustration ticked.
    #[serde(default)]
    pub frustration: bool,
    /// Sarcasm ticked.
    #[serde(default)]
    pub sarcasm: bool,
    /// Span polarity labels.
    #[serde(default)]
    pub spans: Vec<SpanLabel>,
}

/// Read JSON lines of `T`, naming the line that does not parse.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), i + 1))?,
        );
    }
    if out.is_empty() {
        return Err(format!("{}: no lines", path.display()));
    }
    Ok(out)
}

/// Character offsets ↔ UTF-16 offsets (Label Studio's span offsets are
/// JavaScript string indices).
pub fn chars_to_utf16(text: &str, chars: usize) -> usize {
    text.chars().take(chars).map(char::len_utf16).sum()
}

/// The character offset of a UTF-16 offset (None past the end or inside a
/// surrogate pair).
pub fn utf16_to_chars(text: &str, units: usize) -> Option<usize> {
    let mut u = 0;
    for (i, c) in text.chars().enumerate() {
        if u == units {
            return Some(i);
        }
        if u > units {
            return None;
        }
        u += c.len_utf16();
    }
    (u == units).then(|| text.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_convert_both_ways_around_astral_characters() {
        let t = "ok 👍 fine";
        assert_eq!(chars_to_utf16(t, 4), 5);
        assert_eq!(utf16_to_chars(t, 5), Some(4));
        assert_eq!(utf16_to_chars(t, 4), None);
        assert_eq!(utf16_to_chars(t, 10), Some(9));
        assert_eq!(utf16_to_chars(t, 11), None);
    }

    #[test]
    fn the_config_names_every_label_of_the_taxonomy_once() {
        let x = config_xml(true);
        for l in EMOTION.iter().chain(&INDICATORS) {
            let twice = *l == "frustration" || *l == "neutral";
            let n = x.matches(&format!("<Choice value=\"{l}\"/>")).count();
            assert_eq!(n, 1 + usize::from(twice), "{l}");
        }
        assert!(x.contains("<Audio name=\"audio\""));
        assert!(!config_xml(false).contains("$audio"));
    }
}

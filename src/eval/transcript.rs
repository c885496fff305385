//! Reading references and hypotheses for [`super::wer`]: STM, JSON lines
//! (callpulse's own events, or any objects with a `text` field) and plain text.
//!
//! Segments with times are put in time order and joined, so a two-channel
//! reference and a hypothesis whose turns interleave compare as one stream.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors reading a transcript, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line is not in the expected format.
    #[error("{path} line {line}: {reason}")]
    Format {
        /// File.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What was expected.
        reason: String,
    },
}

/// The format of a transcript file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// NIST STM: `file channel speaker start end [<label>] text`, `;;` comments.
    Stm,
    /// JSON lines: callpulse events (only `turn` events count) or objects
    /// with `text` (and optionally `start`).
    Jsonl,
    /// Plain text, all of it.
    Text,
}

/// One timed stretch of text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, seconds (0 when unknown).
    pub start: f64,
    /// End, seconds (0 when unknown).
    pub end: f64,
    /// Channel or speaker, as the file names it ("" when unknown).
    pub speaker: String,
    /// Channel index in STM (0 when unknown).
    pub channel: u32,
    /// Words.
    pub text: String,
}

/// One STM line.
#[derive(Debug, Clone, PartialEq)]
pub struct StmLine {
    /// Recording name.
    pub file: String,
    /// The segment.
    pub segment: Segment,
}

/// STM's marker for a stretch not to score.
pub const IGNORE: &str = "ignore_time_segment_in_scoring";

/// Guess the format from the extension, then the first non-empty line.
pub fn detect(path: &Path, text: &str) -> Format {
    match path.extension().and_then(|e| e.to_str()) {
        Some("stm") => return Format::Stm,
        Some("jsonl") | Some("ndjson") => return Format::Jsonl,
        _ => {}
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty());
    match first {
        Some(l) if l.starts_with('{') => Format::Jsonl,
        _ => Format::Text,
    }
}

/// Parse STM text (`path` is only for messages).
pub fn parse_stm(path: &Path, text: &str) -> Result<Vec<StmLine>, TranscriptError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with(";;") {
            continue;
        }
        let err = |reason: &str| TranscriptError::Format {
            path: path.to_path_buf(),
            line: i + 1,
            reason: format!(
                "{reason}; an STM line is `file channel speaker start end [<label>] words`"
            ),
        };
        let mut f = l.splitn(6, char::is_whitespace).filter(|s| !s.is_empty());
        let (Some(file), Some(chan), Some(spk), Some(start), Some(end)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err(err("fewer than five fields"));
        };
        let start: f64 = start.parse().map_err(|_| err("start is not a number"))?;
        let end: f64 = end.parse().map_err(|_| err("end is not a number"))?;
        if !(start.is_finite() && end.is_finite() && start >= 0.0 && end >= start) {
            return Err(err("times must satisfy 0 <= start <= end"));
        }
        let mut words = f.next().unwrap_or("").trim();
        if words.starts_with('<') {
            words = words.split_once('>').map(|(_, w)| w.trim()).unwrap_or("");
        }
        out.push(StmLine {
            file: file.to_string(),
            segment: Segment {
                start,
                end,
                speaker: spk.to_string(),
                channel: chan.parse().unwrap_or(0),
                text: words.to_string(),
            },
        });
    }
    Ok(out)
}

/// Write STM lines for one recording (times with 3 decimals).
pub fn write_stm(file: &str, segments: &[Segment]) -> String {
    let mut s = String::new();
    for seg in segments {
        let _ = writeln!(
            s,
            "{file} {} {} {:.3} {:.3} {}",
            seg.channel,
            if seg.speaker.is_empty() {
                "unknown"
            } else {
                &seg.speaker
            },
            seg.start,
            seg.end,
            seg.text
        );
    }
    s
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<Segment>, TranscriptError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| TranscriptError::Format {
                path: path.to_path_buf(),
                line: i + 1,
                reason: format!("not JSON ({e})"),
            })?;
        // callpulse events: only final turns carry the transcript.
        if let Some(kind) = v.get("type").and_then(|t| t.as_str()) {
            if kind != "turn" {
                continue;
            }
        }
        let Some(t) = v.get("text").and_then(|t| t.as_str()) else {
            continue;
        };
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(0.0);
        let speaker = ["speaker", "role"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .unwrap_or("")
            .to_string();
        out.push(Segment {
            start: num("start"),
            end: num("end"),
            speaker,
            channel: v.get("leg").and_then(|x| x.as_u64()).unwrap_or(0) as u32,
            text: t.to_string(),
        });
    }
    Ok(out)
}

/// Read the timed segments of a transcript file in any supported format.
pub fn load_segments(path: &Path) -> Result<Vec<Segment>, TranscriptError> {
    let text = std::fs::read_to_string(path).map_err(|source| TranscriptError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(match detect(path, &text) {
        Format::Stm => parse_stm(path, &text)?
            .into_iter()
            .map(|l| l.segment)
            .filter(|s| !s.text.eq_ignore_ascii_case(IGNORE))
            .collect(),
        Format::Jsonl => parse_jsonl(path, &text)?,
        Format::Text => vec![Segment {
            start: 0.0,
            end: 0.0,
            speaker: String::new(),
            channel: 0,
            text,
        }],
    })
}

/// Join segments in time order (stable for equal starts) into one text.
pub fn join(mut segments: Vec<Segment>) -> String {
    segments.sort_by(|a, b| a.start.total_cmp(&b.start));
    segments
        .iter()
        .map(|s| s.text.trim())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The whole text of a transcript file, segments in time order.
pub fn load_text(path: &Path) -> Result<String, TranscriptError> {
    Ok(join(load_segments(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stm_round_trips_and_sorts_by_time() {
        let segs = vec![
            Segment {
                start: 2.0,
                end: 3.5,
                speaker: "B".into(),
                channel: 1,
                text: "second".into(),
            },
            Segment {
                start: 0.25,
                end: 1.0,
                speaker: "A".into(),
                channel: 1,
                text: "first".into(),
            },
        ];
        let text = write_stm("call", &segs);
        let parsed = parse_stm(Path::new("x.stm"), &text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].segment, segs[0]);
        assert_eq!(parsed[1].file, "call");
        let joined = join(parsed.into_iter().map(|l| l.segment).collect());
        assert_eq!(joined, "first second");
    }

    #[test]
    fn stm_labels_comments_and_errors() {
        let p = Path::new("r.stm");
        let text = ";; comment\nf 1 A 0.0 1.0 <o,f0,male> hello there\nf 1 A 1.0 2.0\n";
        let l = parse_stm(p, text).unwrap();
        assert_eq!(l[0].segment.text, "hello there");
        assert_eq!(l[1].segment.text, "");
        let e = parse_stm(p, "f 1 A zero 1.0 hi\n").unwrap_err().to_string();
        assert!(e.contains("r.stm line 1") && e.contains("start"), "{e}");
        let e = parse_stm(p, "f 1 A 2.0 1.0 hi\n").unwrap_err().to_string();
        assert!(e.contains("start <= end"), "{e}");
    }

    #[test]
    fn events_keep_only_turns_in_time_order() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ev.jsonl");
        std::fs::write(
            &p,
            concat!(
                r#"{"type":"turn","start":3.0,"text":"world","leg":1,"role":"agent"}"#,
                "\n",
                r#"{"type":"partial","start":0.0,"text":"ignored"}"#,
                "\n",
                r#"{"type":"turn","start":1.0,"text":"hello","leg":0}"#,
                "\n",
                r#"{"type":"summary","text":"not a turn"}"#,
                "\n"
            ),
        )
        .unwrap();
        assert_eq!(load_text(&p).unwrap(), "hello world");
        std::fs::write(&p, "{\"text\": \"a\"}\nnot json\n").unwrap();
        let e = load_text(&p).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}

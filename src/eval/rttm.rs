//! RTTM speaker segments ("who spoke when"), the reference format of
//! diarisation: `SPEAKER file channel start duration <NA> <NA> speaker <NA> <NA>`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Errors reading an RTTM file, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum RttmError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line is not an RTTM `SPEAKER` line.
    #[error("{path} line {line}: {reason}; expected `SPEAKER file channel start duration <NA> <NA> speaker <NA> <NA>`")]
    Format {
        /// File.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// One speaker segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    /// Recording name.
    pub file: String,
    /// Start, seconds.
    pub start: f64,
    /// Duration, seconds.
    pub duration: f64,
    /// Speaker label.
    pub speaker: String,
}

impl Turn {
    /// End, seconds.
    pub fn end(&self) -> f64 {
        self.start + self.duration
    }
}

/// Parse RTTM text; lines other than `SPEAKER` (and `;;` comments) are skipped.
pub fn parse(path: &Path, text: &str) -> Result<Vec<Turn>, RttmError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() != Some(&"SPEAKER") {
            continue;
        }
        let err = |reason: &str| RttmError::Format {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.into(),
        };
        if f.len() < 8 {
            return Err(err("fewer than 8 fields"));
        }
        let start: f64 = f[3].parse().map_err(|_| err("start is not a number"))?;
        let duration: f64 = f[4].parse().map_err(|_| err("duration is not a number"))?;
        if !(start.is_finite() && duration.is_finite() && start >= 0.0 && duration >= 0.0) {
            return Err(err("start and duration must be >= 0"));
        }
        out.push(Turn {
            file: f[1].to_string(),
            start,
            duration,
            speaker: f[7].to_string(),
        });
    }
    Ok(out)
}

/// Read an RTTM file.
pub fn load(path: &Path) -> Result<Vec<Turn>, RttmError> {
    let text = std::fs::read_to_string(path).map_err(|source| RttmError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Write turns as RTTM, in the given order. Times have 6 decimals, so a
/// segment placed at a 16 kHz (or 8 kHz) sample boundary reads back exactly.
pub fn write(turns: &[Turn]) -> String {
    let mut s = String::new();
    for t in turns {
        let _ = writeln!(
            s,
            "SPEAKER {} 1 {:.6} {:.6} <NA> <NA> {} <NA> <NA>",
            t.file, t.start, t.duration, t.speaker
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let turns = vec![
            Turn {
                file: "c".into(),
                start: 0.5,
                duration: 2.25,
                speaker: "S1".into(),
            },
            Turn {
                file: "c".into(),
                start: 2.5,
                duration: 1.0,
                speaker: "S2".into(),
            },
        ];
        let text = write(&turns);
        assert_eq!(parse(Path::new("c.rttm"), &text).unwrap(), turns);
        assert_eq!(turns[0].end(), 2.75);
        let e = parse(
            Path::new("c.rttm"),
            "SPEAKER c 1 x 1 <NA> <NA> a <NA> <NA>\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("c.rttm line 1"), "{e}");
        assert!(parse(Path::new("c.rttm"), "SPEAKER c 1 1.0\n").is_err());
    }
}

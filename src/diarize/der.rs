//! Diarisation error rate.
//!
//! DER is scored on 10 ms frames with no forgiveness collar and overlapping
//! speech counted: per frame with `R` reference and `H` hypothesis speakers
//! active, missed speech adds `max(0, R - H)`, false alarm `max(0, H - R)`
//! and confusion `min(R, H) - C`, where `C` counts the active pairs joined by
//! the one-to-one speaker mapping that maximises overlap over the file
//! (found with the Hungarian method). DER = (missed + false alarm +
//! confusion) / total reference speaker-frames. RTTM reading and writing
//! are [`crate::eval::rttm`]'s.

use std::collections::BTreeMap;

use serde::Serialize;

/// Frames per second of the scoring grid.
pub const FRAMES_PER_SECOND: f64 = 100.0;

pub use crate::eval::rttm::{parse as parse_rttm, write as write_rttm, RttmError, Turn};

/// What went wrong reading a hypothesis given as callpulse events.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DerError {
    /// A line of an events file is not a JSON object.
    #[error("line {line}: not a JSON event: {what}")]
    Event {
        /// 1-based line number.
        line: usize,
        /// Parser message.
        what: String,
    },
}

/// Read callpulse events (JSON lines): every `turn` event with `start`,
/// `end` and a `speaker` (or, lacking one, its `leg` as `leg<N>`) becomes a
/// [`Turn`] of file `call_id`. Other event types are skipped.
pub fn parse_events(text: &str) -> Result<Vec<Turn>, DerError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| DerError::Event {
            line: i + 1,
            what: e.to_string(),
        })?;
        if v.get("type").and_then(|t| t.as_str()) != Some("turn") {
            continue;
        }
        let (Some(start), Some(end)) = (
            v.get("start").and_then(|x| x.as_f64()),
            v.get("end").and_then(|x| x.as_f64()),
        ) else {
            continue;
        };
        let speaker = match (v.get("speaker"), v.get("leg")) {
            (Some(serde_json::Value::String(s)), _) => s.clone(),
            (_, Some(l)) => format!("leg{l}"),
            _ => "unknown".into(),
        };
        let file = v
            .get("call_id")
            .and_then(|c| c.as_str())
            .unwrap_or("call")
            .to_string();
        out.push(Turn {
            file,
            start,
            duration: (end - start).max(0.0),
            speaker,
        });
    }
    Ok(out)
}

/// Error counts for one file or a corpus, in 10 ms speaker-frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DerScore {
    /// Reference speaker-frames.
    pub total: u64,
    /// Reference speech with too few hypothesis speakers.
    pub missed: u64,
    /// Hypothesis speech beyond the reference speakers.
    pub false_alarm: u64,
    /// Speech given to the wrong speaker under the best mapping.
    pub confusion: u64,
}

impl DerScore {
    /// (missed + false alarm + confusion) / total; 0 when there is no
    /// reference speech and no hypothesis either.
    pub fn der(&self) -> f64 {
        let err = self.missed + self.false_alarm + self.confusion;
        if self.total == 0 {
            return if err == 0 { 0.0 } else { f64::INFINITY };
        }
        err as f64 / self.total as f64
    }

    /// Add another file's counts.
    pub fn add(&mut self, o: &DerScore) {
        self.total += o.total;
        self.missed += o.missed;
        self.false_alarm += o.false_alarm;
        self.confusion += o.confusion;
    }
}

fn frame(t: f64) -> usize {
    (t * FRAMES_PER_SECOND).round().max(0.0) as usize
}

/// Activity per speaker as frame masks, speakers in first-seen order.
fn activity(turns: &[&Turn], frames: usize) -> (Vec<String>, Vec<Vec<bool>>) {
    let mut names: Vec<String> = Vec::new();
    let mut masks: Vec<Vec<bool>> = Vec::new();
    for t in turns {
        let k = match names.iter().position(|n| *n == t.speaker) {
            Some(k) => k,
            None => {
                names.push(t.speaker.clone());
                masks.push(vec![false; frames]);
                names.len() - 1
            }
        };
        let (a, b) = (frame(t.start), frame(t.end()).min(frames));
        if a < b {
            masks[k][a..b].fill(true);
        }
    }
    (names, masks)
}

/// DER of one file's hypothesis against its reference.
pub fn score_file(reference: &[&Turn], hypothesis: &[&Turn]) -> DerScore {
    let frames = reference
        .iter()
        .chain(hypothesis)
        .map(|t| frame(t.end()))
        .max()
        .unwrap_or(0);
    let (_, r) = activity(reference, frames);
    let (_, h) = activity(hypothesis, frames);
    let overlap: Vec<Vec<u64>> = r
        .iter()
        .map(|rm| {
            h.iter()
                .map(|hm| rm.iter().zip(hm).filter(|(a, b)| **a && **b).count() as u64)
                .collect()
        })
        .collect();
    let mapping = max_assignment(&overlap);
    let mut s = DerScore::default();
    for f in 0..frames {
        let nr = r.iter().filter(|m| m[f]).count() as u64;
        let nh = h.iter().filter(|m| m[f]).count() as u64;
        let correct = mapping
            .iter()
            .filter(|(ri, hi)| r[*ri][f] && h[*hi][f])
            .count() as u64;
        s.total += nr;
        s.missed += nr.saturating_sub(nh);
        s.false_alarm += nh.saturating_sub(nr);
        s.confusion += nr.min(nh) - correct;
    }
    s
}

/// Per-file scores (by file id, sorted) and the corpus total. A file only in
/// the reference is scored against an empty hypothesis, and vice versa.
pub fn score(reference: &[Turn], hypothesis: &[Turn]) -> (BTreeMap<String, DerScore>, DerScore) {
    let mut files: BTreeMap<String, (Vec<&Turn>, Vec<&Turn>)> = BTreeMap::new();
    for t in reference {
        files.entry(t.file.clone()).or_default().0.push(t);
    }
    for t in hypothesis {
        files.entry(t.file.clone()).or_default().1.push(t);
    }
    let mut total = DerScore::default();
    let per = files
        .into_iter()
        .map(|(f, (r, h))| {
            let s = score_file(&r, &h);
            total.add(&s);
            (f, s)
        })
        .collect();
    (per, total)
}

/// The one-to-one assignment of rows to columns that maximises the summed
/// weight (Hungarian method on the negated, squared-up matrix). Returns the
/// (row, column) pairs with positive weight.
pub fn max_assignment(w: &[Vec<u64>]) -> Vec<(usize, usize)> {
    let rows = w.len();
    let cols = w.first().map_or(0, |r| r.len());
    let n = rows.max(cols);
    if n == 0 {
        return Vec::new();
    }
    let max = w.iter().flatten().copied().max().unwrap_or(0) as i64;
    // cost[i][j] = max - weight: minimising cost maximises weight.
    let cost = |i: usize, j: usize| -> i64 {
        max - w.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0) as i64
    };
    // Potentials u (rows), v (columns); p[j] = row matched to column j (1-based).
    let (mut u, mut v) = (vec![0i64; n + 1], vec![0i64; n + 1]);
    let (mut p, mut way) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![i64::MAX; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = i64::MAX;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    (1..=n)
        .filter_map(|j| {
            let (i, c) = (p[j] - 1, j - 1);
            (i < rows && c < cols && w[i][c] > 0).then_some((i, c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start: f64, end: f64, spk: &str) -> Turn {
        Turn {
            file: "f".into(),
            start,
            duration: end - start,
            speaker: spk.into(),
        }
    }

    #[test]
    fn perfect_hypothesis_with_other_labels_scores_zero() {
        let r = [t(0.0, 2.0, "A"), t(2.0, 3.0, "B")];
        let h = [t(0.0, 2.0, "S2"), t(2.0, 3.0, "S1")];
        let (_, s) = score(&r, &h);
        assert_eq!(s.total, 300);
        assert_eq!(s.der(), 0.0);
    }

    #[test]
    fn hand_computed_missed_false_alarm_and_confusion() {
        // Reference: A 0-4 s, B 4-6 s, overlap B 3-4 s too.
        let r = [t(0.0, 4.0, "A"), t(3.0, 6.0, "B")];
        // Hypothesis: X 0-3.5, Y 3.5-5, Y again 6-7 (false alarm).
        let h = [t(0.0, 3.5, "X"), t(3.5, 5.0, "Y"), t(6.0, 7.0, "Y")];
        let (_, s) = score(&r, &h);
        // Reference speaker-frames: 400 (A) + 300 (B) = 700.
        assert_eq!(s.total, 700);
        // Best map: X->A (350 frames), Y->B (150). Frame by frame:
        // 0-3 s: R=1 (A), H=1 (X) correct.
        // 3-3.5: R=2, H=1 (X): 50 missed, X->A correct.
        // 3.5-4: R=2, H=1 (Y): 50 missed, Y->B correct.
        // 4-5: R=1 (B), H=1 (Y) correct.
        // 5-6: R=1 (B), H=0: 100 missed.
        // 6-7: R=0, H=1: 100 false alarm.
        assert_eq!(s.missed, 200);
        assert_eq!(s.false_alarm, 100);
        assert_eq!(s.confusion, 0);
        assert!((s.der() - 300.0 / 700.0).abs() < 1e-12);
    }

    #[test]
    fn one_label_for_two_speakers_is_confusion() {
        let r = [t(0.0, 3.0, "A"), t(3.0, 4.0, "B")];
        let h = [t(0.0, 4.0, "S1")];
        let (_, s) = score(&r, &h);
        assert_eq!((s.missed, s.false_alarm, s.confusion), (0, 0, 100));
        assert!((s.der() - 0.25).abs() < 1e-12);
    }

    #[test]
    fn hungarian_beats_greedy() {
        // Greedy on the largest cell (10) would pair 0-0 then 1-1 (total 11);
        // the best is 0-1 + 1-0 (9 + 9 = 18).
        let w = vec![vec![10, 9], vec![9, 1]];
        let mut m = max_assignment(&w);
        m.sort();
        assert_eq!(m, vec![(0, 1), (1, 0)]);
        // Rectangular: three hypothesis speakers, two reference.
        let w = vec![vec![1, 5, 0], vec![0, 6, 7]];
        let mut m = max_assignment(&w);
        m.sort();
        assert_eq!(m, vec![(0, 1), (1, 2)]);
    }

    #[test]
    fn events_give_turns_with_speaker_or_leg() {
        let text = r#"{"type":"turn","call_id":"c","start":0.5,"end":1.0,"speaker":"S1","leg":0}
{"type":"partial","call_id":"c","start":0.5}
{"type":"turn","call_id":"c","start":1.0,"end":2.0,"leg":1}
"#;
        let turns = parse_events(text).unwrap();
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[0].speaker, "S1");
        assert_eq!(turns[1].speaker, "leg1");
        assert!(parse_events("{not json").is_err());
    }
}

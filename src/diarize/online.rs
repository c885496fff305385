//! Live diarisation: speech regions are fed as they finish; every feed
//! re-runs the shared clustering core over all speech so far, keeps speaker
//! numbers stable by matching the new clusters to the previous ones, and
//! at the end tells which speech changed speaker after it was reported.

use super::der::max_assignment;
use super::track::Tracker;
use super::{DiarizeError, DiarizeOptions, Segment, SpeakerEmbedder};

/// Earlier speech now given to another speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relabel {
    /// First frame (10 ms) of the stretch.
    pub start: usize,
    /// Frame after the last.
    pub end: usize,
    /// Speaker it had.
    pub from: usize,
    /// Speaker it has now.
    pub to: usize,
}

/// What one feed produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnlineUpdate {
    /// Segments of the region just fed, with the labels so far.
    pub segments: Vec<Segment>,
    /// Speakers found so far.
    pub speakers: usize,
}

/// Incremental diarisation of one call leg.
pub struct OnlineDiarizer<E: SpeakerEmbedder> {
    embedder: E,
    tracker: Tracker,
    /// Segments as last reported.
    reported: Vec<Segment>,
    /// Each region's segments with the labels they were first given.
    first: Vec<Segment>,
    /// Speaker ids ever used (new speakers get fresh ids).
    next_id: usize,
}

impl<E: SpeakerEmbedder> OnlineDiarizer<E> {
    /// A diarizer for one leg.
    pub fn new(embedder: E, opts: DiarizeOptions) -> Result<Self, DiarizeError> {
        Ok(OnlineDiarizer {
            embedder,
            tracker: Tracker::new(opts)?,
            reported: Vec::new(),
            first: Vec::new(),
            next_id: 0,
        })
    }

    /// Feed a finished speech region starting at sample `start` (16 kHz).
    pub fn push(&mut self, start: usize, audio: &[f32]) -> Result<OnlineUpdate, DiarizeError> {
        let old_labels = self.tracker.window_labels().to_vec();
        let region = self.tracker.push_region(&self.embedder, start, audio)?;
        self.tracker.recluster();
        self.keep_ids(&old_labels);
        let now = self.tracker.segments();
        let (a, b) = self.tracker.region_span(region);
        let segments: Vec<Segment> = now
            .iter()
            .filter(|s| s.end > a && s.start < b)
            .map(|s| Segment {
                start: s.start.max(a),
                end: s.end.min(b),
                speaker: s.speaker,
            })
            .collect();
        self.first.extend_from_slice(&segments);
        self.reported = now;
        Ok(OnlineUpdate {
            segments,
            speakers: self.tracker.speakers(),
        })
    }

    /// Speech whose speaker now differs from the one it was first reported
    /// with, in stretches of at least `min_frames` (shorter ones are the
    /// boundary between two speakers moving by a frame or two).
    pub fn net_relabels(&self, min_frames: usize) -> Vec<Relabel> {
        let mut out = diff(&self.first, &self.reported);
        out.retain(|r| r.end - r.start >= min_frames);
        out
    }

    /// All segments so far, with the latest labels.
    pub fn segments(&self) -> &[Segment] {
        &self.reported
    }

    /// Rename the fresh clustering's speakers to the ids their windows had
    /// before (best one-to-one match); unmatched speakers get new ids.
    fn keep_ids(&mut self, old: &[usize]) {
        let new = self.tracker.window_labels().to_vec();
        let k_new = new.iter().max().map_or(0, |m| m + 1);
        let k_old = old.iter().max().map_or(0, |m| m + 1);
        let mut counts = vec![vec![0u64; k_old]; k_new];
        for (n, o) in new.iter().zip(old) {
            counts[*n][*o] += 1;
        }
        let mut map: Vec<Option<usize>> = vec![None; k_new];
        for (n, o) in max_assignment(&counts) {
            map[n] = Some(o);
        }
        let map: Vec<usize> = map
            .into_iter()
            .map(|m| {
                m.unwrap_or_else(|| {
                    let id = self.next_id.max(k_old);
                    self.next_id = id + 1;
                    id
                })
            })
            .collect();
        self.next_id = self.next_id.max(map.iter().max().map_or(0, |m| m + 1));
        self.tracker.rename(&map);
    }
}

/// Frames reported before whose speaker differs now, as runs.
fn diff(before: &[Segment], now: &[Segment]) -> Vec<Relabel> {
    let mut out: Vec<Relabel> = Vec::new();
    for b in before {
        for n in now {
            let (a, e) = (b.start.max(n.start), b.end.min(n.end));
            if a < e && b.speaker != n.speaker {
                match out.last_mut() {
                    Some(r) if r.end == a && r.from == b.speaker && r.to == n.speaker => r.end = e,
                    _ => out.push(Relabel {
                        start: a,
                        end: e,
                        from: b.speaker,
                        to: n.speaker,
                    }),
                }
            }
        }
    }
    out
}

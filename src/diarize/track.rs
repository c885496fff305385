//! The diarisation core shared by [`super::diarize`] and
//! [`super::OnlineDiarizer`]: speech regions → windows and embeddings →
//! change detection → clustering → frame labels → segments.

use std::ops::Range;

use super::cluster::{self, cosine, Stop};
use super::embed::{SpeakerEmbedder, MIN_FRAMES};
use super::fbank::{Fbank, N_MELS};
use super::{DiarizeError, DiarizeOptions, Segment, FRAME_SAMPLES};

/// A speech region on the 10 ms grid and its windows.
#[derive(Debug, Clone)]
struct Region {
    start: usize,
    end: usize,
    windows: Range<usize>,
}

/// One embedded window: grid frames `[start, start + len)`.
#[derive(Debug, Clone)]
struct Window {
    start: usize,
    len: usize,
    emb: Vec<f32>,
}

/// Everything embedded so far and its latest clustering.
pub struct Tracker {
    opts: DiarizeOptions,
    fbank: Fbank,
    regions: Vec<Region>,
    windows: Vec<Window>,
    /// Speaker id per window.
    labels: Vec<usize>,
    /// (speaker id, unit centroid).
    centroids: Vec<(usize, Vec<f32>)>,
}

fn frames_of(seconds: f32) -> usize {
    (seconds * 100.0).round().max(0.0) as usize
}

/// Window starts (in feature frames) covering `n` frames with windows of
/// `w` frames at most `h` apart; one window of all `n` when short.
fn window_starts(n: usize, w: usize, h: usize) -> Vec<usize> {
    if n <= w + h / 2 {
        return vec![0];
    }
    let k = (n - w).div_ceil(h.max(1)) + 1;
    (0..k).map(|i| i * (n - w) / (k - 1)).collect()
}

impl Tracker {
    /// An empty tracker.
    pub fn new(opts: DiarizeOptions) -> Result<Self, DiarizeError> {
        opts.validate()?;
        Ok(Tracker {
            opts,
            fbank: Fbank::new(),
            regions: Vec::new(),
            windows: Vec::new(),
            labels: Vec::new(),
            centroids: Vec::new(),
        })
    }

    /// The options in use.
    pub fn options(&self) -> &DiarizeOptions {
        &self.opts
    }

    /// Embed one speech region that starts at sample `start` (16 kHz).
    /// Regions should arrive in time order. Returns the region's index.
    pub fn push_region<E: SpeakerEmbedder>(
        &mut self,
        embedder: &E,
        start: usize,
        audio: &[f32],
    ) -> Result<usize, DiarizeError> {
        if audio.iter().any(|v| !v.is_finite()) {
            return Err(DiarizeError::Input(format!(
                "the region at sample {start} holds a non-finite sample"
            )));
        }
        let gs = start / FRAME_SAMPLES;
        let ge = (start + audio.len()) / FRAME_SAMPLES;
        let feats = self.fbank.compute(audio);
        let n = feats.len() / N_MELS;
        let first = self.windows.len();
        if n >= frames_of(self.opts.min_region_s).max(MIN_FRAMES) {
            let w = frames_of(self.opts.window_s).min(n);
            let starts = window_starts(n, w, frames_of(self.opts.hop_s));
            // Windows of one region share a length, so they batch.
            for chunk in starts.chunks(self.opts.batch) {
                let mut x = Vec::with_capacity(chunk.len() * w * N_MELS);
                for &a in chunk {
                    x.extend_from_slice(&feats[a * N_MELS..(a + w) * N_MELS]);
                }
                let embs = embedder.embed(&x, chunk.len(), w)?;
                if embs.len() != chunk.len() {
                    return Err(DiarizeError::Inference(format!(
                        "{} embeddings for {} windows",
                        embs.len(),
                        chunk.len()
                    )));
                }
                for (&a, emb) in chunk.iter().zip(embs) {
                    self.windows.push(Window {
                        start: gs + a,
                        len: w,
                        emb,
                    });
                }
            }
        }
        self.regions.push(Region {
            start: gs,
            end: ge.max(gs),
            windows: first..self.windows.len(),
        });
        Ok(self.regions.len() - 1)
    }

    /// Groups of consecutive windows between detected speaker changes
    /// (adjacent windows less alike than `change_threshold`).
    fn pieces(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for r in &self.regions {
            let mut cur: Vec<usize> = Vec::new();
            for i in r.windows.clone() {
                if let Some(&p) = cur.last() {
                    if cosine(&self.windows[p].emb, &self.windows[i].emb)
                        < self.opts.change_threshold
                    {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                cur.push(i);
            }
            if !cur.is_empty() {
                out.push(cur);
            }
        }
        out
    }

    /// Re-run change detection and clustering over every window so far.
    ///
    /// Pieces whose cluster, at the similarity threshold, holds less than
    /// `min_speaker_s` of speech are set aside as outliers (noise, laughter,
    /// a cough), the rest are clustered to the fixed or estimated count,
    /// the outliers join their nearest speaker, and every window is then
    /// reassigned to its nearest speaker centroid.
    pub fn recluster(&mut self) {
        let n = self.windows.len();
        if n == 0 {
            self.labels.clear();
            self.centroids.clear();
            return;
        }
        let items: Vec<Vec<f32>> = self.windows.iter().map(|w| w.emb.clone()).collect();
        let pieces = self.pieces();
        let first = cluster::agglomerate_groups(
            &items,
            &pieces,
            Stop::Threshold {
                sim: self.opts.cluster_threshold,
                max: usize::MAX,
            },
        );
        let k1 = first.iter().max().map_or(0, |m| m + 1);
        let mut windows_in = vec![0usize; k1];
        for (p, &l) in pieces.iter().zip(&first) {
            windows_in[l] += p.len();
        }
        let step = self.opts.hop_s.min(self.opts.window_s);
        let big = |l: usize| windows_in[l] as f32 * step >= self.opts.min_speaker_s;
        let (core, outliers): (Vec<usize>, Vec<usize>) =
            (0..pieces.len()).partition(|&p| big(first[p]));
        let core = if core.is_empty() {
            (0..pieces.len()).collect()
        } else {
            core
        };
        let stop = match self.opts.speakers {
            Some(k) => Stop::Count(k),
            None => Stop::Threshold {
                sim: self.opts.cluster_threshold,
                max: self.opts.max_speakers,
            },
        };
        let core_groups: Vec<Vec<usize>> = core.iter().map(|&p| pieces[p].clone()).collect();
        let mut core_labels = cluster::agglomerate_groups(&items, &core_groups, stop);
        if self.opts.speakers.is_none() {
            core_labels = self.merge_alike(&items, &core_groups, core_labels);
        }
        let mut labels = vec![usize::MAX; n];
        for (g, &l) in core_groups.iter().zip(&core_labels) {
            g.iter().for_each(|&w| labels[w] = l);
        }
        let ones = vec![1f32; n];
        let core_windows: Vec<usize> = core_groups.iter().flatten().copied().collect();
        let sub: Vec<Vec<f32>> = core_windows.iter().map(|&w| items[w].clone()).collect();
        let sub_labels: Vec<usize> = core_windows.iter().map(|&w| labels[w]).collect();
        let c = cluster::centroids(&sub, &ones[..sub.len()], &sub_labels);
        for &p in &outliers {
            for &w in &pieces[p] {
                labels[w] = cluster::nearest(&c, &items[w]).0;
            }
        }
        let labels = cluster::refine(&items, &ones, &cluster::renumber(&labels), 3);
        self.centroids = cluster::centroids(&items, &ones, &labels)
            .into_iter()
            .enumerate()
            .collect();
        self.labels = labels;
    }

    /// Merge clusters whose centroids are at least `centroid_threshold`
    /// alike: one speaker split by the window-level linkage (whose
    /// within-speaker similarity varies with the recording) ends up with
    /// nearly parallel centroids, two speakers do not.
    fn merge_alike(
        &self,
        items: &[Vec<f32>],
        groups: &[Vec<usize>],
        mut labels: Vec<usize>,
    ) -> Vec<usize> {
        loop {
            let win: Vec<usize> = groups.iter().flatten().copied().collect();
            let sub: Vec<Vec<f32>> = win.iter().map(|&w| items[w].clone()).collect();
            let sub_labels: Vec<usize> = groups
                .iter()
                .zip(&labels)
                .flat_map(|(g, &l)| std::iter::repeat_n(l, g.len()))
                .collect();
            let c = cluster::centroids(&sub, &vec![1.0; sub.len()], &sub_labels);
            let mut best = (f32::NEG_INFINITY, 0, 0);
            for i in 0..c.len() {
                for j in i + 1..c.len() {
                    let s = cosine(&c[i], &c[j]);
                    if s > best.0 {
                        best = (s, i, j);
                    }
                }
            }
            tracing::debug!(
                clusters = c.len(),
                centroid_cos = best.0,
                "centroid merge candidate"
            );
            if c.len() < 2 || best.0 < self.opts.centroid_threshold {
                return labels;
            }
            labels
                .iter_mut()
                .filter(|l| **l == best.2)
                .for_each(|l| *l = best.1);
            labels = cluster::renumber(&labels);
        }
    }

    /// Speaker id per window, from the latest clustering.
    pub fn window_labels(&self) -> &[usize] {
        &self.labels
    }

    /// Rename speakers: id `i` becomes `map[i]` (ids stay distinct).
    pub fn rename(&mut self, map: &[usize]) {
        let get = |i: usize| map.get(i).copied().unwrap_or(i);
        self.labels.iter_mut().for_each(|l| *l = get(*l));
        self.centroids.iter_mut().for_each(|c| c.0 = get(c.0));
    }

    /// Grid frames `(start, end)` of region `i` (empty if there is none).
    pub fn region_span(&self, i: usize) -> (usize, usize) {
        self.regions.get(i).map_or((0, 0), |r| (r.start, r.end))
    }

    /// Number of speakers found.
    pub fn speakers(&self) -> usize {
        self.centroids.len()
    }

    /// Speaker per frame of region `r` (grid frames `start..end`), or
    /// `None` when the region has no windows or nothing is clustered.
    fn region_frames(&self, r: &Region) -> Option<Vec<usize>> {
        if r.windows.is_empty() || self.centroids.is_empty() || self.labels.len() < r.windows.end {
            return None;
        }
        let len = r.end - r.start;
        let k = self.centroids.len();
        let mut score = vec![0f32; len * k];
        let mut covered = vec![false; len];
        for w in &self.windows[r.windows.clone()] {
            let sims: Vec<f32> = self
                .centroids
                .iter()
                .map(|c| cosine(&c.1, &w.emb))
                .collect();
            let half = w.len as f32 / 2.0;
            let centre = w.start as f32 + half;
            for t in w.start.max(r.start)..(w.start + w.len).min(r.end) {
                let tri = 1.0 - (t as f32 + 0.5 - centre).abs() / (half + 1.0);
                covered[t - r.start] = true;
                for (j, s) in sims.iter().enumerate() {
                    score[(t - r.start) * k + j] += tri * s;
                }
            }
        }
        // Frames past the last window (features end 15 ms before the audio)
        // take the nearest covered frame's scores.
        let mut last = None;
        for (i, &c) in covered.iter().enumerate() {
            if c {
                last = Some(i);
            } else if let Some(p) = last {
                score.copy_within(p * k..(p + 1) * k, i * k);
            }
        }
        if let Some(f) = covered.iter().position(|c| *c) {
            for i in 0..f {
                score.copy_within(f * k..(f + 1) * k, i * k);
            }
        }
        let mut best: Vec<usize> = (0..len)
            .map(|i| {
                let s = &score[i * k..(i + 1) * k];
                (0..k).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0)
            })
            .collect();
        smooth(&mut best, &score, k, frames_of(self.opts.min_turn_s));
        Some(best.into_iter().map(|j| self.centroids[j].0).collect())
    }

    /// Segments over every region so far, in time order. Regions too short
    /// to embed take the speaker of the nearest labelled frame.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        let mut pending: Vec<(usize, usize)> = Vec::new();
        for r in &self.regions {
            match self.region_frames(r) {
                Some(frames) => {
                    for (i, &s) in frames.iter().enumerate() {
                        push_frame(&mut out, r.start + i, s);
                    }
                }
                None if r.end > r.start => pending.push((r.start, r.end)),
                None => {}
            }
        }
        if out.is_empty() {
            // Nothing clustered: all speech is one speaker.
            for (a, b) in pending {
                out.push(Segment {
                    start: a,
                    end: b,
                    speaker: 0,
                });
            }
            return out;
        }
        for (a, b) in pending {
            let speaker = out
                .iter()
                .min_by_key(|s| {
                    if s.end <= a {
                        a - s.end
                    } else {
                        s.start.saturating_sub(b)
                    }
                })
                .map_or(0, |s| s.speaker);
            out.push(Segment {
                start: a,
                end: b,
                speaker,
            });
        }
        out.sort_by_key(|s| s.start);
        fill_gaps(out, frames_of(self.opts.fill_gap_s))
    }
}

/// Join consecutive segments of one speaker separated by at most `gap`
/// frames of silence.
fn fill_gaps(segs: Vec<Segment>, gap: usize) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(segs.len());
    for s in segs {
        match out.last_mut() {
            Some(l) if l.speaker == s.speaker && s.start >= l.end && s.start - l.end <= gap => {
                l.end = s.end
            }
            _ => out.push(s),
        }
    }
    out
}

/// Extend the last segment by one frame or start a new one.
fn push_frame(out: &mut Vec<Segment>, t: usize, speaker: usize) {
    if let Some(last) = out.last_mut() {
        if last.end == t && last.speaker == speaker {
            last.end = t + 1;
            return;
        }
    }
    out.push(Segment {
        start: t,
        end: t + 1,
        speaker,
    });
}

/// Merge runs shorter than `min` frames into the neighbour whose speaker
/// scores higher over the run, shortest first.
fn smooth(labels: &mut [usize], score: &[f32], k: usize, min: usize) {
    loop {
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            match runs.last_mut() {
                Some((a, b)) if labels[*a] == l && *b == i => *b = i + 1,
                _ => runs.push((i, i + 1)),
            }
        }
        if runs.len() < 2 {
            return;
        }
        let Some((ri, &(a, b))) = runs
            .iter()
            .enumerate()
            .filter(|(_, (a, b))| b - a < min)
            .min_by_key(|(_, (a, b))| b - a)
        else {
            return;
        };
        let sum = |j: usize| (a..b).map(|t| score[t * k + j]).sum::<f32>();
        let left = (ri > 0).then(|| labels[runs[ri - 1].0]);
        let right = runs.get(ri + 1).map(|r| labels[r.0]);
        let to = match (left, right) {
            (Some(l), Some(r)) => {
                if sum(l) >= sum(r) {
                    l
                } else {
                    r
                }
            }
            (Some(l), None) => l,
            (None, Some(r)) => r,
            (None, None) => return,
        };
        labels[a..b].iter_mut().for_each(|v| *v = to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_region_evenly() {
        assert_eq!(window_starts(100, 150, 75), vec![0]);
        assert_eq!(window_starts(180, 150, 75), vec![0]);
        assert_eq!(window_starts(300, 150, 75), vec![0, 75, 150]);
        let s = window_starts(1000, 150, 75);
        assert_eq!(*s.last().unwrap(), 850);
        assert!(s.windows(2).all(|p| p[1] - p[0] <= 75));
    }

    #[test]
    fn smoothing_removes_short_runs() {
        // 0 0 0 1 0 0 0 0 2 2 2 2 2 with min 3: the lone 1 goes.
        let mut l = vec![0, 0, 0, 1, 0, 0, 0, 0, 2, 2, 2, 2, 2];
        let score = vec![0f32; l.len() * 3];
        smooth(&mut l, &score, 3, 3);
        assert_eq!(l, vec![0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2]);
    }
}

//! Mood dynamics per speaker: an EWMA trend and two-sided CUSUM change
//! detection over the turn-by-turn mood signal.
//!
//! CUSUM keeps a reference level (the speaker's mood in the current regime)
//! and accumulates deviations beyond a slack `k`; when the accumulated drop
//! (or rise) passes `h`, the mood has shifted: a `shift` event is emitted
//! with the level before, the level of the turns that caused it (the
//! evidence), and the reference moves to the new level.

use serde::{Deserialize, Serialize};

use crate::event::Direction;

/// Dynamics settings (config section `[dynamics]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsConfig {
    /// Weight of the newest turn in the trend (0..1].
    pub ewma_alpha: f32,
    /// CUSUM slack: deviations smaller than this are noise.
    pub cusum_k: f32,
    /// CUSUM decision threshold.
    pub cusum_h: f32,
    /// A shift needs at least this many turns of evidence ...
    pub min_turns: usize,
    /// ... unless a single turn moves the mood by at least this much.
    pub jump: f32,
    /// Shifts that matter: a drop is reported when it ends below this level
    /// (into negative mood), a rise when it starts below it (out of negative
    /// mood). A positive speaker getting more positive, or a small dip that
    /// stays positive, moves the reference without an event.
    pub negative_level: f32,
}

impl Default for DynamicsConfig {
    fn default() -> Self {
        DynamicsConfig {
            ewma_alpha: 0.5,
            cusum_k: 0.15,
            // 0.45 let the escalation fixture's designed drop (neutral, then
            // three angry turns) register only at exactly 0.450: a change in
            // word times that moved one turn's mood by 0.008 lost it.
            cusum_h: 0.4,
            min_turns: 2,
            jump: 1.0,
            negative_level: -0.2,
        }
    }
}

impl DynamicsConfig {
    /// Check ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err("dynamics.ewma_alpha must be in (0, 1]".into());
        }
        if !(0.0..=2.0).contains(&self.cusum_k) {
            return Err("dynamics.cusum_k must be in [0, 2]".into());
        }
        if !(self.cusum_h > 0.0 && self.cusum_h <= 10.0) {
            return Err("dynamics.cusum_h must be in (0, 10]".into());
        }
        if !(1..=10).contains(&self.min_turns) {
            return Err("dynamics.min_turns must be between 1 and 10".into());
        }
        if !(self.jump > 0.0 && self.jump <= 2.0) {
            return Err("dynamics.jump must be in (0, 2]".into());
        }
        if !(-1.0..=1.0).contains(&self.negative_level) {
            return Err("dynamics.negative_level must be in [-1, 1]".into());
        }
        Ok(())
    }
}

/// A detected change of level.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    /// Worse or better.
    pub direction: Direction,
    /// Level before.
    pub from: f32,
    /// Level of the evidence turns.
    pub to: f32,
    /// `to - from`.
    pub magnitude: f32,
    /// Turn ids whose deviations triggered it, oldest first.
    pub evidence: Vec<u32>,
}

/// One speaker's trend and change detector.
#[derive(Debug, Clone, Default)]
pub struct SpeakerDynamics {
    cfg: DynamicsConfig,
    ewma: Option<f32>,
    reference: Option<f32>,
    n_ref: u32,
    lo: f32,
    hi: f32,
    lo_run: Vec<(u32, f32)>,
    hi_run: Vec<(u32, f32)>,
}

impl SpeakerDynamics {
    /// A detector with `cfg`.
    pub fn new(cfg: DynamicsConfig) -> Self {
        SpeakerDynamics {
            cfg,
            ..Default::default()
        }
    }

    /// The trend so far (None before the first turn).
    pub fn trend(&self) -> Option<f32> {
        self.ewma
    }

    /// The current reference level.
    pub fn level(&self) -> Option<f32> {
        self.reference
    }

    /// Feed one turn's mood value; returns a shift when one is detected.
    ///
    /// The first `min_turns` turns set the reference level (no detection).
    /// A shift is declared when the CUSUM passes `h`, the turn that passes
    /// it is itself beyond the slack on that side, and at least `min_turns`
    /// such deviating turns (or one turn `jump` away) back it; the evidence
    /// is those deviating turns.
    pub fn observe(&mut self, turn_id: u32, x: f32) -> Option<Shift> {
        let a = self.cfg.ewma_alpha;
        self.ewma = Some(match self.ewma {
            None => x,
            Some(e) => a * x + (1.0 - a) * e,
        });
        let warm = self.cfg.min_turns.max(1) as u32;
        let Some(mu) = self.reference.filter(|_| self.n_ref >= warm) else {
            self.n_ref += 1;
            let prev = self.reference.unwrap_or(x);
            self.reference = Some(prev + (x - prev) / self.n_ref as f32);
            return None;
        };
        let k = self.cfg.cusum_k;
        self.lo = (self.lo + (mu - x) - k).max(0.0);
        self.hi = (self.hi + (x - mu) - k).max(0.0);
        if self.lo > 0.0 {
            self.lo_run.push((turn_id, x));
        } else {
            self.lo_run.clear();
        }
        if self.hi > 0.0 {
            self.hi_run.push((turn_id, x));
        } else {
            self.hi_run.clear();
        }
        let h = self.cfg.cusum_h;
        let (min_turns, jump) = (self.cfg.min_turns, self.cfg.jump);
        let confirm = |run: &[(u32, f32)], down: bool| -> Option<Vec<(u32, f32)>> {
            let beyond = |v: f32| if down { v < mu - k } else { v > mu + k };
            if !beyond(x) {
                return None;
            }
            let dev: Vec<(u32, f32)> = run.iter().copied().filter(|r| beyond(r.1)).collect();
            (dev.len() >= min_turns || (x - mu).abs() >= jump).then_some(dev)
        };
        let fired = if self.lo > h {
            confirm(&self.lo_run, true).map(|d| (Direction::Down, d))
        } else {
            None
        }
        .or_else(|| {
            if self.hi > h {
                confirm(&self.hi_run, false).map(|d| (Direction::Up, d))
            } else {
                None
            }
        });
        if let Some((direction, run)) = fired {
            let to = run.iter().map(|r| r.1).sum::<f32>() / run.len().max(1) as f32;
            self.reference = Some(to);
            self.n_ref = warm.max(run.len() as u32);
            self.lo = 0.0;
            self.hi = 0.0;
            self.lo_run.clear();
            self.hi_run.clear();
            let neg = self.cfg.negative_level;
            let matters = match direction {
                Direction::Down => to < neg,
                Direction::Up => mu < neg,
            };
            if !matters {
                return None;
            }
            return Some(Shift {
                direction,
                from: mu,
                to,
                magnitude: to - mu,
                evidence: run.into_iter().map(|r| r.0).collect(),
            });
        }
        if self.lo == 0.0 && self.hi == 0.0 {
            // In control: refine the reference with this turn.
            self.n_ref += 1;
            self.reference = Some(mu + (x - mu) / self.n_ref as f32);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(xs: &[f32]) -> Vec<(usize, Shift)> {
        let mut d = SpeakerDynamics::new(DynamicsConfig::default());
        xs.iter()
            .enumerate()
            .filter_map(|(i, &x)| d.observe(i as u32, x).map(|s| (i, s)))
            .collect()
    }

    #[test]
    fn a_sustained_drop_is_found_where_it_is_confirmed_and_noise_is_not() {
        let s = run(&[0.1, 0.0, 0.1, -0.6, -0.7, -0.8]);
        assert_eq!(s.len(), 1, "{s:?}");
        let (at, sh) = &s[0];
        assert_eq!(*at, 4, "the second low turn confirms it");
        assert_eq!(sh.direction, Direction::Down);
        assert!(sh.magnitude < -0.5);
        assert_eq!(sh.evidence, vec![3, 4]);
        assert!(run(&[0.3, 0.2, 0.35, 0.25, 0.3, 0.2, 0.3]).is_empty());
        // One odd turn is not a shift, nor is the turn after it...
        assert!(run(&[0.4, 0.8, -0.25, 0.7, 0.9]).is_empty());
        // ... unless it is a big jump.
        let s = run(&[0.5, 0.4, -0.7]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.evidence, vec![2]);
        // The first turns only set the reference.
        assert!(run(&[0.9, -0.9]).is_empty());
        // Positive getting more positive, or a dip that stays positive, is no event.
        assert!(run(&[0.0, 0.1, 0.6, 0.7, 0.8]).is_empty());
        assert!(run(&[0.9, 0.8, 0.1, 0.0, 0.1]).is_empty());
    }

    #[test]
    fn an_upward_shift_after_a_drop() {
        let s = run(&[0.2, 0.1, -0.5, -0.6, -0.7, 0.3, 0.5]);
        let dirs: Vec<Direction> = s.iter().map(|x| x.1.direction).collect();
        assert_eq!(dirs, vec![Direction::Down, Direction::Up]);
        let mut d = SpeakerDynamics::new(DynamicsConfig::default());
        for (i, x) in [0.0f32, 1.0].iter().enumerate() {
            d.observe(i as u32, *x);
        }
        assert_eq!(d.trend(), Some(0.5));
    }
}

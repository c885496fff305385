//! Escalation rules: declarative conditions over rolling windows of turns,
//! loaded from the `[escalation]` config section and validated at load.
//!
//! ```toml
//! [[escalation.rules]]
//! id = "customer-frustrated"
//! severity = "high"
//! role = "customer"
//! metric = "frustration"   # see Metric
//! op = ">="
//! threshold = 0.7
//! count = 2                # at least 2 ...
//! window = 3               # ... of the speaker's last 3 turns
//! ```

use serde::{Deserialize, Serialize};

use crate::event::{Role, Severity};

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Frustration indicator of a turn, 0..1.
    Frustration,
    /// Polarity score of a turn, -1..1.
    Sentiment,
    /// The speaker's EWMA mood trend after a turn, -1..1.
    Trend,
    /// Intensity of a turn, 0..1.
    Intensity,
    /// Sarcasm indicator of a turn, 0..1.
    Sarcasm,
    /// P(anger) of a turn, 0..1.
    Anger,
    /// Silence between consecutive turns (any speaker), seconds.
    SilenceS,
    /// Times this role started speaking while the other party was speaking,
    /// counted over the call.
    Interruptions,
}

impl Metric {
    fn range(self) -> (f32, f32) {
        match self {
            Metric::Sentiment | Metric::Trend => (-1.0, 1.0),
            Metric::SilenceS => (0.0, 3600.0),
            Metric::Interruptions => (0.0, 10_000.0),
            _ => (0.0, 1.0),
        }
    }

    /// Evaluated per turn of one role over a window.
    fn per_turn(self) -> bool {
        !matches!(self, Metric::SilenceS | Metric::Interruptions)
    }
}

/// Comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Greater or equal.
    #[serde(rename = ">=")]
    Ge,
    /// Greater.
    #[serde(rename = ">")]
    Gt,
    /// Less or equal.
    #[serde(rename = "<=")]
    Le,
    /// Less.
    #[serde(rename = "<")]
    Lt,
}

impl Op {
    /// Apply.
    pub fn holds(self, v: f32, t: f32) -> bool {
        match self {
            Op::Ge => v >= t,
            Op::Gt => v > t,
            Op::Le => v <= t,
            Op::Lt => v < t,
        }
    }

    /// As written.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Ge => ">=",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Lt => "<",
        }
    }
}

/// One rule as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique id, written in alerts.
    pub id: String,
    /// Severity of its alerts.
    #[serde(default)]
    pub severity: Severity,
    /// Whose turns it looks at (per-turn metrics and interruptions).
    #[serde(default)]
    pub role: Option<Role>,
    /// The measure.
    pub metric: Metric,
    /// Comparison.
    pub op: Op,
    /// Threshold.
    pub threshold: f32,
    /// How many turns of the window must hold (per-turn metrics).
    #[serde(default = "one")]
    pub count: u32,
    /// The speaker's last N turns (per-turn metrics).
    #[serde(default = "one")]
    pub window: u32,
    /// After firing, the rule stays quiet for this many turns of the role.
    #[serde(default = "three")]
    pub cooldown_turns: u32,
    /// The rule waits for evidence: it is not checked before the speaker has
    /// had this many turns (per-turn metrics).
    #[serde(default = "one")]
    pub min_turns: u32,
    /// Free text for people, copied into alerts.
    #[serde(default)]
    pub description: Option<String>,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}

/// `[escalation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// Use the built-in rules (see [`default_rules`]) in addition to `rules`.
    pub default_rules: bool,
    /// Your rules.
    pub rules: Vec<Rule>,
    /// POST each alert as JSON to this URL (`http://` or `https://`; a
    /// host name, an IPv4 address or an IPv6 literal such as `[::1]`).
    pub webhook: Option<String>,
    /// Time allowed for one attempt (resolution, connection, TLS, request
    /// and answer together), ms.
    pub webhook_timeout_ms: u64,
    /// Attempts after the first one failed.
    pub webhook_retries: u32,
    /// PEM file of CA certificates that sign the webhook's HTTPS
    /// certificate (a private CA); default: the bundled web PKI roots.
    pub webhook_ca: Option<std::path::PathBuf>,
}

impl EscalationConfig {
    /// The webhook's connection options.
    pub fn webhook_options(&self) -> crate::intel::webhook::WebhookOptions {
        crate::intel::webhook::WebhookOptions {
            timeout: std::time::Duration::from_millis(self.webhook_timeout_ms),
            retries: self.webhook_retries,
            ca_file: self.webhook_ca.clone(),
        }
    }
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            default_rules: true,
            rules: Vec::new(),
            webhook: None,
            webhook_timeout_ms: 2000,
            webhook_retries: 3,
            webhook_ca: None,
        }
    }
}

/// The built-in rules: the issue's examples.
pub fn default_rules() -> Vec<Rule> {
    let r = |id: &str, sev, role, metric, op, threshold, count, window, d: &str| Rule {
        id: id.into(),
        severity: sev,
        role,
        metric,
        op,
        threshold,
        count,
        window,
        cooldown_turns: 3,
        min_turns: 1,
        description: Some(d.into()),
    };
    vec![
        r(
            "customer-frustrated",
            Severity::High,
            Some(Role::Customer),
            Metric::Frustration,
            Op::Ge,
            0.6,
            2,
            3,
            "customer frustration >= 0.6 in 2 of their last 3 turns",
        ),
        // A trend needs more than one turn: the first turn alone (often a
        // calm statement of the problem) never fires it.
        Rule {
            min_turns: 3,
            ..r(
                "customer-trend-negative",
                Severity::Medium,
                Some(Role::Customer),
                Metric::Trend,
                Op::Lt,
                -0.5,
                1,
                1,
                "customer mood trend below -0.5 over at least three of their turns",
            )
        },
        r(
            "long-silence",
            Severity::Low,
            None,
            Metric::SilenceS,
            Op::Gt,
            10.0,
            1,
            1,
            "nobody spoke for over 10 s",
        ),
        r(
            "agent-talks-over-customer",
            Severity::Medium,
            Some(Role::Agent),
            Metric::Interruptions,
            Op::Gt,
            3.0,
            1,
            1,
            "the agent started speaking over the customer more than 3 times",
        ),
    ]
}

impl EscalationConfig {
    /// The rules in force, validated: errors name the rule and the problem.
    pub fn effective_rules(&self) -> Result<Vec<Rule>, String> {
        let mut all = if self.default_rules {
            default_rules()
        } else {
            Vec::new()
        };
        for r in &self.rules {
            all.retain(|d| d.id != r.id); // a rule of yours replaces a built-in of the same id
        }
        all.extend(self.rules.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        for r in &self.rules {
            if !seen.insert(r.id.as_str()) {
                return Err(format!("escalation rule '{}': duplicate id", r.id));
            }
        }
        for r in &all {
            validate(r)?;
        }
        Ok(all)
    }

    /// Check the whole section.
    pub fn validate(&self) -> Result<(), String> {
        self.effective_rules()?;
        if let Some(u) = &self.webhook {
            crate::intel::webhook::parse_url(u)
                .map_err(|e| format!("escalation.webhook '{u}': {e}"))?;
        }
        if !(10..=60_000).contains(&self.webhook_timeout_ms) {
            return Err("escalation.webhook_timeout_ms must be between 10 and 60000".into());
        }
        if self.webhook_retries > 10 {
            return Err("escalation.webhook_retries must be at most 10".into());
        }
        Ok(())
    }
}

fn validate(r: &Rule) -> Result<(), String> {
    let bad = |m: String| Err(format!("escalation rule '{}': {m}", r.id));
    if r.id.trim().is_empty() {
        return Err("escalation rule with an empty id".into());
    }
    if !r
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return bad("id may only hold letters, digits, '-', '_' and '.'".into());
    }
    let (lo, hi) = r.metric.range();
    if !r.threshold.is_finite() || r.threshold < lo || r.threshold > hi {
        return bad(format!(
            "threshold {} is outside the range of {:?} ({lo}..{hi})",
            r.threshold, r.metric
        ));
    }
    if r.metric.per_turn() {
        if r.role.is_none() {
            return bad(format!(
                "metric {:?} needs a role (agent or customer)",
                r.metric
            ));
        }
        if r.window == 0 || r.window > 100 {
            return bad("window must be between 1 and 100 turns".into());
        }
        if r.count == 0 || r.count > r.window {
            return bad(format!(
                "count {} must be between 1 and the window ({})",
                r.count, r.window
            ));
        }
        if r.min_turns > 1000 {
            return bad("min_turns must be at most 1000".into());
        }
    } else if r.metric == Metric::Interruptions && r.role.is_none() {
        return bad("metric Interruptions needs the role of the one who interrupts".into());
    }
    if r.role == Some(Role::Unknown) {
        return bad("role must be agent or customer".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Vec<Rule>, String> {
        let c: EscalationConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.effective_rules()
    }

    #[test]
    fn rules_load_and_errors_name_the_rule() {
        let ok = parse(
            "default_rules = false\n[[rules]]\nid = \"x\"\nrole = \"customer\"\nmetric = \"anger\"\nop = \">=\"\nthreshold = 0.8\n",
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].window, 1);
        assert_eq!(parse("").unwrap().len(), 4);
        let e = parse("[[rules]]\nid = \"r1\"\nrole = \"customer\"\nmetric = \"frustration\"\nop = \">=\"\nthreshold = 3\n").unwrap_err();
        assert!(e.contains("'r1'") && e.contains("threshold"), "{e}");
        let e = parse(
            "[[rules]]\nid = \"r2\"\nmetric = \"frustration\"\nop = \">=\"\nthreshold = 0.5\n",
        )
        .unwrap_err();
        assert!(e.contains("'r2'") && e.contains("role"), "{e}");
        let e = parse("[[rules]]\nid = \"r3\"\nrole = \"agent\"\nmetric = \"sentiment\"\nop = \"<\"\nthreshold = 0\ncount = 4\nwindow = 3\n").unwrap_err();
        assert!(e.contains("'r3'") && e.contains("count"), "{e}");
        let e = parse("[[rules]]\nid = \"r4\"\nmetric = \"loudness\"\nop = \">\"\nthreshold = 1\n")
            .unwrap_err();
        assert!(e.contains("loudness"), "{e}");
        let e = parse("[[rules]]\nid = \"a\"\nrole = \"agent\"\nmetric = \"sentiment\"\nop = \"<\"\nthreshold = 0\n[[rules]]\nid = \"a\"\nrole = \"agent\"\nmetric = \"sentiment\"\nop = \"<\"\nthreshold = 0\n").unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
    }
}

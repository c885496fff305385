//! Agent assist: hints addressed to the agent while the call runs, from
//! declarative rules in the `[assist]` config section (validated at load,
//! with cooldowns, like the escalation rules in [`super::rules`]).
//!
//! ```toml
//! [[assist.rules]]
//! id = "slow-down"
//! trigger = "agent_speaking_rate"  # see Trigger
//! threshold = 1.4                  # 40% above the agent's own baseline
//! severity = "low"
//! cooldown_turns = 6
//! message = "You are speaking fast ({value}x your usual pace): slow down."
//! ```
//!
//! The hints run in the conversation tracker, on each final turn, before the
//! escalation rules: a hint about a customer turn comes out before any alert
//! the same turn raises.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{AssistEvent, AssistEvidence, Role, Severity, Tone, SCHEMA_VERSION};

/// What a hint rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A customer turn's frustration or P(anger) (the larger), 0..1, crossing
    /// the threshold from below: the customer is turning.
    CustomerFrustration,
    /// Times the customer made a negative turn on the same topic (intent).
    RepeatedComplaint,
    /// Times the agent started speaking over the customer, over the call.
    AgentInterruptions,
    /// An agent turn's speaking rate over the agent's own median so far
    /// (after three turns), as a ratio.
    AgentSpeakingRate,
    /// Silence before a turn, seconds.
    DeadAir,
    /// Agent talk without a customer turn in between, seconds.
    AgentMonologue,
    /// P(escalation_request) of a customer turn: a manager, a supervisor.
    CustomerAsksManager,
    /// P(cancellation) of a customer turn.
    CustomerAsksCancel,
    /// The customer came back up to their mood before a drop (the
    /// `recovered` event); the threshold is the mood gain, -1..1.
    Recovery,
}

impl Trigger {
    /// The metric's range.
    fn range(self) -> (f32, f32) {
        match self {
            Trigger::RepeatedComplaint | Trigger::AgentInterruptions => (1.0, 1000.0),
            Trigger::AgentSpeakingRate => (1.0, 10.0),
            Trigger::DeadAir | Trigger::AgentMonologue => (0.5, 3600.0),
            Trigger::Recovery => (0.0, 2.0),
            _ => (0.0, 1.0),
        }
    }

    /// The metric's name in evidence.
    pub fn metric(self) -> &'static str {
        match self {
            Trigger::CustomerFrustration => "frustration",
            Trigger::RepeatedComplaint => "complaints",
            Trigger::AgentInterruptions => "interruptions",
            Trigger::AgentSpeakingRate => "rate_ratio",
            Trigger::DeadAir => "silence_s",
            Trigger::AgentMonologue => "monologue_s",
            Trigger::CustomerAsksManager => "p_escalation_request",
            Trigger::CustomerAsksCancel => "p_cancellation",
            Trigger::Recovery => "mood_gain",
        }
    }

    /// The trigger as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::CustomerFrustration => "customer_frustration",
            Trigger::RepeatedComplaint => "repeated_complaint",
            Trigger::AgentInterruptions => "agent_interruptions",
            Trigger::AgentSpeakingRate => "agent_speaking_rate",
            Trigger::DeadAir => "dead_air",
            Trigger::AgentMonologue => "agent_monologue",
            Trigger::CustomerAsksManager => "customer_asks_manager",
            Trigger::CustomerAsksCancel => "customer_asks_cancel",
            Trigger::Recovery => "recovery",
        }
    }

    /// Needs audio (timing or voice): not checked on chat.
    fn needs_audio(self) -> bool {
        matches!(
            self,
            Trigger::AgentInterruptions
                | Trigger::AgentSpeakingRate
                | Trigger::DeadAir
                | Trigger::AgentMonologue
        )
    }
}

/// One hint rule as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HintRule {
    /// Unique id, written in the hint as `hint_id`.
    pub id: String,
    /// What it watches.
    pub trigger: Trigger,
    /// When it fires (the metric at or above this).
    pub threshold: f32,
    /// How urgent.
    #[serde(default = "low")]
    pub severity: Severity,
    /// Corrective (default) or positive reinforcement.
    #[serde(default)]
    pub tone: Tone,
    /// After firing, the rule stays quiet for this many turns of the call.
    #[serde(default = "four")]
    pub cooldown_turns: u32,
    /// What the agent reads; `{value}` is replaced by the metric's value
    /// and `{topic}` by the topic (repeated complaints).
    pub message: String,
}

fn low() -> Severity {
    Severity::Low
}
fn four() -> u32 {
    4
}

/// `[assist]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistConfig {
    /// Give hints at all.
    pub enabled: bool,
    /// Use the built-in rules ([`default_rules`]) in addition to `rules`
    /// (a rule of yours with a built-in's id replaces it).
    pub default_rules: bool,
    /// Your rules.
    pub rules: Vec<HintRule>,
}

impl Default for AssistConfig {
    fn default() -> Self {
        AssistConfig {
            enabled: true,
            default_rules: true,
            rules: Vec::new(),
        }
    }
}

/// The built-in hint rules.
pub fn default_rules() -> Vec<HintRule> {
    let r = |id: &str, trigger, threshold, severity, message: &str| HintRule {
        id: id.into(),
        trigger,
        threshold,
        severity,
        tone: Tone::Corrective,
        cooldown_turns: 4,
        message: message.into(),
    };
    vec![
        r(
            "acknowledge-frustration",
            Trigger::CustomerFrustration,
            0.5,
            Severity::Medium,
            "The customer is getting frustrated: acknowledge the problem in your own words, then offer a concrete next step.",
        ),
        r(
            "repeated-complaint",
            Trigger::RepeatedComplaint,
            2.0,
            Severity::Medium,
            "The customer has raised the same problem ({topic}) {value} times: say back what you heard and what happens next.",
        ),
        r(
            "talk-over",
            Trigger::AgentInterruptions,
            2.0,
            Severity::Medium,
            "You have talked over the customer {value} times: let them finish before you answer.",
        ),
        r(
            "slow-down",
            Trigger::AgentSpeakingRate,
            1.35,
            Severity::Low,
            "You are speaking {value}x faster than your usual pace: slow down.",
        ),
        r(
            "dead-air",
            Trigger::DeadAir,
            10.0,
            Severity::Low,
            "{value} s of silence: tell the customer what you are doing while they wait.",
        ),
        r(
            "long-monologue",
            Trigger::AgentMonologue,
            45.0,
            Severity::Low,
            "You have been talking for {value} s: pause and check the customer is with you.",
        ),
        r(
            "manager-request",
            Trigger::CustomerAsksManager,
            0.5,
            Severity::High,
            "The customer asked for a manager: acknowledge it, say what you can do right now, and offer the transfer if they still want it.",
        ),
        r(
            "cancel-request",
            Trigger::CustomerAsksCancel,
            0.5,
            Severity::Medium,
            "The customer wants to cancel: ask what went wrong before offering the options to stay.",
        ),
        HintRule {
            tone: Tone::Positive,
            cooldown_turns: 0,
            ..r(
                "recovery",
                Trigger::Recovery,
                0.0,
                Severity::Low,
                "The customer is back up: what you did worked. Confirm the next steps before closing.",
            )
        },
    ]
}

impl AssistConfig {
    /// The rules in force, validated: errors name the rule and the problem.
    pub fn effective_rules(&self) -> Result<Vec<HintRule>, String> {
        if !self.enabled {
            return Ok(Vec::new());
        }
        let mut all = if self.default_rules {
            default_rules()
        } else {
            Vec::new()
        };
        let mut seen = std::collections::HashSet::new();
        for r in &self.rules {
            if !seen.insert(r.id.as_str()) {
                return Err(format!("assist rule '{}': duplicate id", r.id));
            }
        }
        all.retain(|d| !seen.contains(d.id.as_str()));
        all.extend(self.rules.iter().cloned());
        for r in &all {
            validate(r)?;
        }
        Ok(all)
    }
}

fn validate(r: &HintRule) -> Result<(), String> {
    let bad = |m: String| Err(format!("assist rule '{}': {m}", r.id));
    if r.id.trim().is_empty() {
        return Err("assist rule with an empty id".into());
    }
    if !r
        .id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return bad("id may only hold letters, digits, '-', '_' and '.'".into());
    }
    let (lo, hi) = r.trigger.range();
    if !r.threshold.is_finite() || r.threshold < lo || r.threshold > hi {
        return bad(format!(
            "threshold {} is outside the range of {} ({lo}..{hi})",
            r.threshold,
            r.trigger.as_str()
        ));
    }
    if r.cooldown_turns > 1000 {
        return bad("cooldown_turns must be at most 1000".into());
    }
    if r.message.trim().is_empty() {
        return bad("message is empty".into());
    }
    if r.message.len() > 500 {
        return bad("message is longer than 500 bytes".into());
    }
    Ok(())
}

/// What the tracker knows of a turn when hints are checked.
#[derive(Debug, Clone, Default)]
pub struct TurnFacts<'a> {
    pub role: Role,
    pub turn_id: u32,
    pub start: f64,
    pub end: f64,
    /// Silence before the turn (None for the first turn).
    pub gap: Option<f64>,
    pub frustration: f32,
    pub anger: f32,
    pub negative: bool,
    /// The turn's topic (intent label) and the intent probabilities.
    pub topic: Option<&'a str>,
    pub p_escalation_request: f32,
    pub p_cancellation: f32,
    /// Words per second and word count.
    pub rate: Option<f32>,
    pub words: usize,
    /// The agent's interruptions so far in the call.
    pub agent_interruptions: u32,
    /// The mood gain when this turn showed a recovery.
    pub recovered: Option<f32>,
    /// The agent's leg, when there is an agent.
    pub agent_leg: Option<u8>,
}

/// The hint state of one call.
pub struct Assistant {
    call_id: String,
    rules: Vec<HintRule>,
    chat: bool,
    turns: u32,
    fired_at: Vec<Option<u32>>,
    /// Per rule: the metric's value when it last fired (interruptions).
    fired_value: Vec<f32>,
    prev_customer_level: Option<f32>,
    complaints: BTreeMap<String, Vec<u32>>,
    agent_rates: Vec<f32>,
    /// The agent's current run: its start and whether the monologue hint fired.
    monologue: Option<(f64, bool)>,
}

/// Median of a non-empty slice.
pub fn median(v: &[f32]) -> f32 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt_value(v: f32) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

impl Assistant {
    /// For a call; `chat`: a written conversation (timing and voice triggers off).
    pub fn new(call_id: &str, rules: Vec<HintRule>, chat: bool) -> Self {
        let n = rules.len();
        Assistant {
            call_id: call_id.into(),
            rules,
            chat,
            turns: 0,
            fired_at: vec![None; n],
            fired_value: vec![0.0; n],
            prev_customer_level: None,
            complaints: BTreeMap::new(),
            agent_rates: Vec::new(),
            monologue: None,
        }
    }

    /// Check every rule on one final turn, in call order.
    pub fn on_turn(&mut self, f: &TurnFacts) -> Vec<AssistEvent> {
        self.turns += 1;
        let level = f.frustration.max(f.anger);
        let prev_level = if f.role == Role::Customer {
            self.prev_customer_level.replace(level)
        } else {
            None
        };
        let mut topic_turns: Vec<u32> = Vec::new();
        if f.role == Role::Customer && f.negative {
            if let Some(t) = f.topic.filter(|t| *t != super::intent::NO_TOPIC) {
                let v = self.complaints.entry(t.to_string()).or_default();
                v.push(f.turn_id);
                topic_turns = v.clone();
            }
        }
        // The agent's speaking rate against their own median so far.
        let mut rate_ratio = None;
        if f.role == Role::Agent {
            if let Some(r) = f
                .rate
                .filter(|r| *r > 0.0 && f.words >= 6 && f.end - f.start >= 2.0)
            {
                if self.agent_rates.len() >= 3 {
                    rate_ratio = Some(r / median(&self.agent_rates));
                }
                self.agent_rates.push(r);
            }
        }
        // The agent's run of talk without the customer.
        let mut monologue = None;
        match f.role {
            Role::Agent => {
                let (start, fired) = *self.monologue.get_or_insert((f.start, false));
                if !fired {
                    monologue = Some(f.end - start);
                }
            }
            Role::Customer => self.monologue = None,
            Role::Unknown => {}
        }
        let mut out = Vec::new();
        for i in 0..self.rules.len() {
            let r = &self.rules[i];
            if self.chat && r.trigger.needs_audio() {
                continue;
            }
            if let Some(at) = self.fired_at[i] {
                if self.turns - at < r.cooldown_turns {
                    continue;
                }
            }
            let th = r.threshold;
            let customer = f.role == Role::Customer;
            let hit: Option<(f32, Vec<u32>, Vec<String>)> = match r.trigger {
                Trigger::CustomerFrustration => {
                    (customer && level >= th && prev_level.is_none_or(|p| p < th)).then(|| {
                        let was = prev_level
                            .map(|p| format!(" (previous customer turn {p:.2})"))
                            .unwrap_or_default();
                        (
                            level,
                            vec![f.turn_id],
                            vec![format!(
                                "frustration {:.2}, anger {:.2}{was}",
                                f.frustration, f.anger
                            )],
                        )
                    })
                }
                Trigger::RepeatedComplaint => {
                    (customer && topic_turns.len() as f32 >= th).then(|| {
                        (
                            topic_turns.len() as f32,
                            topic_turns.clone(),
                            vec![format!("topic {}", f.topic.unwrap_or_default())],
                        )
                    })
                }
                Trigger::AgentInterruptions => {
                    let n = f.agent_interruptions as f32;
                    (n >= th && n > self.fired_value[i]).then(|| (n, vec![f.turn_id], vec![]))
                }
                Trigger::AgentSpeakingRate => rate_ratio.filter(|x| *x >= th).map(|x| {
                    (
                        x,
                        vec![f.turn_id],
                        vec![format!(
                            "{:.2} words/s against a median of {:.2}",
                            f.rate.unwrap_or_default(),
                            x.recip() * f.rate.unwrap_or_default()
                        )],
                    )
                }),
                Trigger::DeadAir => f
                    .gap
                    .filter(|g| *g as f32 >= th)
                    .map(|g| (g as f32, vec![f.turn_id], vec![])),
                Trigger::AgentMonologue => monologue
                    .filter(|m| *m as f32 >= th)
                    .map(|m| (m as f32, vec![f.turn_id], vec![])),
                Trigger::CustomerAsksManager => (customer && f.p_escalation_request >= th)
                    .then(|| (f.p_escalation_request, vec![f.turn_id], vec![])),
                Trigger::CustomerAsksCancel => (customer && f.p_cancellation >= th)
                    .then(|| (f.p_cancellation, vec![f.turn_id], vec![])),
                Trigger::Recovery => f
                    .recovered
                    .filter(|g| *g >= th)
                    .map(|g| (g, vec![f.turn_id], vec![])),
            };
            let Some((value, turns, notes)) = hit else {
                continue;
            };
            if r.trigger == Trigger::AgentMonologue {
                if let Some(m) = &mut self.monologue {
                    m.1 = true;
                }
            }
            self.fired_at[i] = Some(self.turns);
            self.fired_value[i] = value;
            let message = r
                .message
                .replace("{value}", &fmt_value(value))
                .replace("{topic}", &f.topic.unwrap_or("").replace('_', " "));
            out.push(AssistEvent {
                schema: SCHEMA_VERSION.into(),
                call_id: self.call_id.clone(),
                hint_id: r.id.clone(),
                trigger: r.trigger.as_str().into(),
                message,
                severity: r.severity,
                tone: r.tone,
                agent_leg: f.agent_leg,
                at: f.end,
                turn_id: f.turn_id,
                evidence: AssistEvidence {
                    metric: r.trigger.metric().into(),
                    value: (value * 1000.0).round() / 1000.0,
                    threshold: th,
                    turns,
                    notes,
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Vec<HintRule>, String> {
        let c: AssistConfig = toml::from_str(t).map_err(|e| e.to_string())?;
        c.effective_rules()
    }

    fn facts(role: Role, id: u32, start: f64, end: f64) -> TurnFacts<'static> {
        TurnFacts {
            role,
            turn_id: id,
            start,
            end,
            gap: (id > 0).then_some(0.5),
            agent_leg: Some(0),
            ..Default::default()
        }
    }

    fn ids(v: &[AssistEvent]) -> Vec<&str> {
        v.iter().map(|h| h.hint_id.as_str()).collect()
    }

    #[test]
    fn rules_load_replace_built_ins_and_errors_name_the_rule() {
        assert_eq!(parse("").unwrap().len(), default_rules().len());
        assert!(parse("enabled = false").unwrap().is_empty());
        let r = parse("[[rules]]\nid = \"talk-over\"\ntrigger = \"agent_interruptions\"\nthreshold = 5\nmessage = \"stop\"\n").unwrap();
        assert_eq!(r.len(), default_rules().len());
        let t = r.iter().find(|x| x.id == "talk-over").unwrap();
        assert_eq!((t.threshold, t.cooldown_turns), (5.0, 4));
        let e = parse("[[rules]]\nid = \"x\"\ntrigger = \"customer_frustration\"\nthreshold = 2\nmessage = \"m\"\n").unwrap_err();
        assert!(e.contains("'x'") && e.contains("threshold"), "{e}");
        let e = parse(
            "[[rules]]\nid = \"y\"\ntrigger = \"shouting\"\nthreshold = 1\nmessage = \"m\"\n",
        )
        .unwrap_err();
        assert!(e.contains("shouting"), "{e}");
        let e = parse(
            "[[rules]]\nid = \"z\"\ntrigger = \"dead_air\"\nthreshold = 5\nmessage = \" \"\n",
        )
        .unwrap_err();
        assert!(e.contains("'z'") && e.contains("message"), "{e}");
        let e = parse("[[rules]]\nid = \"a\"\ntrigger = \"dead_air\"\nthreshold = 5\nmessage = \"m\"\n[[rules]]\nid = \"a\"\ntrigger = \"dead_air\"\nthreshold = 6\nmessage = \"m\"\n").unwrap_err();
        assert!(e.contains("duplicate"), "{e}");
    }

    #[test]
    fn frustration_fires_on_the_crossing_and_repeats_after_the_cooldown() {
        let mut a = Assistant::new("c", default_rules(), false);
        let mut out = Vec::new();
        for (k, level) in [0.1f32, 0.7, 0.8, 0.2, 0.9, 0.1, 0.9].iter().enumerate() {
            let mut f = facts(
                Role::Customer,
                k as u32,
                k as f64 * 5.0,
                k as f64 * 5.0 + 3.0,
            );
            f.frustration = *level;
            out.push(ids(&a.on_turn(&f)).join(","));
        }
        // 0.7 crosses; 0.8 stays above (no repeat); 0.9 crosses again but
        // within the cooldown of four turns; the last 0.9 is past it.
        assert_eq!(
            out,
            vec![
                "",
                "acknowledge-frustration",
                "",
                "",
                "",
                "",
                "acknowledge-frustration"
            ]
        );
        let mut a = Assistant::new("c", default_rules(), false);
        let mut f = facts(Role::Customer, 0, 0.0, 3.0);
        f.frustration = 0.9;
        let h = a.on_turn(&f);
        assert_eq!(h[0].evidence.metric, "frustration");
        assert_eq!(h[0].evidence.value, 0.9);
        assert_eq!(h[0].tone, Tone::Corrective);
        assert!(h[0].message.contains("acknowledge"), "{}", h[0].message);
    }

    #[test]
    fn talk_over_rate_dead_air_monologue_and_requests() {
        let mut a = Assistant::new("c", default_rules(), false);
        let mut f = facts(Role::Agent, 0, 0.0, 3.0);
        f.agent_interruptions = 1;
        assert!(a.on_turn(&f).is_empty());
        let mut f = facts(Role::Agent, 1, 3.0, 6.0);
        f.agent_interruptions = 2;
        let h = a.on_turn(&f);
        assert_eq!(ids(&h), vec!["talk-over"]);
        assert_eq!(
            h[0].message,
            "You have talked over the customer 2 times: let them finish before you answer."
        );
        // Speaking rate: a baseline of three turns at 2.5 w/s, then 3.6.
        let mut a = Assistant::new("c", default_rules(), false);
        for k in 0..3u32 {
            let mut f = facts(Role::Agent, 2 * k, k as f64 * 10.0, k as f64 * 10.0 + 4.0);
            (f.rate, f.words) = (Some(2.5), 10);
            assert!(a.on_turn(&f).is_empty());
            let c = facts(
                Role::Customer,
                2 * k + 1,
                k as f64 * 10.0 + 5.0,
                k as f64 * 10.0 + 8.0,
            );
            assert!(a.on_turn(&c).is_empty());
        }
        let mut f = facts(Role::Agent, 6, 30.0, 34.0);
        (f.rate, f.words) = (Some(3.6), 14);
        let h = a.on_turn(&f);
        assert_eq!(ids(&h), vec!["slow-down"]);
        assert!((h[0].evidence.value - 1.44).abs() < 1e-3);
        // Dead air and a monologue across agent turns; chat skips both.
        for chat in [false, true] {
            let mut a = Assistant::new("c", default_rules(), chat);
            let f = facts(Role::Agent, 0, 0.0, 20.0);
            assert!(a.on_turn(&f).is_empty());
            let mut f = facts(Role::Agent, 1, 32.0, 50.0);
            f.gap = Some(12.0);
            let got = ids(&a.on_turn(&f)).join(",");
            assert_eq!(
                got,
                if chat { "" } else { "dead-air,long-monologue" },
                "chat {chat}"
            );
        }
        let mut a = Assistant::new("c", default_rules(), true);
        let mut f = facts(Role::Customer, 0, 0.0, 0.0);
        (f.p_escalation_request, f.negative, f.topic) = (0.8, true, Some("escalation_request"));
        assert_eq!(ids(&a.on_turn(&f)), vec!["manager-request"]);
        let mut f = facts(Role::Customer, 1, 0.0, 0.0);
        (f.p_cancellation, f.negative, f.topic) = (0.7, true, Some("escalation_request"));
        assert_eq!(
            ids(&a.on_turn(&f)),
            vec!["repeated-complaint", "cancel-request"]
        );
        let mut f = facts(Role::Customer, 2, 0.0, 0.0);
        f.recovered = Some(0.4);
        let h = a.on_turn(&f);
        assert_eq!(ids(&h), vec!["recovery"]);
        assert_eq!(h[0].tone, Tone::Positive);
    }
}

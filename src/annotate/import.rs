//! A Label Studio JSON export → `labels.jsonl`, one line per annotator per
//! turn. Everything that does not fit is an error naming the task; nothing
//! is dropped without being counted.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use crate::event::Role;

use super::{
    control, utf16_to_chars, LabelLine, SpanLabel, EMOTION, INDICATORS, INTENSITY_MAX, POLARITY,
};

/// What an import found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSummary {
    /// Tasks in the export.
    pub tasks: usize,
    /// Tasks with at least one usable annotation.
    pub annotated_tasks: usize,
    /// Tasks nobody annotated (kept out of the output).
    pub unannotated_tasks: usize,
    /// Annotations in the export.
    pub annotations: usize,
    /// Annotations the annotator cancelled (skipped the task).
    pub cancelled: usize,
    /// Annotations submitted without any label.
    pub empty: usize,
    /// Lines written.
    pub lines: usize,
    /// Lines per annotator.
    pub per_annotator: BTreeMap<String, usize>,
}

/// A task's identity, to check an export against the `tasks.json` it came from.
pub type TaskKey = (String, u32);

/// The keys of a `tasks.json` written by `annotate export`.
pub fn task_keys(tasks: &Value) -> Result<HashSet<TaskKey>, String> {
    let arr = tasks
        .as_array()
        .ok_or("tasks.json is not a JSON array of tasks")?;
    arr.iter()
        .enumerate()
        .map(|(i, t)| {
            let d = &t["data"];
            match (d["call_id"].as_str(), d["turn_id"].as_u64()) {
                (Some(c), Some(n)) => Ok((c.to_string(), n as u32)),
                _ => Err(format!(
                    "tasks.json task {}: no data.call_id/data.turn_id",
                    i + 1
                )),
            }
        })
        .collect()
}

fn annotator_of(a: &Value) -> Option<String> {
    match &a["completed_by"] {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o
            .get("email")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .or_else(|| o.get("id").map(|v| v.to_string())),
        _ => None,
    }
}

fn one_choice<'a>(v: &'a Value, allowed: &[&str], what: &str) -> Result<&'a str, String> {
    let ch = v["value"]["choices"]
        .as_array()
        .ok_or_else(|| format!("{what}: no value.choices"))?;
    if ch.len() != 1 {
        return Err(format!("{what}: {} choices, expected one", ch.len()));
    }
    let c = ch[0].as_str().unwrap_or_default();
    if !allowed.contains(&c) {
        return Err(format!(
            "unknown {what} '{c}' (expected one of {})",
            allowed.join(", ")
        ));
    }
    Ok(c)
}

/// Parse one annotation's `result` into `line`.
fn apply_result(result: &[Value], text: &str, line: &mut LabelLine) -> Result<(), String> {
    for r in result {
        let from = r["from_name"].as_str().unwrap_or_default();
        match from {
            control::POLARITY => line.polarity = Some(one_choice(r, &POLARITY, "polarity")?.into()),
            control::EMOTION => line.emotion = Some(one_choice(r, &EMOTION, "emotion")?.into()),
            control::INTENSITY => {
                let v = r["value"]["rating"]
                    .as_f64()
                    .ok_or("intensity: no value.rating")?;
                if !(1.0..=INTENSITY_MAX as f64).contains(&v) || v.fract() != 0.0 {
                    return Err(format!("intensity rating {v} is not 1 to {INTENSITY_MAX}"));
                }
                line.intensity = Some(v as u8);
            }
            control::INDICATORS => {
                for c in r["value"]["choices"]
                    .as_array()
                    .ok_or("indicators: no value.choices")?
                {
                    match c.as_str().unwrap_or_default() {
                        "frustration" => line.frustration = true,
                        "sarcasm" => line.sarcasm = true,
                        o => {
                            return Err(format!(
                                "unknown indicator '{o}' (expected {})",
                                INDICATORS.join(" or ")
                            ))
                        }
                    }
                }
            }
            control::SPANS => {
                let v = &r["value"];
                let labels = v["labels"].as_array().ok_or("span: no value.labels")?;
                let label = match labels.as_slice() {
                    [l] => l.as_str().unwrap_or_default(),
                    _ => return Err(format!("span: {} labels, expected one", labels.len())),
                };
                if !POLARITY.contains(&label) {
                    return Err(format!(
                        "unknown span label '{label}' (expected one of {})",
                        POLARITY.join(", ")
                    ));
                }
                let (s, e) = match (v["start"].as_u64(), v["end"].as_u64()) {
                    (Some(s), Some(e)) if s < e => (s as usize, e as usize),
                    _ => return Err("span: start/end missing or empty".into()),
                };
                let (Some(cs), Some(ce)) = (utf16_to_chars(text, s), utf16_to_chars(text, e))
                else {
                    return Err(format!(
                        "span {s}..{e} lies outside the task's text ({} characters)",
                        text.chars().count()
                    ));
                };
                let got: String = text.chars().skip(cs).take(ce - cs).collect();
                if let Some(t) = v["text"].as_str() {
                    if t != got {
                        return Err(format!(
                            "span {s}..{e} says '{t}' but the task's text there is '{got}': the export does not match its task"
                        ));
                    }
                }
                line.spans.push(SpanLabel {
                    start: cs,
                    end: ce,
                    label: label.into(),
                });
            }
            // Label Studio's own bookkeeping and the display-only objects.
            "context" | "audio" | "" => {
                if from.is_empty() {
                    return Err("a result without from_name".into());
                }
            }
            o => {
                return Err(format!(
                    "unknown control '{o}' (is this a callpulse project's export?)"
                ))
            }
        }
    }
    line.spans.sort_by_key(|s| (s.start, s.end));
    Ok(())
}

/// Import a Label Studio JSON export. With `known`, every task must be one
/// of those exported. Errors name the task (Label Studio id, call and
/// turn) and all of them are returned, so one run shows every problem.
pub fn import(
    export: &Value,
    known: Option<&HashSet<TaskKey>>,
) -> Result<(Vec<LabelLine>, ImportSummary), Vec<String>> {
    let Some(tasks) = export.as_array() else {
        return Err(vec!["the export is not a JSON array of tasks (export from Label Studio as JSON, not JSON_MIN or CSV)".into()]);
    };
    let mut out = Vec::new();
    let mut sum = ImportSummary {
        tasks: tasks.len(),
        ..Default::default()
    };
    let mut errors = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let id = t["id"].as_i64();
        let name = match id {
            Some(n) => format!("task {n}"),
            None => format!("task #{} (no id)", i + 1),
        };
        let d = &t["data"];
        let (Some(text), Some(call_id), Some(turn_id)) = (
            d["text"].as_str(),
            d["call_id"].as_str(),
            d["turn_id"].as_u64(),
        ) else {
            errors.push(format!("{name}: data has no text, call_id or turn_id; was it made by `callpulse annotate export`?"));
            continue;
        };
        let name = format!("{name} (call {call_id}, turn {turn_id})");
        if let Some(k) = known {
            if !k.contains(&(call_id.to_string(), turn_id as u32)) {
                errors.push(format!("{name}: not in the tasks file; the export belongs to another project or export"));
                continue;
            }
        }
        let role: Role = d["role"]
            .as_str()
            .unwrap_or("unknown")
            .parse()
            .unwrap_or(Role::Unknown);
        let anns = match &t["annotations"] {
            Value::Array(a) => a.as_slice(),
            Value::Null => &[],
            _ => {
                errors.push(format!("{name}: `annotations` is not a list"));
                continue;
            }
        };
        let mut used = 0;
        for (j, a) in anns.iter().enumerate() {
            sum.annotations += 1;
            if a["was_cancelled"].as_bool() == Some(true) {
                sum.cancelled += 1;
                continue;
            }
            let aname = format!(
                "{name}, annotation {}",
                a["id"]
                    .as_i64()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| format!("#{}", j + 1))
            );
            let Some(annotator) = annotator_of(a) else {
                errors.push(format!("{aname}: no completed_by (annotator)"));
                continue;
            };
            let Some(result) = a["result"].as_array() else {
                errors.push(format!("{aname}: no result list"));
                continue;
            };
            if result.is_empty() {
                sum.empty += 1;
                continue;
            }
            let mut line = LabelLine {
                item: format!("{call_id}/{turn_id}"),
                call_id: call_id.into(),
                turn_id: turn_id as u32,
                task_id: id,
                role,
                lang: d["lang"].as_str().map(String::from),
                text: text.into(),
                annotator: annotator.clone(),
                lead_time: a["lead_time"].as_f64(),
                polarity: None,
                emotion: None,
                intensity: None,
                frustration: false,
                sarcasm: false,
                spans: Vec::new(),
            };
            if let Err(e) = apply_result(result, text, &mut line) {
                errors.push(format!("{aname} by {annotator}: {e}"));
                continue;
            }
            *sum.per_annotator.entry(annotator).or_default() += 1;
            used += 1;
            out.push(line);
        }
        if used > 0 {
            sum.annotated_tasks += 1;
        } else {
            sum.unannotated_tasks += 1;
        }
    }
    sum.lines = out.len();
    if errors.is_empty() {
        Ok((out, sum))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: i64, anns: Value) -> Value {
        json!({"id": id, "data": {"text": "thanks but the bill is wrong", "call_id": "c1", "turn_id": id, "role": "customer", "lang": "en"}, "annotations": anns})
    }

    #[test]
    fn an_export_with_two_annotators_becomes_one_line_each() {
        let r = |p: &str| {
            json!([
                {"from_name": "polarity", "to_name": "text", "type": "choices", "value": {"choices": [p]}},
                {"from_name": "emotion", "to_name": "text", "type": "choices", "value": {"choices": ["frustration"]}},
                {"from_name": "intensity", "to_name": "text", "type": "rating", "value": {"rating": 4}},
                {"from_name": "indicators", "to_name": "text", "type": "choices", "value": {"choices": ["sarcasm"]}},
                {"from_name": "span_polarity", "to_name": "text", "type": "labels", "value": {"start": 11, "end": 28, "text": "the bill is wrong", "labels": ["negative"]}}
            ])
        };
        let export = json!([
            task(
                1,
                json!([
                    {"id": 7, "completed_by": 1, "result": r("negative"), "lead_time": 9.5},
                    {"id": 8, "completed_by": {"id": 2, "email": "b@x.org"}, "result": r("neutral")},
                    {"id": 9, "completed_by": 3, "result": [], "was_cancelled": true}
                ])
            ),
            task(2, json!([]))
        ]);
        let (lines, sum) = import(&export, None).unwrap();
        assert_eq!(
            (
                sum.tasks,
                sum.annotated_tasks,
                sum.unannotated_tasks,
                sum.cancelled,
                sum.lines
            ),
            (2, 1, 1, 1, 2)
        );
        assert_eq!(lines[0].annotator, "1");
        assert_eq!(lines[1].annotator, "b@x.org");
        assert_eq!(lines[0].polarity.as_deref(), Some("negative"));
        assert_eq!(
            (lines[0].intensity, lines[0].sarcasm, lines[0].frustration),
            (Some(4), true, false)
        );
        assert_eq!(
            lines[0].spans,
            vec![SpanLabel {
                start: 11,
                end: 28,
                label: "negative".into()
            }]
        );
        assert_eq!(lines[0].lead_time, Some(9.5));
        assert_eq!(lines[0].item, "c1/1");
    }

    #[test]
    fn bad_exports_name_the_task_and_every_problem() {
        let bad = json!([
            task(1, json!([{"id": 1, "completed_by": 1, "result": [{"from_name": "polarity", "value": {"choices": ["furious"]}}]}])),
            task(2, json!([{"id": 2, "completed_by": 1, "result": [{"from_name": "span_polarity", "value": {"start": 0, "end": 6, "text": "hello!", "labels": ["negative"]}}]}])),
            task(3, json!([{"id": 3, "completed_by": 1, "result": [{"from_name": "mood", "value": {}}]}])),
            {"id": 4, "data": {"text": "x"}},
        ]);
        let e = import(&bad, None).unwrap_err();
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(
            e[0].contains("task 1 (call c1, turn 1)") && e[0].contains("furious"),
            "{}",
            e[0]
        );
        assert!(
            e[1].contains("task 2") && e[1].contains("does not match"),
            "{}",
            e[1]
        );
        assert!(e[2].contains("unknown control 'mood'"), "{}", e[2]);
        assert!(
            e[3].contains("task 4") && e[3].contains("annotate export"),
            "{}",
            e[3]
        );
        assert!(import(&json!({"tasks": []}), None).unwrap_err()[0].contains("not a JSON array"));
        // A task that is not in the exported tasks file.
        let known: HashSet<TaskKey> = [("c1".to_string(), 1u32)].into();
        let e = import(&json!([task(5, json!([]))]), Some(&known)).unwrap_err();
        assert!(
            e[0].contains("task 5") && e[0].contains("not in the tasks file"),
            "{e:?}"
        );
    }
}

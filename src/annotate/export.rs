//! Scored calls → a Label Studio import: `tasks.json` (one task per turn,
//! with the model's labels as `predictions`), `config.xml`, and optionally
//! each turn's audio as a WAV clip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::event::{Event, TurnEvent};

use super::{chars_to_utf16, control, INTENSITY_MAX};

/// Which turns are worth a person's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The model is least sure: the smallest margin between the two likeliest
    /// polarities (ties broken by the higher entropy).
    Uncertain,
    /// A uniform random sample (seeded, so it can be reproduced).
    Random,
    /// Text and voice pull apart: a polite or neutral text read with an
    /// aroused voice, `clamp(arousal / 2, 0, 1) × (P(neutral) + P(positive))`.
    Disagree,
}

/// Export options.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Replace identifiers in the text and silence them in the audio.
    pub redact: bool,
    /// Keep this many turns (all when None).
    pub sample: Option<usize>,
    /// How to choose them.
    pub strategy: Strategy,
    /// Seed of the random strategy.
    pub seed: u64,
    /// How a clip is referred to from a task: this prefix, then
    /// `audio/FILE.wav` (e.g. `/data/local-files/?d=` for Label Studio's
    /// local files serving with its document root at the output directory).
    pub audio_prefix: String,
}

/// One turn picked for labelling, before it is written.
#[derive(Debug, Clone)]
pub struct Item {
    /// The turn.
    pub turn: TurnEvent,
    /// The previous turn of the call, if any.
    pub previous: Option<TurnEvent>,
    /// Model version string of the call (from the events' `model` block).
    pub model_version: String,
    /// Where the call's recording is, when clips are cut.
    pub audio: Option<PathBuf>,
}

/// The turns of `events` with their context.
pub fn items(events: &[Event], audio: Option<PathBuf>) -> Vec<Item> {
    let mut turns: Vec<&TurnEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::Turn(t) => Some(t),
            _ => None,
        })
        .collect();
    turns.sort_by(|a, b| a.start.total_cmp(&b.start).then(a.turn_id.cmp(&b.turn_id)));
    let mut out = Vec::new();
    let mut prev: Option<&TurnEvent> = None;
    for t in turns {
        if !t.text.trim().is_empty() {
            out.push(Item {
                model_version: model_version(t),
                turn: t.clone(),
                previous: prev.cloned(),
                audio: audio.clone(),
            });
            prev = Some(t);
        }
    }
    out
}

fn model_version(t: &TurnEvent) -> String {
    match &t.model {
        Some(m) => format!("{}+{}", m.polarity, m.emotion),
        None => "callpulse (heads not recorded)".into(),
    }
}

fn polarity_probs(t: &TurnEvent) -> [f32; 3] {
    let p = &t.polarity.probs;
    [p.negative, p.neutral, p.positive]
}

/// How uncertain the text model was: 1 − (top probability − second).
pub fn uncertainty(t: &TurnEvent) -> f64 {
    let mut p = polarity_probs(t);
    p.sort_by(|a, b| b.total_cmp(a));
    let entropy: f32 = p.iter().filter(|v| **v > 0.0).map(|v| -v * v.ln()).sum();
    1.0 - (p[0] - p[1]) as f64 + 1e-3 * entropy as f64
}

/// How far text and voice pull apart (see [`Strategy::Disagree`]).
pub fn disagreement(t: &TurnEvent) -> f64 {
    let arousal = crate::prosody::arousal(&t.prosody.z);
    let calm_text = t.polarity.probs.neutral + t.polarity.probs.positive;
    ((arousal / 2.0).clamp(0.0, 1.0) * calm_text) as f64
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keep `n` items by `strategy` (most worth labelling first; random
/// keeps the calls' order).
pub fn sample(mut items: Vec<Item>, n: usize, strategy: Strategy, seed: u64) -> Vec<Item> {
    if n >= items.len() {
        return items;
    }
    match strategy {
        Strategy::Random => {
            let mut s = seed;
            let mut keyed: Vec<(u64, usize)> =
                (0..items.len()).map(|i| (splitmix(&mut s), i)).collect();
            keyed.sort();
            let mut keep: Vec<usize> = keyed[..n].iter().map(|k| k.1).collect();
            keep.sort();
            let mut it: Vec<Option<Item>> = items.into_iter().map(Some).collect();
            keep.into_iter().filter_map(|i| it[i].take()).collect()
        }
        Strategy::Uncertain | Strategy::Disagree => {
            let key = |t: &TurnEvent| {
                if strategy == Strategy::Uncertain {
                    uncertainty(t)
                } else {
                    disagreement(t)
                }
            };
            items.sort_by(|a, b| key(&b.turn).total_cmp(&key(&a.turn)));
            items.truncate(n);
            items
        }
    }
}

fn redact_text(s: &str, on: bool) -> String {
    if on {
        crate::intel::pii::redact(s).0
    } else {
        s.to_string()
    }
}

/// The model's labels of a turn as Label Studio prediction results over
/// `text` (the text the task shows).
pub fn prediction(t: &TurnEvent, text: &str, redact: bool) -> Value {
    let mut result = Vec::new();
    let mut add = |id: &str, from: &str, kind: &str, value: Value| {
        result.push(json!({
            "id": id, "from_name": from, "to_name": control::TEXT, "type": kind, "value": value,
        }));
    };
    let pol = t.polarity.label.as_str();
    add(
        "polarity",
        control::POLARITY,
        "choices",
        json!({"choices": [pol]}),
    );
    if let Some(e) = &t.emotion {
        add(
            "emotion",
            control::EMOTION,
            "choices",
            json!({"choices": [e.label]}),
        );
    }
    let rating = (t.intensity.clamp(0.0, 1.0) * (INTENSITY_MAX - 1) as f32).round() as u8 + 1;
    add(
        "intensity",
        control::INTENSITY,
        "rating",
        json!({"rating": rating}),
    );
    if let Some(ind) = &t.indicators {
        let ticked: Vec<&str> = [("frustration", &ind.frustration), ("sarcasm", &ind.sarcasm)]
            .iter()
            .filter(|(_, i)| i.score >= 0.5)
            .map(|(n, _)| *n)
            .collect();
        if !ticked.is_empty() {
            add(
                "indicators",
                control::INDICATORS,
                "choices",
                json!({"choices": ticked}),
            );
        }
    }
    // Span polarity, for turns the model split into clauses of differing
    // polarity: found again in the (possibly redacted) text.
    let mixed = t.spans.len() > 1
        && t.spans
            .iter()
            .any(|s| s.polarity.label != t.spans[0].polarity.label);
    if mixed {
        let chars: Vec<char> = text.chars().collect();
        let mut from = 0usize;
        for (i, s) in t.spans.iter().enumerate() {
            let want: Vec<char> = redact_text(&s.text, redact).trim().chars().collect();
            if want.is_empty() {
                continue;
            }
            let Some(at) = (from..=chars.len().saturating_sub(want.len()))
                .find(|&k| chars[k..k + want.len()] == want[..])
            else {
                continue;
            };
            from = at + want.len();
            let (s16, e16) = (chars_to_utf16(text, at), chars_to_utf16(text, from));
            add(
                &format!("span{i}"),
                control::SPANS,
                "labels",
                json!({"start": s16, "end": e16, "text": want.iter().collect::<String>(),
                       "labels": [s.polarity.label.as_str()]}),
            );
        }
    }
    let p = polarity_probs(t);
    let score = p.iter().copied().fold(0.0f32, f32::max) as f64;
    json!({"result": result, "score": (score * 1000.0).round() / 1000.0})
}

/// A call's recording, decoded once for all its clips.
struct Recording<'a> {
    path: &'a Path,
    rate: f64,
    /// One buffer per channel, up to the end of the last clip wanted.
    legs: Vec<Vec<f32>>,
}

/// Decode `path` up to `until_s` seconds.
fn decode(path: &Path, until_s: f64) -> Result<Recording<'_>, String> {
    use crate::audio::wav::WavSource;
    let err = |e: crate::audio::wav::WavError| format!("{}: {e}", path.display());
    let mut src = WavSource::open(path).map_err(err)?;
    let info = src.info();
    let rate = info.sample_rate as f64;
    let until = (until_s * rate).ceil() as usize;
    let mut legs = vec![Vec::new(); info.channels as usize];
    let mut chunk = Vec::new();
    while legs[0].len() < until {
        let n = src.read_chunk(65_536, &mut chunk).map_err(err)?;
        if n == 0 {
            break;
        }
        for (l, c) in legs.iter_mut().zip(&chunk) {
            l.extend_from_slice(c);
        }
    }
    Ok(Recording { path, rate, legs })
}

/// Cut `t`'s stretch of its leg from `rec`, silencing redacted words.
fn clip(t: &TurnEvent, rec: &Recording, redact: bool, out: &Path) -> Result<(), String> {
    let sr = rec.rate;
    let leg = &rec.legs[(t.leg as usize).min(rec.legs.len() - 1)];
    let (a, b) = ((t.start * sr) as usize, (t.end * sr).ceil() as usize);
    let mut samples = leg[a.min(leg.len())..b.min(leg.len())].to_vec();
    if samples.is_empty() {
        return Err(format!(
            "{}: turn {} ({:.2}–{:.2} s) lies past the end of the recording; is this the call's audio?",
            rec.path.display(),
            t.turn_id,
            t.start,
            t.end
        ));
    }
    if redact {
        let words: Vec<&str> = t.words.iter().map(|w| w.word.as_str()).collect();
        let kinds = crate::intel::pii::redact_words(&words);
        for (w, k) in t.words.iter().zip(kinds) {
            let tagged = w.word.trim().starts_with('[') && w.word.trim().ends_with(']');
            if k.is_some() || tagged {
                let s = ((w.start - t.start) * sr).max(0.0) as usize;
                let e = (((w.end - t.start) * sr).ceil() as usize).min(samples.len());
                for v in samples.iter_mut().take(e).skip(s) {
                    *v = 0.0;
                }
            }
        }
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rec.rate as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(out, spec).map_err(|e| format!("{}: {e}", out.display()))?;
    for v in samples {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    w.finalize().map_err(|e| format!("{}: {e}", out.display()))
}

/// What an export wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExportSummary {
    /// Turns found in the calls.
    pub turns: usize,
    /// Tasks written.
    pub tasks: usize,
    /// Tasks with predictions.
    pub predictions: usize,
    /// Audio clips written.
    pub clips: usize,
    /// Turns whose text changed under redaction.
    pub redacted: usize,
}

/// Label Studio tasks for `items`; clips go to `dir/audio/` when an item has audio.
pub fn tasks(
    items: &[Item],
    opts: &ExportOptions,
    dir: &Path,
) -> Result<(Vec<Value>, ExportSummary), String> {
    // Clips: each recording is decoded once, up to its last turn's end.
    let mut by_recording: BTreeMap<&Path, Vec<&TurnEvent>> = BTreeMap::new();
    for it in items {
        if let Some(a) = &it.audio {
            by_recording.entry(a.as_path()).or_default().push(&it.turn);
        }
    }
    if !by_recording.is_empty() {
        std::fs::create_dir_all(dir.join("audio")).map_err(|e| e.to_string())?;
    }
    for (path, turns) in by_recording {
        let until = turns.iter().map(|t| t.end).fold(0.0, f64::max);
        let rec = decode(path, until)?;
        for t in turns {
            clip(t, &rec, opts.redact, &dir.join("audio").join(clip_name(t)))?;
        }
    }
    let mut out = Vec::new();
    let mut sum = ExportSummary {
        turns: items.len(),
        ..Default::default()
    };
    for it in items {
        let t = &it.turn;
        let text = redact_text(&t.text, opts.redact);
        sum.redacted += usize::from(text != t.text);
        let context = match &it.previous {
            Some(p) => format!("{}: {}", p.role.as_str(), redact_text(&p.text, opts.redact)),
            None => "(first turn of the call)".into(),
        };
        let mut data = json!({
            "text": text,
            "role": t.role.as_str(),
            "call_id": t.call_id,
            "turn_id": t.turn_id,
            "leg": t.leg,
            "start": t.start,
            "end": t.end,
            "context": context,
        });
        if let Some(s) = &t.speaker {
            data["speaker"] = json!(s);
        }
        if let Some(l) = &t.language {
            data["lang"] = json!(l);
        }
        if it.audio.is_some() {
            let name = clip_name(t);
            data["audio"] = json!(format!("{}audio/{name}", opts.audio_prefix));
            sum.clips += 1;
        }
        let mut task = json!({ "data": data });
        if t.unscored.is_none() {
            let mut p = prediction(t, &text, opts.redact);
            p["model_version"] = json!(it.model_version);
            task["predictions"] = json!([p]);
            sum.predictions += 1;
        }
        out.push(task);
    }
    sum.tasks = out.len();
    Ok((out, sum))
}

/// The file name of a turn's clip.
fn clip_name(t: &TurnEvent) -> String {
    format!("{}_{}.wav", sanitize(&t.call_id), t.turn_id)
}

/// A call id as a file name.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

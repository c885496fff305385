//! Agreement per attribute across annotators, annotators far from the
//! others, and the adjudicated gold set (majority per item, ties listed).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::Role;

use super::agreement::{
    cohen_kappa, fleiss_kappa, krippendorff_alpha, span_counts, token_labels, tokens, Level, Span,
};
use super::{LabelLine, SpanLabel};

/// Cohen's kappa of one annotator pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairKappa {
    /// First annotator.
    pub a: String,
    /// Second annotator.
    pub b: String,
    /// Items both labelled.
    pub n: usize,
    /// Observed agreement.
    pub agreement: f64,
    /// Cohen's kappa (None when undefined: both always gave one label).
    pub kappa: Option<f64>,
}

/// Agreement on one attribute.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeAgreement {
    /// `polarity`, `emotion`, `intensity`, `frustration`, `sarcasm`.
    pub attribute: String,
    /// Items with two or more ratings.
    pub items: usize,
    /// Ratings on those items.
    pub ratings: usize,
    /// Share of pairable items on which every rater agreed.
    pub unanimous: f64,
    /// Krippendorff's alpha, nominal (polarity, emotion, flags) or interval (intensity).
    pub alpha: Option<f64>,
    /// Intensity only: Krippendorff's alpha, ordinal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha_ordinal: Option<f64>,
    /// Fleiss' kappa, when every item has the same number of ratings (not for intensity).
    pub fleiss_kappa: Option<f64>,
    /// Cohen's kappa per annotator pair (not for intensity).
    pub pairs: Vec<PairKappa>,
}

/// Token-level span agreement of one annotator pair.
#[derive(Debug, Clone, Serialize)]
pub struct PairSpanF1 {
    /// First annotator.
    pub a: String,
    /// Second annotator.
    pub b: String,
    /// Items both labelled.
    pub items: usize,
    /// Tokens labelled by the first / the second.
    pub tokens: (usize, usize),
    /// F1 (None when neither labelled a span).
    pub f1: Option<f64>,
}

/// One annotator.
#[derive(Debug, Clone, Serialize)]
pub struct AnnotatorStats {
    /// Id.
    pub annotator: String,
    /// Items labelled.
    pub items: usize,
    /// Median seconds per item (Label Studio's lead time).
    pub median_lead_time: Option<f64>,
    /// Share of polarity and emotion labels that match the majority of the
    /// other annotators (on items where the others have a strict majority).
    pub agreement_with_others: Option<f64>,
    /// Far from the others: agreement with the others at least 0.2 below
    /// the mean of the other annotators' (three or more annotators).
    pub far: bool,
}

/// An item on which the annotators disagreed.
#[derive(Debug, Clone, Serialize)]
pub struct Disagreement {
    /// `CALL_ID/TURN_ID`.
    pub item: String,
    /// Attribute.
    pub attribute: String,
    /// Label per annotator.
    pub labels: BTreeMap<String, String>,
    /// No majority: the gold set leaves this attribute out until someone adjudicates it.
    pub tie: bool,
}

/// What `annotate agreement` reports.
#[derive(Debug, Clone, Serialize)]
pub struct AgreementReport {
    /// Items (turns) labelled.
    pub items: usize,
    /// Annotators.
    pub annotators: Vec<AnnotatorStats>,
    /// Per attribute.
    pub attributes: Vec<AttributeAgreement>,
    /// Span agreement per annotator pair.
    pub spans: Vec<PairSpanF1>,
    /// Token F1 over all pairs' tokens together.
    pub span_f1: Option<f64>,
    /// Items with disagreement, ties first.
    pub disagreements: Vec<Disagreement>,
}

/// The adjudicated label of an item: a line of `gold.jsonl`, which loads as
/// training data (`train --extra`) and in `eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldLine {
    /// `CALL_ID/TURN_ID`.
    pub item: String,
    /// Call id.
    pub call_id: String,
    /// Turn id.
    pub turn_id: u32,
    /// Role.
    pub role: Role,
    /// Language, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Text.
    pub text: String,
    /// Majority polarity (absent on a tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polarity: Option<String>,
    /// Majority emotion (absent on a tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotion: Option<String>,
    /// Median intensity (the lower middle value on an even count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intensity: Option<u8>,
    /// Majority frustration flag (absent on a tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frustration: Option<bool>,
    /// Majority sarcasm flag (absent on a tie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sarcasm: Option<bool>,
    /// Spans by token-level majority.
    #[serde(default)]
    pub spans: Vec<SpanLabel>,
    /// Annotators of this item.
    pub annotators: usize,
    /// Attributes without a majority, for review.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ties: Vec<String>,
}

/// Items in order, each with its lines by annotator (a later line by the
/// same annotator replaces an earlier one).
fn by_item(lines: &[LabelLine]) -> BTreeMap<String, BTreeMap<String, &LabelLine>> {
    let mut m: BTreeMap<String, BTreeMap<String, &LabelLine>> = BTreeMap::new();
    for l in lines {
        m.entry(l.item.clone())
            .or_default()
            .insert(l.annotator.clone(), l);
    }
    m
}

type Getter = fn(&LabelLine) -> Option<String>;

const NOMINAL: [(&str, Getter); 4] = [
    ("polarity", |l| l.polarity.clone()),
    ("emotion", |l| l.emotion.clone()),
    ("frustration", |l| Some(l.frustration.to_string())),
    ("sarcasm", |l| Some(l.sarcasm.to_string())),
];

/// The strict plurality of `labels`, or None on a tie (or none given).
fn majority<'a>(labels: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut c: BTreeMap<&str, usize> = BTreeMap::new();
    for l in labels {
        *c.entry(l).or_default() += 1;
    }
    let best = c.values().copied().max()?;
    let mut top = c.iter().filter(|(_, n)| **n == best);
    let first = top.next()?;
    top.next().is_none().then_some(*first.0)
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Agreement figures and disagreements of `lines`.
pub fn agreement(lines: &[LabelLine]) -> AgreementReport {
    let items = by_item(lines);
    let annotators: BTreeSet<String> = lines.iter().map(|l| l.annotator.clone()).collect();
    let ann: Vec<&String> = annotators.iter().collect();
    let mut attributes = Vec::new();
    let mut disagreements = Vec::new();
    for (name, get) in NOMINAL {
        // Category indices, in order of first appearance.
        let mut cats: Vec<String> = Vec::new();
        let mut idx = |s: String| -> usize {
            match cats.iter().position(|c| *c == s) {
                Some(i) => i,
                None => {
                    cats.push(s);
                    cats.len() - 1
                }
            }
        };
        let mut units = Vec::new();
        let mut fleiss_items = Vec::new();
        let mut unanimous = 0;
        let mut ratings = 0;
        for (item, by) in &items {
            let labelled: BTreeMap<String, String> = by
                .iter()
                .filter_map(|(a, l)| get(l).map(|v| (a.clone(), v)))
                .collect();
            if labelled.len() < 2 {
                continue;
            }
            ratings += labelled.len();
            let ix: Vec<usize> = labelled.values().map(|v| idx(v.clone())).collect();
            if ix.iter().all(|v| *v == ix[0]) {
                unanimous += 1;
            } else {
                disagreements.push(Disagreement {
                    item: item.clone(),
                    attribute: name.into(),
                    tie: majority(labelled.values().map(String::as_str)).is_none(),
                    labels: labelled,
                });
            }
            units.push(ix.iter().map(|v| *v as f64).collect::<Vec<f64>>());
            fleiss_items.push(ix);
        }
        let mut pairs = Vec::new();
        for (i, a) in ann.iter().enumerate() {
            for b in &ann[i + 1..] {
                let mut p = Vec::new();
                for by in items.values() {
                    if let (Some(x), Some(y)) = (
                        by.get(*a).and_then(|l| get(l)),
                        by.get(*b).and_then(|l| get(l)),
                    ) {
                        p.push((idx(x), idx(y)));
                    }
                }
                if !p.is_empty() {
                    pairs.push(PairKappa {
                        a: (*a).clone(),
                        b: (*b).clone(),
                        n: p.len(),
                        agreement: round4(
                            p.iter().filter(|(x, y)| x == y).count() as f64 / p.len() as f64,
                        ),
                        kappa: cohen_kappa(&p).map(round4),
                    });
                }
            }
        }
        attributes.push(AttributeAgreement {
            attribute: name.into(),
            items: units.len(),
            ratings,
            unanimous: round4(unanimous as f64 / units.len().max(1) as f64),
            alpha: krippendorff_alpha(&units, Level::Nominal),
            alpha_ordinal: None,
            fleiss_kappa: fleiss_kappa(&fleiss_items).map(round4),
            pairs,
        });
    }
    // Intensity: interval and ordinal alpha.
    let units: Vec<Vec<f64>> = items
        .values()
        .map(|by| {
            by.values()
                .filter_map(|l| l.intensity.map(f64::from))
                .collect::<Vec<_>>()
        })
        .filter(|u| u.len() >= 2)
        .collect();
    attributes.insert(
        2,
        AttributeAgreement {
            attribute: "intensity".into(),
            items: units.len(),
            ratings: units.iter().map(Vec::len).sum(),
            unanimous: round4(
                units
                    .iter()
                    .filter(|u| u.iter().all(|v| *v == u[0]))
                    .count() as f64
                    / units.len().max(1) as f64,
            ),
            alpha: krippendorff_alpha(&units, Level::Interval),
            alpha_ordinal: krippendorff_alpha(&units, Level::Ordinal),
            fleiss_kappa: None,
            pairs: Vec::new(),
        },
    );
    // Spans.
    let mut spans = Vec::new();
    let (mut tm, mut ta, mut tb) = (0, 0, 0);
    for (i, a) in ann.iter().enumerate() {
        for b in &ann[i + 1..] {
            let (mut m, mut na, mut nb, mut n) = (0, 0, 0, 0);
            for by in items.values() {
                if let (Some(x), Some(y)) = (by.get(*a), by.get(*b)) {
                    let c = span_counts(&x.text, &to_spans(&x.spans), &to_spans(&y.spans));
                    m += c.0;
                    na += c.1;
                    nb += c.2;
                    n += 1;
                }
            }
            if n > 0 {
                spans.push(PairSpanF1 {
                    a: (*a).clone(),
                    b: (*b).clone(),
                    items: n,
                    tokens: (na, nb),
                    f1: (na + nb > 0).then(|| round4(2.0 * m as f64 / (na + nb) as f64)),
                });
                tm += m;
                ta += na;
                tb += nb;
            }
        }
    }
    // Annotators: agreement with the majority of the others.
    let mut stats: Vec<AnnotatorStats> = ann
        .iter()
        .map(|a| {
            let (mut agree, mut n) = (0usize, 0usize);
            let mut lead = Vec::new();
            let mut count = 0;
            for by in items.values() {
                let Some(mine) = by.get(*a) else { continue };
                count += 1;
                lead.extend(mine.lead_time);
                for (_, get) in &NOMINAL[..2] {
                    let Some(v) = get(mine) else { continue };
                    let others: Vec<String> = by
                        .iter()
                        .filter(|(o, _)| o != a)
                        .filter_map(|(_, l)| get(l))
                        .collect();
                    if let Some(m) = majority(others.iter().map(String::as_str)) {
                        n += 1;
                        agree += usize::from(m == v);
                    }
                }
            }
            AnnotatorStats {
                annotator: (*a).clone(),
                items: count,
                median_lead_time: median(&mut lead).map(|v| (v * 10.0).round() / 10.0),
                agreement_with_others: (n > 0).then(|| round4(agree as f64 / n as f64)),
                far: false,
            }
        })
        .collect();
    if stats.len() >= 3 {
        let rates: Vec<Option<f64>> = stats.iter().map(|s| s.agreement_with_others).collect();
        for (i, s) in stats.iter_mut().enumerate() {
            let others: Vec<f64> = rates
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .filter_map(|(_, r)| *r)
                .collect();
            if let (Some(r), false) = (s.agreement_with_others, others.is_empty()) {
                s.far = r <= others.iter().sum::<f64>() / others.len() as f64 - 0.2;
            }
        }
    }
    disagreements.sort_by(|a, b| b.tie.cmp(&a.tie).then(a.item.cmp(&b.item)));
    AgreementReport {
        items: items.len(),
        annotators: stats,
        attributes: attributes
            .into_iter()
            .map(|mut a| {
                a.alpha = a.alpha.map(round4);
                a.alpha_ordinal = a.alpha_ordinal.map(round4);
                a
            })
            .collect(),
        spans,
        span_f1: (ta + tb > 0).then(|| round4(2.0 * tm as f64 / (ta + tb) as f64)),
        disagreements,
    }
}

fn to_spans(s: &[SpanLabel]) -> Vec<Span> {
    s.iter()
        .map(|s| Span {
            start: s.start,
            end: s.end,
            label: s.label.clone(),
        })
        .collect()
}

/// The adjudicated gold set: one line per item.
pub fn gold(lines: &[LabelLine]) -> Vec<GoldLine> {
    by_item(lines)
        .into_iter()
        .map(|(item, by)| {
            let first = by.values().next().copied().expect("an item has a line");
            let mut ties = Vec::new();
            let mut pick = |name: &str, get: Getter| -> Option<String> {
                let v: Vec<String> = by.values().filter_map(|l| get(l)).collect();
                if v.is_empty() {
                    return None;
                }
                let m = majority(v.iter().map(String::as_str)).map(String::from);
                if m.is_none() {
                    ties.push(name.to_string());
                }
                m
            };
            let polarity = pick("polarity", NOMINAL[0].1);
            let emotion = pick("emotion", NOMINAL[1].1);
            let frustration = pick("frustration", NOMINAL[2].1).map(|v| v == "true");
            let sarcasm = pick("sarcasm", NOMINAL[3].1).map(|v| v == "true");
            let mut iv: Vec<f64> = by
                .values()
                .filter_map(|l| l.intensity.map(f64::from))
                .collect();
            // Spans: the majority label of each token (none counts as a vote).
            let toks = tokens(&first.text);
            let per: Vec<Vec<Option<String>>> = by
                .values()
                .map(|l| {
                    let sp = to_spans(&l.spans);
                    token_labels(&toks, &sp)
                        .into_iter()
                        .map(|o| o.map(String::from))
                        .collect()
                })
                .collect();
            let mut spans: Vec<SpanLabel> = Vec::new();
            for (k, &(s, e)) in toks.iter().enumerate() {
                let votes: Vec<String> = per
                    .iter()
                    .map(|p| p[k].clone().unwrap_or_default())
                    .collect();
                let Some(m) = majority(votes.iter().map(String::as_str)).filter(|m| !m.is_empty())
                else {
                    continue;
                };
                match spans.last_mut() {
                    Some(last)
                        if last.label == m
                            && toks.get(k.wrapping_sub(1)).is_some_and(|p| p.1 <= last.end) =>
                    {
                        last.end = e
                    }
                    _ => spans.push(SpanLabel {
                        start: s,
                        end: e,
                        label: m.into(),
                    }),
                }
            }
            GoldLine {
                call_id: first.call_id.clone(),
                turn_id: first.turn_id,
                role: first.role,
                lang: first.lang.clone(),
                text: first.text.clone(),
                polarity,
                emotion,
                intensity: median(&mut iv).map(|v| v as u8),
                frustration,
                sarcasm,
                spans,
                annotators: by.len(),
                ties,
                item,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(item: u32, who: &str, pol: &str, emo: &str, intensity: u8) -> LabelLine {
        LabelLine {
            item: format!("c/{item}"),
            call_id: "c".into(),
            turn_id: item,
            task_id: None,
            role: Role::Customer,
            lang: None,
            text: "thanks but the bill is wrong".into(),
            annotator: who.into(),
            lead_time: Some(10.0),
            polarity: Some(pol.into()),
            emotion: Some(emo.into()),
            intensity: Some(intensity),
            frustration: false,
            sarcasm: false,
            spans: vec![],
        }
    }

    #[test]
    fn majority_gold_lists_ties_and_flags_the_odd_annotator_out() {
        let mut v = Vec::new();
        for i in 0..10 {
            let p = ["negative", "neutral", "positive"][i % 3];
            v.push(line(i as u32, "a", p, "neutral", 3));
            v.push(line(i as u32, "b", p, "neutral", 3));
            // c always says positive and angry.
            v.push(line(i as u32, "c", "positive", "anger", 5));
        }
        // Item 0: a and b split, c decides; item 1: a three-way tie.
        v[1].polarity = Some("positive".into());
        v[4].polarity = Some("negative".into());
        let r = agreement(&v);
        assert_eq!(r.items, 10);
        let far: Vec<&str> = r
            .annotators
            .iter()
            .filter(|a| a.far)
            .map(|a| a.annotator.as_str())
            .collect();
        assert_eq!(far, ["c"]);
        let pol = &r.attributes[0];
        assert_eq!(
            (pol.attribute.as_str(), pol.items, pol.ratings),
            ("polarity", 10, 30)
        );
        assert!(pol.fleiss_kappa.is_some() && pol.alpha.unwrap() < 0.7);
        assert_eq!(r.attributes[2].attribute, "intensity");
        let g = gold(&v);
        assert_eq!(g[0].polarity.as_deref(), Some("positive"));
        assert_eq!(g[1].polarity, None);
        assert_eq!(g[1].ties, ["polarity"]);
        assert_eq!(g[2].polarity.as_deref(), Some("positive"), "{:?}", g[2]);
        assert_eq!(
            (g[5].emotion.as_deref(), g[5].intensity),
            (Some("neutral"), Some(3))
        );
        assert!(r.disagreements.iter().any(|d| d.item == "c/1" && d.tie));
    }

    #[test]
    fn gold_spans_are_the_token_majority() {
        let mut v = vec![
            line(0, "a", "negative", "anger", 3),
            line(0, "b", "negative", "anger", 3),
            line(0, "c", "negative", "anger", 3),
        ];
        v[0].spans = vec![
            SpanLabel {
                start: 0,
                end: 6,
                label: "positive".into(),
            },
            SpanLabel {
                start: 11,
                end: 28,
                label: "negative".into(),
            },
        ];
        v[1].spans = vec![SpanLabel {
            start: 11,
            end: 28,
            label: "negative".into(),
        }];
        v[2].spans = vec![
            SpanLabel {
                start: 0,
                end: 6,
                label: "positive".into(),
            },
            SpanLabel {
                start: 15,
                end: 28,
                label: "negative".into(),
            },
        ];
        let g = gold(&v);
        assert_eq!(
            g[0].spans,
            vec![
                SpanLabel {
                    start: 0,
                    end: 6,
                    label: "positive".into()
                },
                SpanLabel {
                    start: 11,
                    end: 28,
                    label: "negative".into()
                }
            ]
        );
        let r = agreement(&v);
        assert!(
            r.span_f1.unwrap() > 0.7 && r.span_f1.unwrap() < 1.0,
            "{:?}",
            r.span_f1
        );
    }
}

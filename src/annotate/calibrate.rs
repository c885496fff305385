//! The model against the adjudicated gold: per-class precision, recall and
//! F1, the confusion matrix, expected calibration error with its
//! reliability diagram, the same per role and per language, and a
//! temperature re-fitted on the gold.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::event::Role;
use crate::sentiment::{softmax, LinearHead};
use crate::train::{class_scores, ece, fit_temperature, scores, ClassReport};

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    /// Lower edge of the confidence bin.
    pub lo: f64,
    /// Predictions in it.
    pub n: usize,
    /// Their mean confidence.
    pub confidence: f64,
    /// Their accuracy.
    pub accuracy: f64,
}

/// The figures of one set of predictions.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Lines.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Macro-F1 over the gold classes present.
    pub macro_f1: f64,
    /// Expected calibration error of the top class, 10 bins.
    pub ece: f64,
    /// Per gold class.
    pub per_class: Vec<ClassReport>,
    /// Rows gold, columns predicted, in the head's label order.
    pub confusion: Vec<Vec<usize>>,
    /// Reliability diagram (10 bins; empty bins left out).
    pub reliability: Vec<Bin>,
}

/// One head against the gold.
#[derive(Debug, Clone, Serialize)]
pub struct TaskCalibration {
    /// `polarity` or `emotion`.
    pub task: String,
    /// The head's version.
    pub head_version: String,
    /// Labels, in the confusion matrix's order.
    pub labels: Vec<String>,
    /// The head's temperature.
    pub temperature: f32,
    /// As the head stands.
    pub overall: Figures,
    /// The temperature that maximises the gold's likelihood.
    pub refit_temperature: f32,
    /// With that temperature (in-sample: fitted and measured on the same gold).
    pub refit: Figures,
    /// Per speaker role.
    pub per_role: BTreeMap<String, Figures>,
    /// Per language (lines with a `lang`).
    pub per_language: BTreeMap<String, Figures>,
}

/// A gold line the head is measured on.
pub struct GoldRow<'a> {
    /// Its text embedding.
    pub emb: &'a [f32],
    /// Role.
    pub role: Role,
    /// Language.
    pub lang: Option<&'a str>,
    /// Gold class index.
    pub gold: usize,
}

fn r4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

/// Figures of (probabilities, gold) pairs over `labels`.
pub fn figures(labels: &[String], rows: &[(Vec<f32>, usize)]) -> Figures {
    let k = labels.len();
    let mut conf = vec![vec![0usize; k]; k];
    let mut pairs = Vec::new();
    let mut bins = vec![(0usize, 0.0f64, 0usize); 10];
    for (p, g) in rows {
        let best = (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
        conf[*g][best] += 1;
        pairs.push((p[best], best == *g));
        let b = ((p[best].clamp(0.0, 1.0) * 10.0) as usize).min(9);
        bins[b].0 += 1;
        bins[b].1 += p[best] as f64;
        bins[b].2 += usize::from(best == *g);
    }
    let (accuracy, macro_f1) = scores(&conf);
    Figures {
        n: rows.len(),
        accuracy: r4(accuracy),
        macro_f1: r4(macro_f1),
        ece: r4(ece(&pairs, 10)),
        per_class: (0..k)
            .filter(|&c| conf[c].iter().sum::<usize>() > 0)
            .map(|c| {
                let (p, r, f) = class_scores(&conf, c);
                ClassReport {
                    label: labels[c].clone(),
                    n: conf[c].iter().sum(),
                    precision: r4(p),
                    recall: r4(r),
                    f1: r4(f),
                }
            })
            .collect(),
        confusion: conf,
        reliability: bins
            .iter()
            .enumerate()
            .filter(|(_, b)| b.0 > 0)
            .map(|(i, b)| Bin {
                lo: i as f64 / 10.0,
                n: b.0,
                confidence: r4(b.1 / b.0 as f64),
                accuracy: r4(b.2 as f64 / b.0 as f64),
            })
            .collect(),
    }
}

/// Measure `head` on `rows`.
pub fn calibrate(head: &LinearHead, rows: &[GoldRow]) -> TaskCalibration {
    let logits: Vec<Vec<f32>> = rows.iter().map(|r| head.logits(r.emb, r.role)).collect();
    let gold: Vec<usize> = rows.iter().map(|r| r.gold).collect();
    let at = |t: f32, keep: &dyn Fn(&GoldRow) -> bool| -> Vec<(Vec<f32>, usize)> {
        logits
            .iter()
            .zip(rows)
            .filter(|(_, r)| keep(r))
            .map(|(z, r)| (softmax(z, t), r.gold))
            .collect()
    };
    let refit_temperature = fit_temperature(&logits, &gold);
    let mut per_role = BTreeMap::new();
    let mut per_language = BTreeMap::new();
    for role in [Role::Agent, Role::Customer, Role::Unknown] {
        let v = at(head.temperature, &|r| r.role == role);
        if !v.is_empty() {
            per_role.insert(role.as_str().to_string(), figures(&head.labels, &v));
        }
    }
    let mut langs: Vec<&str> = rows.iter().filter_map(|r| r.lang).collect();
    langs.sort();
    langs.dedup();
    for l in langs {
        per_language.insert(
            l.to_string(),
            figures(&head.labels, &at(head.temperature, &|r| r.lang == Some(l))),
        );
    }
    TaskCalibration {
        task: head.task.clone(),
        head_version: head.version_id(),
        labels: head.labels.clone(),
        temperature: head.temperature,
        overall: figures(&head.labels, &at(head.temperature, &|_| true)),
        refit_temperature,
        refit: figures(&head.labels, &at(refit_temperature, &|_| true)),
        per_role,
        per_language,
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An inline SVG reliability diagram: accuracy against confidence per
/// bin, the diagonal being perfect calibration.
pub fn reliability_svg(title: &str, f: &Figures) -> String {
    let (w, h, m) = (260.0, 260.0, 30.0);
    let x = |v: f64| m + v * (w - 2.0 * m);
    let y = |v: f64| h - m - v * (h - 2.0 * m);
    let mut s = format!(
        "<svg class=\"reliability\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let _ = write!(s, "<rect x=\"{m}\" y=\"{m}\" width=\"{}\" height=\"{}\" fill=\"#f8fafc\" stroke=\"#94a3b8\"/>", w - 2.0 * m, h - 2.0 * m);
    let _ = write!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#94a3b8\" stroke-dasharray=\"4 3\"/>", x(0.0), y(0.0), x(1.0), y(1.0));
    let total = f.n.max(1) as f64;
    for b in &f.reliability {
        let bw = (w - 2.0 * m) / 10.0;
        let top = y(b.accuracy);
        let _ = write!(
            s,
            "<rect class=\"bin\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2563eb\" fill-opacity=\"{:.2}\"><title>confidence {:.2}, accuracy {:.2}, n {}</title></rect>",
            x(b.lo) + 1.0,
            bw - 2.0,
            y(0.0) - top,
            0.35 + 0.65 * (b.n as f64 / total).sqrt(),
            b.confidence,
            b.accuracy,
            b.n
        );
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#ea580c\"/>",
            x(b.confidence),
            y(b.accuracy)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{m}\" y=\"18\" font-size=\"12\">{} (ECE {:.3})</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">confidence</text><text x=\"10\" y=\"{}\" font-size=\"10\" transform=\"rotate(-90 10 {})\" text-anchor=\"middle\">accuracy</text></svg>",
        esc(title),
        f.ece,
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    s
}

fn figures_html(title: &str, labels: &[String], f: &Figures) -> String {
    let mut s = format!(
        "<h3>{}</h3><p>{} lines · accuracy {:.1}% · macro-F1 {:.3} · ECE {:.3}</p><table><tr><th>class</th><th>n</th><th>precision</th><th>recall</th><th>F1</th></tr>",
        esc(title),
        f.n,
        f.accuracy * 100.0,
        f.macro_f1,
        f.ece
    );
    for c in &f.per_class {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            esc(&c.label),
            c.n,
            c.precision,
            c.recall,
            c.f1
        );
    }
    s.push_str("</table><table class=\"confusion\"><tr><th>gold \\ predicted</th>");
    for l in labels {
        let _ = write!(s, "<th>{}</th>", esc(l));
    }
    s.push_str("</tr>");
    for (i, row) in f.confusion.iter().enumerate() {
        if row.iter().sum::<usize>() == 0 {
            continue;
        }
        let _ = write!(s, "<tr><th>{}</th>", esc(&labels[i]));
        for v in row {
            let _ = write!(s, "<td>{v}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The HTML report: per head, the figures as installed, the reliability
/// diagrams before and after the re-fitted temperature, and the slices.
pub fn html(source: &str, reports: &[TaskCalibration]) -> String {
    let mut s = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>callpulse calibration</title><style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #cbd5e1;padding:2px 8px;text-align:right}th{background:#f1f5f9}.diagrams{display:flex;gap:1em}</style></head><body>",
    );
    let _ = write!(
        s,
        "<h1>Calibration against the gold</h1><p>Gold: {}</p>",
        esc(source)
    );
    for r in reports {
        let _ = write!(
            s,
            "<section id=\"{t}\"><h2>{t} (head {v})</h2><div class=\"diagrams\">{}{}</div><p>Temperature as installed {:.2}; re-fitted on this gold {:.2} (ECE {:.3} → {:.3}, measured on the same gold it was fitted on).</p>",
            reliability_svg(&format!("{} as installed", r.task), &r.overall),
            reliability_svg(&format!("{} re-fitted T={:.2}", r.task, r.refit_temperature), &r.refit),
            r.temperature,
            r.refit_temperature,
            r.overall.ece,
            r.refit.ece,
            t = esc(&r.task),
            v = esc(&r.head_version),
        );
        s.push_str(&figures_html("All lines", &r.labels, &r.overall));
        for (k, f) in &r.per_role {
            s.push_str(&figures_html(&format!("Role: {k}"), &r.labels, f));
        }
        for (k, f) in &r.per_language {
            s.push_str(&figures_html(&format!("Language: {k}"), &r.labels, f));
        }
        s.push_str("</section>");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_and_the_diagram_of_overconfident_predictions() {
        let labels: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        // 95% sure, right 6 times in 10.
        let rows: Vec<(Vec<f32>, usize)> = (0..10)
            .map(|i| (vec![0.95, 0.05], usize::from(i >= 6)))
            .collect();
        let f = figures(&labels, &rows);
        assert_eq!(f.confusion, vec![vec![6, 0], vec![4, 0]]);
        assert!((f.ece - 0.35).abs() < 1e-3, "{}", f.ece);
        assert_eq!(f.reliability.len(), 1);
        let svg = reliability_svg("t", &f);
        assert_eq!(svg.matches("class=\"bin\"").count(), 1);
        assert!(svg.contains("ECE 0.350"));
    }
}

//! Agreement between annotators: Krippendorff's alpha, Cohen's and Fleiss'
//! kappa, and token-level span F1.
//!
//! The formulas follow Krippendorff, *Computing Krippendorff's Alpha-Reliability*
//! (2011): values pairable within a unit enter a coincidence matrix, each
//! pair weighted by 1 / (m_u − 1), and α = 1 − D_o / D_e. Units with fewer
//! than two values are not pairable and are left out, as in the reference
//! implementation (pip `krippendorff`).

use std::collections::BTreeMap;

/// How the distance between two values is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Categories: two values agree or they do not.
    Nominal,
    /// Ranks: the distance counts how many values lie between them.
    Ordinal,
    /// Numbers: the squared difference.
    Interval,
}

/// Krippendorff's alpha of `units`, each the values its raters gave (a
/// value is a category index for nominal data, the value itself
/// otherwise). None when no unit has two values or every value is the same
/// (the expected disagreement is zero).
pub fn krippendorff_alpha(units: &[Vec<f64>], level: Level) -> Option<f64> {
    // The value domain: every value that occurs in a pairable unit, sorted.
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let mut domain: Vec<f64> = pairable.iter().flat_map(|u| u.iter().copied()).collect();
    domain.sort_by(f64::total_cmp);
    domain.dedup();
    let k = domain.len();
    if k < 2 {
        return None;
    }
    let idx = |v: f64| domain.partition_point(|d| *d < v);
    let mut o = vec![vec![0.0f64; k]; k];
    for u in &pairable {
        let m = u.len() as f64;
        for (i, a) in u.iter().enumerate() {
            for (j, b) in u.iter().enumerate() {
                if i != j {
                    o[idx(*a)][idx(*b)] += 1.0 / (m - 1.0);
                }
            }
        }
    }
    let n_c: Vec<f64> = o.iter().map(|r| r.iter().sum()).collect();
    let n: f64 = n_c.iter().sum();
    let delta = |c: usize, kk: usize| -> f64 {
        match level {
            Level::Nominal => f64::from(u8::from(c != kk)),
            Level::Interval => (domain[c] - domain[kk]).powi(2),
            Level::Ordinal => {
                let (lo, hi) = (c.min(kk), c.max(kk));
                let between: f64 = n_c[lo..=hi].iter().sum();
                (between - (n_c[lo] + n_c[hi]) / 2.0).powi(2)
            }
        }
    };
    let (mut d_o, mut d_e) = (0.0, 0.0);
    for c in 0..k {
        for kk in 0..k {
            let d = delta(c, kk);
            d_o += o[c][kk] * d;
            d_e += n_c[c] * n_c[kk] * d;
        }
    }
    d_o /= n;
    d_e /= n * (n - 1.0);
    (d_e > 0.0).then(|| 1.0 - d_o / d_e)
}

/// Cohen's kappa of two raters' labels on the same items. None when the
/// expected agreement is 1 (both always gave the same single label) or no
/// item is shared.
pub fn cohen_kappa(pairs: &[(usize, usize)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut a: BTreeMap<usize, f64> = BTreeMap::new();
    let mut b: BTreeMap<usize, f64> = BTreeMap::new();
    let mut agree = 0.0;
    for &(x, y) in pairs {
        *a.entry(x).or_default() += 1.0;
        *b.entry(y).or_default() += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let p_o = agree / n;
    let p_e: f64 = a
        .iter()
        .map(|(c, na)| na / n * b.get(c).copied().unwrap_or(0.0) / n)
        .sum();
    (p_e < 1.0 - 1e-12).then(|| (p_o - p_e) / (1.0 - p_e))
}

/// Fleiss' kappa of items that each carry the same number (≥ 2) of
/// ratings, given as category indices. None when the counts differ, fewer
/// than two ratings are given, or the expected agreement is 1.
pub fn fleiss_kappa(items: &[Vec<usize>]) -> Option<f64> {
    let r = items.first()?.len();
    if r < 2 || items.iter().any(|i| i.len() != r) {
        return None;
    }
    let k = items.iter().flatten().copied().max()? + 1;
    let n_items = items.len() as f64;
    let rf = r as f64;
    let mut p_j = vec![0.0f64; k];
    let mut p_bar = 0.0;
    for it in items {
        let mut counts = vec![0.0f64; k];
        for &c in it {
            counts[c] += 1.0;
        }
        for (pj, c) in p_j.iter_mut().zip(&counts) {
            *pj += c;
        }
        p_bar += (counts.iter().map(|c| c * c).sum::<f64>() - rf) / (rf * (rf - 1.0));
    }
    p_bar /= n_items;
    let p_e: f64 = p_j.iter().map(|c| (c / (n_items * rf)).powi(2)).sum();
    (p_e < 1.0 - 1e-12).then(|| (p_bar - p_e) / (1.0 - p_e))
}

/// A labelled span of a text, in character offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// Its label.
    pub label: String,
}

/// Whitespace tokens of `text` as character ranges.
pub fn tokens(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, ch) in text.chars().enumerate() {
        match (ch.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.chars().count()));
    }
    out
}

/// Each token's label under `spans`: the label of the span that covers
/// most of it (None outside every span).
pub fn token_labels<'a>(toks: &[(usize, usize)], spans: &'a [Span]) -> Vec<Option<&'a str>> {
    toks.iter()
        .map(|&(s, e)| {
            spans
                .iter()
                .map(|sp| (sp.end.min(e).saturating_sub(sp.start.max(s)), sp))
                .filter(|(ov, _)| *ov * 2 > e - s || (*ov > 0 && *ov == e - s))
                .max_by_key(|(ov, _)| *ov)
                .map(|(_, sp)| sp.label.as_str())
        })
        .collect()
}

/// Token-level agreement of two annotators' spans on one text: (tokens
/// both labelled alike, tokens labelled by the first, by the second).
/// F1 over many texts is 2·Σmatch / (Σfirst + Σsecond).
pub fn span_counts(text: &str, a: &[Span], b: &[Span]) -> (usize, usize, usize) {
    let toks = tokens(text);
    let la = token_labels(&toks, a);
    let lb = token_labels(&toks, b);
    let mut c = (0, 0, 0);
    for (x, y) in la.iter().zip(&lb) {
        c.1 += x.is_some() as usize;
        c.2 += y.is_some() as usize;
        c.0 += (x.is_some() && x == y) as usize;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_of_krippendorffs_worked_example() {
        // Krippendorff (2011), section C: four coders, twelve units, one
        // missing value pattern; nominal α = 0.743, interval α = 0.849.
        let nan = f64::NAN;
        let coders = [
            [1., 2., 3., 3., 2., 1., 4., 1., 2., nan, nan, nan],
            [1., 2., 3., 3., 2., 2., 4., 1., 2., 5., nan, 3.],
            [nan, 3., 3., 3., 2., 3., 4., 2., 2., 5., 1., nan],
            [1., 2., 3., 3., 2., 4., 4., 1., 2., 5., 1., nan],
        ];
        let units: Vec<Vec<f64>> = (0..12)
            .map(|u| {
                coders
                    .iter()
                    .map(|c| c[u])
                    .filter(|v| !v.is_nan())
                    .collect()
            })
            .collect();
        let nominal = krippendorff_alpha(&units, Level::Nominal).unwrap();
        assert!((nominal - 0.743).abs() < 5e-4, "{nominal}");
        let interval = krippendorff_alpha(&units, Level::Interval).unwrap();
        assert!((interval - 0.849).abs() < 5e-4, "{interval}");
        let ordinal = krippendorff_alpha(&units, Level::Ordinal).unwrap();
        assert!((ordinal - 0.815).abs() < 5e-4, "{ordinal}");
    }

    #[test]
    fn alpha_is_undefined_without_variation_and_one_with_perfect_agreement() {
        assert_eq!(
            krippendorff_alpha(&[vec![1.0, 1.0], vec![1.0, 1.0]], Level::Nominal),
            None
        );
        let a = krippendorff_alpha(&[vec![0.0, 0.0], vec![1.0, 1.0], vec![2.0]], Level::Nominal);
        assert!((a.unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn kappas_of_textbook_tables() {
        // Cohen: 20 agree on yes, 15 on no, 10 + 5 disagree → κ = 0.4.
        let mut pairs = vec![(1, 1); 20];
        pairs.extend(vec![(0, 0); 15]);
        pairs.extend(vec![(1, 0); 5]);
        pairs.extend(vec![(0, 1); 10]);
        assert!((cohen_kappa(&pairs).unwrap() - 0.4).abs() < 1e-9);
        assert_eq!(cohen_kappa(&[(1, 1), (1, 1)]), None);
        // Fleiss: perfect agreement is 1, a constant rater set is undefined,
        // unequal rater counts are refused.
        assert!((fleiss_kappa(&[vec![0, 0, 0], vec![1, 1, 1]]).unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(fleiss_kappa(&[vec![0, 0], vec![0, 0]]), None);
        assert_eq!(fleiss_kappa(&[vec![0, 1], vec![0, 1, 1]]), None);
        // Two raters: Fleiss' kappa equals Scott's pi.
        let items: Vec<Vec<usize>> = pairs.iter().map(|&(a, b)| vec![a, b]).collect();
        let f = fleiss_kappa(&items).unwrap();
        // Scott's pi: p_e from the pooled marginals (yes 55 of 100 ratings).
        let p_e = 0.55f64.powi(2) + 0.45f64.powi(2);
        assert!((f - (0.7 - p_e) / (1.0 - p_e)).abs() < 1e-9, "{f}");
    }

    #[test]
    fn span_tokens_agree_by_label_and_extent() {
        let text = "thanks for the help but the bill is still wrong";
        let a = [
            Span {
                start: 0,
                end: 19,
                label: "positive".into(),
            },
            Span {
                start: 24,
                end: 47,
                label: "negative".into(),
            },
        ];
        // b labels the first clause negative and stops a word short.
        let b = [
            Span {
                start: 0,
                end: 19,
                label: "negative".into(),
            },
            Span {
                start: 24,
                end: 41,
                label: "negative".into(),
            },
        ];
        let (m, na, nb) = span_counts(text, &a, &b);
        assert_eq!((na, nb), (9, 8));
        assert_eq!(m, 4, "the, bill, is, still");
        assert_eq!(span_counts(text, &a, &a), (9, 9, 9));
        assert_eq!(tokens("  a bb  c "), vec![(2, 3), (4, 6), (8, 9)]);
    }
}

//! The clustering core shared by offline and live diarisation: agglomerative
//! clustering with weighted average linkage on cosine similarity, then a few
//! rounds of centroid reassignment.

/// When agglomeration stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// Exactly this many clusters (fewer if there are fewer items).
    Count(usize),
    /// Merge while the closest pair is at least `sim` alike, then keep
    /// merging down to `max` clusters.
    Threshold {
        /// Average cosine similarity below which clusters stay apart.
        sim: f32,
        /// Most clusters.
        max: usize,
    },
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    (ab / (aa.sqrt() * bb.sqrt())) as f32
}

/// Scale `v` to unit length (left alone if all zeros).
pub fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Average-linkage clustering of `items` (vectors of one length). Returns a
/// label per item, numbered by first appearance (item 0 is in cluster 0).
pub fn agglomerate(items: &[Vec<f32>], stop: Stop) -> Vec<usize> {
    let groups: Vec<Vec<usize>> = (0..items.len()).map(|i| vec![i]).collect();
    agglomerate_groups(items, &groups, stop)
}

/// Average-linkage clustering of `items` starting from `groups` (disjoint
/// sets of item indices that must stay together, e.g. the windows between
/// two detected speaker changes). The linkage of two clusters is the mean
/// cosine similarity over all pairs of their items. Returns a label per
/// group, numbered by first appearance.
pub fn agglomerate_groups(items: &[Vec<f32>], groups: &[Vec<usize>], stop: Stop) -> Vec<usize> {
    let n = groups.len();
    if n == 0 {
        return Vec::new();
    }
    let mut sim = vec![0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let mut s = 0f64;
            for &a in &groups[i] {
                for &b in &groups[j] {
                    s += cosine(&items[a], &items[b]) as f64;
                }
            }
            let s = s / (groups[i].len() * groups[j].len()).max(1) as f64;
            sim[i * n + j] = s;
            sim[j * n + i] = s;
        }
    }
    let mut w: Vec<f64> = groups.iter().map(|g| g.len().max(1) as f64).collect();
    let mut owner: Vec<usize> = (0..n).collect();
    let mut active: Vec<usize> = (0..n).collect();
    let (target, floor) = match stop {
        Stop::Count(c) => (c.max(1), f64::INFINITY),
        Stop::Threshold { sim, max } => (max.max(1), sim as f64),
    };
    while active.len() > 1 {
        let mut best = (f64::NEG_INFINITY, 0, 0);
        for (ai, &i) in active.iter().enumerate() {
            for &j in &active[ai + 1..] {
                if sim[i * n + j] > best.0 {
                    best = (sim[i * n + j], i, j);
                }
            }
        }
        let (s, i, j) = best;
        // Keep merging above the threshold, and always down to the target.
        if active.len() <= target && s < floor {
            break;
        }
        let (wi, wj) = (w[i], w[j]);
        for &m in &active {
            if m != i && m != j {
                let v = (wi * sim[i * n + m] + wj * sim[j * n + m]) / (wi + wj);
                sim[i * n + m] = v;
                sim[m * n + i] = v;
            }
        }
        w[i] = wi + wj;
        active.retain(|&a| a != j);
        owner.iter_mut().filter(|o| **o == j).for_each(|o| *o = i);
    }
    renumber(&owner)
}

/// Labels numbered by first appearance.
pub fn renumber(labels: &[usize]) -> Vec<usize> {
    let mut seen: Vec<usize> = Vec::new();
    labels
        .iter()
        .map(|l| match seen.iter().position(|s| s == l) {
            Some(p) => p,
            None => {
                seen.push(*l);
                seen.len() - 1
            }
        })
        .collect()
}

/// Weighted, unit-length centroid of each cluster.
pub fn centroids(items: &[Vec<f32>], weights: &[f32], labels: &[usize]) -> Vec<Vec<f32>> {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let dim = items.first().map_or(0, |v| v.len());
    let mut c = vec![vec![0f32; dim]; k];
    for ((v, w), &l) in items.iter().zip(weights).zip(labels) {
        for (a, b) in c[l].iter_mut().zip(v) {
            *a += w * b;
        }
    }
    c.iter_mut().for_each(|v| normalise(v));
    c
}

/// Reassign each item to its most similar centroid, recomputing centroids,
/// up to `rounds` times or until nothing moves. Clusters that empty out
/// disappear; labels are renumbered by first appearance.
pub fn refine(items: &[Vec<f32>], weights: &[f32], labels: &[usize], rounds: usize) -> Vec<usize> {
    let mut labels = labels.to_vec();
    for _ in 0..rounds {
        let c = centroids(items, weights, &labels);
        let next: Vec<usize> = items.iter().map(|v| nearest(&c, v).0).collect();
        let next = renumber(&next);
        if next == labels {
            break;
        }
        labels = next;
    }
    labels
}

/// Index and similarity of the centroid closest to `v`.
pub fn nearest(centroids: &[Vec<f32>], v: &[f32]) -> (usize, f32) {
    centroids
        .iter()
        .enumerate()
        .map(|(i, c)| (i, cosine(c, v)))
        .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tight groups around orthogonal directions, interleaved.
    fn two_groups() -> Vec<Vec<f32>> {
        (0..10)
            .map(|i| {
                let e = 0.05 * (i as f32 * 1.7).sin();
                if i % 3 == 0 {
                    vec![1.0, e, 0.0]
                } else {
                    vec![e, 1.0, 0.1]
                }
            })
            .collect()
    }

    #[test]
    fn threshold_finds_two_groups_and_numbers_by_first_appearance() {
        let x = two_groups();
        let l = agglomerate(&x, Stop::Threshold { sim: 0.5, max: 4 });
        let want: Vec<usize> = (0..10).map(|i| usize::from(i % 3 != 0)).collect();
        assert_eq!(l, want);
    }

    #[test]
    fn a_fixed_count_is_honoured() {
        let x = two_groups();
        let l = agglomerate(&x, Stop::Count(1));
        assert!(l.iter().all(|&v| v == 0));
        let l = agglomerate(&x, Stop::Count(3));
        assert_eq!(l.iter().max(), Some(&2));
        // More clusters asked than items: one each.
        assert_eq!(agglomerate(&x[..2], Stop::Count(4)), vec![0, 1]);
    }

    #[test]
    fn the_threshold_never_leaves_more_than_max() {
        let x: Vec<Vec<f32>> = (0..6)
            .map(|i| {
                let mut v = vec![0f32; 6];
                v[i] = 1.0;
                v
            })
            .collect();
        let l = agglomerate(&x, Stop::Threshold { sim: 0.5, max: 4 });
        assert_eq!(l.iter().max(), Some(&3));
    }

    #[test]
    fn refinement_moves_a_stray_item_to_its_group() {
        let x = two_groups();
        let mut l: Vec<usize> = (0..10).map(|i| usize::from(i % 3 != 0)).collect();
        l[1] = 0; // item 1 belongs with the second group
        let r = refine(&x, &[1.0; 10], &l, 5);
        assert_eq!(r[1], 1);
        assert!((cosine(&[1.0, 0.0], &[0.0, 2.0])).abs() < 1e-9);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}

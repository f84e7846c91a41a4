//! How the model stage's probabilities become one intent: mixed with the router's
//! ([`fuse`]) and, for a follow-up, tilted toward the dialogue's topic ([`favour`]). All
//! distributions are indexed by [`Intent::index`].

use crate::intent::Intent;

/// Geometric mixture of the router's and the model's probabilities: `p ∝ p_router^w ·
/// p_model^(1-w)`, renormalised. The two make different mistakes (character n-grams against
/// a transformer), so on the handed-on validation lines the mixture is right more often than
/// either (models/README.md). `None` when a side has the wrong length.
pub fn fuse(router: &[f32], model: &[f32], router_weight: f32) -> Option<Vec<f32>> {
    if router.len() != Intent::ALL.len() || model.len() != Intent::ALL.len() {
        return None;
    }
    let w = router_weight.clamp(0.0, 1.0);
    let mut mixed: Vec<f32> = router
        .iter()
        .zip(model)
        .map(|(r, m)| (w * (r + 1e-9).ln() + (1.0 - w) * (m + 1e-9).ln()).exp())
        .collect();
    normalise(&mut mixed).then_some(mixed)
}

/// Add `bonus` to the log-odds of `topic`, the dialogue's newest request: on real chats a
/// message after an answer most often goes on with its topic ("那要多久", "白条啊"), more
/// often than a model reading two turns can tell. A bonus of 0 changes nothing.
pub fn favour(probs: &mut [f32], topic: Intent, bonus: f32) {
    if bonus <= 0.0 {
        return;
    }
    let Some(p) = probs.get_mut(topic.index()) else {
        return;
    };
    *p *= bonus.exp();
    normalise(probs);
}

/// The most probable intent and its probability.
pub fn best(probs: &[f32]) -> Option<(Intent, f32)> {
    let (i, p) = probs
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::MIN), |a, (i, v)| if v > a.1 { (i, v) } else { a });
    Some((*Intent::ALL.get(i)?, p))
}

fn normalise(probs: &mut [f32]) -> bool {
    let total: f32 = probs.iter().sum();
    if total.is_finite() && total > 0.0 {
        probs.iter_mut().for_each(|p| *p /= total);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_hot(i: usize, p: f32) -> Vec<f32> {
        let n = Intent::ALL.len();
        let mut v = vec![(1.0 - p) / (n - 1) as f32; n];
        v[i] = p;
        v
    }

    #[test]
    fn fusion_mixes_router_and_model_geometrically() {
        // The same distribution on both sides is that distribution.
        let (i, p) = best(&fuse(&one_hot(0, 0.6), &one_hot(0, 0.6), 0.5).unwrap()).unwrap();
        assert_eq!(i, Intent::ALL[0]);
        assert!((p - 0.6).abs() < 1e-4, "{p}");
        // They disagree: the surer side wins at equal weights; weight 0 is the model alone.
        let (i, _) = best(&fuse(&one_hot(1, 0.9), &one_hot(2, 0.5), 0.5).unwrap()).unwrap();
        assert_eq!(i, Intent::ALL[1]);
        let (i, p) = best(&fuse(&one_hot(1, 0.9), &one_hot(2, 0.5), 0.0).unwrap()).unwrap();
        assert_eq!(i, Intent::ALL[2]);
        assert!((p - 0.5).abs() < 1e-4, "{p}");
        assert!(
            fuse(&[0.5], &one_hot(0, 0.5), 0.5).is_none(),
            "wrong lengths"
        );
    }

    #[test]
    fn the_topic_gains_log_odds_and_the_rest_keeps_its_order() {
        let topic = Intent::ALL[3];
        let mut p = one_hot(1, 0.5);
        p[3] = 0.2;
        normalise(&mut p);
        let before = p.clone();
        favour(&mut p, topic, 0.0);
        assert_eq!(p, before, "no bonus, no change");
        favour(&mut p, topic, 2.0);
        let odds = |x: f32| x / (1.0 - x);
        let gained = (odds(p[3]) / odds(before[3])).ln();
        assert!((gained - 2.0).abs() < 1e-3, "log-odds gained {gained}");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(
            p[1] / p[2] - before[1] / before[2] < 1e-4,
            "others keep their ratios"
        );
        assert_eq!(best(&p).unwrap().0, topic);
    }
}

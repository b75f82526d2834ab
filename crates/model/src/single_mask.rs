//! SAM 2's single-mask rule (`MaskDecoder._dynamic_multimask_via_stability`, on in every
//! SAM 2.1 model): asked for one mask, SAM 2 returns mask 0 when it is stable, else the best
//! of the three multimask outputs. Shared by both backends' decoders.

/// The logit offset of the stability test.
const STABILITY_DELTA: f32 = 0.05;
/// Mask 0 is kept when its stability is at least this.
const STABILITY_THRESHOLD: f32 = 0.98;

/// The index, among the four masks of one object, of the mask SAM 2 returns: 0 when the
/// share of mask 0's logits (`first`) above 0.05 among those above -0.05 is at least 0.98
/// (1 when none is above -0.05), else the multimask output (1..=3) with the highest
/// predicted IoU in `scores` (the first of equals, as `argmax`).
pub fn dynamic_single_mask(first: &[f32], scores: &[f32]) -> usize {
    let above = first.iter().filter(|&&l| l > STABILITY_DELTA).count();
    let union = first.iter().filter(|&&l| l > -STABILITY_DELTA).count();
    let stability = if union > 0 {
        above as f32 / union as f32
    } else {
        1.0
    };
    if stability >= STABILITY_THRESHOLD {
        return 0;
    }
    let mut best = 1;
    for m in 2..scores.len() {
        if scores[m] > scores[best] {
            best = m;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_first_mask_is_kept_else_the_best_of_the_rest() {
        let scores = [0.1, 0.5, 0.9, 0.9];
        assert_eq!(dynamic_single_mask(&[1.0, 2.0, -3.0], &scores), 0);
        assert_eq!(
            dynamic_single_mask(&[-1.0, -2.0], &scores),
            0,
            "empty: stable"
        );
        // 1 of 2 above the band: unstable; masks 2 and 3 tie, the first wins.
        assert_eq!(dynamic_single_mask(&[1.0, 0.0], &scores), 2);
    }
}

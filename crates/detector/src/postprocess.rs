//! From the head's raw outputs to boxes, as Ultralytics' `Detect` inference and
//! `non_max_suppression` do: DFL (a softmax over `reg_max` bins per side, then its mean
//! bin) gives the distances from each anchor (cell centre) to the box's sides, scaled by
//! the level's stride; class logits become sigmoid scores; then the best class per anchor,
//! `score > conf`, the `classes` filter, the 30000 best, class-aware NMS (torchvision's
//! rule: drop a box whose IoU with a kept, better box of its class is above `iou`), and
//! the first `max_det`.

/// Ultralytics' per-class coordinate offset for class-aware NMS.
const MAX_WH: f32 = 7680.0;
/// At most this many candidates enter NMS.
const MAX_NMS: usize = 30_000;

/// The head's raw output for one level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelOutput {
    /// Box distributions, `(4 * reg_max, h * w)` (`(h * w, 4 * reg_max)` when
    /// `channels_last`).
    pub boxes: Vec<f32>,
    /// Class logits, `(nc, h * w)` (`(h * w, nc)` when `channels_last`).
    pub logits: Vec<f32>,
    /// Cells down.
    pub h: usize,
    /// Cells across.
    pub w: usize,
    /// Whether each cell's values are side by side (the CPU path's maps) rather than
    /// each channel's (candle's NCHW tensors).
    pub channels_last: bool,
}

/// Where value `(channel, anchor)` of a level output lies: `channel * channel_step +
/// anchor * anchor_step`.
#[derive(Debug, Clone, Copy)]
struct Steps {
    channel_step: usize,
    anchor_step: usize,
}

impl Steps {
    fn new(channels_last: bool, channels: usize, anchors: usize) -> Self {
        if channels_last {
            Self {
                channel_step: 1,
                anchor_step: channels,
            }
        } else {
            Self {
                channel_step: anchors,
                anchor_step: 1,
            }
        }
    }

    #[inline(always)]
    fn at(self, channel: usize, anchor: usize) -> usize {
        channel * self.channel_step + anchor * self.anchor_step
    }
}

/// A candidate in model-input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// x1, y1, x2, y2.
    pub bbox: [f32; 4],
    /// Best class score (sigmoid).
    pub score: f32,
    /// Best class.
    pub class: usize,
}

/// Filtering options, with Ultralytics' names.
#[derive(Debug, Clone, PartialEq)]
pub struct NmsOptions {
    /// Keep scores strictly above this.
    pub conf: f32,
    /// Class-aware NMS IoU threshold.
    pub iou: f32,
    /// At most this many boxes.
    pub max_det: usize,
    /// Keep only these classes (all when `None`).
    pub classes: Option<Vec<usize>>,
}

/// Decodes every anchor of every level and keeps those whose best score passes `conf`
/// and the class filter. `levels` are `(box distributions (4 * reg_max, h*w), class
/// logits (nc, h*w), h, w)`; `strides` one per level.
pub fn decode(
    levels: &[LevelOutput],
    strides: &[usize],
    reg_max: usize,
    nc: usize,
    options: &NmsOptions,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut probs = vec![0f32; reg_max];
    for (level, &stride) in levels.iter().zip(strides) {
        let (boxes, logits, h, w) = (&level.boxes, &level.logits, level.h, level.w);
        let n = h * w;
        let class_steps = Steps::new(level.channels_last, nc, n);
        let box_steps = Steps::new(level.channels_last, 4 * reg_max, n);
        for a in 0..n {
            // Best class first (cheap): Ultralytics filters on max score > conf.
            let mut best = 0usize;
            let mut best_logit = f32::NEG_INFINITY;
            for c in 0..nc {
                let v = logits[class_steps.at(c, a)];
                if v > best_logit {
                    best_logit = v;
                    best = c;
                }
            }
            let score = sigmoid(best_logit);
            if score <= options.conf || best_logit.is_nan() {
                continue;
            }
            if let Some(classes) = &options.classes {
                if !classes.contains(&best) {
                    continue;
                }
            }
            let mut dist = [0f32; 4];
            for (side, d) in dist.iter_mut().enumerate() {
                let mut max = f32::NEG_INFINITY;
                for (k, p) in probs.iter_mut().enumerate() {
                    *p = boxes[box_steps.at(side * reg_max + k, a)];
                    max = max.max(*p);
                }
                let mut sum = 0f32;
                for p in probs.iter_mut() {
                    *p = (*p - max).exp();
                    sum += *p;
                }
                *d = probs
                    .iter()
                    .enumerate()
                    .map(|(k, p)| p / sum * k as f32)
                    .sum();
                if reg_max == 1 {
                    *d = boxes[box_steps.at(side, a)];
                }
            }
            let ax = (a % w) as f32 + 0.5;
            let ay = (a / w) as f32 + 0.5;
            let (x1, y1) = (ax - dist[0], ay - dist[1]);
            let (x2, y2) = (ax + dist[2], ay + dist[3]);
            let s = stride as f32;
            // dist2bbox (xywh), times the stride, then xywh2xyxy, as Ultralytics.
            let (cx, cy) = ((x1 + x2) / 2.0 * s, (y1 + y2) / 2.0 * s);
            let (bw, bh) = ((x2 - x1) * s, (y2 - y1) * s);
            let (hw, hh) = (bw / 2.0, bh / 2.0);
            out.push(Candidate {
                bbox: [cx - hw, cy - hh, cx + hw, cy + hh],
                score,
                class: best,
            });
        }
    }
    out
}

/// The logistic function.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Class-aware NMS on decoded candidates; returns the kept ones, best first.
pub fn nms(mut candidates: Vec<Candidate>, options: &NmsOptions) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(MAX_NMS);
    // Boxes offset by class, in float32 as torchvision sees them.
    let shifted: Vec<[f32; 4]> = candidates
        .iter()
        .map(|c| {
            let o = c.class as f32 * MAX_WH;
            [c.bbox[0] + o, c.bbox[1] + o, c.bbox[2] + o, c.bbox[3] + o]
        })
        .collect();
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; candidates.len()];
    let mut kept = Vec::new();
    for i in 0..candidates.len() {
        if suppressed[i] {
            continue;
        }
        kept.push(candidates[i]);
        if kept.len() >= options.max_det {
            break;
        }
        let bi = &shifted[i];
        let ai = area(bi);
        for j in i + 1..candidates.len() {
            if suppressed[j] || candidates[j].class != candidates[i].class {
                continue;
            }
            let bj = &shifted[j];
            let iw = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
            let ih = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
            let inter = iw * ih;
            let iou = inter / (ai + area(bj) - inter);
            if iou > options.iou {
                suppressed[j] = true;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(bbox: [f32; 4], score: f32, class: usize) -> Candidate {
        Candidate { bbox, score, class }
    }

    fn options(iou: f32, max_det: usize) -> NmsOptions {
        NmsOptions {
            conf: 0.25,
            iou,
            max_det,
            classes: None,
        }
    }

    #[test]
    fn nms_is_class_aware_and_keeps_the_best() {
        let c = vec![
            cand([1.0, 1.0, 11.0, 11.0], 0.8, 0),
            cand([0.0, 0.0, 10.0, 10.0], 0.9, 0),
            cand([1.0, 1.0, 11.0, 11.0], 0.7, 1),
            cand([40.0, 40.0, 50.0, 50.0], 0.3, 0),
        ];
        let kept = nms(c.clone(), &options(0.45, 300));
        assert_eq!(kept, vec![c[1], c[2], c[3]]);
        assert_eq!(nms(c.clone(), &options(0.7, 300)).len(), 4);
        assert_eq!(nms(c, &options(0.45, 2)).len(), 2);
    }

    #[test]
    fn decode_centres_boxes_on_anchors() {
        // One level of 1x2 cells, reg_max 2, one class; uniform bins give distance 0.5.
        let boxes = vec![0.0; 8 * 2];
        let logits = vec![3.0, -3.0];
        let levels = vec![LevelOutput {
            boxes,
            logits,
            h: 1,
            w: 2,
            channels_last: false,
        }];
        let opts = options(0.5, 300);
        let out = decode(&levels, &[8], 2, 1, &opts);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox, [0.0, 0.0, 8.0, 8.0]);
        assert!((out[0].score - sigmoid(3.0)).abs() < 1e-7);
    }

    #[test]
    fn both_layouts_decode_alike() {
        // Two levels of 3x5 cells, reg_max 4, 6 classes, varied values.
        let (n, reg_max, nc) = (15, 4, 6);
        let value = |i: usize, seed: usize| ((i * 7919 + seed * 104_729) % 61) as f32 / 10.0 - 3.0;
        let transpose = |v: &[f32], channels: usize| -> Vec<f32> {
            (0..n * channels)
                .map(|i| v[(i % channels) * n + i / channels])
                .collect()
        };
        let channel_major: Vec<LevelOutput> = (0..2)
            .map(|level| LevelOutput {
                boxes: (0..4 * reg_max * n).map(|i| value(i, level)).collect(),
                logits: (0..nc * n).map(|i| value(i, level + 2)).collect(),
                h: 3,
                w: 5,
                channels_last: false,
            })
            .collect();
        let channels_last: Vec<LevelOutput> = channel_major
            .iter()
            .map(|l| LevelOutput {
                boxes: transpose(&l.boxes, 4 * reg_max),
                logits: transpose(&l.logits, nc),
                channels_last: true,
                ..l.clone()
            })
            .collect();
        let opts = options(0.7, 300);
        let want = decode(&channel_major, &[8, 16], reg_max, nc, &opts);
        assert!(want.len() > 5, "the test keeps candidates ({})", want.len());
        assert_eq!(decode(&channels_last, &[8, 16], reg_max, nc, &opts), want);
    }
}

//! Detections from an external detector, and Ultralytics' filtering of them.
//!
//! Two sources: a folder of YOLO txt files (`<image stem>.txt`, one `class cx cy w h [conf]`
//! line per box, normalized to the image size; no conf column means conf 1), or a COCO
//! detections JSON: either a results list `[{"image_id", "category_id", "bbox": [x, y, w,
//! h], "score"}]` or an object with `"images"` (`id`, `file_name`) and `"annotations"`
//! of that form. A results list's `image_id` names an image by file name, stem, or (a
//! number) the number its stem spells, as COCO's `000000397133.jpg` is image 397133.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// One detected box, corners in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Class id.
    pub class: i64,
    /// Left, top, right, bottom.
    pub bbox: [f64; 4],
    /// Confidence (1 when the source has none).
    pub conf: f64,
}

/// Where the detections come from.
pub enum Source {
    /// A folder of YOLO txt files, normalized coordinates.
    YoloDir(PathBuf),
    /// COCO detections, grouped by image key (file name, stem or number), pixel boxes.
    Coco(HashMap<String, Vec<Detection>>),
}

impl Source {
    /// A directory is a YOLO label folder; a file is COCO JSON.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Ok(Self::YoloDir(path.to_path_buf()));
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read detections {}", path.display()))?;
        let coco = parse_coco(&text)
            .with_context(|| format!("cannot parse COCO detections {}", path.display()))?;
        Ok(Self::Coco(coco))
    }

    /// The detections of the image at `path`, `width x height` pixels.
    pub fn for_image(&self, path: &Path, width: u32, height: u32) -> Result<Vec<Detection>> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match self {
            Self::YoloDir(dir) => {
                let file = dir.join(format!("{stem}.txt"));
                if !file.exists() {
                    return Ok(Vec::new());
                }
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                parse_yolo(&text, width, height).with_context(|| format!("in {}", file.display()))
            }
            Self::Coco(map) => {
                let mut keys = vec![name.to_string(), stem.to_string()];
                if let Ok(n) = stem.parse::<u64>() {
                    keys.push(n.to_string());
                }
                for key in keys {
                    if let Some(d) = map.get(&key) {
                        return Ok(d.clone());
                    }
                }
                Ok(Vec::new())
            }
        }
    }
}

/// Parses YOLO detection lines: `class cx cy w h [conf]`, normalized; blank lines and
/// lines starting with `#` are ignored.
pub fn parse_yolo(text: &str, width: u32, height: u32) -> Result<Vec<Detection>> {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 && fields.len() != 6 {
            bail!(
                "line {}: expected `class cx cy w h [conf]`, got {} fields",
                i + 1,
                fields.len()
            );
        }
        let num = |s: &str| -> Result<f64> {
            let v: f64 = s
                .parse()
                .with_context(|| format!("line {}: `{s}` is not a number", i + 1))?;
            if !v.is_finite() {
                bail!("line {}: `{s}` is not finite", i + 1);
            }
            Ok(v)
        };
        let class = num(fields[0])?;
        if class < 0.0 || class.fract() != 0.0 {
            bail!(
                "line {}: class `{}` is not a non-negative integer",
                i + 1,
                fields[0]
            );
        }
        let (cx, cy, bw, bh) = (
            num(fields[1])?,
            num(fields[2])?,
            num(fields[3])?,
            num(fields[4])?,
        );
        let conf = if fields.len() == 6 {
            num(fields[5])?
        } else {
            1.0
        };
        out.push(Detection {
            class: class as i64,
            bbox: [
                (cx - bw / 2.0) * w,
                (cy - bh / 2.0) * h,
                (cx + bw / 2.0) * w,
                (cy + bh / 2.0) * h,
            ],
            conf,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ImageId {
    Number(u64),
    Text(String),
}

impl ImageId {
    fn key(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

#[derive(Deserialize)]
struct CocoDetection {
    image_id: ImageId,
    category_id: i64,
    bbox: [f64; 4],
    #[serde(default = "one")]
    score: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
struct CocoImage {
    id: ImageId,
    file_name: String,
}

#[derive(Deserialize)]
struct CocoFile {
    #[serde(default)]
    images: Vec<CocoImage>,
    annotations: Vec<CocoDetection>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CocoInput {
    List(Vec<CocoDetection>),
    File(CocoFile),
}

/// Parses COCO detections into per-image lists keyed by file name (with `images`) or by
/// the `image_id` as written.
pub fn parse_coco(text: &str) -> Result<HashMap<String, Vec<Detection>>> {
    let input: CocoInput = serde_json::from_str(text).context(
        "expected a list of {image_id, category_id, bbox, score} or {images, annotations}",
    )?;
    let (names, detections) = match input {
        CocoInput::List(list) => (HashMap::new(), list),
        CocoInput::File(file) => {
            let names: HashMap<String, String> = file
                .images
                .into_iter()
                .map(|im| (im.id.key(), im.file_name))
                .collect();
            (names, file.annotations)
        }
    };
    let mut map: HashMap<String, Vec<Detection>> = HashMap::new();
    for d in detections {
        let id = d.image_id.key();
        let key = match names.get(&id) {
            // COCO file names may carry folders; match on the base name.
            Some(name) => Path::new(name)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(name)
                .to_string(),
            None => id,
        };
        let [x, y, w, h] = d.bbox;
        if d.bbox.iter().any(|v| !v.is_finite()) || !d.score.is_finite() {
            bail!("image {key}: a detection has a non-finite value");
        }
        map.entry(key).or_default().push(Detection {
            class: d.category_id,
            bbox: [x, y, x + w, y + h],
            conf: d.score,
        });
    }
    Ok(map)
}

/// Ultralytics' filtering: keep `conf >= conf_thres` and the listed classes (all when
/// empty), class-aware NMS at `iou_thres` (torchvision `batched_nms`: a box is dropped when
/// its IoU with a kept, higher-scoring box of its class is above the threshold), then the
/// `max_det` most confident. Returns the kept boxes, most confident first.
pub fn filter(
    detections: &[Detection],
    conf_thres: f64,
    iou_thres: f64,
    max_det: usize,
    classes: &[i64],
) -> Vec<Detection> {
    let mut candidates: Vec<Detection> = detections
        .iter()
        .copied()
        .filter(|d| d.conf >= conf_thres && (classes.is_empty() || classes.contains(&d.class)))
        .collect();
    // Stable sort: ties keep their input order.
    candidates.sort_by(|a, b| b.conf.total_cmp(&a.conf));
    let mut kept: Vec<Detection> = Vec::new();
    for d in candidates {
        if kept.len() >= max_det {
            break;
        }
        if kept
            .iter()
            .all(|k| k.class != d.class || box_iou(&k.bbox, &d.bbox) <= iou_thres)
        {
            kept.push(d);
        }
    }
    kept
}

/// IoU of two `[x1, y1, x2, y2]` boxes (0 when both are empty).
pub fn box_iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let area = |r: &[f64; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: i64, bbox: [f64; 4], conf: f64) -> Detection {
        Detection { class, bbox, conf }
    }

    #[test]
    fn yolo_lines_parse_to_pixels() {
        let d = parse_yolo("0 0.5 0.5 0.5 0.25\n\n2 0.25 0.5 0.1 0.1 0.3\n", 100, 80).unwrap();
        assert_eq!(d[0], det(0, [25.0, 30.0, 75.0, 50.0], 1.0));
        assert_eq!(d[1].class, 2);
        assert!((d[1].conf - 0.3).abs() < 1e-12);
        assert!(parse_yolo("0 0.5 0.5 0.5", 10, 10).is_err());
        assert!(parse_yolo("a 0.5 0.5 0.5 0.5", 10, 10).is_err());
        assert!(parse_yolo("1.5 0.5 0.5 0.5 0.5", 10, 10).is_err());
    }

    #[test]
    fn coco_list_and_file_forms() {
        let list = parse_coco(
            r#"[{"image_id": 7, "category_id": 3, "bbox": [1, 2, 10, 20], "score": 0.9},
                {"image_id": "b.png", "category_id": 1, "bbox": [0, 0, 5, 5]}]"#,
        )
        .unwrap();
        assert_eq!(list["7"], vec![det(3, [1.0, 2.0, 11.0, 22.0], 0.9)]);
        assert_eq!(list["b.png"][0].conf, 1.0);
        let file = parse_coco(
            r#"{"images": [{"id": 1, "file_name": "sub/a.jpg"}],
                "annotations": [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 4, 4], "score": 0.5}]}"#,
        )
        .unwrap();
        assert_eq!(file["a.jpg"].len(), 1);
        assert!(parse_coco("{}").is_err());
    }

    #[test]
    fn filter_follows_ultralytics() {
        let dets = vec![
            det(0, [0.0, 0.0, 10.0, 10.0], 0.9),
            det(0, [1.0, 1.0, 11.0, 11.0], 0.8), // IoU 0.68 with the first: suppressed
            det(1, [1.0, 1.0, 11.0, 11.0], 0.7), // other class: kept
            det(0, [20.0, 20.0, 30.0, 30.0], 0.2), // under conf
            det(0, [40.0, 40.0, 50.0, 50.0], 0.25), // at conf: kept
        ];
        let kept = filter(&dets, 0.25, 0.45, 300, &[]);
        assert_eq!(kept, vec![dets[0], dets[2], dets[4]]);
        assert_eq!(filter(&dets, 0.25, 0.7, 300, &[]).len(), 4);
        assert_eq!(filter(&dets, 0.25, 0.45, 2, &[]), vec![dets[0], dets[2]]);
        assert_eq!(filter(&dets, 0.25, 0.45, 300, &[1]), vec![dets[2]]);
    }
}

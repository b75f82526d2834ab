//! `mobilesam detect`: run an Ultralytics YOLO detection checkpoint on images and print
//! the detections as JSON, for checking and scripting (and, with `--coco`, as a
//! detections file for `mobilesam annotate --detections`).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use mobilesam_detector::{DetectOptions, Detection, Detector};
use mobilesam_model::device::DeviceSpec;
use mobilesam_model::image::{read_image, DEFAULT_MAX_IMAGE_PIXELS};
use serde::Serialize;

/// The detector and its options, with Ultralytics' flag names. Defaults are those of
/// `YOLO.predict` for `detect` and those of `auto_annotate` for `annotate`, so each
/// command sets its own.
#[derive(Debug, Clone, clap::Args)]
pub struct DetectorFlags {
    /// Keep only these class ids, comma separated (default: all).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub classes: Vec<usize>,

    /// Input size: the image's longer side is scaled to this, rounded up to a multiple of
    /// the model's stride.
    #[arg(long, value_name = "PIXELS", default_value_t = 640)]
    pub imgsz: usize,
}

/// Loads a detector checkpoint on `device`, with a one-line error naming the file.
pub fn load_detector(path: &Path, device: &DeviceSpec) -> Result<Detector> {
    let device = device.open()?;
    Detector::load(path, &device)
        .with_context(|| format!("cannot load the detector {}", path.display()))
}

/// Checks Ultralytics' ranges and builds the options.
pub fn detect_options(
    conf: f64,
    iou: f64,
    imgsz: usize,
    max_det: usize,
    classes: &[usize],
) -> Result<DetectOptions> {
    ensure!(
        (0.0..=1.0).contains(&conf),
        "--conf must be in [0, 1], got {conf}"
    );
    ensure!(
        (0.0..=1.0).contains(&iou),
        "--iou must be in [0, 1], got {iou}"
    );
    ensure!(
        (32..=8192).contains(&imgsz),
        "--imgsz must be in [32, 8192], got {imgsz}"
    );
    ensure!(max_det >= 1, "--max-det must be at least 1");
    Ok(DetectOptions {
        conf: conf as f32,
        iou: iou as f32,
        imgsz,
        max_det,
        classes: (!classes.is_empty()).then(|| classes.to_vec()),
    })
}

/// Flags of `mobilesam detect`.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Ultralytics YOLOv8 / YOLO11 detection checkpoint (`.pt`, as trained or exported by
    /// `model.save`).
    #[arg(long, value_name = "FILE")]
    pub det_model: PathBuf,

    /// Images (JPEG, PNG, WebP, BMP, TIFF, GIF); repeat the flag or list several. One image
    /// prints one JSON object, several a list of them.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,

    /// Keep boxes with confidence above this.
    #[arg(long, value_name = "CONF", default_value_t = 0.25)]
    pub conf: f64,

    /// Class-aware NMS IoU threshold (Ultralytics' predict default).
    #[arg(long, value_name = "IOU", default_value_t = 0.7)]
    pub iou: f64,

    /// At most this many boxes per image, the most confident.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub max_det: usize,

    #[command(flatten)]
    pub flags: DetectorFlags,

    /// Print a COCO detections list (`image_id` the file name, `bbox` [x, y, w, h]) that
    /// `mobilesam annotate --detections` reads, instead of one object per image.
    #[arg(long)]
    pub coco: bool,

    /// Device to run on: cpu, cuda[:N] or metal[:N].
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,

    /// Refuse images with more pixels (width * height) than this.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

/// One image's detections, as printed.
#[derive(Debug, Serialize)]
struct ImageDetections {
    image: String,
    width: u32,
    height: u32,
    detections: Vec<Detection>,
}

/// A COCO detection result.
#[derive(Debug, Serialize)]
pub struct CocoResult {
    /// The image's file name.
    pub image_id: String,
    /// Class id.
    pub category_id: usize,
    /// `[x, y, w, h]`, pixels.
    pub bbox: [f64; 4],
    /// Confidence.
    pub score: f64,
}

impl CocoResult {
    /// The COCO form of one detection of `image`.
    pub fn new(image: &Path, d: &Detection) -> Self {
        let [x1, y1, x2, y2] = d.bbox.map(f64::from);
        Self {
            image_id: image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            category_id: d.class,
            bbox: [x1, y1, x2 - x1, y2 - y1],
            score: f64::from(d.confidence),
        }
    }
}

/// Detects objects in every image and prints JSON to stdout.
pub fn run(args: DetectArgs) -> Result<()> {
    let options = detect_options(
        args.conf,
        args.iou,
        args.flags.imgsz,
        args.max_det,
        &args.flags.classes,
    )?;
    let detector = load_detector(&args.det_model, &args.device)?;
    let mut per_image = Vec::new();
    let mut coco = Vec::new();
    for path in &args.image {
        let image = read_image(path, args.max_image_pixels)?;
        let detections = detector
            .detect(&image, &options)
            .with_context(|| format!("cannot run the detector on {}", path.display()))?;
        if args.coco {
            coco.extend(detections.iter().map(|d| CocoResult::new(path, d)));
        } else {
            per_image.push(ImageDetections {
                image: path.display().to_string(),
                width: image.width(),
                height: image.height(),
                detections,
            });
        }
    }
    let text = if args.coco {
        serde_json::to_string(&coco)?
    } else if per_image.len() == 1 {
        serde_json::to_string(&per_image[0])?
    } else {
        serde_json::to_string(&per_image)?
    };
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        assert!(detect_options(0.25, 0.7, 640, 300, &[]).is_ok());
        assert!(detect_options(1.5, 0.7, 640, 300, &[]).is_err());
        assert!(detect_options(0.25, -0.1, 640, 300, &[]).is_err());
        assert!(detect_options(0.25, 0.7, 16, 300, &[]).is_err());
        assert!(detect_options(0.25, 0.7, 640, 0, &[]).is_err());
        let o = detect_options(0.25, 0.45, 320, 10, &[0, 2]).unwrap();
        assert_eq!(o.classes, Some(vec![0, 2]));
    }
}

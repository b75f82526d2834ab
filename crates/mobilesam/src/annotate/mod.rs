//! `mobilesam annotate`: segmentation labels for a folder of images, as Ultralytics'
//! `auto_annotate`: boxes from the user's YOLO detector (`--det-model`, run in process) or
//! from a detections file (`--detections`).
//!
//! Every kept box (after Ultralytics' conf / class / NMS / max-det filtering) is
//! segmented with the box as prompt. Each region of the mask keeps its outer contour
//! (OpenCV's `findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE)`, see
//! `mobilesam_model::masks::contours`): a YOLO segmentation line (`class x1 y1 x2 y2 ...`,
//! normalized) in `<output-dir>/<image stem>.txt` joins them as Ultralytics'
//! `masks2segments` does, and COCO instances JSON (`<output-dir>/annotations.json`) holds
//! every region as its own polygon.
//!
//! Work is a pipeline: one thread reads and decodes images and runs the detector while
//! `--workers` threads run the model (each encode already uses every core), and the main
//! thread keeps the progress bar and the COCO document. Runs resume: images that already
//! have labels are skipped unless `--overwrite`.

pub mod detections;
mod labels;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use mobilesam_detector::{DetectOptions, Detector};
use mobilesam_model::image::{read_image, DEFAULT_MAX_IMAGE_PIXELS};
use mobilesam_model::masks::polygon::Vertex;
use mobilesam_model::masks::BinaryMask;
use mobilesam_model::masks::{contours, polygon};
use mobilesam_model::{BoxPrompt, DecodeOptions, ObjectPrompt, Sam};

use crate::detect::{detect_options, load_detector};
use crate::model_args::ModelArgs;
use detections::{Detection, Source};
use labels::{CocoDocument, Object};

/// Label format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `<stem>.txt` per image: `class x1 y1 x2 y2 ...`, normalized to [0, 1].
    Yolo,
    /// One COCO instances JSON, `annotations.json`, polygons in pixels.
    Coco,
}

/// Flags of `mobilesam annotate`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Detections: a folder of YOLO txt files (<image stem>.txt, lines \
`class cx cy w h [conf]`, normalized; no conf means 1) or a COCO detections JSON (a list of \
{image_id, category_id, bbox: [x, y, w, h], score}, image_id the file name, stem or the number \
the stem spells; or {images: [{id, file_name}], annotations: [...]})."
)]
pub struct AnnotateArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Folder of images (JPEG, PNG, WebP, BMP, TIFF, GIF), not searched recursively.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// Detections: a folder of YOLO txt files or a COCO detections JSON file.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "det_model",
        conflicts_with = "det_model"
    )]
    pub detections: Option<PathBuf>,

    /// Ultralytics YOLOv8 / YOLO11 detection checkpoint (`.pt`) to find the boxes with,
    /// in process (Ultralytics' `auto_annotate(det_model=...)`); class names come from it.
    #[arg(long, value_name = "FILE")]
    pub det_model: Option<PathBuf>,

    /// Detector input size (with --det-model): the longer side is scaled to this.
    #[arg(long, value_name = "PIXELS", default_value_t = 640)]
    pub imgsz: usize,

    /// Keep only these class ids, comma separated (default: all).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub classes: Vec<i64>,

    /// Keep detections with confidence >= this.
    #[arg(long, value_name = "CONF", default_value_t = 0.25)]
    pub conf: f64,

    /// Class-aware NMS: drop a box whose IoU with a more confident box of its class is
    /// above this.
    #[arg(long, value_name = "IOU", default_value_t = 0.45)]
    pub iou: f64,

    /// At most this many boxes per image, the most confident.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub max_det: usize,

    /// Where labels go (default: `labels` beside the data folder).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Label format.
    #[arg(long, value_enum, default_value_t = Format::Yolo)]
    pub format: Format,

    /// Label images again even when they already have labels.
    #[arg(long)]
    pub overwrite: bool,

    /// Images run through the model at once (the encoder already uses every core).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,

    /// Douglas-Peucker tolerance for each region's contour, in pixels (capped at 0.5% of
    /// the contour's length); 0 (the default) keeps OpenCV's contour points, the labels
    /// Ultralytics writes.
    #[arg(long, value_name = "PIXELS", default_value_t = 0.0)]
    pub epsilon: f64,

    /// Refuse (report and skip) images with more pixels (width * height) than this.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

/// Image file extensions looked at in `--data`.
pub(crate) const IMAGE_EXTENSIONS: [&str; 8] =
    ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// Boxes decoded per model call.
const DECODE_CHUNK: usize = 32;

/// What happened to one image.
enum Outcome {
    Done {
        path: PathBuf,
        width: u32,
        height: u32,
        objects: Vec<Object>,
    },
    Failed {
        path: PathBuf,
        reason: String,
    },
}

/// Labels every image of `--data`; prints a summary to stderr.
pub fn run(args: AnnotateArgs) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&args.conf),
        "--conf must be in [0, 1], got {}",
        args.conf
    );
    ensure!(
        (0.0..=1.0).contains(&args.iou),
        "--iou must be in [0, 1], got {}",
        args.iou
    );
    ensure!(args.workers >= 1, "--workers must be at least 1");
    ensure!(
        args.epsilon.is_finite() && args.epsilon >= 0.0,
        "--epsilon must be a non-negative number, got {}",
        args.epsilon
    );
    let started = Instant::now();
    let images = list_images(&args.data)?;
    let boxes = match (&args.det_model, &args.detections) {
        (Some(model), _) => {
            let classes = args
                .classes
                .iter()
                .map(|&c| usize::try_from(c).context("--classes must be class ids (>= 0)"))
                .collect::<Result<Vec<_>>>()?;
            let options = detect_options(args.conf, args.iou, args.imgsz, args.max_det, &classes)?;
            Boxes::Model(Box::new(load_detector(model, &args.model.device)?), options)
        }
        (None, Some(path)) => Boxes::File(Source::open(path)?),
        (None, None) => bail!("give --det-model or --detections"),
    };
    let names: Vec<String> = match &boxes {
        Boxes::Model(detector, _) => detector.names().to_vec(),
        Boxes::File(_) => Vec::new(),
    };
    let output_dir = match &args.output_dir {
        Some(dir) => dir.clone(),
        None => default_output_dir(&args.data)?,
    };
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("cannot create {}", output_dir.display()))?;

    let coco_path = output_dir.join("annotations.json");
    let mut coco = match args.format {
        Format::Coco if !args.overwrite && coco_path.exists() => CocoDocument::load(&coco_path)?,
        _ => CocoDocument::default(),
    };
    let (pending, already): (Vec<PathBuf>, Vec<PathBuf>) =
        images.into_iter().partition(|path| match args.format {
            _ if args.overwrite => true,
            Format::Yolo => !labels::yolo_path(&output_dir, path).exists(),
            Format::Coco => !coco.has_image(path),
        });

    let mut summary = Summary {
        already: already.len(),
        ..Summary::default()
    };
    if !pending.is_empty() {
        let sam = args.model.load()?;
        let bar = progress_bar(pending.len() as u64);
        let on_outcome = |outcome: Outcome, summary: &mut Summary| match outcome {
            Outcome::Done {
                path,
                width,
                height,
                objects,
            } => {
                summary.images += 1;
                summary.objects += objects.len();
                if args.format == Format::Coco {
                    coco.add_image(&path, width, height, &objects, &names);
                }
                bar.inc(1);
            }
            Outcome::Failed { path, reason } => {
                summary.failed += 1;
                bar.suspend(|| eprintln!("warning: skipping {}: {reason}", path.display()));
                bar.inc(1);
            }
        };
        let job = Job {
            sam: &sam,
            boxes: &boxes,
            args: &args,
            output_dir: &output_dir,
        };
        job.run_pipeline(pending, &mut summary, on_outcome)?;
        bar.finish_and_clear();
    }
    if args.format == Format::Coco && (summary.images > 0 || !coco_path.exists()) {
        coco.save(&coco_path)?;
    }
    let where_ = match args.format {
        Format::Yolo => output_dir.display().to_string(),
        Format::Coco => coco_path.display().to_string(),
    };
    eprintln!(
        "annotated {} images, {} objects; skipped {} already labelled, {} unreadable; {:.1} s; labels in {where_}",
        summary.images,
        summary.objects,
        summary.already,
        summary.failed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Default)]
struct Summary {
    images: usize,
    objects: usize,
    already: usize,
    failed: usize,
}

/// Where the boxes come from.
enum Boxes {
    /// A detections file or folder.
    File(Source),
    /// The user's detector, run on each image.
    Model(Box<Detector>, DetectOptions),
}

struct Job<'a> {
    sam: &'a Sam,
    boxes: &'a Boxes,
    args: &'a AnnotateArgs,
    output_dir: &'a Path,
}

/// An image read and its filtered detections, ready for the model.
struct Loaded {
    path: PathBuf,
    image: RgbImage,
    detections: Vec<Detection>,
}

impl Job<'_> {
    /// Reader thread -> `workers` model threads -> `on_outcome` on this thread.
    fn run_pipeline(
        &self,
        pending: Vec<PathBuf>,
        summary: &mut Summary,
        mut on_outcome: impl FnMut(Outcome, &mut Summary),
    ) -> Result<()> {
        let workers = self.args.workers;
        let (load_tx, load_rx) = mpsc::sync_channel::<Loaded>(workers);
        let load_rx = Arc::new(Mutex::new(load_rx));
        let (out_tx, out_rx) = mpsc::channel::<Outcome>();
        std::thread::scope(|scope| {
            let reader_out = out_tx.clone();
            scope.spawn(move || {
                for path in pending {
                    match self.load(&path) {
                        Ok(loaded) => {
                            if load_tx.send(loaded).is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            let reason = crate::error_message::one_line(&err);
                            if reader_out.send(Outcome::Failed { path, reason }).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            for _ in 0..workers {
                let rx = Arc::clone(&load_rx);
                let tx = out_tx.clone();
                scope.spawn(move || loop {
                    let next = rx.lock().map(|rx| rx.recv());
                    let Ok(Ok(loaded)) = next else { return };
                    let path = loaded.path.clone();
                    let outcome = match self.annotate(loaded) {
                        Ok(outcome) => outcome,
                        Err(err) => Outcome::Failed {
                            path,
                            reason: crate::error_message::one_line(&err),
                        },
                    };
                    if tx.send(outcome).is_err() {
                        return;
                    }
                });
            }
            drop(out_tx);
            for outcome in out_rx {
                on_outcome(outcome, summary);
            }
        });
        Ok(())
    }

    fn load(&self, path: &Path) -> Result<Loaded> {
        let image = read_image(path, self.args.max_image_pixels)?;
        let all = match self.boxes {
            Boxes::File(source) => source
                .for_image(path, image.width(), image.height())
                .context("bad detections")?,
            Boxes::Model(detector, options) => detector
                .detect(&image, options)
                .context("cannot run the detector")?
                .into_iter()
                .map(|d| Detection {
                    class: d.class as i64,
                    bbox: d.bbox.map(f64::from),
                    conf: f64::from(d.confidence),
                })
                .collect(),
        };
        let detections = detections::filter(
            &all,
            self.args.conf,
            self.args.iou,
            self.args.max_det,
            &self.args.classes,
        );
        Ok(Loaded {
            path: path.to_path_buf(),
            image,
            detections,
        })
    }

    /// Segments every box of one image and writes its YOLO labels (COCO is gathered by the
    /// caller).
    fn annotate(&self, loaded: Loaded) -> Result<Outcome> {
        let Loaded {
            path,
            image,
            detections,
        } = loaded;
        let (width, height) = (image.width(), image.height());
        let (w, h) = (f64::from(width), f64::from(height));
        // Clip to the image; boxes with nothing left are dropped.
        let boxes: Vec<(Detection, BoxPrompt)> = detections
            .into_iter()
            .filter_map(|d| {
                let [x1, y1, x2, y2] = d.bbox;
                let (x1, x2) = (x1.clamp(0.0, w), x2.clamp(0.0, w));
                let (y1, y2) = (y1.clamp(0.0, h), y2.clamp(0.0, h));
                (x2 > x1 && y2 > y1).then_some((
                    d,
                    BoxPrompt {
                        x1: x1 as f32,
                        y1: y1 as f32,
                        x2: x2 as f32,
                        y2: y2 as f32,
                    },
                ))
            })
            .collect();
        let mut objects = Vec::new();
        if !boxes.is_empty() {
            let embedding = self.sam.embed(&image).context("cannot encode the image")?;
            let options = DecodeOptions {
                multimask: false,
                return_low_res_logits: false,
                return_polygons: false,
            };
            for chunk in boxes.chunks(DECODE_CHUNK) {
                let prompts: Vec<ObjectPrompt> = chunk
                    .iter()
                    .map(|(_, b)| ObjectPrompt {
                        bbox: Some(*b),
                        ..ObjectPrompt::default()
                    })
                    .collect();
                let decoded = self
                    .sam
                    .decode(&embedding, &prompts, options)
                    .context("cannot decode the masks")?;
                for ((det, _), object) in chunk.iter().zip(decoded) {
                    let Some(mask) = object.masks.first() else {
                        continue;
                    };
                    let binary = BinaryMask::from_rle(&mask.rle)?;
                    let Some((regions, segment)) = mask_regions(&binary, self.args.epsilon) else {
                        continue; // nothing Ultralytics would label
                    };
                    objects.push(Object {
                        class: det.class,
                        conf: det.conf,
                        regions,
                        segment,
                        bbox: mask.bbox,
                        area: mask.area,
                    });
                }
            }
        }
        if self.args.format == Format::Yolo {
            labels::write_yolo(self.output_dir, &path, width, height, &objects)?;
        }
        Ok(Outcome::Done {
            path,
            width,
            height,
            objects,
        })
    }
}

/// Every region's outer contour (simplified when `epsilon > 0`; regions of one or two
/// points left out) and their Ultralytics join (`masks2segments`); `None` when the join
/// has fewer than three points, which Ultralytics does not write.
fn mask_regions(mask: &BinaryMask, epsilon: f64) -> Option<(Vec<Vec<Vertex>>, Vec<Vertex>)> {
    let mut rings = contours::external_contours(&mask.data, mask.height, mask.width);
    if epsilon > 0.0 {
        for ring in &mut rings {
            let eps = epsilon.min(polygon::EPSILON_PER_PERIMETER * polygon::perimeter(ring));
            *ring = polygon::simplify(ring, eps);
        }
    }
    let segment = match rings.len() {
        0 => return None,
        1 => rings[0].clone(),
        _ => contours::merge_segments(&rings),
    };
    if segment.len() < 3 {
        return None;
    }
    let mut regions: Vec<Vec<Vertex>> = rings.into_iter().filter(|r| r.len() >= 3).collect();
    if regions.is_empty() {
        // Only specks (1-2 point contours): COCO gets the joined outline, as YOLO does.
        regions.push(segment.clone());
    }
    Some((regions, segment))
}

/// The image files of `dir`, sorted by name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("--data {} is not a directory", dir.display());
    }
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            images.push(path);
        }
    }
    images.sort();
    Ok(images)
}

/// `labels` beside the data folder.
fn default_output_dir(data: &Path) -> Result<PathBuf> {
    let data = data
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data.display()))?;
    Ok(data.parent().unwrap_or(&data).join("labels"))
}

pub(crate) fn progress_bar(len: u64) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images [{elapsed_precise} < {eta}] {per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

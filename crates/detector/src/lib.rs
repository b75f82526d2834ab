//! YOLO object detection from the user's own Ultralytics checkpoint (YOLOv8 and YOLO11
//! detection, every scale), with no Python and no export step.
//!
//! [`checkpoint`] reads the pickled `DetectionModel` without executing anything,
//! [`graph`] builds the network its `yaml` describes from [`blocks`], [`letterbox`] prepares
//! the image as Ultralytics' predictor does, and [`postprocess`] decodes the head and runs
//! class-aware NMS. [`Detector::detect`] ties them together and returns boxes in the
//! original image's pixels. The network runs twice over, as for SAM: [`graph`] on candle
//! (any device, and the CPU reference) and [`fused`] on the CPU kernels of
//! `mobilesam-kernels` (the CPU's default).
//!
//! Used by the `mobilesam` command (`annotate`, `detect`, `bench`); the server does not
//! depend on it. Errors are the model crate's `ModelError`, so that both models report a
//! bad checkpoint or image the same way.

pub mod blocks;
pub mod checkpoint;
pub mod fused;
pub mod graph;
pub mod letterbox;
pub mod postprocess;

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;
use serde::Serialize;

use checkpoint::read_ultralytics;
use fused::{FusedGraph, Map};
use graph::Graph;
use letterbox::Letterbox;
use mobilesam_checkpoint::CheckpointError;
use mobilesam_kernels::profile::step;
use mobilesam_model::{ModelError, Result};
use postprocess::{decode, nms, NmsOptions};

/// Detection options, with Ultralytics' names and `predict` defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// Keep boxes whose best class score is above this (default 0.25).
    pub conf: f32,
    /// Class-aware NMS IoU threshold (default 0.7 for `predict`, 0.45 for
    /// `auto_annotate`).
    pub iou: f32,
    /// Input size: the longer side is scaled to this (default 640).
    pub imgsz: usize,
    /// At most this many boxes (default 300).
    pub max_det: usize,
    /// Keep only these class ids (all when `None`).
    pub classes: Option<Vec<usize>>,
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            conf: 0.25,
            iou: 0.7,
            imgsz: 640,
            max_det: 300,
            classes: None,
        }
    }
}

/// One detected object, in the original image's pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` (`box` in JSON).
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Confidence: the class's sigmoid score.
    pub confidence: f32,
    /// Class id.
    pub class: usize,
    /// Class name from the checkpoint.
    pub name: String,
}

/// A loaded YOLO detector.
#[derive(Debug, Clone)]
pub struct Detector {
    graph: Graph,
    /// The CPU kernels' form of the network (on the CPU, when every layer has one).
    fused: Option<FusedGraph>,
    names: Vec<String>,
    scale: Option<String>,
    device: Device,
}

impl Detector {
    /// Loads an Ultralytics detection checkpoint (`.pt`).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_bytes(&bytes, &shown, device)
    }

    /// Loads a checkpoint held in memory; `shown` names it in errors.
    pub fn from_bytes(bytes: &[u8], shown: &str, device: &Device) -> Result<Self> {
        let bad = |reason: String| {
            ModelError::Checkpoint(CheckpointError::Invalid {
                path: shown.to_string(),
                reason,
            })
        };
        if !bytes.starts_with(b"PK\x03\x04") {
            return Err(bad(
                "not an Ultralytics .pt checkpoint (a torch.save zip)".into()
            ));
        }
        let mut ckpt = read_ultralytics(bytes).map_err(bad)?;
        if !device.is_cpu() {
            for t in ckpt.tensors.values_mut() {
                *t = t.to_device(device)?;
            }
        }
        let graph = Graph::build(&ckpt).map_err(bad)?;
        // One small forward pass through candle, which checks every shape: a checkpoint
        // whose layers do not fit together is refused here, not in the middle of a run.
        let side = 2 * graph.max_stride();
        let probe = Tensor::zeros((1, 3, side, side), candle_core::DType::F32, device)?;
        graph
            .forward(&probe)
            .map_err(|e| bad(format!("the network's layers do not fit together: {e}")))?;
        if ckpt.names.len() != graph.head().nc {
            return Err(bad(format!(
                "the checkpoint names {} classes but its head predicts {}",
                ckpt.names.len(),
                graph.head().nc
            )));
        }
        let fused = if device.is_cpu() {
            FusedGraph::new(&graph)
                .map_err(|e| tracing::warn!("detector: the candle path runs ({e})"))
                .ok()
        } else {
            None
        };
        Ok(Self {
            graph,
            fused,
            names: ckpt.names,
            scale: ckpt.scale,
            device: device.clone(),
        })
    }

    /// Runs the candle path even on the CPU (tests compare the two paths).
    pub fn without_cpu_kernels(mut self) -> Self {
        self.fused = None;
        self
    }

    /// Whether the CPU kernels run the network (else candle does).
    pub fn uses_cpu_kernels(&self) -> bool {
        self.fused.is_some()
    }

    /// Class names by id.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The model scale recorded in the checkpoint (`n`, `s`, `m`, `l`, `x`), if any.
    pub fn scale(&self) -> Option<&str> {
        self.scale.as_deref()
    }

    /// Detects objects in `image`.
    pub fn detect(&self, image: &RgbImage, options: &DetectOptions) -> Result<Vec<Detection>> {
        if image.width() == 0 || image.height() == 0 {
            return Err(ModelError::ImageDecode("the image is empty".into()));
        }
        if !(0.0..=1.0).contains(&options.conf) || !(0.0..=1.0).contains(&options.iou) {
            return Err(ModelError::InvalidParams(
                "conf and iou must be in [0, 1]".into(),
            ));
        }
        let stride = self.graph.max_stride();
        if options.imgsz < stride || options.imgsz > 8192 {
            return Err(ModelError::InvalidParams(format!(
                "imgsz must be in [{stride}, 8192], got {}",
                options.imgsz
            )));
        }
        // Ultralytics rounds imgsz up to a multiple of the stride.
        let imgsz = options.imgsz.div_ceil(stride) * stride;
        let lb = Letterbox::new(
            image.width() as usize,
            image.height() as usize,
            imgsz,
            stride,
        );
        let (w, h) = lb.input;
        let levels = match &self.fused {
            Some(fused) => {
                let mut input = Map::stale(h, w, 3);
                step("detector letterbox", || lb.fill_hwc(image, &mut input.data));
                fused.forward(input)
            }
            None => {
                let input = lb.apply(image);
                let x =
                    Tensor::from_vec(input, (1, 3, h, w), &Device::Cpu)?.to_device(&self.device)?;
                self.graph.forward(&x)?
            }
        };
        let head = self.graph.head();
        let nms_options = NmsOptions {
            conf: options.conf,
            iou: options.iou,
            max_det: options.max_det,
            classes: options.classes.clone(),
        };
        let candidates = step("detector decode and nms", || {
            let candidates = decode(
                &levels,
                &self.graph.strides,
                head.reg_max,
                head.nc,
                &nms_options,
            );
            nms(candidates, &nms_options)
        });
        Ok(candidates
            .into_iter()
            .map(|c| Detection {
                bbox: lb.unscale(c.bbox),
                confidence: c.score,
                class: c.class,
                name: self.names.get(c.class).cloned().unwrap_or_default(),
            })
            .collect())
    }
}

//! The JSON that `mobilesam segment` prints:
//! `{"width":W,"height":H,"objects":[{"masks":[{"score":S,"area":N,"bbox":[x,y,w,h],"rle":{"size":[H,W],"counts":"..."}}]}]}`.

use mobilesam_model::masks::Rle;
use mobilesam_model::ObjectMasks;
use serde::Serialize;

/// Everything segmented in one image.
#[derive(Debug, Serialize)]
pub struct SegmentOutput {
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// One entry per prompted object, in prompt order.
    pub objects: Vec<ObjectOutput>,
}

/// The masks of one object, in the model's output order.
#[derive(Debug, Serialize)]
pub struct ObjectOutput {
    /// One mask, or three with `--multimask`.
    pub masks: Vec<MaskJson>,
}

/// One mask.
#[derive(Debug, Serialize)]
pub struct MaskJson {
    /// Predicted IoU.
    pub score: f32,
    /// Foreground pixels.
    pub area: u64,
    /// Tight `[x, y, w, h]` box of the foreground.
    pub bbox: [f32; 4],
    /// COCO compressed RLE (pycocotools' `mask.encode`).
    pub rle: Rle,
}

impl SegmentOutput {
    /// Collects the model's output for an image of `width` x `height`.
    pub fn new(width: usize, height: usize, objects: Vec<ObjectMasks>) -> Self {
        let objects = objects
            .into_iter()
            .map(|object| ObjectOutput {
                masks: object
                    .masks
                    .into_iter()
                    .map(|m| MaskJson {
                        score: m.score,
                        area: m.area,
                        bbox: m.bbox,
                        rle: m.rle,
                    })
                    .collect(),
            })
            .collect();
        Self {
            width,
            height,
            objects,
        }
    }
}

/// Writes `text` and a newline to stdout. A closed pipe (`mobilesam ... | head`) is not an
/// error; any other write failure is.
pub fn print_line(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(()),
    }
}

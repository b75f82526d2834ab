//! `mobilesam segment`: masks for prompted objects in one image, printed as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_model::DecodeOptions;

use crate::embedding_file;
use crate::image_args::ImageArgs;
use crate::model_args::ModelArgs;
use crate::output::{self, SegmentOutput};

/// Flags of `mobilesam segment`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Prompts are JSON, nested as in Ultralytics' SAM.predict:
  --points '[x, y]'                  one object, one point
  --points '[[x, y], [x, y]]'        one object per point
  --points '[[[x, y], [x, y]], ...]' several points per object
  --labels nests like --points without the coordinates (1 foreground, 0 background;
           default all 1): '[1]', '[1, 0]', '[[1, 0], ...]'
  --bboxes '[x1, y1, x2, y2]' or '[[x1, y1, x2, y2], ...]'
  With both --points and --bboxes, they pair up object by object.

Output: {\"width\":W,\"height\":H,\"objects\":[{\"masks\":[{\"score\":S,\"area\":N,
\"bbox\":[x,y,w,h],\"rle\":{\"size\":[H,W],\"counts\":\"...\"}}]}]}, objects in prompt order.")]
pub struct SegmentArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Points as JSON, in image pixels: [x, y], [[x, y], ...] or [[[x, y], ...], ...].
    #[arg(long, value_name = "JSON")]
    pub points: Option<String>,

    /// Point labels as JSON, nested like --points: 1 foreground, 0 background (default: all 1).
    #[arg(long, value_name = "JSON")]
    pub labels: Option<String>,

    /// Boxes as JSON, in image pixels: [x1, y1, x2, y2] or a list of them.
    #[arg(long, value_name = "JSON")]
    pub bboxes: Option<String>,

    /// Return three candidate masks per object (the model's output order) instead of one.
    #[arg(long)]
    pub multimask: bool,

    /// Reuse an embedding written by `mobilesam embed` for this same image instead of
    /// encoding it again.
    #[arg(long, value_name = "FILE.npy")]
    pub embedding: Option<PathBuf>,

    /// Indent the JSON output.
    #[arg(long)]
    pub pretty: bool,
}

/// Segments the prompted objects and prints the JSON result to stdout.
pub fn run(args: SegmentArgs) -> Result<()> {
    let objects = mobilesam_model::prompt_json::parse_prompts(
        args.points.as_deref(),
        args.labels.as_deref(),
        args.bboxes.as_deref(),
    )?;
    let image = args.image.read()?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    let sam = args.model.load()?;
    let embedding = match &args.embedding {
        Some(path) => embedding_file::read(path, &sam, height, width)?,
        None => sam.embed(&image).context("cannot encode the image")?,
    };
    let options = DecodeOptions {
        multimask: args.multimask,
        return_low_res_logits: false,
        return_polygons: false,
    };
    let masks = sam.decode(&embedding, &objects, options)?;
    let result = SegmentOutput::new(width, height, masks);
    let json = if args.pretty {
        serde_json::to_string_pretty(&result)
    } else {
        serde_json::to_string(&result)
    }?;
    output::print_line(&json)
}

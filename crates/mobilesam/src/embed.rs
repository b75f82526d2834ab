//! `mobilesam embed`: encode one image and save its embedding as `.npy` (see
//! [`crate::embedding_file`]), or encode every image of a folder into the shared embedding
//! store (see [`crate::embed_dataset`]).

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_model::image::{read_image, DEFAULT_MAX_IMAGE_PIXELS};

use crate::embed_dataset::DatasetArgs;
use crate::embedding_file;
use crate::model_args::ModelArgs;

/// Flags of `mobilesam embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    /// Image file: JPEG, PNG, WebP, BMP, TIFF or GIF (the format is read from the bytes).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "data",
        requires = "output"
    )]
    pub image: Option<PathBuf>,

    /// Refuse images with more pixels (width * height) than this (with --data: report
    /// and skip them).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,

    /// Where to write the embedding: float32, shape (1, C, 64, 64) (C = 256 in the official
    /// models), NumPy `.npy`; SAM 2.1 adds FILE.high_res_s0.npy and FILE.high_res_s1.npy.
    #[arg(long, short, value_name = "FILE.npy", conflicts_with = "data")]
    pub output: Option<PathBuf>,

    /// Precompute a dataset: every image of this folder into `--store`.
    #[command(flatten)]
    pub dataset: DatasetArgs,
}

/// Encodes the image and writes the embedding, or precomputes a folder.
pub fn run(args: EmbedArgs) -> Result<()> {
    let (Some(image), Some(output)) = (&args.image, &args.output) else {
        return crate::embed_dataset::run(&args.model, &args.dataset, args.max_image_pixels);
    };
    let image = read_image(image, args.max_image_pixels)?;
    let sam = args.model.load()?;
    let embedding = sam.embed(&image).context("cannot encode the image")?;
    let host = embedding
        .to_host()
        .context("cannot copy the embedding to the host")?;
    let written = embedding_file::write(output, &host)?;
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    eprintln!(
        "wrote the {}x{} image's embedding, float32 {:?}, to {}",
        image.width(),
        image.height(),
        embedding_file::image_shape(host.channels),
        names.join(", ")
    );
    Ok(())
}

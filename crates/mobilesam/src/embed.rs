//! `mobilesam embed`: encode an image once and save the embedding as `.npy`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_model::tiny_vit::{EMBED_CHANNELS, EMBED_SIDE};

use crate::image_args::ImageArgs;
use crate::model_args::ModelArgs;
use crate::npy;

/// Shape of the saved embedding: (1, 256, 64, 64).
pub const EMBEDDING_SHAPE: [usize; 4] = [1, EMBED_CHANNELS, EMBED_SIDE, EMBED_SIDE];

/// Flags of `mobilesam embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub image: ImageArgs,

    /// Where to write the embedding: float32, shape (1, 256, 64, 64), NumPy `.npy`.
    #[arg(long, short, value_name = "FILE.npy")]
    pub output: PathBuf,
}

/// Encodes the image and writes the embedding.
pub fn run(args: EmbedArgs) -> Result<()> {
    let image = args.image.read()?;
    let sam = args.model.load()?;
    let embedding = sam.embed(&image).context("cannot encode the image")?;
    let values = embedding
        .features
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .context("cannot copy the embedding to the host")?;
    npy::write_f32(&args.output, &EMBEDDING_SHAPE, &values)?;
    eprintln!(
        "wrote the {}x{} image's embedding, float32 {EMBEDDING_SHAPE:?}, to {}",
        image.width(),
        image.height(),
        args.output.display()
    );
    Ok(())
}

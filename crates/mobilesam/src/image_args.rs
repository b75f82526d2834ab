//! Flags that name the input image: `--image` and `--max-image-pixels`.

use std::path::PathBuf;

use anyhow::Result;
use image::RgbImage;
use mobilesam_model::image::{read_image, DEFAULT_MAX_IMAGE_PIXELS};

/// The image to work on.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Image file: JPEG, PNG, WebP, BMP, TIFF or GIF (the format is read from the bytes).
    #[arg(long, value_name = "FILE")]
    pub image: PathBuf,

    /// Refuse images with more pixels (width * height) than this.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
}

impl ImageArgs {
    /// Reads and decodes the image to RGB8.
    pub fn read(&self) -> Result<RgbImage> {
        Ok(read_image(&self.image, self.max_image_pixels)?)
    }
}

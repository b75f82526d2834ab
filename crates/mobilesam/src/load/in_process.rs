//! The reference for the round trip: the same prompt decoded in this process, as a server
//! worker does it (prompt encoder, mask decoder, upscaling, threshold, RLE).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use image::RgbImage;
use mobilesam_model::{DecodeOptions, Embedding, ObjectPrompt, Sam};

/// A model on the CPU with the image already encoded, ready to time decodes.
pub struct InProcess {
    sam: Sam,
    embedding: Embedding,
    prompt: Vec<ObjectPrompt>,
    options: DecodeOptions,
}

impl InProcess {
    /// Loads the checkpoint, encodes `image` and decodes `prompt` once (warm-up).
    pub fn new(
        checkpoint: &Path,
        image: &RgbImage,
        prompt: Vec<ObjectPrompt>,
        options: DecodeOptions,
    ) -> Result<Self> {
        let sam = Sam::load(checkpoint, &candle_core::Device::Cpu)
            .with_context(|| format!("cannot load the model from {}", checkpoint.display()))?;
        let embedding = sam.embed(image).context("cannot encode the image")?;
        let model = Self {
            sam,
            embedding,
            prompt,
            options,
        };
        model.time_one()?;
        Ok(model)
    }

    /// Times one decode of the prompt.
    pub fn time_one(&self) -> Result<Duration> {
        let start = Instant::now();
        let masks = self
            .sam
            .decode(&self.embedding, &self.prompt, self.options)
            .context("cannot decode the prompt")?;
        let elapsed = start.elapsed();
        std::hint::black_box(masks);
        Ok(elapsed)
    }
}

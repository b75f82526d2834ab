//! Masks after the decoder: from low-resolution logits to what the wire and the files
//! carry.
//!
//! - [`upscale`]: a logit map to the original image, the reference `postprocess_masks`
//!   bit for bit, thresholded in the same pass with its stability score;
//! - [`rle`]: [`BinaryMask`] (area, box, IoU) and its COCO RLE, byte for byte
//!   pycocotools', with [`runs`] for the column-major run lengths;
//! - [`polygon`]: the one point type ([`polygon::Vertex`]), connected components,
//!   simplification and rasterisation;
//! - two tracers, which give different outlines on purpose: [`regions`], every region and
//!   its holes along pixel edges (the server's `Mask.polygons`, exact under even-odd
//!   rasterisation), and [`contours`], OpenCV's `findContours` point for point on pixel
//!   centres (the YOLO and COCO labels of `mobilesam annotate`, as Ultralytics writes them).

pub mod contours;
pub mod polygon;
pub mod regions;
pub mod rle;
pub mod runs;
pub mod upscale;

#[cfg(test)]
mod test_support;

pub use rle::{BinaryMask, Rle, MASK_THRESHOLD};
pub(crate) use upscale::StabilityCounts;
pub use upscale::{
    low_res_extent, upscale_logits, upscale_stretched_logits, upscale_stretched_to_scored_mask,
    upscale_to_mask, upscale_to_scored_mask, STABILITY_SCORE_OFFSET,
};

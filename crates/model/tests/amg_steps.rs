//! `amg::generate_with`, the entry point servers use: a cached embedding gives the same
//! masks as the image, and the caller is asked before every crop and every batch of
//! points, and can stop there.

mod common;

use std::ops::ControlFlow;

use mobilesam_model::amg::{generate, generate_with, AmgParams, AmgSource};

fn image() -> image::RgbImage {
    image::RgbImage::from_fn(64, 48, |x, y| {
        if (16..40).contains(&x) && (12..32).contains(&y) {
            image::Rgb([240, 220, 40])
        } else {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
        }
    })
}

/// 4 x 4 points in batches of 5: four batches; no filters, so random weights give masks.
fn params() -> AmgParams {
    AmgParams {
        points_per_side: 4,
        points_per_batch: 5,
        pred_iou_thresh: 0.0,
        stability_score_thresh: 0.0,
        ..AmgParams::default()
    }
}

#[test]
fn embedding_source_matches_image_and_steps_can_stop() {
    let sam = common::seeded_sam();
    let image = image();
    let from_image = generate(&sam, &image, &params()).expect("generate");
    assert!(!from_image.is_empty());
    let embedding = sam.embed(&image).expect("embed");

    let mut steps = 0;
    let run = generate_with(
        &sam,
        AmgSource::Embedding(&embedding),
        &params(),
        &mut || {
            steps += 1;
            ControlFlow::Continue(())
        },
    )
    .expect("generate from the embedding")
    .expect("not stopped");
    // Asked before the crop, then before each batch after the first.
    assert_eq!(steps, 4);
    assert_eq!(run.encode_time, std::time::Duration::ZERO);
    let key = |m: &mobilesam_model::amg::AmgMask| {
        (
            m.segmentation.clone(),
            m.predicted_iou.to_bits(),
            m.bbox,
            m.point_coords.map(f64::to_bits),
        )
    };
    assert_eq!(
        run.masks.iter().map(key).collect::<Vec<_>>(),
        from_image.iter().map(key).collect::<Vec<_>>()
    );

    let mut asked = 0;
    let stopped = generate_with(
        &sam,
        AmgSource::Embedding(&embedding),
        &params(),
        &mut || {
            asked += 1;
            if asked == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .expect("no error");
    assert!(stopped.is_none());
    assert_eq!(asked, 3, "nothing runs after the stop");

    let crops = AmgParams {
        crop_n_layers: 1,
        ..params()
    };
    let err = generate_with(&sam, AmgSource::Embedding(&embedding), &crops, &mut || {
        ControlFlow::Continue(())
    })
    .expect_err("crops need the image");
    assert!(err.to_string().contains("crop_n_layers"), "{err}");
}

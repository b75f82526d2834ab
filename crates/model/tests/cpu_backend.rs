//! The fused CPU kernels against the candle tensor-op implementation, on seeded weights.

mod common;

use candle_core::Device;
use mobilesam_model::image::{Preprocessed, IMAGE_SIZE};
use mobilesam_model::{Backend, Sam};

/// Stage name, channels-last values, (height, width, channels).
type Stage = (String, Vec<f32>, (usize, usize, usize));

#[test]
fn encoder_matches_tensor_ops() {
    let checkpoint = common::seeded_checkpoint();
    let fast = Sam::with_backend(&checkpoint, &Device::Cpu, Backend::Fused).expect("fused");
    let reference = Sam::with_backend(&checkpoint, &Device::Cpu, Backend::Candle).expect("candle");
    assert_eq!(
        (fast.backend(), reference.backend()),
        (Backend::Fused, Backend::Candle)
    );
    // A smooth image with some texture, zero padding at the bottom as preprocessing leaves.
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    let pixels = (0..3 * plane)
        .map(|i| {
            let row = (i % plane) / IMAGE_SIZE;
            if row < 900 {
                (i as f32 * 0.0007).sin()
            } else {
                0.0
            }
        })
        .collect();
    let input = Preprocessed {
        pixels,
        original_size: (900, 1024),
        input_size: (900, 1024),
    };
    let mut fast_stages: Vec<Stage> = Vec::new();
    let fast_out = fast
        .embed_observed(&input, &mut |name, v, shape| {
            fast_stages.push((name.to_string(), v.to_vec(), shape))
        })
        .expect("fast forward");
    let mut ref_stages: Vec<Stage> = Vec::new();
    let ref_out = reference
        .embed_observed(&input, &mut |name, v, shape| {
            ref_stages.push((name.to_string(), v.to_vec(), shape))
        })
        .expect("reference forward");
    assert_eq!(fast_stages.len(), 5);
    assert_eq!(fast_stages.len(), ref_stages.len());
    for ((name, a, shape), (ref_name, b, ref_shape)) in fast_stages.iter().zip(&ref_stages) {
        assert_eq!(name, ref_name);
        assert_eq!(shape, ref_shape, "{name}");
        let err = common::relative_l2(a, b);
        eprintln!("{name}: relative L2 {err:.2e}");
        assert!(err < 1e-5, "{name}: relative L2 {err}");
    }
    let (a, b) = (
        fast_out.to_host_f32().expect("fused values"),
        ref_out.to_host_f32().expect("candle values"),
    );
    assert_eq!(a.len(), 256 * 64 * 64);
    let err = common::relative_l2(&a, &b);
    eprintln!("embedding: relative L2 {err:.2e}");
    assert!(err < 1e-5, "embedding: relative L2 {err}");
}

#[test]
fn decoder_matches_tensor_ops() {
    use mobilesam_model::{BoxPrompt, ObjectPrompt, Point};
    let checkpoint = common::seeded_checkpoint();
    let fast = Sam::with_backend(&checkpoint, &Device::Cpu, Backend::Fused).expect("fused");
    let reference = Sam::with_backend(&checkpoint, &Device::Cpu, Backend::Candle).expect("candle");
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 253) as u8])
    });
    let embedding = fast.embed(&image).expect("embeds");
    let point = |x: f32, y: f32, label: i32| Point { x, y, label };
    let mut objects = vec![
        ObjectPrompt {
            points: vec![point(320.0, 240.0, 1)],
            ..ObjectPrompt::default()
        },
        ObjectPrompt {
            points: vec![point(100.0, 50.0, 1), point(400.0, 300.0, 0)],
            bbox: Some(BoxPrompt {
                x1: 50.0,
                y1: 20.0,
                x2: 500.0,
                y2: 400.0,
            }),
            ..ObjectPrompt::default()
        },
    ];
    for multimask in [false, true] {
        let ours = fast
            .decode_raw(&embedding, &objects, multimask)
            .expect("fast");
        let theirs = reference
            .decode_raw(&embedding, &objects, multimask)
            .expect("reference");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a.low_res_logits.len(), b.low_res_logits.len());
            for (x, y) in a.low_res_logits.iter().zip(&b.low_res_logits) {
                let err = common::relative_l2(x, y);
                eprintln!("multimask {multimask}: logits relative L2 {err:.2e}");
                assert!(err < 1e-4, "logits relative L2 {err}");
            }
            for (x, y) in a.scores.iter().zip(&b.scores) {
                assert!((x - y).abs() < 1e-4, "score {x} vs {y}");
            }
        }
    }
    // A previous mask as input.
    let previous = fast
        .decode_raw(&embedding, &objects[..1], false)
        .expect("first pass");
    objects[0].mask_input = Some(previous[0].low_res_logits[0].clone());
    let ours = fast
        .decode_raw(&embedding, &objects[..1], false)
        .expect("fast");
    let theirs = reference
        .decode_raw(&embedding, &objects[..1], false)
        .expect("reference");
    let err = common::relative_l2(&ours[0].low_res_logits[0], &theirs[0].low_res_logits[0]);
    eprintln!("mask input: logits relative L2 {err:.2e}");
    assert!(err < 1e-4, "mask input: logits relative L2 {err}");

    // Embeddings of two images decoded in turn: nothing of one leaks into the other.
    objects[0].mask_input = None;
    let first = fast
        .decode_raw(&embedding, &objects[..1], false)
        .expect("first image");
    let other_image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([
            ((x * 3) % 256) as u8,
            ((x + y) % 256) as u8,
            (y % 199) as u8,
        ])
    });
    let other = fast.embed(&other_image).expect("embeds");
    let ours = fast
        .decode_raw(&other, &objects[..1], false)
        .expect("fast, second image");
    let theirs = reference
        .decode_raw(&other, &objects[..1], false)
        .expect("reference, second image");
    let err = common::relative_l2(&ours[0].low_res_logits[0], &theirs[0].low_res_logits[0]);
    assert!(err < 1e-4, "second image: logits relative L2 {err}");
    let again = fast
        .decode_raw(&embedding, &objects[..1], false)
        .expect("first image again");
    assert_eq!(again[0].low_res_logits, first[0].low_res_logits);
}

#[test]
fn encoder_buffers_are_kept_and_released() {
    let sam = common::seeded_sam();
    let image = image::RgbImage::from_pixel(64, 48, image::Rgb([120, 80, 40]));
    assert_eq!(sam.encoder_buffer_bytes(), 0);
    let first = sam.embed(&image).expect("embeds");
    let kept = sam.encoder_buffer_bytes();
    eprintln!("activation buffers kept: {} MB", kept >> 20);
    assert!(kept > 0);
    sam.release_encoder_buffers();
    assert_eq!(sam.encoder_buffer_bytes(), 0);
    let second = sam.embed(&image).expect("embeds again");
    let a = first.to_host_f32().expect("values");
    let b = second.to_host_f32().expect("values");
    assert_eq!(a, b, "reused buffers give the same embedding");
}

#[test]
fn cropped_decoding_gives_the_same_masks() {
    use mobilesam_model::masks::low_res_extent;
    use mobilesam_model::{DecodeOptions, ObjectPrompt, Point};
    let checkpoint = common::seeded_checkpoint();
    let sam = Sam::from_checkpoint(&checkpoint, &Device::Cpu).expect("model");
    // Landscape, portrait and an odd size: the crop drops low-resolution rows, columns, both.
    for (w, h) in [(640u32, 360u32), (300, 533), (517, 389)] {
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x * y) % 253) as u8])
        });
        let embedding = sam.embed(&image).expect("embeds");
        let (rows, cols) = low_res_extent(embedding.input_size);
        assert!(rows < 256 || cols < 256, "{w}x{h}: nothing to crop");
        let objects = [ObjectPrompt {
            points: vec![Point {
                x: w as f32 * 0.4,
                y: h as f32 * 0.6,
                label: 1,
            }],
            ..ObjectPrompt::default()
        }];
        for multimask in [false, true] {
            let decode = |return_low_res_logits| {
                let options = DecodeOptions {
                    multimask,
                    return_low_res_logits,
                    return_polygons: false,
                };
                sam.decode(&embedding, &objects, options).expect("decodes")
            };
            // Asking for the low-resolution logits computes the whole map.
            let (cropped, full) = (decode(false), decode(true));
            for (a, b) in cropped[0].masks.iter().zip(&full[0].masks) {
                assert_eq!(a.rle, b.rle, "{w}x{h} multimask {multimask}");
                assert_eq!((a.area, a.bbox, a.score), (b.area, b.bbox, b.score));
                assert!(a.low_res_logits.is_none());
                let logits = b.low_res_logits.as_ref().expect("asked for");
                assert!(logits[255 * 256 + 255] != 0.0, "the full map is computed");
            }
        }
    }
}

/// Background work can pause between the fused paths' steps: an encode reaches a yield
/// point before every step (tens per image), a decode before each of its steps, and only
/// on the thread that installed the hook.
#[test]
fn the_fused_paths_reach_yield_points_between_steps() {
    use mobilesam_kernels::yield_point;
    use mobilesam_model::{ObjectPrompt, Point};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let checkpoint = common::seeded_checkpoint();
    let sam = Sam::from_checkpoint(&checkpoint, &Device::Cpu).expect("model");
    let image = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([x as u8, y as u8, 7]));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    yield_point::install_on_this_thread(Some(Arc::new(move || {
        counted.fetch_add(1, Ordering::Relaxed);
    })));
    let embedding = sam.embed(&image).expect("embeds");
    let encode_points = calls.swap(0, Ordering::Relaxed);
    let object = ObjectPrompt {
        points: vec![Point {
            x: 100.0,
            y: 100.0,
            label: 1,
        }],
        ..ObjectPrompt::default()
    };
    sam.decode(&embedding, &[object], Default::default())
        .expect("decodes");
    let decode_points = calls.swap(0, Ordering::Relaxed);
    yield_point::install_on_this_thread(None);
    eprintln!("yield points: encode {encode_points}, decode {decode_points}");
    // TinyViT: 2 MBConv blocks, 10 attention blocks of 5 steps, 3 downsamplings, the neck.
    assert!(
        encode_points >= 55,
        "encode reached {encode_points} yield points"
    );
    assert!(
        decode_points >= 3,
        "decode reached {decode_points} yield points"
    );
}

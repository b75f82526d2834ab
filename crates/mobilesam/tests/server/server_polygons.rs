//! `Prompt.return_polygons`: every mask comes with every region and its holes as outlines on
//! pixel corners, on the stream and from the unary `Predict`. They are exactly what
//! `masks::regions::mask_regions` (the code `annotate` shares) gives for the answered RLE,
//! and rasterised with the even-odd rule they cover the mask. Without the flag no polygons
//! are sent.

use crate::server_support;

use mobilesam_model::masks::polygon::{rasterize, DEFAULT_EPSILON};
use mobilesam_model::masks::regions::mask_regions;
use mobilesam_model::masks::{BinaryMask, Rle};
use mobilesam_proto::v1;
use server_support::{masks, png, ready, Server, Stream};

fn prompt(request_id: u64, return_polygons: bool) -> v1::Prompt {
    v1::Prompt {
        request_id,
        objects: vec![
            v1::ObjectPrompt {
                points: vec![v1::Point {
                    x: 20.0,
                    y: 20.0,
                    label: 1,
                }],
                ..Default::default()
            },
            v1::ObjectPrompt {
                r#box: Some(v1::Box {
                    x1: 4.0,
                    y1: 6.0,
                    x2: 50.0,
                    y2: 40.0,
                }),
                ..Default::default()
            },
        ],
        multimask_output: true,
        return_polygons,
        ..Default::default()
    }
}

/// The answered polygons are the regions of the answered mask, region then holes, and
/// cover it; returns how many masks had more than one ring.
fn check(mask: &v1::Mask) -> usize {
    let rle = mask.rle.as_ref().expect("rle");
    let binary = BinaryMask::from_rle(&Rle {
        size: [rle.size[0], rle.size[1]],
        counts: rle.counts.clone(),
    })
    .expect("rle decodes");
    let expected: Vec<(Vec<f32>, bool)> =
        mask_regions(&binary.data, binary.height, binary.width, DEFAULT_EPSILON)
            .into_iter()
            .flat_map(|r| {
                std::iter::once((r.outline, false)).chain(r.holes.into_iter().map(|h| (h, true)))
            })
            .map(|(ring, hole)| {
                (
                    ring.iter()
                        .flat_map(|&[x, y]| [x as f32, y as f32])
                        .collect(),
                    hole,
                )
            })
            .collect();
    let got: Vec<(Vec<f32>, bool)> = mask
        .polygons
        .iter()
        .map(|p| (p.points.clone(), p.hole))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(mask.area == 0, got.is_empty());
    if mask.area > 0 {
        assert!(!got[0].1, "the first polygon is a region, not a hole");
        // Even-odd over every ring: the (simplified) outlines cover the mask.
        let mut covered = vec![0u8; binary.data.len()];
        for (points, _) in &got {
            let ring: Vec<[f64; 2]> = points
                .chunks_exact(2)
                .map(|p| [f64::from(p[0]), f64::from(p[1])])
                .collect();
            for (c, v) in covered
                .iter_mut()
                .zip(rasterize(&ring, binary.height, binary.width))
            {
                *c ^= v;
            }
        }
        let both = covered
            .iter()
            .zip(&binary.data)
            .filter(|(c, m)| **c & **m != 0)
            .count();
        let either = covered
            .iter()
            .zip(&binary.data)
            .filter(|(c, m)| **c | **m != 0)
            .count();
        let iou = both as f64 / either as f64;
        assert!(iou > 0.9, "IoU of polygons and mask {iou}");
    }
    usize::from(got.len() > 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polygons_come_with_masks_when_asked_for() {
    let server = Server::start(&[]).await;
    let mut client = server.client().await;
    let mut stream = Stream::open(&mut client).await;
    let session = ready(stream.set_image(png(64, 48, 3)).await).session_id;

    let plain = masks(stream.ask(prompt(1, false)).await);
    assert!(plain
        .objects
        .iter()
        .flat_map(|o| &o.masks)
        .all(|m| m.polygons.is_empty()));

    let streamed = masks(stream.ask(prompt(2, true)).await);
    let unary = client
        .predict(v1::PredictRequest {
            session_id: session.clone(),
            prompt: Some(prompt(3, true)),
        })
        .await
        .expect("predict")
        .into_inner();
    let mut checked = 0;
    for answer in [&streamed, &unary] {
        for mask in answer.objects.iter().flat_map(|o| &o.masks) {
            check(mask);
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * 2 * 3, "two objects, three masks each, twice");
    // Both transports answer the same polygons.
    let rings = |m: &v1::Masks| -> Vec<Vec<v1::Polygon>> {
        m.objects
            .iter()
            .flat_map(|o| o.masks.iter().map(|mask| mask.polygons.clone()))
            .collect()
    };
    assert_eq!(rings(&streamed), rings(&unary));
}

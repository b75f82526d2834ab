//! The prompt-case fixtures of the parity tests (MobileSAM's `tests/fixtures/reference/`,
//! SAM ViT's `tests/fixtures/sam/reference/`): their format, and the check that decodes every
//! case again and compares embedding, masks and scores with the reference.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use mobilesam_model::image::read_image;
use mobilesam_model::masks::{BinaryMask, Rle};
use mobilesam_model::prompt_json::from_values;
use mobilesam_model::{DecodeOptions, ObjectMasks, Sam};
use serde::Deserialize;
use serde_json::Value;

/// One image's fixture: the image, its sizes, the embedding sample and the prompt cases.
#[derive(Deserialize)]
pub struct Fixture {
    pub image: String,
    pub width: usize,
    pub height: usize,
    pub input_size: [usize; 2],
    /// SAM 2's fixtures call it `image_embed_sub4` (taken after `no_mem_embed`).
    #[serde(alias = "image_embed_sub4")]
    pub embedding_sub4: String,
    pub cases: Vec<Case>,
}

/// One prompt case and the reference's answer.
#[derive(Deserialize)]
pub struct Case {
    pub name: String,
    pub points: Option<Value>,
    pub labels: Option<Value>,
    pub bboxes: Option<Value>,
    pub multimask: bool,
    pub mask_input_from: Option<MaskSource>,
    pub objects: Vec<RefObject>,
}

/// Where a case takes its mask input from: an earlier case's object and mask.
#[derive(Deserialize)]
pub struct MaskSource {
    pub case: String,
    pub object: usize,
    pub mask: usize,
}

/// The reference's masks of one object.
#[derive(Deserialize)]
pub struct RefObject {
    pub masks: Vec<RefMask>,
}

/// One reference mask.
#[derive(Deserialize)]
pub struct RefMask {
    pub score: f32,
    pub area: u64,
    pub rle: Rle,
}

/// The limits of one image.
pub struct Tolerance {
    pub embedding: f64,
    pub iou: f64,
    pub score: f32,
}

/// Reads a gzipped JSON fixture.
pub fn load_fixture(path: &Path) -> Fixture {
    let file = std::fs::File::open(path).expect("fixture present");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("gzip");
    serde_json::from_str(&text).expect("fixture parses")
}

/// Decodes every prompt case of `fixture` (image `stem`) with `sam` and checks it against
/// the reference: embedding relative L2 <= 1e-4 when the image's long side is already 1024,
/// <= 5e-3 when it is resized; mask IoU >= 0.995 / 0.99; predicted IoU within 1e-3 / 5e-3.
/// Prints the figures.
pub fn check_cases(sam: &Sam, fixture: &Fixture, stem: &str) {
    let dir = super::fixtures();
    let backend = sam.backend();
    let image = read_image(&dir.join(&fixture.image), u64::MAX).expect("image");
    assert_eq!(
        (image.width() as usize, image.height() as usize),
        (fixture.width, fixture.height)
    );
    let already_1024 = fixture.width.max(fixture.height) == 1024;
    let tol = if already_1024 {
        Tolerance {
            embedding: 1e-4,
            iou: 0.995,
            score: 1e-3,
        }
    } else {
        Tolerance {
            embedding: 5e-3,
            iou: 0.99,
            score: 5e-3,
        }
    };

    let embedding = sam.embed(&image).expect("embeds");
    assert_eq!(
        [embedding.input_size.0, embedding.input_size.1],
        fixture.input_size,
        "resized size"
    );
    let (shape, reference) = super::read_npy_f32(&dir.join(&fixture.embedding_sub4));
    assert_eq!(
        shape[1..],
        [16, 16],
        "the embedding sample is 16x16 per channel"
    );
    // Every 4th row and column of every channel, as the fixture keeps them.
    let ours: Vec<f32> = sam
        .decoder_image_embedding(&embedding)
        .expect("features")
        .chunks_exact(64)
        .enumerate()
        .filter(|(row, _)| row % 4 == 0)
        .flat_map(|(_, row)| row.iter().step_by(4).copied().collect::<Vec<_>>())
        .collect();
    let embedding_error = super::relative_l2(&ours, &reference);

    let mut decoded: HashMap<String, Vec<ObjectMasks>> = HashMap::new();
    let (mut min_iou, mut max_score_diff, mut masks_checked) = (1.0f64, 0.0f32, 0);
    let mut max_area_diff = 0.0f64;
    for case in &fixture.cases {
        let mut objects = from_values(
            case.points.as_ref(),
            case.labels.as_ref(),
            case.bboxes.as_ref(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if let Some(source) = &case.mask_input_from {
            let logits = decoded[&source.case][source.object].masks[source.mask]
                .low_res_logits
                .clone()
                .expect("logits kept");
            for object in &mut objects {
                object.mask_input = Some(logits.clone());
            }
        }
        let options = DecodeOptions {
            multimask: case.multimask,
            return_low_res_logits: true,
            return_polygons: false,
        };
        let result = sam.decode(&embedding, &objects, options).expect("decodes");
        assert_eq!(
            result.len(),
            case.objects.len(),
            "{}: object count",
            case.name
        );
        for (o, (ours, theirs)) in result.iter().zip(&case.objects).enumerate() {
            assert_eq!(
                ours.masks.len(),
                theirs.masks.len(),
                "{}: mask count",
                case.name
            );
            for (m, (a, b)) in ours.masks.iter().zip(&theirs.masks).enumerate() {
                let ours_mask = BinaryMask::from_rle(&a.rle).expect("our rle decodes");
                let ref_mask = BinaryMask::from_rle(&b.rle).expect("reference rle decodes");
                let iou = ours_mask.iou(&ref_mask);
                let score_diff = (a.score - b.score).abs();
                min_iou = min_iou.min(iou);
                max_score_diff = max_score_diff.max(score_diff);
                max_area_diff =
                    max_area_diff.max((a.area as f64 - b.area as f64).abs() / b.area.max(1) as f64);
                masks_checked += 1;
                assert!(
                    iou >= tol.iou,
                    "{stem}/{}: object {o} mask {m}: IoU {iou} < {}",
                    case.name,
                    tol.iou
                );
                assert!(
                    score_diff <= tol.score,
                    "{stem}/{}: object {o} mask {m}: score {} vs reference {}",
                    case.name,
                    a.score,
                    b.score
                );
            }
        }
        decoded.insert(case.name.clone(), result);
    }
    eprintln!(
        "parity {stem} ({backend}): embedding rel L2 {embedding_error:.2e} (limit {:.0e}), {masks_checked} masks, min IoU {min_iou:.6}, max score diff {max_score_diff:.2e}, max rel area diff {max_area_diff:.2e}",
        tol.embedding
    );
    assert!(
        embedding_error <= tol.embedding,
        "{stem}: embedding relative L2 error {embedding_error} > {}",
        tol.embedding
    );
}

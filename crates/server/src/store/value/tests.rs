//! The value format: both precisions, SAM 2's high-resolution levels, version 1 values,
//! and everything that must be a miss.

use super::*;
use mobilesam_checkpoint::digest::sha256_hex;

fn model() -> ModelId {
    ModelId {
        checkpoint_sha256: sha256_hex(b"weights"),
        preprocess_version: 1,
    }
}

fn ramp(n: usize, k: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * k) % 977) as f32 - 488.0) * 0.013)
        .collect()
}

/// A 256-channel embedding without high-resolution levels (MobileSAM, SAM ViT).
fn sample() -> HostEmbedding {
    let [n, _, _] = HostEmbedding::expected_lengths(EMBED_CHANNELS);
    HostEmbedding {
        channels: EMBED_CHANNELS,
        values: ramp(n, 1),
        high_res: None,
        original_size: (48, 64),
        input_size: (768, 1024),
    }
}

/// A reduced SAM 2 embedding: 64 channels and both high-resolution levels.
fn sam2_sample() -> HostEmbedding {
    let [n, n0, n1] = HostEmbedding::expected_lengths(64);
    HostEmbedding {
        channels: 64,
        values: ramp(n, 1),
        high_res: Some([ramp(n0, 3), ramp(n1, 7)]),
        original_size: (48, 64),
        input_size: (1024, 1024),
    }
}

/// `host` in version 1's layout, as servers before version 2 wrote it.
fn encode_v1(host: &HostEmbedding, model: &ModelId, image: &str) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION_1.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&model.preprocess_version.to_le_bytes());
    out.extend_from_slice(&fixed_hex(&model.checkpoint_sha256));
    out.extend_from_slice(&fixed_hex(image));
    let (oh, ow) = host.original_size;
    let (ih, iw) = host.input_size;
    for n in [oh, ow, ih, iw, host.values.len()] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    host.values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

#[test]
fn f32_round_trip_is_exact() {
    let image = sha256_hex(b"image");
    let bytes = encode(&sample(), &model(), &image, StoreDtype::F32);
    assert_eq!(bytes.len(), HEADER_LEN + sample().values.len() * 4);
    assert_eq!(decode(&bytes, &model(), &image), Ok(sample()));
}

#[test]
fn sam2_high_res_levels_round_trip() {
    let image = sha256_hex(b"image");
    let host = sam2_sample();
    let [n, n0, n1] = HostEmbedding::expected_lengths(64);
    let bytes = encode(&host, &model(), &image, StoreDtype::F32);
    assert_eq!(bytes.len(), HEADER_LEN + (n + n0 + n1) * 4);
    assert_eq!(decode(&bytes, &model(), &image), Ok(host.clone()));

    let half = encode(&host, &model(), &image, StoreDtype::F16);
    assert_eq!(half.len(), HEADER_LEN + (n + n0 + n1) * 2);
    let back = decode(&half, &model(), &image).expect("decodes f16");
    assert_eq!(back.channels, 64);
    let (Some(ours), Some(theirs)) = (&host.high_res, &back.high_res) else {
        panic!("high-resolution levels kept: {:?}", back.high_res.is_some());
    };
    for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
        assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-4, "{a} vs {b}");
    }
}

#[test]
fn version_1_values_still_read() {
    let image = sha256_hex(b"image");
    let bytes = encode_v1(&sample(), &model(), &image);
    assert_eq!(bytes.len(), HEADER_LEN_V1 + sample().values.len() * 4);
    assert_eq!(decode(&bytes, &model(), &image), Ok(sample()));
    // Version 1 only ever held 256 channels.
    let mut short = sample();
    short.values.truncate(64 * 64 * 64);
    let bytes = encode_v1(&short, &model(), &image);
    assert_eq!(decode(&bytes, &model(), &image), Err(BadValue::Sizes));
}

#[test]
fn f16_round_trip_is_close_and_half_the_size() {
    let image = sha256_hex(b"image");
    let bytes = encode(&sample(), &model(), &image, StoreDtype::F16);
    assert_eq!(bytes.len(), HEADER_LEN + sample().values.len() * 2);
    let back = decode(&bytes, &model(), &image).expect("decodes");
    assert_eq!(back.original_size, (48, 64));
    for (a, b) in sample().values.iter().zip(&back.values) {
        assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-4, "{a} vs {b}");
    }
}

#[test]
fn foreign_values_are_refused() {
    let image = sha256_hex(b"image");
    let good = encode(&sample(), &model(), &image, StoreDtype::F32);
    // Another checkpoint, another preprocessing, another image.
    let other = ModelId {
        checkpoint_sha256: sha256_hex(b"other weights"),
        ..model()
    };
    assert_eq!(decode(&good, &other, &image), Err(BadValue::Model));
    let newer = ModelId {
        preprocess_version: 2,
        ..model()
    };
    assert_eq!(decode(&good, &newer, &image), Err(BadValue::Model));
    assert_eq!(
        decode(&good, &model(), &sha256_hex(b"x")),
        Err(BadValue::Image)
    );
    // Garbage, truncation, a bad magic, an unknown version, a bad dtype, unknown flags.
    assert_eq!(decode(b"garbage", &model(), &image), Err(BadValue::Size(7)));
    assert!(matches!(
        decode(&good[..good.len() - 1], &model(), &image),
        Err(BadValue::Size(_))
    ));
    for (at, byte) in [(0, b'X'), (8, 3), (10, 9), (11, 2)] {
        let mut bad = good.clone();
        bad[at] = byte;
        assert_eq!(
            decode(&bad, &model(), &image),
            Err(BadValue::Format),
            "{at}"
        );
    }
    // Impossible sizes, a NaN.
    let mut odd = sample();
    odd.input_size = (2000, 1024);
    let bad = encode(&odd, &model(), &image, StoreDtype::F32);
    assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Sizes));
    let mut nan = sample();
    nan.values[5] = f32::NAN;
    let bad = encode(&nan, &model(), &image, StoreDtype::F32);
    assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Format));
}

#[test]
fn counts_that_do_not_fit_the_channels_are_refused() {
    let image = sha256_hex(b"image");
    // Channels that are not a multiple of 8, or absurdly many.
    for channels in [0, 12, MAX_CHANNELS + 8] {
        let mut host = sample();
        host.channels = channels;
        let bytes = encode(&host, &model(), &image, StoreDtype::F32);
        assert_eq!(decode(&bytes, &model(), &image), Err(BadValue::Sizes));
    }
    // A level cut short, and the high-resolution flag without the levels.
    let mut host = sam2_sample();
    if let Some(levels) = host.high_res.as_mut() {
        levels[0].pop();
    }
    let bytes = encode(&host, &model(), &image, StoreDtype::F32);
    assert_eq!(decode(&bytes, &model(), &image), Err(BadValue::Sizes));
    let mut bytes = encode(&sample(), &model(), &image, StoreDtype::F32);
    bytes[11] = 1;
    assert_eq!(decode(&bytes, &model(), &image), Err(BadValue::Sizes));
}

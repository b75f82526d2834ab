//! Faults on demand, for the fault tests that drive the real server binary. Compiled into
//! debug builds only (the test builds); a release build ignores the variables below, so a
//! production server cannot be made to misbehave through its environment.
//!
//! Read once at start ([`init`]); the server logs a warning naming each active fault.
//!
//! | variable | effect |
//! |---|---|
//! | `MOBILESAM_TEST_PANIC_ON_IMAGE_WIDTH=N` | an encode of an image N pixels wide panics |
//! | `MOBILESAM_TEST_STUB_ENCODER=1` | encodes skip the image encoder and return a filled embedding of the real size |
//! | `MOBILESAM_TEST_ENCODE_DELAY_MS=N` | each encode first sleeps N ms (a slow encoder, for cancellation tests) |
//! | `MOBILESAM_TEST_DECODE_DELAY_MS=N` | each prompt decode first sleeps N ms (a slow decoder, for the supersede tests) |
//!
//! The stub encoder makes thousands of sessions cheap (the session-cache test), while each
//! session still holds a real, touched 4 MiB embedding, so memory figures stay honest.

use std::sync::OnceLock;

use tracing::warn;

/// Variable naming the image width whose encode panics.
pub const PANIC_ON_IMAGE_WIDTH: &str = "MOBILESAM_TEST_PANIC_ON_IMAGE_WIDTH";
/// Variable that replaces the image encoder by a stub.
pub const STUB_ENCODER: &str = "MOBILESAM_TEST_STUB_ENCODER";
/// Variable naming a delay before each encode, in milliseconds.
pub const ENCODE_DELAY_MS: &str = "MOBILESAM_TEST_ENCODE_DELAY_MS";
/// Variable naming a delay before each prompt decode, in milliseconds.
pub const DECODE_DELAY_MS: &str = "MOBILESAM_TEST_DECODE_DELAY_MS";

/// The faults this process injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Panic while encoding an image of this width.
    pub panic_on_image_width: Option<u32>,
    /// Skip the image encoder.
    pub stub_encoder: bool,
    /// Sleep this long before each encode.
    pub encode_delay_ms: u64,
    /// Sleep this long before each prompt decode.
    pub decode_delay_ms: u64,
}

static FAULTS: OnceLock<Faults> = OnceLock::new();

/// Reads the variables (debug builds only) and logs the active faults. Later calls keep
/// the first answer.
pub fn init() -> Faults {
    *FAULTS.get_or_init(|| {
        let faults = from_env();
        if faults != Faults::default() {
            warn!(
                ?faults,
                "fault injection is on (debug build, test variables set)"
            );
        }
        faults
    })
}

/// The active faults (none before [`init`]).
pub fn active() -> Faults {
    FAULTS.get().copied().unwrap_or_default()
}

#[cfg(debug_assertions)]
fn from_env() -> Faults {
    Faults {
        panic_on_image_width: std::env::var(PANIC_ON_IMAGE_WIDTH)
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        stub_encoder: std::env::var(STUB_ENCODER).is_ok_and(|v| v.trim() == "1"),
        encode_delay_ms: std::env::var(ENCODE_DELAY_MS)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        decode_delay_ms: std::env::var(DECODE_DELAY_MS)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
    }
}

#[cfg(not(debug_assertions))]
fn from_env() -> Faults {
    Faults::default()
}

/// Runs the decode fault: sleeps the chosen delay.
pub fn decode() {
    let delay = active().decode_delay_ms;
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay));
    }
}

/// Runs the encode faults for a decoded `width` x `height` image: sleeps the chosen
/// delay, panics when its width is the chosen one; returns the stub embedding when the
/// stub encoder is on, `None` to run the real encoder.
pub fn encode(
    sam: &mobilesam_model::Sam,
    width: u32,
    height: u32,
) -> Option<mobilesam_model::Result<mobilesam_model::Embedding>> {
    let faults = active();
    if faults.encode_delay_ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(faults.encode_delay_ms));
    }
    if faults.panic_on_image_width == Some(width) {
        panic!("injected fault: the encode of a {width}-pixel-wide image panics");
    }
    faults
        .stub_encoder
        .then(|| stub_embedding(sam, width, height))
}

/// An embedding of the real shape for `sam`'s family (its channels, SAM 2's
/// high-resolution levels), filled (so its pages are really in memory), with the sizes the
/// real encoder would report.
fn stub_embedding(
    sam: &mobilesam_model::Sam,
    width: u32,
    height: u32,
) -> mobilesam_model::Result<mobilesam_model::Embedding> {
    use mobilesam_model::{Embedding, HostEmbedding};
    let channels = sam.embedding_channels();
    let [image, s0, s1] = HostEmbedding::expected_lengths(channels);
    let original_size = (height as usize, width as usize);
    let host = HostEmbedding {
        channels,
        values: vec![0.25f32; image],
        high_res: matches!(sam.family(), mobilesam_model::Family::Sam2(_))
            .then(|| [vec![0.25f32; s0], vec![0.25f32; s1]]),
        original_size,
        input_size: sam.input_size(original_size.0, original_size.1),
    };
    Embedding::from_host(host, sam.device())
}

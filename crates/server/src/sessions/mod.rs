//! Sessions: an image's embedding under a session id, for every prompt that follows.
//!
//! - [`open`]: what both transports call to open, resume and close a session, finding the
//!   embedding in the cheapest place (this replica, the shared store, else an encode),
//!   and to prefetch an image (encoded in the background, no session opened);
//! - [`cache`]: this replica's sessions (TTL, count and memory bounds, eviction);
//! - [`content`]: this replica's embeddings by image SHA-256;
//! - [`image`]: what the cache keeps per session.
//!
//! The shared store on Redis is [`crate::store`]; tracking state per object is
//! [`crate::tracking`].

pub mod cache;
pub mod content;
pub mod image;
pub mod open;

pub use image::SessionImage;
pub use open::{
    close, open, open_digest, open_image, prefetch, prefetch_key, request_kind, resume,
    session_not_found, Opened,
};

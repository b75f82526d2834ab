//! The lanes' identity: which kind of work a queue, a worker or a metric belongs to.

/// One lane of work, each with its own queue, workers, kernel pool and OS priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Image encodes (heavy).
    Encode,
    /// Prompt decodes (light, latency-critical).
    Decode,
    /// Mask generations (background).
    Generate,
}

impl Lane {
    /// The lane's name, as the `queue` and `lane` metric labels and log fields spell it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Encode => "encode",
            Self::Decode => "decode",
            Self::Generate => "generate",
        }
    }
}

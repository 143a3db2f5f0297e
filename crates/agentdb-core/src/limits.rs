//! Size limits on what an episode may hold.

/// Limits applied when an episode is validated. The defaults are the documented limits of the
/// system; a deployment may lower them, never raise them past what the wire frame allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest task, input, output or critique, in bytes of UTF-8. Default 64 KiB.
    pub max_text_bytes: usize,
    /// Largest whole episode (texts, tags, metadata, embedding), in bytes. Default 1 MiB.
    pub max_episode_bytes: usize,
    /// Most tags on one episode. Default 64.
    pub max_tags: usize,
    /// Longest tag, in bytes. Default 128.
    pub max_tag_bytes: usize,
    /// Largest metadata object, as compact JSON, in bytes. Default 64 KiB.
    pub max_metadata_bytes: usize,
    /// Most dimensions of a caller-supplied embedding. Default 4096.
    pub max_dimensions: usize,
}

impl Limits {
    /// The documented defaults.
    pub const DEFAULT: Limits = Limits {
        max_text_bytes: 64 * 1024,
        max_episode_bytes: 1024 * 1024,
        max_tags: 64,
        max_tag_bytes: 128,
        max_metadata_bytes: 64 * 1024,
        max_dimensions: 4096,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

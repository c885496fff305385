//! Evaluation against references.
//!
//! - [`wer`]: word error rate (normaliser + alignment with S/D/I counts).
//! - [`transcript`]: reading references and hypotheses (STM, JSON lines, text).
//! - [`rttm`]: speaker segments for diarisation references.

pub mod rttm;
pub mod transcript;
pub mod wer;

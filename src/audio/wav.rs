//! Streaming WAV reader: PCM 8/16/24/32-bit integer or 32-bit float, and
//! G.711 μ-law or A-law (format tags 7 and 6, the usual call-recording
//! formats), 8-48 kHz, one or two channels, delivered a chunk at a time as
//! one `f32` buffer per leg.
//!
//! The whole file is never held in memory. Malformed files give a [`WavError`]
//! that names the file and the problem; a file whose data ends early yields the
//! frames before the cut and then [`WavError::Truncated`].

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::g711::Encoding;
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
    /// A WAV encoding callpulse does not decode (ADPCM, GSM, MP3, ...).
    #[error("'{path}' uses an unsupported WAV encoding ({detail}); callpulse reads PCM 8/16/24/32-bit integer, 32-bit float and 8-bit G.711 mu-law/A-law. Convert it first, e.g. `sox '{path}' -e signed-integer -b 16 out.wav`")]
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
    /// G.711 companding (8-bit μ-law or A-law samples), if any.
    pub g711: Option<Encoding>,
    /// Frames the header declares.
    pub frames: u64,
}

impl WavInfo {
    /// Declared duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames as f64 / self.sample_rate as f64
    }
}

/// Where the samples come from: hound for PCM, our own reader for G.711.
enum Backend {
    Pcm(hound::WavReader<BufReader<File>>),
    G711 {
        data: std::io::Take<BufReader<File>>,
        encoding: Encoding,
    },
}

/// A WAV file opened for chunked reading.
pub struct WavSource {
    path: PathBuf,
    reader: Backend,
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

/// What a G.711 WAV file's chunks say.
struct G711Layout {
    encoding: Encoding,
    channels: u16,
    rate: u32,
    /// Byte offset of the samples and their declared length.
    data: (u64, u64),
}

/// Walk the RIFF chunks of a G.711 file (format tag 6 or 7) for its `fmt `
/// and `data` chunks.
fn g711_layout(path: &Path, file: &mut File) -> Result<G711Layout, WavError> {
    let not_wav = |reason: String| WavError::NotWav {
        path: path.to_path_buf(),
        reason,
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = [0u8; 12];
    file.read_exact(&mut head)
        .map_err(|_| not_wav("the RIFF header is cut short".into()))?;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    let mut pos = 12u64;
    while pos + 8 <= len {
        let mut ch = [0u8; 8];
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.read_exact(&mut ch))
            .map_err(|e| not_wav(format!("cannot read the chunk at byte {pos}: {e}")))?;
        let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as u64;
        match &ch[..4] {
            b"fmt " => {
                if size < 16 {
                    return Err(not_wav(format!("a fmt chunk of {size} bytes")));
                }
                let mut f = [0u8; 16];
                file.read_exact(&mut f)
                    .map_err(|_| not_wav("the fmt chunk is cut short".into()))?;
                let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
                let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
                fmt = Some((u16_at(0), u16_at(2), rate, u16_at(14)));
            }
            b"data" => {
                let (tag, channels, rate, bits) =
                    fmt.ok_or_else(|| not_wav("the data chunk comes before the fmt chunk".into()))?;
                if bits != 8 {
                    return Err(WavError::UnsupportedEncoding {
                        path: path.to_path_buf(),
                        detail: format!("G.711 with {bits} bits per sample (expected 8)"),
                    });
                }
                let encoding = if tag == 7 {
                    Encoding::Mulaw
                } else {
                    Encoding::Alaw
                };
                return Ok(G711Layout {
                    encoding,
                    channels,
                    rate,
                    data: (pos + 8, size),
                });
            }
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
    Err(not_wav("no data chunk".into()))
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
        let tag = sniff_format_tag(path);
        if matches!(tag, Some(6 | 7)) {
            return Self::open_g711(path, file);
        }
        if let Some(tag) = tag {
            if !matches!(tag, 1 | 3 | 0xFFFE) {
                let name = match tag {
                    2 => "Microsoft ADPCM",
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
        check_shape(path, spec.channels, spec.sample_rate)?;
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
                g711: None,
                frames,
            },
            reader: Backend::Pcm(reader),
            frames_read: 0,
            scale,
            pending_error: None,
            done: false,
            interleaved: Vec::new(),
        })
    }

    fn open_g711(path: &Path, mut file: File) -> Result<Self, WavError> {
        let l = g711_layout(path, &mut file)?;
        check_shape(path, l.channels, l.rate)?;
        let (offset, declared) = l.data;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| WavError::NotWav {
                path: path.to_path_buf(),
                reason: format!("cannot reach the data chunk: {e}"),
            })?;
        Ok(WavSource {
            path: path.to_path_buf(),
            info: WavInfo {
                sample_rate: l.rate,
                channels: l.channels,
                bits: 8,
                float: false,
                g711: Some(l.encoding),
                frames: declared / l.channels as u64,
            },
            reader: Backend::G711 {
                data: BufReader::with_capacity(1 << 16, file).take(declared),
                encoding: l.encoding,
            },
            frames_read: 0,
            scale: 1.0,
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
        let err = match &mut self.reader {
            Backend::Pcm(r) => {
                read_pcm(r, self.info.float, self.scale, want, &mut self.interleaved)
            }
            Backend::G711 { data, encoding } => {
                read_g711(data, *encoding, want, &mut self.interleaved)
            }
        };
        let frames = self.interleaved.len() / ch;
        for (i, v) in self.interleaved[..frames * ch].iter().enumerate() {
            legs[i % ch].push(*v);
        }
        self.frames_read += frames as u64;
        if let Some(e) = err {
            let e = match e {
                Fault::Short if self.frames_read < self.info.frames => WavError::Truncated {
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

/// Channels and rate within what callpulse takes.
fn check_shape(path: &Path, channels: u16, rate: u32) -> Result<(), WavError> {
    if channels == 0 {
        return Err(WavError::NotWav {
            path: path.to_path_buf(),
            reason: "the header declares 0 channels".into(),
        });
    }
    if channels > 2 {
        return Err(WavError::TooManyChannels {
            path: path.to_path_buf(),
            channels,
        });
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(WavError::BadSampleRate {
            path: path.to_path_buf(),
            rate,
        });
    }
    Ok(())
}

/// Why reading samples stopped early.
#[derive(Debug)]
enum Fault {
    /// The data ended before the header said it would.
    Short,
    /// Anything else.
    Other(String),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Short => write!(f, "unexpected end of data"),
            Fault::Other(m) => write!(f, "{m}"),
        }
    }
}

/// Up to `want` PCM samples through hound into `out`.
fn read_pcm(
    r: &mut hound::WavReader<BufReader<File>>,
    float: bool,
    scale: f32,
    want: usize,
    out: &mut Vec<f32>,
) -> Option<Fault> {
    let fault = |e: hound::Error| {
        // hound reports a short read as UnexpectedEof or as "Failed to read enough bytes".
        let short = match &e {
            hound::Error::IoError(io) => {
                io.kind() == std::io::ErrorKind::UnexpectedEof
                    || io.to_string().contains("enough bytes")
            }
            hound::Error::FormatError(m) => m.contains("enough bytes"),
            _ => false,
        };
        if short {
            Fault::Short
        } else {
            Fault::Other(e.to_string())
        }
    };
    if float {
        for s in r.samples::<f32>().take(want) {
            match s {
                Ok(v) => out.push(if v.is_finite() { v } else { 0.0 }),
                Err(e) => return Some(fault(e)),
            }
        }
    } else {
        for s in r.samples::<i32>().take(want) {
            match s {
                Ok(v) => out.push(v as f32 * scale),
                Err(e) => return Some(fault(e)),
            }
        }
    }
    None
}

/// Up to `want` G.711 samples into `out`; `Short` when the data chunk ends
/// before its declared length.
fn read_g711(
    data: &mut std::io::Take<BufReader<File>>,
    encoding: Encoding,
    want: usize,
    out: &mut Vec<f32>,
) -> Option<Fault> {
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match data.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                encoding.decode(&buf[..got], out);
                return Some(Fault::Other(e.to_string()));
            }
        }
    }
    encoding.decode(&buf[..got], out);
    (got < want && data.limit() > 0).then_some(Fault::Short)
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

    /// Run sox; the tests that use it need it installed (`.ci/run` does).
    fn sox(args: &[&std::ffi::OsStr]) {
        let st = std::process::Command::new("sox")
            .args(args)
            .status()
            .expect("sox is needed for this test: apt-get install sox");
        assert!(st.success(), "sox {args:?}");
    }

    fn read_all(p: &Path) -> (WavInfo, Vec<Vec<f32>>) {
        let mut src = WavSource::open(p).unwrap();
        let info = src.info();
        let mut all = vec![Vec::new(); info.channels as usize];
        let mut legs = Vec::new();
        while src.read_chunk(1000, &mut legs).unwrap() > 0 {
            for (a, l) in all.iter_mut().zip(&legs) {
                a.extend_from_slice(l);
            }
        }
        (info, all)
    }

    #[test]
    fn g711_wav_files_made_by_sox_decode_like_sox() {
        // Regression: format tags 7 (mu-law) and 6 (A-law) were refused.
        let dir = tempfile::tempdir().unwrap();
        let pcm = dir.path().join("pcm.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&pcm, spec).unwrap();
        for i in 0..16_000 {
            let t = i as f32 / 8000.0;
            w.write_sample((9000.0 * (t * 440.0 * std::f32::consts::TAU).sin()) as i16)
                .unwrap();
            w.write_sample((3000.0 * (t * 97.0 * std::f32::consts::TAU).sin()) as i16)
                .unwrap();
        }
        w.finalize().unwrap();
        for (enc, tag) in [("u-law", Encoding::Mulaw), ("a-law", Encoding::Alaw)] {
            let g = dir.path().join(format!("{enc}.wav"));
            let back = dir.path().join(format!("{enc}-pcm.wav"));
            sox(&[pcm.as_os_str(), "-e".as_ref(), enc.as_ref(), g.as_os_str()]);
            sox(&[
                g.as_os_str(),
                "-e".as_ref(),
                "signed-integer".as_ref(),
                "-b".as_ref(),
                "16".as_ref(),
                back.as_os_str(),
            ]);
            assert!(matches!(sniff_format_tag(&g), Some(6 | 7)));
            let (info, ours) = read_all(&g);
            assert_eq!(info.g711, Some(tag));
            assert_eq!(
                (info.channels, info.sample_rate, info.frames),
                (2, 8000, 16_000)
            );
            let (_, theirs) = read_all(&back);
            assert_eq!(ours, theirs, "{enc}: our decode differs from sox's");
        }
    }

    #[test]
    fn truncated_g711_yields_good_frames_then_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
        v.extend_from_slice(&18u32.to_le_bytes());
        for x in [7u16, 1] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend_from_slice(&8000u32.to_le_bytes());
        for x in [1u16, 8, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.extend_from_slice(b"data");
        v.extend_from_slice(&8000u32.to_le_bytes());
        v.extend(std::iter::repeat_n(0xFFu8, 3000));
        let p = dir.path().join("cut.wav");
        std::fs::write(&p, v).unwrap();
        let mut src = WavSource::open(&p).unwrap();
        assert_eq!(src.info().frames, 8000);
        let mut legs = Vec::new();
        let mut good = 0;
        let err = loop {
            match src.read_chunk(1024, &mut legs) {
                Ok(0) => panic!("truncation not reported"),
                Ok(n) => good += n,
                Err(e) => break e,
            }
        };
        assert_eq!(good, 3000);
        assert!(
            matches!(err, WavError::Truncated { read: 3000, .. }),
            "{err}"
        );
        // 0xFF is mu-law zero.
        assert!(legs.iter().all(|l| l.is_empty()));
    }
}

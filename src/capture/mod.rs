//! Capture: where audio enters the pipeline.
//!
//! Every source writes interleaved `f32` frames into one single-producer,
//! single-consumer ring ([`rtrb`]), which the pipeline's resample stage
//! drains. Two policies when the ring is full:
//!
//! - **backpressure** (files, stdin): the source waits for space, so nothing
//!   is dropped and a fast source is slowed to the pipeline's pace;
//! - **live** (paced replay, microphone): the source never waits; frames that
//!   do not fit are dropped and counted in [`CaptureShared::dropped`].
//!
//! The microphone callback ([`mic`]) runs on the audio driver's thread: it
//! only converts samples into ring slots that are already allocated, updates
//! two atomic counters, and returns. No allocation, lock or blocking call.
//!
//! The end of input is signalled by dropping the producer (the ring's
//! consumer then sees it abandoned once it has drained it).

pub mod mic;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtrb::Producer;

use crate::audio::g711::Encoding;
use crate::audio::wav::{WavError, WavSource};
use crate::audio::{MAX_RATE, MIN_RATE};

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A WAV file problem.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// A bad parameter (rate, channels, speed).
    #[error("{0}")]
    Invalid(String),
    /// The audio device could not be opened.
    #[error("audio device: {0}")]
    Device(String),
}

/// What a source delivers.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// Frames per second.
    pub rate: u32,
    /// Channels per frame (one leg each).
    pub channels: u16,
    /// Length, when known (one pass of a file).
    pub duration_s: Option<f64>,
    /// Live pacing: the source never waits for the pipeline.
    pub live: bool,
    /// A short description for logs.
    pub label: String,
}

/// Counters a running source shares with the pipeline.
#[derive(Debug, Default)]
pub struct CaptureShared {
    /// Frames written into the ring.
    pub frames: AtomicU64,
    /// Frames dropped because the ring was full (live sources).
    pub dropped: AtomicU64,
    /// An input error that ended the source (set once, off the audio path).
    pub error: Mutex<Option<String>>,
    /// Transport counters of RTP legs (set by telephony sources when they end).
    pub rtp: Mutex<Option<Vec<crate::event::RtpLegStats>>>,
}

impl CaptureShared {
    /// Record the error that ended the input.
    pub fn fail(&self, e: impl ToString) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(e.to_string());
        }
    }
}

/// A running source. Dropping it stops a device stream; source threads end
/// by themselves when the input ends, the stop flag is set or the pipeline
/// lets go of the ring.
pub struct Capture {
    _stream: Option<mic::StreamGuard>,
    _thread: Option<JoinHandle<()>>,
}

/// An audio source.
pub trait Source: Send {
    /// Rate, channels and pacing.
    fn info(&self) -> SourceInfo;
    /// Start writing into `ring`.
    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError>;
}

/// Writes interleaved frames into the ring with one of the two policies.
pub struct RingWriter {
    ring: Producer<f32>,
    shared: Arc<CaptureShared>,
    stop: Arc<AtomicBool>,
    channels: usize,
    block: bool,
}

impl RingWriter {
    /// A writer for `channels`-channel frames; `block` = backpressure.
    pub fn new(
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
        channels: usize,
        block: bool,
    ) -> Self {
        RingWriter {
            ring,
            shared,
            stop,
            channels,
            block,
        }
    }

    /// Write whole frames from `interleaved`. Returns false when the writer
    /// should end: stop requested, or the pipeline let go of the ring.
    pub fn write(&mut self, interleaved: &[f32]) -> bool {
        let ch = self.channels;
        let mut rest = &interleaved[..interleaved.len() / ch * ch];
        loop {
            if self.ring.is_abandoned() {
                return false;
            }
            let n = (self.ring.slots() / ch * ch).min(rest.len());
            if n > 0 {
                if let Ok(chunk) = self.ring.write_chunk_uninit(n) {
                    chunk.fill_from_iter(rest[..n].iter().copied());
                    self.shared
                        .frames
                        .fetch_add((n / ch) as u64, Ordering::Relaxed);
                    rest = &rest[n..];
                }
            }
            if rest.is_empty() {
                return !self.stop.load(Ordering::Relaxed);
            }
            if !self.block {
                self.shared
                    .dropped
                    .fetch_add((rest.len() / ch) as u64, Ordering::Relaxed);
                return !self.stop.load(Ordering::Relaxed);
            }
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Run a source's capture loop on its own named thread.
pub fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<Capture, CaptureError> {
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| CaptureError::Invalid(format!("cannot start capture thread: {e}")))?;
    Ok(Capture {
        _stream: None,
        _thread: Some(t),
    })
}

fn interleave(legs: &[Vec<f32>], out: &mut Vec<f32>) {
    out.clear();
    let n = legs.first().map(|l| l.len()).unwrap_or(0);
    for i in 0..n {
        for l in legs {
            out.push(l[i]);
        }
    }
}

/// A WAV file read as fast as the pipeline takes it (backpressure).
pub struct WavFile {
    src: WavSource,
}

impl WavFile {
    /// Open and check the header.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Ok(WavFile {
            src: WavSource::open(path)?,
        })
    }
}

impl Source for WavFile {
    fn info(&self) -> SourceInfo {
        let i = self.src.info();
        SourceInfo {
            rate: i.sample_rate,
            channels: i.channels,
            duration_s: Some(i.duration_s()),
            live: false,
            label: self.src.path().display().to_string(),
        }
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let mut src = self.src;
        let ch = src.info().channels as usize;
        spawn("capture-file", move || {
            let mut w = RingWriter::new(ring, shared.clone(), stop, ch, true);
            let mut legs = Vec::new();
            let mut inter = Vec::new();
            loop {
                match src.read_chunk(4096, &mut legs) {
                    Ok(0) => return,
                    Ok(_) => {
                        interleave(&legs, &mut inter);
                        if !w.write(&inter) {
                            return;
                        }
                    }
                    Err(e) => {
                        shared.fail(e);
                        return;
                    }
                }
            }
        })
    }
}

/// A WAV file replayed at real time (or `speed`×), in buffers of
/// `buffer_ms`, optionally looped: live behaviour without a sound card.
pub struct PacedWav {
    path: PathBuf,
    info: SourceInfo,
    speed: f64,
    buffer_ms: u32,
    loops: u32,
}

impl PacedWav {
    /// Check the file and the pacing parameters.
    pub fn open(path: &Path, speed: f64, buffer_ms: u32, loops: u32) -> Result<Self, CaptureError> {
        if !(speed.is_finite() && (0.1..=100.0).contains(&speed)) {
            return Err(CaptureError::Invalid(format!(
                "--speed {speed} is out of range: use 0.1 to 100 (1 = real time)"
            )));
        }
        if !(1..=1000).contains(&buffer_ms) {
            return Err(CaptureError::Invalid(format!(
                "--buffer-ms {buffer_ms} is out of range: use 1 to 1000"
            )));
        }
        let loops = loops.max(1);
        let src = WavSource::open(path)?;
        let i = src.info();
        Ok(PacedWav {
            path: path.to_path_buf(),
            info: SourceInfo {
                rate: i.sample_rate,
                channels: i.channels,
                duration_s: Some(i.duration_s() * loops as f64),
                live: true,
                label: format!("{} at {speed}x", path.display()),
            },
            speed,
            buffer_ms,
            loops,
        })
    }
}

impl Source for PacedWav {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let ch = self.info.channels as usize;
        let rate = self.info.rate as f64;
        let per_buf = ((rate * self.buffer_ms as f64 / 1000.0).round() as usize).max(1);
        spawn("capture-paced", move || {
            let mut w = RingWriter::new(ring, shared.clone(), stop, ch, false);
            let mut legs = Vec::new();
            let mut inter = Vec::new();
            let t0 = Instant::now();
            let mut sent: u64 = 0;
            for _ in 0..self.loops {
                let mut src = match WavSource::open(&self.path) {
                    Ok(s) => s,
                    Err(e) => return shared.fail(e),
                };
                loop {
                    match src.read_chunk(per_buf, &mut legs) {
                        Ok(0) => break,
                        Ok(n) => {
                            // Release each buffer when its last frame has "happened".
                            sent += n as u64;
                            let due = t0 + Duration::from_secs_f64(sent as f64 / rate / self.speed);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            interleave(&legs, &mut inter);
                            if !w.write(&inter) {
                                return;
                            }
                        }
                        Err(e) => return shared.fail(e),
                    }
                }
            }
        })
    }
}

/// Raw audio on standard input (backpressure: a faster writer is slowed).
pub struct Stdin {
    info: SourceInfo,
    encoding: Encoding,
}

impl Stdin {
    /// Check the format parameters.
    pub fn new(rate: u32, channels: u16, encoding: Encoding) -> Result<Self, CaptureError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(CaptureError::Invalid(format!(
                "--rate {rate} is not supported: use {MIN_RATE} to {MAX_RATE} Hz"
            )));
        }
        if !(1..=2).contains(&channels) {
            return Err(CaptureError::Invalid(format!(
                "--channels {channels} is not supported: use 1 (one party) or 2 (agent, customer)"
            )));
        }
        Ok(Stdin {
            info: SourceInfo {
                rate,
                channels,
                duration_s: None,
                live: false,
                label: format!("stdin ({encoding:?}, {rate} Hz, {channels} ch)"),
            },
            encoding,
        })
    }
}

impl Source for Stdin {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let ch = self.info.channels as usize;
        let enc = self.encoding;
        // The thread may stay blocked in read() after a stop; it is not joined.
        spawn("capture-stdin", move || {
            let mut w = RingWriter::new(ring, shared.clone(), stop, ch, true);
            let mut input = std::io::stdin().lock();
            let mut bytes = vec![0u8; 8192];
            let mut have = 0usize;
            let mut samples = Vec::with_capacity(8192);
            let frame_bytes = enc.sample_bytes() * ch;
            loop {
                let n = match input.read(&mut bytes[have..]) {
                    Ok(0) => {
                        if have > 0 {
                            shared.fail(format!(
                                    "stdin ended inside a frame ({have} stray bytes of a {frame_bytes}-byte frame ignored)"
                                ));
                        }
                        return;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return shared.fail(format!("reading stdin: {e}")),
                };
                have += n;
                let whole = have / frame_bytes * frame_bytes;
                samples.clear();
                enc.decode(&bytes[..whole], &mut samples);
                bytes.copy_within(whole..have, 0);
                have -= whole;
                if !w.write(&samples) {
                    return;
                }
            }
        })
    }
}

/// Interleaved audio already in memory (decoded packet captures), read with
/// backpressure like a file.
pub struct Memory {
    info: SourceInfo,
    samples: Vec<f32>,
    rtp: Option<Vec<crate::event::RtpLegStats>>,
}

impl Memory {
    /// `samples` interleaved, `channels` per frame.
    pub fn new(rate: u32, channels: u16, samples: Vec<f32>, label: String) -> Self {
        let frames = samples.len() / channels.max(1) as usize;
        Memory {
            info: SourceInfo {
                rate,
                channels,
                duration_s: Some(frames as f64 / rate as f64),
                live: false,
                label,
            },
            samples,
            rtp: None,
        }
    }

    /// Report these RTP transport counters in the call summary.
    pub fn with_rtp(mut self, stats: Vec<crate::event::RtpLegStats>) -> Self {
        self.rtp = Some(stats);
        self
    }
}

impl Source for Memory {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let ch = self.info.channels as usize;
        let samples = self.samples;
        if let (Some(r), Ok(mut g)) = (self.rtp, shared.rtp.lock()) {
            *g = Some(r);
        }
        spawn("capture-memory", move || {
            let mut w = RingWriter::new(ring, shared, stop, ch, true);
            for chunk in samples.chunks(4096 * ch) {
                if !w.write(chunk) {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_writer_drops_and_counts_whole_frames() {
        let (prod, mut cons) = rtrb::RingBuffer::<f32>::new(10);
        let shared = Arc::new(CaptureShared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = RingWriter::new(prod, shared.clone(), stop, 2, false);
        assert!(w.write(&[0.0; 8]));
        assert!(w.write(&[1.0; 8]));
        // 10 slots hold 5 frames: 4 + 1 written, 3 dropped.
        assert_eq!(shared.frames.load(Ordering::Relaxed), 5);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(cons.slots(), 10);
        let _ = cons.read_chunk(10).map(|c| c.commit_all());
        drop(cons);
        // The reader has gone: the writer says stop.
        assert!(!w.write(&[0.0; 2]));
    }

    #[test]
    fn blocking_writer_waits_for_space() {
        let (prod, mut cons) = rtrb::RingBuffer::<f32>::new(4);
        let shared = Arc::new(CaptureShared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut w = RingWriter::new(prod, shared.clone(), stop, 1, true);
        let t = std::thread::spawn(move || {
            let data: Vec<f32> = (0..100).map(|i| i as f32).collect();
            w.write(&data)
        });
        let mut got = Vec::new();
        while got.len() < 100 {
            if let Ok(v) = cons.pop() {
                got.push(v);
            }
        }
        assert!(t.join().unwrap());
        assert_eq!(got, (0..100).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 0);
    }
}

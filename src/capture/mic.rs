//! Microphone capture through cpal. The data callback converts samples into
//! pre-allocated ring slots and bumps atomic counters: no allocation, lock or
//! blocking call on the audio thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample, StreamConfig};
use rtrb::Producer;

use super::{Capture, CaptureError, CaptureShared, Source, SourceInfo};
use crate::audio::{MAX_RATE, MIN_RATE};

/// Keeps a cpal stream alive; dropping it stops capture.
pub struct StreamGuard(#[allow(dead_code)] cpal::Stream);

/// One input device as listed by `callpulse devices`.
#[derive(Debug, Clone)]
pub struct DeviceListing {
    /// Identifier to pass to `--device` (e.g. `null`, `hw:CARD=PCH,DEV=0`).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The default input device of the host.
    pub is_default: bool,
    /// Supported configurations, or why they could not be read.
    pub configs: Result<Vec<String>, String>,
}

/// Input devices of the default host.
pub fn list_inputs() -> Result<Vec<DeviceListing>, CaptureError> {
    let host = cpal::default_host();
    let default_id = host
        .default_input_device()
        .and_then(|d| d.id().ok())
        .map(|i| i.id().to_string());
    let devices = host
        .input_devices()
        .map_err(|e| CaptureError::Device(format!("cannot list input devices: {e}")))?;
    let mut out = Vec::new();
    for d in devices {
        let id = d
            .id()
            .map(|i| i.id().to_string())
            .unwrap_or_else(|_| "?".into());
        let name = d
            .description()
            .map(|x| x.name().to_string())
            .unwrap_or_else(|_| id.clone());
        let configs = d
            .supported_input_configs()
            .map(|it| {
                let v: Vec<_> = it.collect();
                if v.is_empty() {
                    return Vec::new();
                }
                let ch_min = v.iter().map(|c| c.channels()).min().unwrap_or(0);
                let ch_max = v.iter().map(|c| c.channels()).max().unwrap_or(0);
                let r_min = v.iter().map(|c| c.min_sample_rate()).min().unwrap_or(0);
                let r_max = v.iter().map(|c| c.max_sample_rate()).max().unwrap_or(0);
                let mut formats: Vec<String> =
                    v.iter().map(|c| c.sample_format().to_string()).collect();
                formats.sort();
                formats.dedup();
                vec![format!(
                    "{ch_min}-{ch_max} channels, {r_min}-{r_max} Hz, {}",
                    formats.join("/")
                )]
            })
            .map_err(|e| e.to_string());
        out.push(DeviceListing {
            is_default: default_id.as_deref() == Some(id.as_str()),
            id,
            name,
            configs,
        });
    }
    Ok(out)
}

/// A microphone (or any cpal input device).
pub struct Mic {
    device: cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    info: SourceInfo,
}

impl Mic {
    /// Open `device` (id or name; None = the default input) with `channels`
    /// (1 or 2; None = 1) at `rate` (None = 16 kHz when supported, else the
    /// closest supported rate).
    pub fn open(
        device: Option<&str>,
        channels: Option<u16>,
        rate: Option<u32>,
    ) -> Result<Self, CaptureError> {
        let host = cpal::default_host();
        let dev = match device {
            None => host.default_input_device().ok_or_else(|| {
                CaptureError::Device(
                    "no default input device; list them with `callpulse devices` and pass --device"
                        .into(),
                )
            })?,
            Some(want) => host
                .input_devices()
                .map_err(|e| CaptureError::Device(format!("cannot list input devices: {e}")))?
                .find(|d| {
                    d.id()
                        .map(|i| i.id() == want || i.to_string() == want)
                        .unwrap_or(false)
                        || d.description().map(|x| x.name() == want).unwrap_or(false)
                })
                .ok_or_else(|| {
                    CaptureError::Device(format!(
                        "no input device '{want}'; list them with `callpulse devices`"
                    ))
                })?,
        };
        let dev_name = dev
            .id()
            .map(|i| i.id().to_string())
            .unwrap_or_else(|_| "?".into());
        let want_ch = channels.unwrap_or(1);
        if !(1..=2).contains(&want_ch) {
            return Err(CaptureError::Invalid(format!(
                "--channels {want_ch} is not supported: use 1 or 2"
            )));
        }
        let want_rate = rate.unwrap_or(16_000);
        let ranges: Vec<_> = dev
            .supported_input_configs()
            .map_err(|e| CaptureError::Device(format!("device '{dev_name}': {e}")))?
            .filter(|c| c.channels() == want_ch)
            .filter(|c| {
                matches!(
                    c.sample_format(),
                    SampleFormat::F32 | SampleFormat::I16 | SampleFormat::I32 | SampleFormat::U8
                )
            })
            .collect();
        let pick = ranges
            .iter()
            .find(|c| c.contains_rate(want_rate) && c.sample_format() == SampleFormat::F32)
            .or_else(|| ranges.iter().find(|c| c.contains_rate(want_rate)))
            .or_else(|| ranges.first())
            .ok_or_else(|| {
                CaptureError::Device(format!(
                    "device '{dev_name}' offers no {want_ch}-channel input in a supported sample format"
                ))
            })?;
        let r = want_rate.clamp(pick.min_sample_rate(), pick.max_sample_rate());
        if !(MIN_RATE..=MAX_RATE).contains(&r) {
            return Err(CaptureError::Device(format!(
                "device '{dev_name}' cannot capture between {MIN_RATE} and {MAX_RATE} Hz"
            )));
        }
        let cfg = pick.with_sample_rate(r);
        Ok(Mic {
            format: cfg.sample_format(),
            config: StreamConfig {
                channels: want_ch,
                sample_rate: r,
                buffer_size: cpal::BufferSize::Default,
            },
            info: SourceInfo {
                rate: r,
                channels: want_ch,
                duration_s: None,
                live: true,
                label: format!("device {dev_name} ({want_ch} ch, {r} Hz)"),
            },
            device: dev,
        })
    }
}

fn callback<T>(
    mut ring: Producer<f32>,
    shared: Arc<CaptureShared>,
    ch: usize,
) -> impl FnMut(&[T], &cpal::InputCallbackInfo) + Send + 'static
where
    T: SizedSample,
    f32: FromSample<T>,
{
    move |data: &[T], _| {
        let whole = data.len() / ch * ch;
        let n = (ring.slots() / ch * ch).min(whole);
        if let Ok(chunk) = ring.write_chunk_uninit(n) {
            chunk.fill_from_iter(data[..n].iter().map(|&s| f32::from_sample_(s)));
        }
        shared.frames.fetch_add((n / ch) as u64, Ordering::Relaxed);
        if whole > n {
            shared
                .dropped
                .fetch_add(((whole - n) / ch) as u64, Ordering::Relaxed);
        }
    }
}

impl Source for Mic {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn start(
        self: Box<Self>,
        ring: Producer<f32>,
        shared: Arc<CaptureShared>,
        _stop: Arc<AtomicBool>,
    ) -> Result<Capture, CaptureError> {
        let ch = self.config.channels as usize;
        let err_shared = shared.clone();
        let on_err = move |e: cpal::Error| err_shared.fail(format!("audio device: {e}"));
        let cfg = self.config;
        let stream = match self.format {
            SampleFormat::F32 => {
                self.device
                    .build_input_stream(cfg, callback::<f32>(ring, shared, ch), on_err, None)
            }
            SampleFormat::I16 => {
                self.device
                    .build_input_stream(cfg, callback::<i16>(ring, shared, ch), on_err, None)
            }
            SampleFormat::I32 => {
                self.device
                    .build_input_stream(cfg, callback::<i32>(ring, shared, ch), on_err, None)
            }
            SampleFormat::U8 => {
                self.device
                    .build_input_stream(cfg, callback::<u8>(ring, shared, ch), on_err, None)
            }
            other => {
                return Err(CaptureError::Device(format!(
                    "sample format {other} is not supported"
                )))
            }
        }
        .map_err(|e| CaptureError::Device(format!("cannot open input stream: {e}")))?;
        stream
            .play()
            .map_err(|e| CaptureError::Device(format!("cannot start input stream: {e}")))?;
        Ok(Capture {
            _stream: Some(StreamGuard(stream)),
            _thread: None,
        })
    }
}

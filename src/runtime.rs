//! The ONNX Runtime environment: loaded once per process from the shared library
//! that `callpulse models fetch` provisions (or one the user points at), with
//! [`ort::init_from`] so a missing or wrong library is an error, not a panic.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

/// Why the ONNX Runtime could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The library file is not there.
    #[error("ONNX Runtime library not found at '{0}': run `callpulse models fetch`, or set CALLPULSE_ORT_LIB / models.onnxruntime_lib to a libonnxruntime.so >= 1.31")]
    Missing(PathBuf),
    /// dlopen or version negotiation failed.
    #[error(
        "cannot load ONNX Runtime from '{path}': {reason} (callpulse needs ONNX Runtime >= 1.31)"
    )]
    Load {
        /// Library path.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// A model failed to load into a session.
    #[error("cannot load ONNX model '{path}': {reason}")]
    Model {
        /// Model path.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
}

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
static LOADED_FROM: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The process-wide ONNX Runtime environment, loading the library on first use.
/// Later calls return the same environment whatever path they pass.
pub fn environment(lib: &Path) -> Result<&'static Environment, RuntimeError> {
    if ENV.get().is_none() && !lib.exists() {
        return Err(RuntimeError::Missing(lib.to_path_buf()));
    }
    let env = ENV.get_or_init(|| {
        if let Ok(mut g) = LOADED_FROM.lock() {
            *g = Some(lib.to_path_buf());
        }
        let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
        builder
            .with_name("callpulse")
            .build()
            .map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|reason| RuntimeError::Load {
        path: LOADED_FROM
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_else(|| lib.to_path_buf()),
        reason: reason.clone(),
    })
}

/// Build a CPU session for an ONNX model with `threads` intra-op threads.
pub fn session(
    lib: &Path,
    model: &Path,
    threads: usize,
) -> Result<ort::session::Session, RuntimeError> {
    session_on(lib, model, threads, false).map(|(s, _)| s)
}

/// Build a session, on the CUDA execution provider when `gpu` is asked for
/// and this build has the `ort-cuda` feature (needs the GPU ONNX Runtime
/// library, `callpulse models fetch --gpu`). Falls back to the CPU with a
/// warning when CUDA cannot be registered. Returns the device used.
pub fn session_on(
    lib: &Path,
    model: &Path,
    threads: usize,
    gpu: bool,
) -> Result<(ort::session::Session, &'static str), RuntimeError> {
    let env = environment(lib)?;
    let err = |e: ort::Error| RuntimeError::Model {
        path: model.to_path_buf(),
        reason: e.to_string(),
    };
    if !model.exists() {
        return Err(RuntimeError::Model {
            path: model.to_path_buf(),
            reason: "file not found; run `callpulse models fetch`".into(),
        });
    }
    let b = ort::session::Session::builder(env).map_err(err)?;
    let mut b = b
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| err(e.into()))?;
    #[cfg(feature = "ort-cuda")]
    if gpu {
        let ep = ort::ep::CUDA::default().build().error_on_failure();
        match b.clone().with_execution_providers([ep]) {
            Ok(gb) => {
                let mut gb = gb;
                return gb.commit_from_file(model).map(|s| (s, "cuda")).map_err(err);
            }
            Err(e) => tracing::warn!("CUDA execution provider unavailable, using the CPU: {e}"),
        }
    }
    #[cfg(not(feature = "ort-cuda"))]
    if gpu {
        tracing::warn!("this build has no `ort-cuda` feature; the encoder runs on the CPU");
    }
    b.commit_from_file(model).map(|s| (s, "cpu")).map_err(err)
}

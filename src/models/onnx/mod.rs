//! A small ONNX model writer, for converters that turn weights shipped in
//! other formats into graphs ONNX Runtime loads.
//!
//! The [`graph`] module is the API: a [`Graph`] collects inputs and outputs (with fixed
//! or symbolic dimensions), initializers ([`Tensor`]: f32, f16, int8, uint8,
//! int32, int64, bool, raw bytes) and nodes with attributes of every kind
//! ([`Attribute`]: float, int, string, tensor, graph and their lists); a
//! [`Model`] adds the opset imports and writes the `ModelProto` to a file or
//! to bytes. The private `proto` module is the protocol-buffers wire encoding of those
//! messages (field numbers from `onnx.proto`), streamed to the output: a
//! nested message's length is counted before it is written, so a large
//! initializer is never copied into an intermediate buffer.
//!
//! The builder checks what it can cheaply: tensor shapes against their data,
//! names defined once, node inputs defined before use (so the node list is
//! in topological order, as ONNX requires). Operator semantics are left to
//! ONNX Runtime, which reports them when the model is loaded.
//!
//! ```
//! use callpulse::models::onnx::{Attribute, DataType, Dim, Graph, Model, Tensor};
//!
//! # fn main() -> Result<(), callpulse::models::onnx::OnnxError> {
//! let mut g = Graph::new("tiny");
//! let x = g.input("x", DataType::Float, &[Dim::symbolic("batch"), Dim::fixed(2)])?;
//! let w = g.initializer("w", Tensor::f32(&[2, 2], &[1.0, 0.0, 0.0, 1.0])?)?;
//! let y = g.op("MatMul", &[&x, &w], vec![])?;
//! let z = g.op("Softmax", &[&y], vec![Attribute::int("axis", -1)])?;
//! g.output(&z, DataType::Float, &[Dim::symbolic("batch"), Dim::fixed(2)])?;
//! let bytes = Model::new(g).opset("", 17).to_bytes()?;
//! assert!(bytes.len() > 40);
//! # Ok(())
//! # }
//! ```

pub mod graph;
mod proto;

pub use graph::{Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo};

use std::path::PathBuf;

/// What went wrong building or writing an ONNX model.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// A tensor's data does not fill its shape.
    #[error("tensor '{tensor}': shape {dims:?} holds {expected} values of {dtype:?}, but {got} were given")]
    Shape {
        /// Tensor name (empty before it is added to a graph).
        tensor: String,
        /// Its dimensions.
        dims: Vec<i64>,
        /// Element type.
        dtype: DataType,
        /// Elements the shape holds.
        expected: u64,
        /// Elements given.
        got: u64,
    },
    /// A name (input, initializer or node output) is defined twice.
    #[error("graph '{graph}': the name '{name}' is defined twice")]
    Duplicate {
        /// Graph name.
        graph: String,
        /// The name.
        name: String,
    },
    /// A node reads a value nothing defines (yet).
    #[error("graph '{graph}': node {node} ({op}) reads '{input}', which no input, initializer or earlier node defines")]
    Undefined {
        /// Graph name.
        graph: String,
        /// Node name.
        node: String,
        /// Its operator.
        op: String,
        /// The undefined input.
        input: String,
    },
    /// A graph output names a value nothing defines.
    #[error("graph '{graph}': output '{name}' is not defined by any input, initializer or node")]
    UndefinedOutput {
        /// Graph name.
        graph: String,
        /// The output.
        name: String,
    },
    /// Writing the file failed.
    #[error("cannot write ONNX model '{path}': {source}")]
    Io {
        /// Output path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod runtime_tests;

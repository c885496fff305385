//! The builder: tensors, attributes, nodes, graphs and the model around them.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::proto::{self, WriteSink};
use super::OnnxError;
use crate::models::convert::f32_to_f16;

/// ONNX element types (`TensorProto.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// 32-bit float.
    Float,
    /// Unsigned byte.
    Uint8,
    /// Signed byte.
    Int8,
    /// Unsigned 16-bit.
    Uint16,
    /// Signed 16-bit.
    Int16,
    /// Signed 32-bit.
    Int32,
    /// Signed 64-bit.
    Int64,
    /// Byte strings.
    String,
    /// Boolean (one byte each).
    Bool,
    /// IEEE half precision.
    Float16,
    /// 64-bit float.
    Double,
    /// Unsigned 32-bit.
    Uint32,
    /// Unsigned 64-bit.
    Uint64,
    /// bfloat16.
    Bfloat16,
}

impl DataType {
    /// The `TensorProto.DataType` code.
    pub fn code(self) -> i32 {
        match self {
            DataType::Float => 1,
            DataType::Uint8 => 2,
            DataType::Int8 => 3,
            DataType::Uint16 => 4,
            DataType::Int16 => 5,
            DataType::Int32 => 6,
            DataType::Int64 => 7,
            DataType::String => 8,
            DataType::Bool => 9,
            DataType::Float16 => 10,
            DataType::Double => 11,
            DataType::Uint32 => 12,
            DataType::Uint64 => 13,
            DataType::Bfloat16 => 16,
        }
    }

    /// Bytes per element in `raw_data` (none for strings).
    pub fn size(self) -> Option<usize> {
        match self {
            DataType::Uint8 | DataType::Int8 | DataType::Bool => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => Some(2),
            DataType::Float | DataType::Int32 | DataType::Uint32 => Some(4),
            DataType::Int64 | DataType::Double | DataType::Uint64 => Some(8),
            DataType::String => None,
        }
    }
}

/// One dimension of a declared input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named size set at run time (`batch`, `seq`); equal names are equal sizes.
    Symbolic(String),
}

impl Dim {
    /// A fixed size.
    pub fn fixed(n: i64) -> Dim {
        Dim::Fixed(n)
    }
    /// A named size.
    pub fn symbolic(name: &str) -> Dim {
        Dim::Symbolic(name.to_string())
    }
}

/// Shape of a declared value: known rank (possibly zero) or unknown.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ValueShape {
    Known(Vec<Dim>),
    Unknown,
}

/// A named, typed value of a graph's interface (`ValueInfoProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub(super) name: String,
    pub(super) dtype: DataType,
    pub(super) shape: ValueShape,
}

impl ValueInfo {
    /// A tensor value of known rank (`shape` may be empty: a scalar).
    pub fn new(name: &str, dtype: DataType, shape: &[Dim]) -> ValueInfo {
        ValueInfo {
            name: name.to_string(),
            dtype,
            shape: ValueShape::Known(shape.to_vec()),
        }
    }
    /// A tensor value of unknown rank.
    pub fn any_shape(name: &str, dtype: DataType) -> ValueInfo {
        ValueInfo {
            name: name.to_string(),
            dtype,
            shape: ValueShape::Unknown,
        }
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Tensor contents: little-endian bytes for numbers, a list for strings.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TensorData {
    Raw(Vec<u8>),
    Strings(Vec<Vec<u8>>),
}

/// A constant tensor: an initializer, or the value of a tensor attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub(super) name: String,
    pub(super) dtype: DataType,
    pub(super) dims: Vec<i64>,
    pub(super) data: TensorData,
}

/// Element types that have a little-endian byte form.
trait Element: Copy {
    const DTYPE: DataType;
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DataType = $d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(f32, DataType::Float);
element!(f64, DataType::Double);
element!(i8, DataType::Int8);
element!(u8, DataType::Uint8);
element!(i32, DataType::Int32);
element!(i64, DataType::Int64);

fn elements(dims: &[i64]) -> u64 {
    dims.iter()
        .fold(1u64, |n, &d| n.saturating_mul(d.max(0) as u64))
}

impl Tensor {
    /// A tensor from raw little-endian bytes of `dtype` (not strings).
    pub fn raw(dtype: DataType, dims: &[i64], bytes: Vec<u8>) -> Result<Tensor, OnnxError> {
        let size = dtype.size().unwrap_or(0) as u64;
        let expected = elements(dims);
        let got = (bytes.len() as u64).checked_div(size).unwrap_or(0);
        if size == 0 || expected.saturating_mul(size) != bytes.len() as u64 {
            return Err(OnnxError::Shape {
                tensor: String::new(),
                dims: dims.to_vec(),
                dtype,
                expected,
                got,
            });
        }
        Ok(Tensor {
            name: String::new(),
            dtype,
            dims: dims.to_vec(),
            data: TensorData::Raw(bytes),
        })
    }

    fn from_elements<T: Element>(dims: &[i64], values: &[T]) -> Result<Tensor, OnnxError> {
        let mut bytes = Vec::with_capacity(values.len() * T::DTYPE.size().unwrap_or(1));
        for &v in values {
            v.put(&mut bytes);
        }
        Tensor::raw(T::DTYPE, dims, bytes)
    }

    /// 32-bit floats, row-major.
    pub fn f32(dims: &[i64], values: &[f32]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// 64-bit floats.
    pub fn f64(dims: &[i64], values: &[f64]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// Half precision from 32-bit floats (rounded to nearest even).
    pub fn f16(dims: &[i64], values: &[f32]) -> Result<Tensor, OnnxError> {
        let bits: Vec<u16> = values.iter().map(|&v| f32_to_f16(v)).collect();
        Tensor::f16_bits(dims, &bits)
    }
    /// Half precision from its bit patterns (as stored by other formats).
    pub fn f16_bits(dims: &[i64], bits: &[u16]) -> Result<Tensor, OnnxError> {
        let bytes = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        Tensor::raw(DataType::Float16, dims, bytes)
    }
    /// Signed bytes.
    pub fn i8(dims: &[i64], values: &[i8]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// Unsigned bytes.
    pub fn u8(dims: &[i64], values: &[u8]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// 32-bit integers.
    pub fn i32(dims: &[i64], values: &[i32]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// 64-bit integers.
    pub fn i64(dims: &[i64], values: &[i64]) -> Result<Tensor, OnnxError> {
        Tensor::from_elements(dims, values)
    }
    /// Booleans.
    pub fn bool(dims: &[i64], values: &[bool]) -> Result<Tensor, OnnxError> {
        let bytes = values.iter().map(|&b| u8::from(b)).collect();
        Tensor::raw(DataType::Bool, dims, bytes)
    }
    /// Byte strings.
    pub fn strings(dims: &[i64], values: Vec<Vec<u8>>) -> Result<Tensor, OnnxError> {
        if elements(dims) != values.len() as u64 {
            return Err(OnnxError::Shape {
                tensor: String::new(),
                dims: dims.to_vec(),
                dtype: DataType::String,
                expected: elements(dims),
                got: values.len() as u64,
            });
        }
        Ok(Tensor {
            name: String::new(),
            dtype: DataType::String,
            dims: dims.to_vec(),
            data: TensorData::Strings(values),
        })
    }
    /// A float scalar (rank 0).
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            name: String::new(),
            dtype: DataType::Float,
            dims: Vec::new(),
            data: TensorData::Raw(v.to_le_bytes().to_vec()),
        }
    }
    /// An int64 scalar (rank 0).
    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor {
            name: String::new(),
            dtype: DataType::Int64,
            dims: Vec::new(),
            data: TensorData::Raw(v.to_le_bytes().to_vec()),
        }
    }
    /// The same tensor with a name.
    pub fn named(mut self, name: &str) -> Tensor {
        self.name = name.to_string();
        self
    }
    /// Its name (empty until named or added to a graph).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its dimensions.
    pub fn dims(&self) -> &[i64] {
        &self.dims
    }
    /// Its element type.
    pub fn dtype(&self) -> DataType {
        self.dtype
    }
    /// Bytes of data it holds.
    pub fn byte_len(&self) -> usize {
        match &self.data {
            TensorData::Raw(b) => b.len(),
            TensorData::Strings(v) => v.iter().map(Vec::len).sum(),
        }
    }
}

/// An attribute's value (`AttributeProto`, one of its kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// `f`.
    Float(f32),
    /// `i`.
    Int(i64),
    /// `s` (bytes; usually UTF-8).
    String(Vec<u8>),
    /// `t`.
    Tensor(Tensor),
    /// `g`: a subgraph (If/Loop/Scan bodies).
    Graph(Graph),
    /// `floats`.
    Floats(Vec<f32>),
    /// `ints`.
    Ints(Vec<i64>),
    /// `strings`.
    Strings(Vec<Vec<u8>>),
    /// `tensors`.
    Tensors(Vec<Tensor>),
    /// `graphs`.
    Graphs(Vec<Graph>),
}

impl AttributeValue {
    /// The `AttributeProto.AttributeType` code.
    pub fn type_code(&self) -> i32 {
        match self {
            AttributeValue::Float(_) => 1,
            AttributeValue::Int(_) => 2,
            AttributeValue::String(_) => 3,
            AttributeValue::Tensor(_) => 4,
            AttributeValue::Graph(_) => 5,
            AttributeValue::Floats(_) => 6,
            AttributeValue::Ints(_) => 7,
            AttributeValue::Strings(_) => 8,
            AttributeValue::Tensors(_) => 9,
            AttributeValue::Graphs(_) => 10,
        }
    }
}

/// A named attribute of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub(super) name: String,
    pub(super) value: AttributeValue,
}

impl Attribute {
    /// Any kind of value.
    pub fn new(name: &str, value: AttributeValue) -> Attribute {
        Attribute {
            name: name.to_string(),
            value,
        }
    }
    /// A float (`epsilon`, `alpha`).
    pub fn float(name: &str, v: f32) -> Attribute {
        Attribute::new(name, AttributeValue::Float(v))
    }
    /// An integer (`axis`, `keepdims`, `hidden_size`).
    pub fn int(name: &str, v: i64) -> Attribute {
        Attribute::new(name, AttributeValue::Int(v))
    }
    /// A string (`mode`, `direction`, `approximate`).
    pub fn string(name: &str, v: &str) -> Attribute {
        Attribute::new(name, AttributeValue::String(v.as_bytes().to_vec()))
    }
    /// A tensor (`Constant`'s `value`).
    pub fn tensor(name: &str, t: Tensor) -> Attribute {
        Attribute::new(name, AttributeValue::Tensor(t))
    }
    /// A subgraph.
    pub fn graph(name: &str, g: Graph) -> Attribute {
        Attribute::new(name, AttributeValue::Graph(g))
    }
    /// Floats (`scales`, LSTM `activation_alpha`).
    pub fn floats(name: &str, v: &[f32]) -> Attribute {
        Attribute::new(name, AttributeValue::Floats(v.to_vec()))
    }
    /// Integers (`perm`, `pads`, `kernel_shape`, `strides`).
    pub fn ints(name: &str, v: &[i64]) -> Attribute {
        Attribute::new(name, AttributeValue::Ints(v.to_vec()))
    }
    /// Strings (LSTM `activations`).
    pub fn strings(name: &str, v: &[&str]) -> Attribute {
        Attribute::new(
            name,
            AttributeValue::Strings(v.iter().map(|s| s.as_bytes().to_vec()).collect()),
        )
    }
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One operator application (`NodeProto`), built by chaining.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub(super) op_type: String,
    pub(super) domain: String,
    pub(super) name: String,
    pub(super) inputs: Vec<String>,
    pub(super) outputs: Vec<String>,
    pub(super) attributes: Vec<Attribute>,
}

impl Node {
    /// A node of operator `op_type` in the default (`ai.onnx`) domain.
    pub fn new(op_type: &str) -> Node {
        Node {
            op_type: op_type.to_string(),
            domain: String::new(),
            name: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes: Vec::new(),
        }
    }
    /// The operator's domain (`com.microsoft` for ONNX Runtime's contrib operators).
    pub fn domain(mut self, domain: &str) -> Node {
        self.domain = domain.to_string();
        self
    }
    /// The node's name (otherwise the graph gives one).
    pub fn name(mut self, name: &str) -> Node {
        self.name = name.to_string();
        self
    }
    /// Its inputs, in the operator's order; `""` skips an optional input.
    pub fn inputs(mut self, names: &[&str]) -> Node {
        self.inputs = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Its outputs; with none, [`Graph::node`] names one output.
    pub fn outputs(mut self, names: &[&str]) -> Node {
        self.outputs = names.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Add an attribute.
    pub fn attr(mut self, a: Attribute) -> Node {
        self.attributes.push(a);
        self
    }
    /// Add attributes.
    pub fn attrs(mut self, v: Vec<Attribute>) -> Node {
        self.attributes.extend(v);
        self
    }
}

/// A computation graph (`GraphProto`), built in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub(super) name: String,
    pub(super) doc: String,
    pub(super) nodes: Vec<Node>,
    pub(super) initializers: Vec<Tensor>,
    pub(super) inputs: Vec<ValueInfo>,
    pub(super) outputs: Vec<ValueInfo>,
    pub(super) value_info: Vec<ValueInfo>,
    defined: HashSet<String>,
    /// A subgraph may read values of the graph around it.
    open_scope: bool,
    counter: usize,
}

impl Graph {
    /// An empty main graph.
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            doc: String::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            value_info: Vec::new(),
            defined: HashSet::new(),
            open_scope: false,
            counter: 0,
        }
    }

    /// An empty subgraph (an `If` branch, a `Loop` or `Scan` body): its nodes
    /// may read values of the enclosing graph, so undefined inputs are not
    /// reported.
    pub fn subgraph(name: &str) -> Graph {
        Graph {
            open_scope: true,
            ..Graph::new(name)
        }
    }

    /// Set the graph's documentation string.
    pub fn set_doc(&mut self, doc: &str) {
        self.doc = doc.to_string();
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes so far.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Total bytes of initializer data.
    pub fn initializer_bytes(&self) -> u64 {
        self.initializers.iter().map(|t| t.byte_len() as u64).sum()
    }

    /// A name not used yet in this graph, starting with `hint`.
    pub fn fresh(&mut self, hint: &str) -> String {
        loop {
            self.counter += 1;
            let n = format!("{hint}_{}", self.counter);
            if !self.defined.contains(&n) {
                return n;
            }
        }
    }

    fn define(&mut self, name: &str) -> Result<(), OnnxError> {
        if name.is_empty() || !self.defined.insert(name.to_string()) {
            return Err(OnnxError::Duplicate {
                graph: self.name.clone(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Declare a graph input; returns its name.
    pub fn input(
        &mut self,
        name: &str,
        dtype: DataType,
        shape: &[Dim],
    ) -> Result<String, OnnxError> {
        self.define(name)?;
        self.inputs.push(ValueInfo::new(name, dtype, shape));
        Ok(name.to_string())
    }

    /// Add a constant under `name`; returns the name.
    pub fn initializer(&mut self, name: &str, tensor: Tensor) -> Result<String, OnnxError> {
        self.define(name)?;
        self.initializers.push(tensor.named(name));
        Ok(name.to_string())
    }

    /// Add a constant under a fresh name; returns the name.
    pub fn constant(&mut self, tensor: Tensor) -> Result<String, OnnxError> {
        let name = self.fresh("const");
        self.initializer(&name, tensor)
    }

    /// Add a node, after checking that its inputs are defined; a node given
    /// no outputs gets one fresh name. Returns its outputs.
    pub fn node(&mut self, mut node: Node) -> Result<Vec<String>, OnnxError> {
        if node.name.is_empty() {
            node.name = self.fresh(&node.op_type);
        }
        if !self.open_scope {
            if let Some(missing) = node
                .inputs
                .iter()
                .find(|i| !i.is_empty() && !self.defined.contains(*i))
            {
                return Err(OnnxError::Undefined {
                    graph: self.name.clone(),
                    node: node.name.clone(),
                    op: node.op_type.clone(),
                    input: missing.clone(),
                });
            }
        }
        if node.outputs.is_empty() {
            node.outputs.push(format!("{}_out", node.name));
        }
        for o in &node.outputs {
            if !o.is_empty() {
                self.define(o)?;
            }
        }
        let outs = node.outputs.clone();
        self.nodes.push(node);
        Ok(outs)
    }

    /// Add a one-output node in the default domain; returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<Attribute>,
    ) -> Result<String, OnnxError> {
        let outs = self.node(Node::new(op_type).inputs(inputs).attrs(attrs))?;
        Ok(outs.into_iter().next().unwrap_or_default())
    }

    /// Add a node with `n` outputs (fresh names) in `domain` (`""` = ai.onnx).
    pub fn op_n(
        &mut self,
        domain: &str,
        op_type: &str,
        inputs: &[&str],
        n: usize,
        attrs: Vec<Attribute>,
    ) -> Result<Vec<String>, OnnxError> {
        let names: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.node(
            Node::new(op_type)
                .domain(domain)
                .inputs(inputs)
                .outputs(&refs)
                .attrs(attrs),
        )
    }

    /// Declare a defined value as a graph output.
    pub fn output(&mut self, name: &str, dtype: DataType, shape: &[Dim]) -> Result<(), OnnxError> {
        if !self.open_scope && !self.defined.contains(name) {
            return Err(OnnxError::UndefinedOutput {
                graph: self.name.clone(),
                name: name.to_string(),
            });
        }
        self.outputs.push(ValueInfo::new(name, dtype, shape));
        Ok(())
    }

    /// Declare a subgraph input or output with a full [`ValueInfo`] (which may
    /// have an unknown shape).
    pub fn declare(&mut self, v: ValueInfo, is_input: bool) -> Result<(), OnnxError> {
        if is_input {
            self.define(&v.name)?;
            self.inputs.push(v);
        } else {
            self.outputs.push(v);
        }
        Ok(())
    }

    /// Annotate an intermediate value's type and shape (`value_info`).
    pub fn annotate(&mut self, v: ValueInfo) {
        self.value_info.push(v);
    }
}

/// A model: a graph, the operator sets it uses, and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub(super) graph: Graph,
    pub(super) opsets: Vec<(String, i64)>,
    pub(super) ir_version: i64,
    pub(super) producer_name: String,
    pub(super) producer_version: String,
    pub(super) doc: String,
    pub(super) metadata: Vec<(String, String)>,
}

impl Model {
    /// IR version written unless [`Model::ir_version`] says otherwise (IR 10
    /// goes with opset 21; ONNX Runtime 1.31 reads up to IR 11).
    pub const IR_VERSION: i64 = 10;

    /// A model around `graph`, produced by callpulse; add opsets with [`Model::opset`].
    pub fn new(graph: Graph) -> Model {
        Model {
            graph,
            opsets: Vec::new(),
            ir_version: Model::IR_VERSION,
            producer_name: "callpulse".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc: String::new(),
            metadata: Vec::new(),
        }
    }
    /// Import operator set `version` of `domain` (`""` = ai.onnx, `com.microsoft`).
    pub fn opset(mut self, domain: &str, version: i64) -> Model {
        self.opsets.push((domain.to_string(), version));
        self
    }
    /// Override the IR version.
    pub fn ir_version(mut self, v: i64) -> Model {
        self.ir_version = v;
        self
    }
    /// Set the documentation string.
    pub fn doc(mut self, doc: &str) -> Model {
        self.doc = doc.to_string();
        self
    }
    /// Add a metadata entry (`metadata_props`): source, licence, parameters.
    pub fn metadata(mut self, key: &str, value: &str) -> Model {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }
    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The serialised `ModelProto`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, OnnxError> {
        let mut sink = WriteSink(Vec::new());
        proto::model(&mut sink, self).map_err(|source| OnnxError::Io {
            path: "<memory>".into(),
            source,
        })?;
        Ok(sink.0)
    }

    /// Write the `ModelProto` to `path`; returns the bytes written.
    pub fn write(&self, path: &Path) -> Result<u64, OnnxError> {
        let io = |source| OnnxError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = File::create(path).map_err(io)?;
        let mut sink = WriteSink(BufWriter::with_capacity(1 << 20, f));
        proto::model(&mut sink, self).map_err(io)?;
        let mut w = sink.0;
        w.flush().map_err(io)?;
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        Ok(f.metadata().map_err(io)?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_against_data() {
        let e = Tensor::f32(&[2, 3], &[0.0; 5]).unwrap_err();
        assert!(e.to_string().contains("holds 6 values"), "{e}");
        assert!(Tensor::u8(&[0], &[]).is_ok());
        assert!(Tensor::strings(&[2], vec![b"a".to_vec()]).is_err());
        assert_eq!(Tensor::scalar_i64(3).dims(), &[] as &[i64]);
    }

    #[test]
    fn names_are_defined_once_and_before_use() {
        let mut g = Graph::new("g");
        let x = g.input("x", DataType::Float, &[Dim::fixed(1)]).unwrap();
        assert!(matches!(
            g.input("x", DataType::Float, &[]),
            Err(OnnxError::Duplicate { .. })
        ));
        let e = g.op("Add", &[&x, "nowhere"], vec![]).unwrap_err();
        assert!(e.to_string().contains("'nowhere'"), "{e}");
        let y = g.op("Relu", &[&x], vec![]).unwrap();
        assert!(g.output(&y, DataType::Float, &[Dim::fixed(1)]).is_ok());
        assert!(g.output("z", DataType::Float, &[]).is_err());
        // Optional inputs are skipped with "".
        assert!(g.node(Node::new("Clip").inputs(&[&y, "", ""])).is_ok());
        // A subgraph may read values from outside.
        let mut body = Graph::subgraph("body");
        assert!(body.op("Identity", &["outer"], vec![]).is_ok());
    }
}

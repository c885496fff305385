//! Protocol-buffers wire encoding of the ONNX messages the builder writes:
//! `ModelProto`, `OperatorSetIdProto`, `StringStringEntryProto`, `GraphProto`,
//! `NodeProto`, `AttributeProto`, `TensorProto`, `ValueInfoProto`,
//! `TypeProto` (tensor), `TensorShapeProto` and its `Dimension`.
//!
//! Field numbers are those of `onnx.proto` (proto2). Fields go out in
//! field-number order, repeated scalars unpacked (proto2's default, as the
//! reference serialiser writes them), numeric tensor data as `raw_data`
//! (little-endian). A nested message is written as its key, its length and
//! its body; the length comes from running the same body into a [`Counter`],
//! so one function per message serves both the size and the bytes.

use std::io::{self, Write};

use super::graph::{Attribute, AttributeValue, Dim, Graph, Model, Node, Tensor, TensorData};
use super::graph::{ValueInfo, ValueShape};

/// Where encoded bytes go.
pub(super) trait Sink {
    /// Append `bytes`.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// Counts bytes without storing them (the length of a nested message).
pub(super) struct Counter(pub u64);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0 += bytes.len() as u64;
        Ok(())
    }
}

/// Writes bytes to any [`Write`] (a buffered file, a `Vec<u8>`).
pub(super) struct WriteSink<W: Write>(pub W);

impl<W: Write> Sink for WriteSink<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
}

type Res = io::Result<()>;

const WIRE_VARINT: u32 = 0;
const WIRE_LEN: u32 = 2;
const WIRE_FIXED32: u32 = 5;

/// Base-128 varint, least significant group first.
pub(super) fn varint(s: &mut dyn Sink, mut v: u64) -> Res {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = low;
            n += 1;
            break;
        }
        buf[n] = low | 0x80;
        n += 1;
    }
    s.put(&buf[..n])
}

fn key(s: &mut dyn Sink, field: u32, wire: u32) -> Res {
    varint(s, u64::from((field << 3) | wire))
}

/// An `int64`/`int32`/enum field: negative values are sign-extended to ten bytes.
pub(super) fn int_field(s: &mut dyn Sink, field: u32, v: i64) -> Res {
    key(s, field, WIRE_VARINT)?;
    varint(s, v as u64)
}

/// A `float` field (fixed 32-bit, little-endian).
pub(super) fn float_field(s: &mut dyn Sink, field: u32, v: f32) -> Res {
    key(s, field, WIRE_FIXED32)?;
    s.put(&v.to_le_bytes())
}

/// A `bytes`/`string` field.
pub(super) fn bytes_field(s: &mut dyn Sink, field: u32, b: &[u8]) -> Res {
    key(s, field, WIRE_LEN)?;
    varint(s, b.len() as u64)?;
    s.put(b)
}

/// A string field left out when empty (an unset optional field).
fn opt_str(s: &mut dyn Sink, field: u32, v: &str) -> Res {
    if v.is_empty() {
        return Ok(());
    }
    bytes_field(s, field, v.as_bytes())
}

/// A nested message: key, length (counted by running `body` once into a
/// [`Counter`]), then `body` into `s`.
pub(super) fn message(s: &mut dyn Sink, field: u32, body: &dyn Fn(&mut dyn Sink) -> Res) -> Res {
    let mut c = Counter(0);
    body(&mut c)?;
    key(s, field, WIRE_LEN)?;
    varint(s, c.0)?;
    body(s)
}

/// `TensorProto`: dims = 1, data_type = 2, string_data = 6, name = 8, raw_data = 9.
pub(super) fn tensor(s: &mut dyn Sink, t: &Tensor) -> Res {
    for &d in &t.dims {
        int_field(s, 1, d)?;
    }
    int_field(s, 2, i64::from(t.dtype.code()))?;
    if let TensorData::Strings(v) = &t.data {
        for x in v {
            bytes_field(s, 6, x)?;
        }
    }
    opt_str(s, 8, &t.name)?;
    if let TensorData::Raw(b) = &t.data {
        bytes_field(s, 9, b)?;
    }
    Ok(())
}

/// `TensorShapeProto.Dimension`: dim_value = 1, dim_param = 2.
fn dim(s: &mut dyn Sink, d: &Dim) -> Res {
    match d {
        Dim::Fixed(n) => int_field(s, 1, *n),
        Dim::Symbolic(name) => bytes_field(s, 2, name.as_bytes()),
    }
}

/// `ValueInfoProto`: name = 1, type = 2 (`TypeProto.tensor_type` = 1:
/// elem_type = 1, shape = 2 with repeated dim = 1).
pub(super) fn value_info(s: &mut dyn Sink, v: &ValueInfo) -> Res {
    bytes_field(s, 1, v.name.as_bytes())?;
    message(s, 2, &|s| {
        message(s, 1, &|s| {
            int_field(s, 1, i64::from(v.dtype.code()))?;
            if let ValueShape::Known(dims) = &v.shape {
                message(s, 2, &|s| {
                    for d in dims {
                        message(s, 1, &|s| dim(s, d))?;
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
    })
}

/// `AttributeProto`: name = 1, f = 2, i = 3, s = 4, t = 5, g = 6, floats = 7,
/// ints = 8, strings = 9, tensors = 10, graphs = 11, type = 20.
pub(super) fn attribute(s: &mut dyn Sink, a: &Attribute) -> Res {
    bytes_field(s, 1, a.name.as_bytes())?;
    match &a.value {
        AttributeValue::Float(v) => float_field(s, 2, *v)?,
        AttributeValue::Int(v) => int_field(s, 3, *v)?,
        AttributeValue::String(v) => bytes_field(s, 4, v)?,
        AttributeValue::Tensor(t) => message(s, 5, &|s| tensor(s, t))?,
        AttributeValue::Graph(g) => message(s, 6, &|s| graph(s, g))?,
        AttributeValue::Floats(v) => {
            for x in v {
                float_field(s, 7, *x)?;
            }
        }
        AttributeValue::Ints(v) => {
            for x in v {
                int_field(s, 8, *x)?;
            }
        }
        AttributeValue::Strings(v) => {
            for x in v {
                bytes_field(s, 9, x)?;
            }
        }
        AttributeValue::Tensors(v) => {
            for t in v {
                message(s, 10, &|s| tensor(s, t))?;
            }
        }
        AttributeValue::Graphs(v) => {
            for g in v {
                message(s, 11, &|s| graph(s, g))?;
            }
        }
    }
    int_field(s, 20, i64::from(a.value.type_code()))
}

/// `NodeProto`: input = 1, output = 2, name = 3, op_type = 4, attribute = 5,
/// domain = 7.
pub(super) fn node(s: &mut dyn Sink, n: &Node) -> Res {
    for i in &n.inputs {
        bytes_field(s, 1, i.as_bytes())?;
    }
    for o in &n.outputs {
        bytes_field(s, 2, o.as_bytes())?;
    }
    opt_str(s, 3, &n.name)?;
    bytes_field(s, 4, n.op_type.as_bytes())?;
    for a in &n.attributes {
        message(s, 5, &|s| attribute(s, a))?;
    }
    opt_str(s, 7, &n.domain)
}

/// `GraphProto`: node = 1, name = 2, initializer = 5, doc_string = 10,
/// input = 11, output = 12, value_info = 13.
pub(super) fn graph(s: &mut dyn Sink, g: &Graph) -> Res {
    for n in &g.nodes {
        message(s, 1, &|s| node(s, n))?;
    }
    bytes_field(s, 2, g.name.as_bytes())?;
    for t in &g.initializers {
        message(s, 5, &|s| tensor(s, t))?;
    }
    opt_str(s, 10, &g.doc)?;
    for v in &g.inputs {
        message(s, 11, &|s| value_info(s, v))?;
    }
    for v in &g.outputs {
        message(s, 12, &|s| value_info(s, v))?;
    }
    for v in &g.value_info {
        message(s, 13, &|s| value_info(s, v))?;
    }
    Ok(())
}

/// `ModelProto`: ir_version = 1, producer_name = 2, producer_version = 3,
/// doc_string = 6, graph = 7, opset_import = 8 (`OperatorSetIdProto`:
/// domain = 1, version = 2), metadata_props = 14 (key = 1, value = 2).
pub(super) fn model(s: &mut dyn Sink, m: &Model) -> Res {
    int_field(s, 1, m.ir_version)?;
    opt_str(s, 2, &m.producer_name)?;
    opt_str(s, 3, &m.producer_version)?;
    opt_str(s, 6, &m.doc)?;
    message(s, 7, &|s| graph(s, &m.graph))?;
    for (domain, version) in &m.opsets {
        message(s, 8, &|s| {
            bytes_field(s, 1, domain.as_bytes())?;
            int_field(s, 2, *version)
        })?;
    }
    for (k, v) in &m.metadata {
        message(s, 14, &|s| {
            bytes_field(s, 1, k.as_bytes())?;
            bytes_field(s, 2, v.as_bytes())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::onnx::{DataType, Tensor};

    fn bytes_of(f: impl Fn(&mut dyn Sink) -> Res) -> Vec<u8> {
        let mut w = WriteSink(Vec::new());
        f(&mut w).unwrap();
        w.0
    }

    #[test]
    fn varints_follow_the_wire_format() {
        let enc = |v: u64| bytes_of(|s| varint(s, v));
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        // -1 as int64: ten bytes, all groups set.
        assert_eq!(
            bytes_of(|s| int_field(s, 3, -1)),
            [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn a_counter_measures_what_a_writer_writes() {
        let t = Tensor::f32(&[3], &[1.0, 2.0, 3.0]).unwrap().named("w");
        let mut c = Counter(0);
        tensor(&mut c, &t).unwrap();
        assert_eq!(c.0 as usize, bytes_of(|s| tensor(s, &t)).len());
    }

    // The expected bytes below equal the reference serialiser's
    // (`onnx.helper.make_tensor(..., raw=True).SerializeToString()` and
    // friends, onnx 1.23), except that it writes an unnamed tensor's empty
    // name explicitly (`42 00`), which readers treat as unset.
    #[test]
    fn tensor_proto_bytes() {
        let t = Tensor::f32(&[2], &[1.0, 2.0]).unwrap().named("w");
        assert_eq!(
            bytes_of(|s| tensor(s, &t)),
            [
                0x08, 0x02, // dims: 2
                0x10, 0x01, // data_type: FLOAT
                0x42, 0x01, b'w', // name
                0x4a, 0x08, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, // raw_data
            ]
        );
        let t = Tensor::i64(&[], &[-2]).unwrap().named("k");
        assert_eq!(
            bytes_of(|s| tensor(s, &t)),
            [
                0x10, 0x07, 0x42, 0x01, b'k', 0x4a, 0x08, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff
            ]
        );
    }

    #[test]
    fn attribute_proto_bytes() {
        let a = Attribute::ints("perm", &[0, 2, 1]);
        assert_eq!(
            bytes_of(|s| attribute(s, &a)),
            [
                0x0a, 0x04, b'p', b'e', b'r', b'm', // name
                0x40, 0x00, 0x40, 0x02, 0x40, 0x01, // ints, unpacked
                0xa0, 0x01, 0x07, // type: INTS
            ]
        );
        let a = Attribute::float("alpha", 0.5);
        assert_eq!(
            bytes_of(|s| attribute(s, &a)),
            [
                0x0a, 0x05, b'a', b'l', b'p', b'h', b'a', 0x15, 0x00, 0x00, 0x00, 0x3f, 0xa0, 0x01,
                0x01
            ]
        );
        let a = Attribute::string("mode", "linear");
        let mut want = vec![0x0a, 0x04, b'm', b'o', b'd', b'e', 0x22, 0x06];
        want.extend_from_slice(b"linear");
        want.extend_from_slice(&[0xa0, 0x01, 0x03]);
        assert_eq!(bytes_of(|s| attribute(s, &a)), want);
        let a = Attribute::tensor("value", Tensor::u8(&[1], &[9]).unwrap());
        assert_eq!(
            bytes_of(|s| attribute(s, &a)),
            [
                0x0a, 0x05, b'v', b'a', b'l', b'u', b'e', // name
                0x2a, 0x07, 0x08, 0x01, 0x10, 0x02, 0x4a, 0x01, 0x09, // t
                0xa0, 0x01, 0x04, // type: TENSOR
            ]
        );
    }

    #[test]
    fn value_info_and_node_bytes() {
        let v = ValueInfo::new(
            "x",
            DataType::Int64,
            &[Dim::symbolic("batch"), Dim::fixed(4)],
        );
        let mut want = vec![
            0x0a, 0x01, b'x', 0x12, 0x13, 0x0a, 0x11, 0x08, 0x07, 0x12, 0x0d,
        ];
        want.extend_from_slice(&[0x0a, 0x07, 0x12, 0x05]);
        want.extend_from_slice(b"batch");
        want.extend_from_slice(&[0x0a, 0x02, 0x08, 0x04]);
        assert_eq!(bytes_of(|s| value_info(s, &v)), want);

        let n = Node::new("Gelu")
            .inputs(&["a"])
            .outputs(&["b"])
            .name("g")
            .domain("com.microsoft");
        let mut want = vec![
            0x0a, 0x01, b'a', 0x12, 0x01, b'b', 0x1a, 0x01, b'g', 0x22, 0x04,
        ];
        want.extend_from_slice(b"Gelu");
        want.extend_from_slice(&[0x3a, 0x0d]);
        want.extend_from_slice(b"com.microsoft");
        assert_eq!(bytes_of(|s| node(s, &n)), want);
    }
}

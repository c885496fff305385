//! A graph written by the builder, loaded and run by the provisioned ONNX
//! Runtime, against the same arithmetic done here. Fails (does not skip)
//! when the runtime library is not installed.

use super::{Attribute, DataType, Dim, Graph, Model, Node, Tensor};
use crate::config::Config;
use crate::models::ModelPaths;

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), enough for a check.
fn erf(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_7) * t - 0.284_496_74) * t
            + 0.254_829_6)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

fn matmul(a: &[f32], b: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            out[i * m + j] = (0..k).map(|p| a[i * k + p] * b[p * m + j]).sum();
        }
    }
    out
}

/// x [batch, 3] -> Gelu(x W + b) -> (. W2 + b2) -> LayerNorm -> Transpose -> flat,
/// with weights in f32, f16, int8 and uint8 (dequantised in the graph), shape
/// and perm as int64 data and ints, a float attribute, a string attribute and
/// a `Constant` holding floats.
fn tiny_model() -> Model {
    let mut g = Graph::new("tiny");
    let batch = Dim::symbolic("batch");
    let x = g
        .input("x", DataType::Float, &[batch.clone(), Dim::fixed(3)])
        .unwrap();
    let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.1).collect();
    let w = g
        .initializer("w", Tensor::f32(&[3, 4], &w).unwrap())
        .unwrap();
    let b16 = g
        .initializer("b16", Tensor::f16(&[4], &[0.5, -0.25, 0.0, 1.0]).unwrap())
        .unwrap();
    let b = g
        .op("Cast", &[&b16], vec![Attribute::int("to", 1)])
        .unwrap();
    let h = g.op("MatMul", &[&x, &w], vec![]).unwrap();
    let h = g.op("Add", &[&h, &b], vec![]).unwrap();
    let gelu = g
        .node(
            Node::new("Gelu")
                .inputs(&[&h])
                .outputs(&["gelu"])
                .attr(Attribute::string("approximate", "none")),
        )
        .unwrap()
        .remove(0);
    let q: Vec<i8> = (0..16).map(|i| (i * 7 % 19 - 9) as i8).collect();
    let wq = g.constant(Tensor::i8(&[4, 4], &q).unwrap()).unwrap();
    let ws = g.constant(Tensor::scalar_f32(0.05)).unwrap();
    let wz = g.constant(Tensor::i8(&[], &[1]).unwrap()).unwrap();
    let w2 = g.op("DequantizeLinear", &[&wq, &ws, &wz], vec![]).unwrap();
    let bq = g
        .constant(Tensor::u8(&[4], &[128, 130, 120, 255]).unwrap())
        .unwrap();
    let bs = g.constant(Tensor::scalar_f32(0.5)).unwrap();
    let bz = g.constant(Tensor::u8(&[], &[128]).unwrap()).unwrap();
    let b2 = g.op("DequantizeLinear", &[&bq, &bs, &bz], vec![]).unwrap();
    let h2 = g.op("MatMul", &[&gelu, &w2], vec![]).unwrap();
    let h2 = g.op("Add", &[&h2, &b2], vec![]).unwrap();
    let gamma = g
        .op(
            "Constant",
            &[],
            vec![Attribute::floats("value_floats", &[1.0, 2.0, 0.5, -1.0])],
        )
        .unwrap();
    let beta = g
        .initializer("beta", Tensor::f32(&[4], &[0.0, 0.1, 0.2, 0.3]).unwrap())
        .unwrap();
    let ln = g
        .op(
            "LayerNormalization",
            &[&h2, &gamma, &beta],
            vec![
                Attribute::int("axis", -1),
                Attribute::float("epsilon", 1e-5),
            ],
        )
        .unwrap();
    let t = g
        .op("Transpose", &[&ln], vec![Attribute::ints("perm", &[1, 0])])
        .unwrap();
    let shape = g.constant(Tensor::i64(&[1], &[-1]).unwrap()).unwrap();
    g.node(
        Node::new("Reshape")
            .inputs(&[&t, &shape])
            .outputs(&["flat"]),
    )
    .unwrap();
    g.output("flat", DataType::Float, &[Dim::symbolic("n")])
        .unwrap();
    g.output(&gelu, DataType::Float, &[batch, Dim::fixed(4)])
        .unwrap();
    Model::new(g).opset("", 21)
}

/// The same computation in plain Rust: (flat, gelu).
fn expected(x: &[f32], batch: usize) -> (Vec<f32>, Vec<f32>) {
    let w: Vec<f32> = (0..12).map(|i| (i as f32 - 5.5) * 0.1).collect();
    let b = [0.5, -0.25, 0.0, 1.0];
    let mut h = matmul(x, &w, batch, 3, 4);
    for (i, v) in h.iter_mut().enumerate() {
        let z = *v + b[i % 4];
        *v = 0.5 * z * (1.0 + erf(z / std::f32::consts::SQRT_2));
    }
    let gelu = h.clone();
    let w2: Vec<f32> = (0..16)
        .map(|i| ((i * 7 % 19 - 9) as f32 - 1.0) * 0.05)
        .collect();
    let b2 = [0.0, 1.0, -4.0, 63.5];
    let mut h2 = matmul(&h, &w2, batch, 4, 4);
    let gamma = [1.0, 2.0, 0.5, -1.0];
    let beta = [0.0, 0.1, 0.2, 0.3];
    for row in h2.chunks_mut(4) {
        for (v, b) in row.iter_mut().zip(b2) {
            *v += b;
        }
        let mean = row.iter().sum::<f32>() / 4.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) / (var + 1e-5).sqrt() * gamma[j] + beta[j];
        }
    }
    let mut flat = vec![0.0; batch * 4];
    for i in 0..batch {
        for j in 0..4 {
            flat[j * batch + i] = h2[i * 4 + j];
        }
    }
    (flat, gelu)
}

#[test]
fn onnx_runtime_runs_a_written_graph() {
    let lib = ModelPaths::resolve(&Config::default()).ort_lib;
    assert!(
        lib.is_file(),
        "ONNX Runtime library missing at {}: run `callpulse models fetch` (or set CALLPULSE_MODELS_DIR)",
        lib.display()
    );
    let env = crate::runtime::environment(&lib).expect("ONNX Runtime loads");
    let bytes = tiny_model().to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.onnx");
    let written = tiny_model().write(&path).unwrap();
    assert_eq!(written, bytes.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    let mut session = ort::session::Session::builder(env)
        .unwrap()
        .commit_from_memory(&bytes)
        .unwrap();
    let batch = 3;
    let x: Vec<f32> = (0..batch * 3)
        .map(|i| (i as f32 * 0.37).sin() * 2.0)
        .collect();
    let input = ort::value::Tensor::from_array(([batch, 3usize], x.clone())).unwrap();
    let out = session.run(ort::inputs!["x" => input]).unwrap();
    let (shape, flat) = out["flat"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&shape[..], &[batch as i64 * 4]);
    let (gshape, gelu) = out["gelu"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(&gshape[..], &[batch as i64, 4]);
    let (want_flat, want_gelu) = expected(&x, batch);
    for (a, b) in gelu.iter().zip(&want_gelu) {
        assert!((a - b).abs() < 1e-4, "gelu {gelu:?} vs {want_gelu:?}");
    }
    for (a, b) in flat.iter().zip(&want_flat) {
        assert!((a - b).abs() < 1e-3, "output {flat:?} vs {want_flat:?}");
    }
}

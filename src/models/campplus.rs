//! CAM++ (3D-Speaker's context-aware masking D-TDNN speaker model) from its
//! PyTorch checkpoint to an ONNX graph, written with [`super::onnx`].
//!
//! Input `feats` `[batch, frames, 80]`: Kaldi log mel fbank with each bin's
//! mean over the window removed. Output `embedding` `[batch, D]` (D = 192
//! for the shipped model), compared by cosine.
//!
//! The network, as the checkpoint's tensor names and shapes describe it:
//! - a 2-D convolutional front end on (frequency, time): conv 3×3 → BN →
//!   ReLU, two stages of two residual blocks (the first of each halves the
//!   frequency axis), conv 3×3 with frequency stride 2 → BN → ReLU; then
//!   channels × remaining frequency bins are flattened into 320 features;
//! - a TDNN layer (kernel 5, time stride 2) → BN → ReLU;
//! - three densely connected blocks (12, 24, 16 layers; dilation 1, 2, 2),
//!   each layer BN → ReLU → 1×1 conv → BN → ReLU → context-aware masking:
//!   a kernel-3 conv gated by sigmoid(MLP(utterance mean + mean of the
//!   100-frame segment the frame falls in)), its output concatenated to the
//!   layer's input; each block followed by a transition (BN → ReLU → 1×1
//!   conv halving the channels);
//! - BN → ReLU, mean and unbiased standard deviation over time, a linear
//!   layer and a BN without affine parameters.
//!
//! Batch norms that follow a convolution are folded into it; the others
//! become a multiply and an add. The segment means are computed as
//! `AveragePool(x) / AveragePool(ones)` so that the last, partial segment is
//! divided by its true length whatever divisor the runtime uses for a
//! ceil-mode window (a plain export of PyTorch's `avg_pool1d(ceil_mode=True)`
//! is silently wrong by up to 30% there).

use std::path::Path;

use super::onnx::{Attribute, DataType, Dim, Graph, Model, OnnxError, Tensor};
use super::torch::{Checkpoint, CheckpointError};

/// Batch norm epsilon used by the model.
const BN_EPS: f32 = 1e-5;
/// Frames per segment of the context pooling.
const SEG_LEN: i64 = 100;
/// Dilation of each dense block (a property of CAM++, not stored in weights).
const DILATIONS: [i64; 3] = [1, 2, 2];
/// Input features per frame.
pub const FEAT_DIM: usize = 80;

/// Why the graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CampplusError {
    /// The checkpoint cannot be read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint does not have the CAM++ layout.
    #[error("the checkpoint is not a CAM++ model this converter knows: {0}")]
    Layout(String),
    /// Building or writing the graph failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// What was converted.
#[derive(Debug, Clone, PartialEq)]
pub struct CampplusInfo {
    /// Layers per dense block.
    pub block_layers: Vec<usize>,
    /// Embedding size.
    pub embedding_dim: usize,
    /// Nodes in the graph.
    pub nodes: usize,
}

struct Builder {
    g: Graph,
    ck: Checkpoint,
}

fn i64s(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

impl Builder {
    fn tensor(&mut self, name: &str) -> Result<(Vec<usize>, Vec<f32>), CampplusError> {
        let t = self.ck.read(name)?;
        Ok((t.shape, t.data))
    }

    /// Per-channel (scale, shift) of an inference-mode batch norm.
    fn bn(&mut self, p: &str, affine: bool) -> Result<(Vec<f32>, Vec<f32>), CampplusError> {
        let (_, mean) = self.tensor(&format!("{p}.running_mean"))?;
        let (_, var) = self.tensor(&format!("{p}.running_var"))?;
        let (w, b) = if affine {
            (
                self.tensor(&format!("{p}.weight"))?.1,
                self.tensor(&format!("{p}.bias"))?.1,
            )
        } else {
            (vec![1.0; mean.len()], vec![0.0; mean.len()])
        };
        if [var.len(), w.len(), b.len()]
            .iter()
            .any(|&n| n != mean.len())
        {
            return Err(CampplusError::Layout(format!(
                "batch norm {p} sizes differ"
            )));
        }
        let scale: Vec<f32> = var
            .iter()
            .zip(&w)
            .map(|(v, g)| g / (v + BN_EPS).sqrt())
            .collect();
        let shift = mean
            .iter()
            .zip(&scale)
            .zip(&b)
            .map(|((m, s), b)| b - m * s)
            .collect();
        Ok((scale, shift))
    }

    /// Convolution `conv` (no bias) followed by batch norm `bn` folded in,
    /// optionally ReLU. `pads`, `strides`, `dilations` per spatial axis.
    fn conv_bn(
        &mut self,
        x: &str,
        conv: &str,
        bn: Option<(&str, bool)>,
        geometry: [&[i64]; 3],
        relu: bool,
    ) -> Result<String, CampplusError> {
        let (shape, mut w) = self.tensor(&format!("{conv}.weight"))?;
        let out_ch = shape[0];
        let per = w.len() / out_ch.max(1);
        let mut bias = match self.ck.shape(&format!("{conv}.bias")) {
            Some(_) => self.tensor(&format!("{conv}.bias"))?.1,
            None => vec![0.0; out_ch],
        };
        if let Some((p, affine)) = bn {
            let (scale, shift) = self.bn(p, affine)?;
            if scale.len() != out_ch {
                return Err(CampplusError::Layout(format!("{p} does not match {conv}")));
            }
            for o in 0..out_ch {
                w[o * per..(o + 1) * per]
                    .iter_mut()
                    .for_each(|v| *v *= scale[o]);
                bias[o] = bias[o] * scale[o] + shift[o];
            }
        }
        let wn = self
            .g
            .initializer(&format!("{conv}.w"), Tensor::f32(&i64s(&shape), &w)?)?;
        let bn_ = self
            .g
            .initializer(&format!("{conv}.b"), Tensor::f32(&[out_ch as i64], &bias)?)?;
        let [pads, strides, dilations] = geometry;
        let mut pads2 = pads.to_vec();
        pads2.extend_from_slice(pads);
        let y = self.g.op(
            "Conv",
            &[x, &wn, &bn_],
            vec![
                Attribute::ints("kernel_shape", &i64s(&shape[2..])),
                Attribute::ints("pads", &pads2),
                Attribute::ints("strides", strides),
                Attribute::ints("dilations", dilations),
            ],
        )?;
        Ok(if relu {
            self.g.op("Relu", &[&y], vec![])?
        } else {
            y
        })
    }

    /// Batch norm `p` as multiply-add over channel axis 1 of a 3-D tensor,
    /// then ReLU.
    fn bn_relu(&mut self, x: &str, p: &str) -> Result<String, CampplusError> {
        let (scale, shift) = self.bn(p, true)?;
        let c = scale.len() as i64;
        let s = self
            .g
            .initializer(&format!("{p}.scale"), Tensor::f32(&[c, 1], &scale)?)?;
        let t = self
            .g
            .initializer(&format!("{p}.shift"), Tensor::f32(&[c, 1], &shift)?)?;
        let y = self.g.op("Mul", &[x, &s], vec![])?;
        let y = self.g.op("Add", &[&y, &t], vec![])?;
        Ok(self.g.op("Relu", &[&y], vec![])?)
    }

    fn const_i64(&mut self, v: &[i64]) -> Result<String, CampplusError> {
        Ok(self.g.constant(Tensor::i64(&[v.len() as i64], v)?)?)
    }

    /// Residual block of the front end.
    fn res_block(&mut self, x: &str, p: &str, stride: i64) -> Result<String, CampplusError> {
        let g3 = |s: i64| -> [Vec<i64>; 3] { [vec![1, 1], vec![s, 1], vec![1, 1]] };
        let a = g3(stride);
        let h = self.conv_bn(
            x,
            &format!("{p}.conv1"),
            Some((&format!("{p}.bn1"), true)),
            [&a[0], &a[1], &a[2]],
            true,
        )?;
        let b = g3(1);
        let h = self.conv_bn(
            &h,
            &format!("{p}.conv2"),
            Some((&format!("{p}.bn2"), true)),
            [&b[0], &b[1], &b[2]],
            false,
        )?;
        let short = if self.ck.shape(&format!("{p}.shortcut.0.weight")).is_some() {
            self.conv_bn(
                x,
                &format!("{p}.shortcut.0"),
                Some((&format!("{p}.shortcut.1"), true)),
                [&[0, 0], &[stride, 1], &[1, 1]],
                false,
            )?
        } else {
            x.to_string()
        };
        let y = self.g.op("Add", &[&h, &short], vec![])?;
        Ok(self.g.op("Relu", &[&y], vec![])?)
    }

    /// The front end: [B, T, 80] → [B, 320, T].
    fn head(&mut self, feats: &str) -> Result<String, CampplusError> {
        let x = self.g.op(
            "Transpose",
            &[feats],
            vec![Attribute::ints("perm", &[0, 2, 1])],
        )?;
        let ax = self.const_i64(&[1])?;
        let x = self.g.op("Unsqueeze", &[&x, &ax], vec![])?;
        let x = self.conv_bn(
            &x,
            "head.conv1",
            Some(("head.bn1", true)),
            [&[1, 1], &[1, 1], &[1, 1]],
            true,
        )?;
        let mut x = x;
        for layer in ["layer1", "layer2"] {
            x = self.res_block(&x, &format!("head.{layer}.0"), 2)?;
            x = self.res_block(&x, &format!("head.{layer}.1"), 1)?;
        }
        let x = self.conv_bn(
            &x,
            "head.conv2",
            Some(("head.bn2", true)),
            [&[1, 1], &[2, 1], &[1, 1]],
            true,
        )?;
        let ch = self
            .ck
            .shape("head.conv2.weight")
            .map(|s| s[0])
            .unwrap_or(32) as i64;
        let shape = self.const_i64(&[0, ch * (FEAT_DIM as i64 / 8), -1])?;
        Ok(self.g.op("Reshape", &[&x, &shape], vec![])?)
    }

    /// Segment means of `x` [B, C, T] over 100-frame segments ([B, C, S]),
    /// exact for the last partial segment; `count` is the pooled ones.
    fn segment_means(&mut self, x: &str, count: &str) -> Result<String, CampplusError> {
        let pooled = self.g.op("AveragePool", &[x], pool_attrs())?;
        Ok(self.g.op("Div", &[&pooled, count], vec![])?)
    }

    /// Repeat each segment value 100 times and cut to `t_len` frames.
    fn expand_segments(&mut self, x: &str, ctx: &Ctx) -> Result<String, CampplusError> {
        let y = self.g.op("Unsqueeze", &[x, &ctx.axis3], vec![])?;
        let y = self.g.op("Expand", &[&y, &ctx.rep], vec![])?;
        let y = self.g.op("Reshape", &[&y, &ctx.flat], vec![])?;
        Ok(self
            .g
            .op("Slice", &[&y, &ctx.zero, &ctx.t_len, &ctx.axis2], vec![])?)
    }

    /// One CAM dense layer; returns the new features to concatenate.
    fn cam_layer(
        &mut self,
        x: &str,
        p: &str,
        dil: i64,
        ctx: &Ctx,
    ) -> Result<String, CampplusError> {
        let h = self.bn_relu(x, &format!("{p}.nonlinear1.batchnorm"))?;
        let h = self.conv_bn(
            &h,
            &format!("{p}.linear1"),
            Some((&format!("{p}.nonlinear2.batchnorm"), true)),
            [&[0], &[1], &[1]],
            true,
        )?;
        let c = format!("{p}.cam_layer");
        let y = self.conv_bn(
            &h,
            &format!("{c}.linear_local"),
            None,
            [&[dil], &[1], &[dil]],
            false,
        )?;
        // The gate depends on the frame only through its segment, so it is
        // computed per segment and repeated afterwards.
        let mean = self.g.op(
            "ReduceMean",
            &[&h],
            vec![Attribute::ints("axes", &[2]), Attribute::int("keepdims", 1)],
        )?;
        let seg = self.segment_means(&h, &ctx.count)?;
        let context = self.g.op("Add", &[&seg, &mean], vec![])?;
        let m = self.conv_bn(
            &context,
            &format!("{c}.linear1"),
            None,
            [&[0], &[1], &[1]],
            true,
        )?;
        let m = self.conv_bn(&m, &format!("{c}.linear2"), None, [&[0], &[1], &[1]], false)?;
        let m = self.g.op("Sigmoid", &[&m], vec![])?;
        let m = self.expand_segments(&m, ctx)?;
        Ok(self.g.op("Mul", &[&y, &m], vec![])?)
    }

    /// Mean and unbiased standard deviation over time: [B, C, T] → [B, 2C].
    fn stats(&mut self, x: &str, ctx: &Ctx) -> Result<String, CampplusError> {
        let mean_k = self.g.op(
            "ReduceMean",
            &[x],
            vec![Attribute::ints("axes", &[2]), Attribute::int("keepdims", 1)],
        )?;
        let d = self.g.op("Sub", &[x, &mean_k], vec![])?;
        let d2 = self.g.op("Mul", &[&d, &d], vec![])?;
        let ss = self.g.op(
            "ReduceSum",
            &[&d2, &ctx.axis2],
            vec![Attribute::int("keepdims", 0)],
        )?;
        let t = self
            .g
            .op("Cast", &[&ctx.t_len], vec![Attribute::int("to", 1)])?;
        let one = self.g.constant(Tensor::f32(&[1], &[1.0])?)?;
        let n1 = self.g.op("Sub", &[&t, &one], vec![])?;
        let var = self.g.op("Div", &[&ss, &n1], vec![])?;
        let std = self.g.op("Sqrt", &[&var], vec![])?;
        let mean = self.g.op(
            "ReduceMean",
            &[x],
            vec![Attribute::ints("axes", &[2]), Attribute::int("keepdims", 0)],
        )?;
        Ok(self
            .g
            .op("Concat", &[&mean, &std], vec![Attribute::int("axis", 1)])?)
    }
}

fn pool_attrs() -> Vec<Attribute> {
    vec![
        Attribute::ints("kernel_shape", &[SEG_LEN]),
        Attribute::ints("strides", &[SEG_LEN]),
        Attribute::int("ceil_mode", 1),
    ]
}

/// Values shared by every dense layer, computed once from the time length.
struct Ctx {
    /// Frames after the TDNN layer, `[1]` int64.
    t_len: String,
    /// `AveragePool` of ones `[1, 1, S]`: each segment's share of a full one.
    count: String,
    axis2: String,
    axis3: String,
    zero: String,
    rep: String,
    flat: String,
}

impl Ctx {
    fn new(b: &mut Builder, x: &str) -> Result<Ctx, CampplusError> {
        let t_len = b.g.op(
            "Shape",
            &[x],
            vec![Attribute::int("start", 2), Attribute::int("end", 3)],
        )?;
        let one_one = b.const_i64(&[1, 1])?;
        let shape = b.g.op(
            "Concat",
            &[&one_one, &t_len],
            vec![Attribute::int("axis", 0)],
        )?;
        let ones = b.g.op(
            "ConstantOfShape",
            &[&shape],
            vec![Attribute::tensor("value", Tensor::f32(&[1], &[1.0])?)],
        )?;
        let count = b.g.op("AveragePool", &[&ones], pool_attrs())?;
        Ok(Ctx {
            t_len,
            count,
            axis2: b.const_i64(&[2])?,
            axis3: b.const_i64(&[3])?,
            zero: b.const_i64(&[0])?,
            rep: b.const_i64(&[1, 1, 1, SEG_LEN])?,
            flat: b.const_i64(&[0, 0, -1])?,
        })
    }
}

/// Layers per dense block, from the checkpoint's tensor names.
fn block_layers(ck: &Checkpoint) -> Vec<usize> {
    (1..=DILATIONS.len())
        .map(|b| {
            (1..)
                .take_while(|l| {
                    ck.shape(&format!("xvector.block{b}.tdnnd{l}.linear1.weight"))
                        .is_some()
                })
                .count()
        })
        .collect()
}

/// Read the CAM++ checkpoint at `ckpt` and write its ONNX graph to `out`.
pub fn convert_campplus(ckpt: &Path, out: &Path) -> Result<CampplusInfo, CampplusError> {
    let ck = Checkpoint::open(ckpt)?;
    let layers = block_layers(&ck);
    if layers.contains(&0) || ck.shape("xvector.block4.tdnnd1.linear1.weight").is_some() {
        return Err(CampplusError::Layout(format!(
            "expected three dense blocks, found layers {layers:?}"
        )));
    }
    match ck.shape("head.conv1.weight") {
        Some([_, 1, 3, 3]) => {}
        other => {
            return Err(CampplusError::Layout(format!(
                "head.conv1.weight has shape {other:?}, expected [C, 1, 3, 3]"
            )))
        }
    }
    let dim = match ck.shape("xvector.dense.linear.weight") {
        Some([d, _, 1]) => *d,
        other => {
            return Err(CampplusError::Layout(format!(
                "xvector.dense.linear.weight has shape {other:?}"
            )))
        }
    };
    let mut b = Builder {
        g: Graph::new("campplus"),
        ck,
    };
    let batch = Dim::symbolic("batch");
    let feats = b.g.input(
        "feats",
        DataType::Float,
        &[
            batch.clone(),
            Dim::symbolic("frames"),
            Dim::fixed(FEAT_DIM as i64),
        ],
    )?;
    let x = b.head(&feats)?;
    let mut x = b.conv_bn(
        &x,
        "xvector.tdnn.linear",
        Some(("xvector.tdnn.nonlinear.batchnorm", true)),
        [&[2], &[2], &[1]],
        true,
    )?;
    let ctx = Ctx::new(&mut b, &x)?;
    for (bi, (&n, &dil)) in layers.iter().zip(&DILATIONS).enumerate() {
        for li in 1..=n {
            let p = format!("xvector.block{}.tdnnd{li}", bi + 1);
            let y = b.cam_layer(&x, &p, dil, &ctx)?;
            x =
                b.g.op("Concat", &[&x, &y], vec![Attribute::int("axis", 1)])?;
        }
        let p = format!("xvector.transit{}", bi + 1);
        let h = b.bn_relu(&x, &format!("{p}.nonlinear.batchnorm"))?;
        // The last transition's output goes through the final BN → ReLU.
        let post = (bi + 1 == layers.len()).then_some(("xvector.out_nonlinear.batchnorm", true));
        x = b.conv_bn(
            &h,
            &format!("{p}.linear"),
            post,
            [&[0], &[1], &[1]],
            post.is_some(),
        )?;
    }
    let s = b.stats(&x, &ctx)?;
    let ax = b.const_i64(&[2])?;
    let s = b.g.op("Unsqueeze", &[&s, &ax], vec![])?;
    let e = b.conv_bn(
        &s,
        "xvector.dense.linear",
        Some(("xvector.dense.nonlinear.batchnorm", false)),
        [&[0], &[1], &[1]],
        false,
    )?;
    let mut g = b.g;
    g.node(
        super::onnx::Node::new("Squeeze")
            .inputs(&[&e, &ax])
            .outputs(&["embedding"]),
    )?;
    g.output(
        "embedding",
        DataType::Float,
        &[batch, Dim::fixed(dim as i64)],
    )?;
    let nodes = g.node_count();
    Model::new(g)
        .opset("", 17)
        .doc("CAM++ speaker embedding (3D-Speaker), converted by callpulse")
        .write(out)?;
    Ok(CampplusInfo {
        block_layers: layers,
        embedding_dim: dim,
        nodes,
    })
}

//! The conversion plan: hyper-parameters and the tensor mapping.

use super::*;

/// Model dimensions derived from the CTranslate2 variables.
#[derive(Debug, Clone)]
pub(super) struct Hparams {
    pub(super) n_vocab: u64,
    pub(super) n_audio_ctx: u64,
    pub(super) n_audio_state: u64,
    pub(super) n_audio_head: u64,
    pub(super) n_audio_layer: u64,
    pub(super) n_text_ctx: u64,
    pub(super) n_text_state: u64,
    pub(super) n_text_head: u64,
    pub(super) n_text_layer: u64,
    pub(super) n_mels: u64,
}

/// One output tensor: which CTranslate2 variable (and which rows of its first
/// axis) it comes from, and how it is written.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) name: String,
    pub(super) source: String,
    /// Shape the source variable must have.
    pub(super) source_shape: Vec<u64>,
    /// First row (along the source's first axis) taken.
    pub(super) row_start: u64,
    /// Dimensions written, outermost first.
    pub(super) dims: Vec<u64>,
    pub(super) f32: bool,
}

impl Planned {
    pub(super) fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Number of `prefix/layer_N/` blocks, which must be numbered 0..N.
pub(super) fn count_layers(index: &Ct2Index, prefix: &str) -> Result<u64, ConvertError> {
    let marker = format!("{prefix}/layer_");
    let mut seen = std::collections::BTreeSet::new();
    for name in index.vars.keys().chain(index.aliases.keys()) {
        if let Some(rest) = name.strip_prefix(&marker) {
            if let Some(n) = rest.split('/').next().and_then(|s| s.parse::<u64>().ok()) {
                seen.insert(n);
            }
        }
    }
    let count = seen.len() as u64;
    if let Some(missing) = (0..count).find(|i| !seen.contains(i)) {
        return Err(ConvertError::MissingVariable {
            path: index.path.clone(),
            name: format!("{prefix}/layer_{missing}/..."),
        });
    }
    if count == 0 {
        return Err(ConvertError::MissingVariable {
            path: index.path.clone(),
            name: format!("{prefix}/layer_0/..."),
        });
    }
    Ok(count)
}

pub(super) fn dim(
    index: &Ct2Index,
    name: &str,
    axis: usize,
    rank: usize,
) -> Result<u64, ConvertError> {
    let var = index.require(name)?;
    match var.shape.get(axis) {
        Some(&d) if var.shape.len() == rank && d > 0 => Ok(d),
        _ => Err(ConvertError::Unsupported {
            path: index.path.clone(),
            message: format!(
                "variable {name:?} has shape {:?}; a non-empty {rank}-D tensor was expected",
                var.shape
            ),
        }),
    }
}

pub(super) fn derive_hparams(
    index: &Ct2Index,
    data: &mut ModelData,
) -> Result<Hparams, ConvertError> {
    let n_audio_state = dim(index, "encoder/conv1/weight", 0, 3)?;
    let n_mels = dim(index, "encoder/conv1/weight", 1, 3)?;
    let n_audio_ctx = dim(index, "encoder/position_encodings/encodings", 0, 2)?;
    let n_text_ctx = dim(index, "decoder/position_encodings/encodings", 0, 2)?;
    let n_vocab = dim(index, "decoder/embeddings/weight", 0, 2)?;
    let n_text_state = dim(index, "decoder/embeddings/weight", 1, 2)?;
    let n_audio_layer = count_layers(index, "encoder")?;
    let n_text_layer = count_layers(index, "decoder")?;
    let unsupported = |message: String| ConvertError::Unsupported {
        path: index.path.clone(),
        message,
    };
    if n_text_state != n_audio_state {
        return Err(unsupported(format!(
            "decoder width {n_text_state} differs from encoder width {n_audio_state}; whisper.cpp requires them equal"
        )));
    }
    // Whisper's attention heads are 64 wide; CTranslate2 records the count.
    let heads = |name: &str, data: &mut ModelData| -> Result<u64, ConvertError> {
        let n = match index.scalar_int(name, data)? {
            Some(n) => n,
            None => (n_audio_state / 64) as i64,
        };
        match u64::try_from(n) {
            Ok(n) if n > 0 && n_audio_state % n == 0 => Ok(n),
            _ => Err(unsupported(format!(
                "{name} = {n} does not divide the model width {n_audio_state}"
            ))),
        }
    };
    let n_audio_head = heads("encoder/num_heads", data)?;
    let n_text_head = heads("decoder/num_heads", data)?;
    let hp = Hparams {
        n_vocab,
        n_audio_ctx,
        n_audio_state,
        n_audio_head,
        n_audio_layer,
        n_text_ctx,
        n_text_state,
        n_text_head,
        n_text_layer,
        n_mels,
    };
    for (what, v) in [
        ("n_vocab", hp.n_vocab),
        ("n_audio_ctx", hp.n_audio_ctx),
        ("n_text_ctx", hp.n_text_ctx),
        ("n_audio_layer", hp.n_audio_layer),
        ("n_text_layer", hp.n_text_layer),
        ("n_mels", hp.n_mels),
        // The feed-forward width 4 × state must fit, too.
        ("n_audio_state", hp.n_audio_state.saturating_mul(4)),
    ] {
        if i32::try_from(v).is_err() {
            return Err(unsupported(format!(
                "{what} = {v} does not fit the ggml header (i32)"
            )));
        }
    }
    Ok(hp)
}

/// Lists every tensor whisper.cpp loads, in OpenAI checkpoint order.
pub(super) fn plan_tensors(hp: &Hparams) -> Vec<Planned> {
    let d = hp.n_audio_state;
    let mut p = Plan::default();
    p.whole(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
        vec![hp.n_audio_ctx, d],
    );
    p.whole(
        "encoder.conv1.weight",
        "encoder/conv1/weight",
        vec![d, hp.n_mels, 3],
    );
    p.add(
        "encoder.conv1.bias",
        "encoder/conv1/bias",
        vec![d],
        0,
        vec![d, 1],
    );
    p.whole(
        "encoder.conv2.weight",
        "encoder/conv2/weight",
        vec![d, d, 3],
    );
    p.add(
        "encoder.conv2.bias",
        "encoder/conv2/bias",
        vec![d],
        0,
        vec![d, 1],
    );
    for i in 0..hp.n_audio_layer {
        p.block("encoder", i, d);
    }
    p.whole(
        "encoder.ln_post.weight",
        "encoder/layer_norm/gamma",
        vec![d],
    );
    p.whole("encoder.ln_post.bias", "encoder/layer_norm/beta", vec![d]);
    p.whole(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
        vec![hp.n_text_ctx, d],
    );
    p.whole(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
        vec![hp.n_vocab, d],
    );
    for i in 0..hp.n_text_layer {
        p.block("decoder", i, d);
    }
    p.whole("decoder.ln.weight", "decoder/layer_norm/gamma", vec![d]);
    p.whole("decoder.ln.bias", "decoder/layer_norm/beta", vec![d]);
    p.0
}

/// The tensors planned so far, in order.
#[derive(Default)]
struct Plan(Vec<Planned>);

impl Plan {
    fn add(
        &mut self,
        name: impl Into<String>,
        source: impl Into<String>,
        source_shape: Vec<u64>,
        row_start: u64,
        dims: Vec<u64>,
    ) {
        let name = name.into();
        // 1-D tensors, both positional embeddings and the conv biases are f32.
        let f32 = dims.len() < 2
            || name.ends_with("positional_embedding")
            || name == "encoder.conv1.bias"
            || name == "encoder.conv2.bias";
        self.0.push(Planned {
            name,
            source: source.into(),
            source_shape,
            row_start,
            dims,
            f32,
        });
    }

    /// A whole variable, same shape.
    fn whole(&mut self, name: impl Into<String>, source: impl Into<String>, shape: Vec<u64>) {
        self.add(name, source, shape.clone(), 0, shape);
    }

    /// `rows` rows from `start` of a variable whose first axis is `total`.
    fn rows(
        &mut self,
        name: String,
        source: String,
        (total, start, rows): (u64, u64, u64),
        tail: Vec<u64>,
    ) {
        let mut source_shape = vec![total];
        source_shape.extend(&tail);
        let mut dims = vec![rows];
        dims.extend(&tail);
        self.add(name, source, source_shape, start, dims);
    }

    /// A layer norm's gamma and beta.
    fn norm(&mut self, dst: &str, src: &str, d: u64) {
        self.whole(format!("{dst}.weight"), format!("{src}/gamma"), vec![d]);
        self.whole(format!("{dst}.bias"), format!("{src}/beta"), vec![d]);
    }

    /// A linear layer's weight [out, in] and bias [out].
    fn linear(&mut self, dst: &str, src: &str, out: u64, inp: u64) {
        self.whole(
            format!("{dst}.weight"),
            format!("{src}/weight"),
            vec![out, inp],
        );
        self.whole(format!("{dst}.bias"), format!("{src}/bias"), vec![out]);
    }

    /// One transformer block of the encoder or the decoder.
    fn block(&mut self, side: &str, i: u64, d: u64) {
        let dst = format!("{side}.blocks.{i}");
        let src = format!("{side}/layer_{i}");
        // Self-attention: fused [3d, d] Q, K, V; the K bias is unused.
        let qkv = format!("{src}/self_attention/linear_0");
        let (w, b) = (format!("{qkv}/weight"), format!("{qkv}/bias"));
        self.rows(
            format!("{dst}.attn.query.weight"),
            w.clone(),
            (3 * d, 0, d),
            vec![d],
        );
        self.rows(
            format!("{dst}.attn.query.bias"),
            b.clone(),
            (3 * d, 0, d),
            vec![],
        );
        self.rows(
            format!("{dst}.attn.key.weight"),
            w.clone(),
            (3 * d, d, d),
            vec![d],
        );
        self.rows(
            format!("{dst}.attn.value.weight"),
            w,
            (3 * d, 2 * d, d),
            vec![d],
        );
        self.rows(
            format!("{dst}.attn.value.bias"),
            b,
            (3 * d, 2 * d, d),
            vec![],
        );
        let o = format!("{src}/self_attention/linear_1");
        self.linear(&format!("{dst}.attn.out"), &o, d, d);
        self.norm(
            &format!("{dst}.attn_ln"),
            &format!("{src}/self_attention/layer_norm"),
            d,
        );
        if side == "decoder" {
            self.cross_attention(&dst, &src, d);
        }
        self.linear(
            &format!("{dst}.mlp.0"),
            &format!("{src}/ffn/linear_0"),
            4 * d,
            d,
        );
        self.linear(
            &format!("{dst}.mlp.2"),
            &format!("{src}/ffn/linear_1"),
            d,
            4 * d,
        );
        self.norm(
            &format!("{dst}.mlp_ln"),
            &format!("{src}/ffn/layer_norm"),
            d,
        );
    }

    /// A decoder block's attention over the encoder output.
    fn cross_attention(&mut self, dst: &str, src: &str, d: u64) {
        let q = format!("{src}/attention/linear_0");
        self.linear(&format!("{dst}.cross_attn.query"), &q, d, d);
        // Fused [2d, d] K, V; the K bias is unused.
        let kv = format!("{src}/attention/linear_1");
        let (w, b) = (format!("{kv}/weight"), format!("{kv}/bias"));
        self.rows(
            format!("{dst}.cross_attn.key.weight"),
            w.clone(),
            (2 * d, 0, d),
            vec![d],
        );
        self.rows(
            format!("{dst}.cross_attn.value.weight"),
            w,
            (2 * d, d, d),
            vec![d],
        );
        self.rows(
            format!("{dst}.cross_attn.value.bias"),
            b,
            (2 * d, d, d),
            vec![],
        );
        let o = format!("{src}/attention/linear_2");
        self.linear(&format!("{dst}.cross_attn.out"), &o, d, d);
        self.norm(
            &format!("{dst}.cross_attn_ln"),
            &format!("{src}/attention/layer_norm"),
            d,
        );
    }
}

/// Checks every planned source against the index before anything is written.
pub(super) fn validate_plan(index: &Ct2Index, plan: &[Planned]) -> Result<(), ConvertError> {
    for p in plan {
        let var = index.require(&p.source)?;
        if var.shape != p.source_shape {
            return Err(ConvertError::BadShape {
                path: index.path.clone(),
                offset: var.record,
                name: p.source.clone(),
                found: var.shape.clone(),
                expected: p.source_shape.clone(),
            });
        }
        match var.dtype {
            Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => {}
            Ct2Dtype::I8 | Ct2Dtype::I16 => {
                let scale_name = scale_name(&p.source);
                let scale =
                    index
                        .get(&scale_name)
                        .ok_or_else(|| ConvertError::UnsupportedDtype {
                            path: index.path.clone(),
                            name: p.source.clone(),
                            dtype: var.dtype.name().into(),
                            hint: "integer weights need a matching weight_scale variable",
                        })?;
                let rows = var.shape.first().copied().unwrap_or(1);
                let ok_shape = scale.elements() == 1 || scale.elements() == rows;
                let ok_type = matches!(scale.dtype, Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16);
                if !ok_shape || !ok_type {
                    return Err(ConvertError::BadShape {
                        path: index.path.clone(),
                        offset: scale.record,
                        name: scale_name,
                        found: scale.shape.clone(),
                        expected: vec![rows],
                    });
                }
            }
            Ct2Dtype::I32 => {
                return Err(ConvertError::UnsupportedDtype {
                    path: index.path.clone(),
                    name: p.source.clone(),
                    dtype: var.dtype.name().into(),
                    hint: "weights must be float32, float16, bfloat16 or int8/int16 with scales",
                })
            }
        }
    }
    Ok(())
}

/// CTranslate2 keeps the scales of a quantized `x/weight` in `x/weight_scale`.
pub(super) fn scale_name(source: &str) -> String {
    format!("{source}_scale")
}

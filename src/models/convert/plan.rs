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
    let mut plan = Vec::new();
    let mut add =
        |name: String, source: String, source_shape: Vec<u64>, row_start: u64, dims: Vec<u64>| {
            // 1-D tensors, both positional embeddings and the conv biases are f32.
            let f32 = dims.len() < 2
                || name.ends_with("positional_embedding")
                || name == "encoder.conv1.bias"
                || name == "encoder.conv2.bias";
            plan.push(Planned {
                name,
                source,
                source_shape,
                row_start,
                dims,
                f32,
            });
        };
    // Whole variable, same shape.
    macro_rules! whole {
        ($name:expr, $src:expr, $shape:expr) => {{
            let shape: Vec<u64> = $shape;
            add($name, $src, shape.clone(), 0, shape)
        }};
    }
    // `rows` rows starting at `start` of a variable whose first axis is `total`.
    macro_rules! rows {
        ($name:expr, $src:expr, $total:expr, $start:expr, $rows:expr, $tail:expr) => {{
            let tail: Vec<u64> = $tail;
            let mut src_shape = vec![$total];
            src_shape.extend(&tail);
            let mut dims = vec![$rows];
            dims.extend(&tail);
            add($name, $src, src_shape, $start, dims)
        }};
    }
    whole!(
        "encoder.positional_embedding".into(),
        "encoder/position_encodings/encodings".into(),
        vec![hp.n_audio_ctx, d]
    );
    whole!(
        "encoder.conv1.weight".into(),
        "encoder/conv1/weight".into(),
        vec![d, hp.n_mels, 3]
    );
    add(
        "encoder.conv1.bias".into(),
        "encoder/conv1/bias".into(),
        vec![d],
        0,
        vec![d, 1],
    );
    whole!(
        "encoder.conv2.weight".into(),
        "encoder/conv2/weight".into(),
        vec![d, d, 3]
    );
    add(
        "encoder.conv2.bias".into(),
        "encoder/conv2/bias".into(),
        vec![d],
        0,
        vec![d, 1],
    );

    for (side, layers) in [("encoder", hp.n_audio_layer), ("decoder", hp.n_text_layer)] {
        if side == "decoder" {
            whole!(
                "encoder.ln_post.weight".into(),
                "encoder/layer_norm/gamma".into(),
                vec![d]
            );
            whole!(
                "encoder.ln_post.bias".into(),
                "encoder/layer_norm/beta".into(),
                vec![d]
            );
            whole!(
                "decoder.positional_embedding".into(),
                "decoder/position_encodings/encodings".into(),
                vec![hp.n_text_ctx, d]
            );
            whole!(
                "decoder.token_embedding.weight".into(),
                "decoder/embeddings/weight".into(),
                vec![hp.n_vocab, d]
            );
        }
        for i in 0..layers {
            let dst = format!("{side}.blocks.{i}");
            let src = format!("{side}/layer_{i}");
            // Self-attention: fused [3d, d] Q, K, V; the K bias is unused.
            let qkv = format!("{src}/self_attention/linear_0");
            rows!(
                format!("{dst}.attn.query.weight"),
                format!("{qkv}/weight"),
                3 * d,
                0,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.query.bias"),
                format!("{qkv}/bias"),
                3 * d,
                0,
                d,
                vec![]
            );
            rows!(
                format!("{dst}.attn.key.weight"),
                format!("{qkv}/weight"),
                3 * d,
                d,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.value.weight"),
                format!("{qkv}/weight"),
                3 * d,
                2 * d,
                d,
                vec![d]
            );
            rows!(
                format!("{dst}.attn.value.bias"),
                format!("{qkv}/bias"),
                3 * d,
                2 * d,
                d,
                vec![]
            );
            let o = format!("{src}/self_attention/linear_1");
            whole!(
                format!("{dst}.attn.out.weight"),
                format!("{o}/weight"),
                vec![d, d]
            );
            whole!(format!("{dst}.attn.out.bias"), format!("{o}/bias"), vec![d]);
            let ln = format!("{src}/self_attention/layer_norm");
            whole!(
                format!("{dst}.attn_ln.weight"),
                format!("{ln}/gamma"),
                vec![d]
            );
            whole!(format!("{dst}.attn_ln.bias"), format!("{ln}/beta"), vec![d]);
            if side == "decoder" {
                let q = format!("{src}/attention/linear_0");
                whole!(
                    format!("{dst}.cross_attn.query.weight"),
                    format!("{q}/weight"),
                    vec![d, d]
                );
                whole!(
                    format!("{dst}.cross_attn.query.bias"),
                    format!("{q}/bias"),
                    vec![d]
                );
                // Fused [2d, d] K, V over the encoder output; the K bias is unused.
                let kv = format!("{src}/attention/linear_1");
                rows!(
                    format!("{dst}.cross_attn.key.weight"),
                    format!("{kv}/weight"),
                    2 * d,
                    0,
                    d,
                    vec![d]
                );
                rows!(
                    format!("{dst}.cross_attn.value.weight"),
                    format!("{kv}/weight"),
                    2 * d,
                    d,
                    d,
                    vec![d]
                );
                rows!(
                    format!("{dst}.cross_attn.value.bias"),
                    format!("{kv}/bias"),
                    2 * d,
                    d,
                    d,
                    vec![]
                );
                let o = format!("{src}/attention/linear_2");
                whole!(
                    format!("{dst}.cross_attn.out.weight"),
                    format!("{o}/weight"),
                    vec![d, d]
                );
                whole!(
                    format!("{dst}.cross_attn.out.bias"),
                    format!("{o}/bias"),
                    vec![d]
                );
                let ln = format!("{src}/attention/layer_norm");
                whole!(
                    format!("{dst}.cross_attn_ln.weight"),
                    format!("{ln}/gamma"),
                    vec![d]
                );
                whole!(
                    format!("{dst}.cross_attn_ln.bias"),
                    format!("{ln}/beta"),
                    vec![d]
                );
            }
            let f0 = format!("{src}/ffn/linear_0");
            whole!(
                format!("{dst}.mlp.0.weight"),
                format!("{f0}/weight"),
                vec![4 * d, d]
            );
            whole!(
                format!("{dst}.mlp.0.bias"),
                format!("{f0}/bias"),
                vec![4 * d]
            );
            let f1 = format!("{src}/ffn/linear_1");
            whole!(
                format!("{dst}.mlp.2.weight"),
                format!("{f1}/weight"),
                vec![d, 4 * d]
            );
            whole!(format!("{dst}.mlp.2.bias"), format!("{f1}/bias"), vec![d]);
            let ln = format!("{src}/ffn/layer_norm");
            whole!(
                format!("{dst}.mlp_ln.weight"),
                format!("{ln}/gamma"),
                vec![d]
            );
            whole!(format!("{dst}.mlp_ln.bias"), format!("{ln}/beta"), vec![d]);
        }
    }
    whole!(
        "decoder.ln.weight".into(),
        "decoder/layer_norm/gamma".into(),
        vec![d]
    );
    whole!(
        "decoder.ln.bias".into(),
        "decoder/layer_norm/beta".into(),
        vec![d]
    );
    plan
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

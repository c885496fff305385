//! Writing the ggml file.

use super::*;

/// Writer that counts bytes and remembers which file it writes, for errors.
pub(super) struct OutFile {
    pub(super) inner: BufWriter<File>,
    pub(super) path: PathBuf,
    pub(super) written: u64,
}

impl OutFile {
    pub(super) fn put(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
        self.inner
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub(super) fn i32(&mut self, v: i32) -> Result<(), ConvertError> {
        self.put(&v.to_le_bytes())
    }

    /// Writes a count or dimension already checked to fit an `i32`.
    pub(super) fn dim(&mut self, v: u64) -> Result<(), ConvertError> {
        let v = i32::try_from(v).map_err(|_| ConvertError::Unsupported {
            path: self.path.clone(),
            message: format!("value {v} does not fit a ggml i32 field"),
        })?;
        self.i32(v)
    }
}

/// Streams one planned tensor's data (converted to f16 or f32) into `out`.
pub(super) fn write_tensor_data(
    index: &Ct2Index,
    data: &mut ModelData,
    p: &Planned,
    out: &mut OutFile,
    raw: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    let var = index.require(&p.source)?;
    let elems = p.elements();
    let row_len: u64 = p.source_shape.iter().skip(1).product();
    let start_elem = p.row_start * row_len;
    let esize = var.dtype.size();
    let scales = match var.dtype {
        Ct2Dtype::I8 | Ct2Dtype::I16 => {
            let name = scale_name(&p.source);
            let sv = index.require(&name)?;
            let bytes = data.read_at(sv.offset, sv.elements() * sv.dtype.size(), &name)?;
            let mut s = Vec::new();
            decode_floats(&bytes, sv.dtype, &mut s);
            Some(s)
        }
        _ => None,
    };
    let mut floats = Vec::with_capacity(CHUNK_ELEMS);
    let mut encoded = Vec::with_capacity(CHUNK_ELEMS * 4);
    let mut done = 0u64;
    while done < elems {
        let n = (elems - done).min(CHUNK_ELEMS as u64);
        let first = start_elem + done;
        data.read_into(var.offset + first * esize, n * esize, &p.source, raw)?;
        floats.clear();
        decode_floats(raw, var.dtype, &mut floats);
        if let Some(scales) = &scales {
            for (k, v) in floats.iter_mut().enumerate() {
                let row = (first + k as u64) / row_len.max(1);
                let s = if scales.len() == 1 {
                    scales.first()
                } else {
                    usize::try_from(row).ok().and_then(|r| scales.get(r))
                };
                // CTranslate2 quantizes as q = round(w × scale).
                *v /= s.copied().filter(|s| *s != 0.0).unwrap_or(1.0);
            }
        }
        encoded.clear();
        if p.f32 {
            for v in &floats {
                encoded.extend_from_slice(&v.to_le_bytes());
            }
        } else {
            for v in &floats {
                encoded.extend_from_slice(&f32_to_f16(*v).to_le_bytes());
            }
        }
        out.put(&encoded)?;
        done += n;
    }
    Ok(())
}

/// Writes the complete ggml file (header, mel filters, vocabulary, tensors) to `out`.
pub(super) fn write_ggml(
    out: &mut OutFile,
    hp: &Hparams,
    vocab: &Vocab,
    index: &Ct2Index,
    data: &mut ModelData,
    plan: &[Planned],
) -> Result<(), ConvertError> {
    out.put(&GGML_MAGIC.to_le_bytes())?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_audio_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_text_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
    ] {
        out.dim(v)?;
    }
    out.i32(GGML_FTYPE_MOSTLY_F16)?;

    let n_mels = usize::try_from(hp.n_mels).unwrap_or(0);
    out.dim(hp.n_mels)?;
    out.dim(N_FFT_BINS as u64)?;
    let mut bank = Vec::with_capacity(n_mels * N_FFT_BINS * 4);
    for v in mel_filters(n_mels) {
        bank.extend_from_slice(&v.to_le_bytes());
    }
    out.put(&bank)?;

    out.dim(vocab.tokens.len() as u64)?;
    for t in &vocab.tokens {
        out.dim(t.len() as u64)?;
        out.put(t)?;
    }

    let mut raw = Vec::new();
    for p in plan {
        out.dim(p.dims.len() as u64)?;
        out.dim(p.name.len() as u64)?;
        out.i32(if p.f32 { GGML_TYPE_F32 } else { GGML_TYPE_F16 })?;
        for &d in p.dims.iter().rev() {
            out.dim(d)?;
        }
        out.put(p.name.as_bytes())?;
        write_tensor_data(index, data, p, out, &mut raw)?;
    }
    Ok(())
}

/// `<out>.part`, the name the file has until it is complete.
pub(super) fn part_path(out: &Path) -> PathBuf {
    let mut s: OsString = out.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Converts a CTranslate2 (faster-whisper) Whisper model to a whisper.cpp
/// ggml model file with f16 weights.
///
/// `model_bin`, `tokenizer_json` and `config_json` are the files of a
/// CTranslate2 model directory. All hyper-parameters are derived from the
/// tensor shapes and the tokenizer, so any Whisper size (tiny … large-v3,
/// English-only or multilingual) converts. Weights stored as float32,
/// float16, bfloat16 or int8/int16 with scales are accepted.
///
/// Everything is validated before the output is created. The data is then
/// streamed to `out` + `".part"`, synced to disk and renamed to `out`, so a
/// failed conversion never leaves a file that looks complete (the partial
/// file is removed).
///
/// # Errors
/// A [`ConvertError`] naming the file, offset and expectation when an input
/// is missing, truncated, malformed or not a Whisper model, or when writing
/// fails.
pub fn convert_ct2_to_ggml(
    model_bin: &Path,
    tokenizer_json: &Path,
    config_json: &Path,
    out: &Path,
) -> Result<ConvertReport, ConvertError> {
    let index = read_ct2_index(open_reader(model_bin)?)?;
    let file = File::open(model_bin).map_err(io_err("open", model_bin))?;
    let len = file.metadata().map_err(io_err("stat", model_bin))?.len();
    let mut data = ModelData {
        file,
        path: model_bin.to_path_buf(),
        len,
    };
    let hp = derive_hparams(&index, &mut data)?;
    let plan = plan_tensors(&hp);
    validate_plan(&index, &plan)?;

    let vocab = load_vocab(tokenizer_json, hp.n_vocab)?;
    check_vocab(&hp, &vocab, tokenizer_json)?;
    // config.json carries decoding hints (suppressed tokens, alignment heads)
    // that whisper.cpp hard-codes; it must still be a JSON object, so a
    // mixed-up or damaged model directory is caught here.
    let config: serde_json::Value = read_json(config_json)?;
    if !config.is_object() {
        return Err(ConvertError::Config {
            path: config_json.to_path_buf(),
            message: "expected a JSON object (CTranslate2 model config)".into(),
        });
    }

    let part = part_path(out);
    let result = (|| {
        let file = File::create(&part).map_err(io_err("create", &part))?;
        let mut w = OutFile {
            inner: BufWriter::with_capacity(1 << 20, file),
            path: part.clone(),
            written: 0,
        };
        write_ggml(&mut w, &hp, &vocab, &index, &mut data, &plan)?;
        let written = w.written;
        let file = w.inner.into_inner().map_err(|e| ConvertError::Io {
            action: "write",
            path: part.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err("sync", &part))?;
        drop(file);
        std::fs::rename(&part, out).map_err(io_err("rename", &part))?;
        Ok(written)
    })();
    let bytes_written = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    // Make the rename durable; not all platforms can sync a directory.
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(ConvertReport {
        n_vocab: small(hp.n_vocab),
        n_audio_layer: small(hp.n_audio_layer),
        n_text_layer: small(hp.n_text_layer),
        n_audio_state: small(hp.n_audio_state),
        n_mels: small(hp.n_mels),
        tensors: plan.len(),
        bytes_written,
    })
}

/// Cross-checks the tokenizer against the model and against whisper.cpp's
/// assumptions about special token ids.
pub(super) fn check_vocab(hp: &Hparams, vocab: &Vocab, path: &Path) -> Result<(), ConvertError> {
    let err = |message: String| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    if u64::from(vocab.defined) > hp.n_vocab {
        return Err(err(format!(
            "defines token ids up to {}, but the model embeds only {} tokens; tokenizer and model.bin do not belong together",
            vocab.defined - 1,
            hp.n_vocab
        )));
    }
    // whisper.cpp infers "multilingual" from n_vocab >= 51865 and then places
    // <|endoftext|> at 50257 instead of 50256.
    let expected_eot = if hp.n_vocab >= 51865 { 50257 } else { 50256 };
    if vocab.eot != expected_eot {
        return Err(err(format!(
            "<|endoftext|> has id {}, but whisper.cpp assumes {expected_eot} for a model with {} tokens",
            vocab.eot, hp.n_vocab
        )));
    }
    Ok(())
}

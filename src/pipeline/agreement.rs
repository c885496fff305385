//! LocalAgreement-2: the stable-prefix policy for partial transcripts.
//!
//! Each partial decodes the whole turn so far. A word becomes *committed*
//! once two successive hypotheses agree on it and on everything before it;
//! committed words are never withdrawn, so the committed prefix only grows.

use crate::asr::AsrWord;

/// Agreement state for one open turn.
#[derive(Debug, Default, Clone)]
pub struct Agreement {
    seq: Option<u32>,
    prev: Vec<String>,
    committed: Vec<AsrWord>,
}

fn norm(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'')
        .flat_map(|c| c.to_lowercase())
        .collect()
}

impl Agreement {
    /// Feed the hypothesis for turn `seq`; returns (committed, tentative).
    /// A new `seq` starts afresh.
    pub fn update(&mut self, seq: u32, hyp: &[AsrWord]) -> (Vec<AsrWord>, Vec<AsrWord>) {
        if self.seq != Some(seq) {
            *self = Agreement {
                seq: Some(seq),
                ..Default::default()
            };
        }
        let cur: Vec<String> = hyp.iter().map(|w| norm(&w.word)).collect();
        let agree = self
            .prev
            .iter()
            .zip(&cur)
            .take_while(|(a, b)| a == b)
            .count();
        if agree > self.committed.len() {
            let from = self.committed.len();
            self.committed.extend_from_slice(&hyp[from..agree]);
        }
        self.prev = cur;
        let tentative = hyp
            .get(self.committed.len()..)
            .map(|t| t.to_vec())
            .unwrap_or_default();
        (self.committed.clone(), tentative)
    }
}

/// Join words into text.
pub fn join(words: &[AsrWord]) -> String {
    words
        .iter()
        .map(|w| w.word.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<AsrWord> {
        s.split_whitespace()
            .map(|w| AsrWord {
                word: w.into(),
                start: 0.0,
                end: 0.0,
                probability: 1.0,
            })
            .collect()
    }

    #[test]
    fn commits_what_two_hypotheses_share_and_never_withdraws_it() {
        let mut a = Agreement::default();
        let (c, t) = a.update(0, &words("my internet"));
        assert!(c.is_empty());
        assert_eq!(join(&t), "my internet");
        let (c, t) = a.update(0, &words("My internet has been"));
        assert_eq!(join(&c), "My internet");
        assert_eq!(join(&t), "has been");
        let (c, t) = a.update(0, &words("my internet has been down"));
        assert_eq!(join(&c), "My internet has been");
        assert_eq!(join(&t), "down");
        // A later hypothesis that disagrees does not withdraw committed words.
        let (c, t) = a.update(0, &words("my intranet has been down since"));
        assert_eq!(join(&c), "My internet has been");
        assert_eq!(join(&t), "down since");
        // A new turn starts afresh.
        let (c, t) = a.update(1, &words("hello"));
        assert!(c.is_empty());
        assert_eq!(join(&t), "hello");
    }

    #[test]
    fn punctuation_and_case_do_not_block_agreement() {
        let mut a = Agreement::default();
        a.update(3, &words("This is the third time,"));
        let (c, t) = a.update(3, &words("this is the third time I"));
        assert_eq!(c.len(), 5);
        assert_eq!(join(&t), "I");
    }
}

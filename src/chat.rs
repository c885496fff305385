//! Written conversations (chat and e-mail) as input: parsed into messages
//! with a role, a text and, when known, a time; scored by
//! `Engine::score_text` through the same analysis as calls.
//!
//! Formats (`--text-format`, detected from the content when `auto`):
//! - **jsonl**: one `{"role": "agent"|"customer", "text": "...", "ts": ...}`
//!   per line; `ts` is optional, seconds (from the start, or Unix time) or
//!   an ISO 8601 time.
//! - **chat**: `role: text` lines, optionally after a `[HH:MM]` or
//!   `[HH:MM:SS]` stamp; a line without a role continues the message before.
//!   Roles: `agent`, `customer`, and their synonyms (see [`role_of`]).
//! - **email**: a thread of messages, each a header block (`From:`, `Date:`,
//!   `Subject:` ...) then a blank line then the body; quoted text (lines
//!   starting with `>`, and everything from an `On ... wrote:` line or an
//!   `-----Original Message-----` separator on) is stripped, and so is a
//!   signature after `-- `. The first sender is the customer, every other
//!   sender the agent, unless `agent_from` says which senders are agents.

use crate::event::Role;

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says (quotes stripped).
    pub text: String,
    /// When, ms since the epoch, when the input says.
    pub at_ms: Option<u64>,
    /// When, seconds from the start of the conversation, when the input
    /// gives only relative times.
    pub at_s: Option<f64>,
}

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum TextFormat {
    /// From the content.
    #[default]
    Auto,
    /// JSON lines of {role, text, ts?}.
    Jsonl,
    /// `role: text` lines.
    Chat,
    /// An e-mail thread.
    Email,
}

/// Parse errors name the line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChatError(pub String);

/// A role from its name: agent (agent, support, rep, operator, advisor,
/// staff) or customer (customer, client, user, caller, visitor, guest).
pub fn role_of(name: &str) -> Option<Role> {
    let n = name.trim().to_ascii_lowercase();
    let n = n.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    match n {
        "agent" | "support" | "rep" | "representative" | "operator" | "advisor" | "adviser"
        | "staff" | "assistant" => Some(Role::Agent),
        "customer" | "client" | "user" | "caller" | "visitor" | "guest" => Some(Role::Customer),
        _ => None,
    }
}

/// Parse `text` in `format`; `agent_from`: substrings of the e-mail
/// senders who are agents (e.g. `@support.example.com`).
pub fn parse(
    text: &str,
    format: TextFormat,
    agent_from: &[String],
) -> Result<Vec<Message>, ChatError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let format = match format {
        TextFormat::Auto if first.trim_start().starts_with('{') => TextFormat::Jsonl,
        TextFormat::Auto if is_header(first) && !header_name(first).is_empty() => TextFormat::Email,
        TextFormat::Auto => TextFormat::Chat,
        f => f,
    };
    let msgs = match format {
        TextFormat::Jsonl => jsonl(text)?,
        TextFormat::Email => email(text, agent_from)?,
        _ => chat(text)?,
    };
    if msgs.is_empty() {
        return Err(ChatError(format!(
            "no messages found (read as {format:?}; expected {})",
            match format {
                TextFormat::Jsonl => "{\"role\", \"text\"} per line",
                TextFormat::Email => "header blocks (From:, Date:) followed by bodies",
                _ => "`role: text` lines such as `customer: my bill is wrong`",
            }
        )));
    }
    Ok(msgs)
}

fn jsonl(text: &str) -> Result<Vec<Message>, ChatError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        role: String,
        text: String,
        #[serde(default)]
        ts: Option<serde_json::Value>,
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let v: Line = serde_json::from_str(l).map_err(|e| {
            ChatError(format!(
                "line {n}: {e} (expected {{\"role\": \"agent\"|\"customer\", \"text\": \"...\", \"ts\": optional}})"
            ))
        })?;
        let _ = v.id;
        let role = role_of(&v.role).ok_or_else(|| {
            ChatError(format!(
                "line {n}: unknown role '{}' (expected agent or customer)",
                v.role
            ))
        })?;
        let (at_ms, at_s) = match &v.ts {
            None | Some(serde_json::Value::Null) => (None, None),
            Some(serde_json::Value::Number(x)) => {
                let f = x.as_f64().unwrap_or(0.0);
                if !f.is_finite() || f < 0.0 {
                    return Err(ChatError(format!("line {n}: ts {f} is not a time")));
                }
                if f >= 1e9 {
                    (Some((f * 1000.0) as u64), None)
                } else {
                    (None, Some(f))
                }
            }
            Some(serde_json::Value::String(s)) => (
                Some(
                    crate::insights::time::parse_time(s)
                        .map_err(|e| ChatError(format!("line {n}: {e}")))?,
                ),
                None,
            ),
            Some(other) => {
                return Err(ChatError(format!("line {n}: ts {other} is not a time")));
            }
        };
        if v.text.trim().is_empty() {
            continue;
        }
        out.push(Message {
            role,
            text: v.text.trim().to_string(),
            at_ms,
            at_s,
        });
    }
    Ok(out)
}

fn chat(text: &str) -> Result<Vec<Message>, ChatError> {
    let mut out: Vec<Message> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let mut l = raw.trim();
        if l.is_empty() {
            continue;
        }
        let mut at_s = None;
        if let Some(rest) = l.strip_prefix('[') {
            if let Some((stamp, after)) = rest.split_once(']') {
                let p: Vec<&str> = stamp.trim().split(':').collect();
                let nums: Option<Vec<f64>> = p.iter().map(|x| x.parse::<f64>().ok()).collect();
                if let (Some(v), 2..=3) = (nums, p.len()) {
                    at_s = Some(v[0] * 3600.0 + v[1] * 60.0 + v.get(2).copied().unwrap_or(0.0));
                    l = after.trim();
                }
            }
        }
        match l
            .split_once(':')
            .and_then(|(r, t)| role_of(r).map(|r| (r, t)))
        {
            // An empty `role:` line still opens a message: the lines after it are its text.
            Some((role, t)) => out.push(Message {
                role,
                text: t.trim().to_string(),
                at_ms: None,
                at_s,
            }),
            None => match out.last_mut() {
                Some(m) => {
                    if !m.text.is_empty() {
                        m.text.push(' ');
                    }
                    m.text.push_str(l);
                }
                None => {
                    return Err(ChatError(format!(
                        "line {}: no role: expected `agent: ...` or `customer: ...`, got '{}'",
                        i + 1,
                        l.chars().take(60).collect::<String>()
                    )))
                }
            },
        }
    }
    out.retain(|m| !m.text.is_empty());
    // Clock stamps are seconds of the day: from the first one on.
    if let Some(t0) = out.iter().find_map(|m| m.at_s) {
        for m in &mut out {
            m.at_s = m
                .at_s
                .map(|t| if t >= t0 { t - t0 } else { t + 86_400.0 - t0 });
        }
    }
    Ok(out)
}

fn is_header(l: &str) -> bool {
    let Some((name, _)) = l.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && !name.contains(' ')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn header_name(l: &str) -> &'static str {
    let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
    match name.as_str() {
        "from" => "from",
        "date" => "date",
        "to" => "to",
        "subject" => "subject",
        "cc" => "cc",
        "sent" => "date",
        "message-id" | "in-reply-to" | "references" | "reply-to" => "other",
        _ => "",
    }
}

/// A body without quotes, quoted-reply headers and signature.
pub fn strip_quotes(body: &str) -> String {
    let mut keep = Vec::new();
    for l in body.lines() {
        let t = l.trim();
        if t.starts_with('>') {
            continue;
        }
        let low = t.to_ascii_lowercase();
        if (low.starts_with("on ") && low.ends_with("wrote:"))
            || low.contains("-----original message-----")
            || l == "-- "
            || t == "--"
        {
            break;
        }
        keep.push(t);
    }
    keep.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// RFC 2822 `Date:` (e.g. `Mon, 30 Nov 2026 14:05:09 +0000`) or ISO 8601.
fn mail_date(v: &str) -> Option<u64> {
    if let Ok(t) = crate::insights::time::parse_time(v) {
        return Some(t);
    }
    let v = v.split_once(',').map(|x| x.1).unwrap_or(v);
    let p: Vec<&str> = v.split_whitespace().collect();
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let d: u32 = p.first()?.parse().ok()?;
    let m = months.iter().position(|x| {
        p.get(1)
            .is_some_and(|s| s.to_ascii_lowercase().starts_with(x))
    })? + 1;
    let y: u32 = p.get(2)?.parse().ok()?;
    let time = p.get(3).copied().unwrap_or("00:00");
    let off = p
        .get(4)
        .filter(|o| o.is_ascii() && o.len() == 5 && (o.starts_with('+') || o.starts_with('-')))
        .map(|o| format!("{}:{}", &o[..3], &o[3..]))
        .unwrap_or_else(|| "Z".into());
    crate::insights::time::parse_time(&format!("{y:04}-{m:02}-{d:02}T{time}{off}")).ok()
}

/// One message of a thread: its headers (lower-case names) and body lines.
type MailPart<'a> = (Vec<(String, String)>, Vec<&'a str>);

/// The address of a `From:` value (`Name <a@b>` or `a@b`), lower case.
fn address(v: &str) -> String {
    let v = v.to_ascii_lowercase();
    if let Some((_, rest)) = v.rsplit_once('<') {
        if let Some((addr, _)) = rest.split_once('>') {
            return addr.trim().to_string();
        }
    }
    v.split_whitespace()
        .find(|w| w.contains('@'))
        .unwrap_or(v.trim())
        .trim_matches(|c| c == '"' || c == '<' || c == '>')
        .to_string()
}

fn email(text: &str, agent_from: &[String]) -> Result<Vec<Message>, ChatError> {
    // Split into (headers, body) blocks: a message starts at a header line
    // (From: among its headers) after a blank line or at the top.
    let lines: Vec<&str> = text.lines().collect();
    let mut msgs: Vec<MailPart> = Vec::new();
    let mut i = 0;
    let mut prev_blank = true;
    while i < lines.len() {
        let l = lines[i];
        if prev_blank && is_header(l) && !header_name(l).is_empty() {
            // A header block: until the first blank line. Without a From:
            // it was a body paragraph that looked like headers: read again.
            let start = i;
            let mut hs = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() {
                if let Some((n, v)) = lines[i].split_once(':') {
                    hs.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
                i += 1;
            }
            if hs.iter().any(|(n, _)| n == "from") {
                msgs.push((hs, Vec::new()));
                prev_blank = true;
                continue;
            }
            i = start;
        }
        match msgs.last_mut() {
            Some(m) => m.1.push(l),
            None if l.trim().is_empty() => {}
            None => {
                return Err(ChatError(format!(
                    "line {}: an e-mail thread starts with a header block (From:, Date:, Subject:)",
                    i + 1
                )))
            }
        }
        prev_blank = l.trim().is_empty();
        i += 1;
    }
    let mut first_sender: Option<String> = None;
    let mut out = Vec::new();
    for (hs, body) in msgs {
        let from = hs
            .iter()
            .find(|(n, _)| n == "from")
            .map(|(_, v)| address(v))
            .unwrap_or_default();
        let role = if !agent_from.is_empty() {
            if agent_from
                .iter()
                .any(|a| from.contains(&a.to_ascii_lowercase()))
            {
                Role::Agent
            } else {
                Role::Customer
            }
        } else if first_sender.get_or_insert_with(|| from.clone()) == &from {
            Role::Customer
        } else {
            Role::Agent
        };
        let text = strip_quotes(&body.join("\n"));
        if text.is_empty() {
            continue;
        }
        let at_ms = hs
            .iter()
            .find(|(n, _)| n == "date" || n == "sent")
            .and_then(|(_, v)| mail_date(v));
        out.push(Message {
            role,
            text,
            at_ms,
            at_s: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_chat_lines() {
        let m = parse(
            "{\"role\":\"customer\",\"text\":\"My bill is wrong.\",\"ts\":0}\n\n{\"role\":\"agent\",\"text\":\"Sorry about that.\",\"ts\":12.5}\n",
            TextFormat::Auto,
            &[],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[1].role, m[1].at_s), (Role::Agent, Some(12.5)));
        let e = parse("{\"role\":\"boss\",\"text\":\"x\"}", TextFormat::Auto, &[]).unwrap_err();
        assert!(e.0.contains("line 1") && e.0.contains("boss"), "{e}");
        let e = parse("{\"role\":\"agent\"}", TextFormat::Auto, &[]).unwrap_err();
        assert!(e.0.contains("line 1") && e.0.contains("text"), "{e}");
        let m = parse(
            "[14:02] Customer: hi, my parcel never came\nit was due monday\n[14:03:30] Support: let me check",
            TextFormat::Auto,
            &[],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].text, "hi, my parcel never came it was due monday");
        assert_eq!((m[1].role, m[1].at_s), (Role::Agent, Some(90.0)));
        let m = parse(
            "agent: hello\ncustomer:\nmy bill is wrong\nagent:\n",
            TextFormat::Chat,
            &[],
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(
            (m[1].role, m[1].text.as_str()),
            (Role::Customer, "my bill is wrong")
        );
        let e = parse("hello there\nagent: hi", TextFormat::Chat, &[]).unwrap_err();
        assert!(e.0.contains("line 1"), "{e}");
        assert!(parse("\n\n", TextFormat::Chat, &[]).is_err());
    }

    #[test]
    fn email_threads_lose_their_quotes() {
        let t = "From: Jane <jane@example.org>\nDate: Mon, 30 Nov 2026 09:00:00 +0000\nSubject: Double charge\n\nHello,\nI was charged twice this month.\n\nJane\n\nFrom: Support <help@shop.example>\nDate: Mon, 30 Nov 2026 10:30:00 +0000\nSubject: Re: Double charge\n\nHi Jane, sorry about that, the refund is on its way.\n\nOn Mon, 30 Nov 2026, Jane <jane@example.org> wrote:\n> Hello,\n> I was charged twice this month.\n\nFrom: jane@example.org\nDate: 2026-11-30T11:00:00Z\n\nThanks.\n> Hi Jane, sorry about that\n-- \nJane Doe, 1 High St\n";
        let m = parse(t, TextFormat::Auto, &[]).unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].role, Role::Customer);
        assert_eq!(m[0].text, "Hello, I was charged twice this month. Jane");
        assert_eq!(m[1].role, Role::Agent);
        assert_eq!(
            m[1].text,
            "Hi Jane, sorry about that, the refund is on its way."
        );
        assert_eq!(m[2].role, Role::Customer);
        assert_eq!(m[2].text, "Thanks.");
        // A body paragraph that looks like headers stays in the body, and
        // the next message is still its own.
        let t2 = "From: a@x.org\n\nHi,\n\nDate: the 30th was when it broke\nAmount: 49.99\n\nFrom: help@shop.example\n\nWe are on it.\n";
        let m2 = parse(t2, TextFormat::Email, &[]).unwrap();
        assert_eq!(m2.len(), 2, "{m2:?}");
        assert_eq!(
            m2[0].text,
            "Hi, Date: the 30th was when it broke Amount: 49.99"
        );
        assert_eq!(
            (m2[1].role, m2[1].text.as_str()),
            (Role::Agent, "We are on it.")
        );
        let t0 = crate::insights::time::parse_time("2026-11-30T09:00:00Z").unwrap();
        assert_eq!(m[0].at_ms, Some(t0));
        assert_eq!(m[1].at_ms, Some(t0 + 90 * 60_000));
        // Agents named by address.
        let m = parse(t, TextFormat::Email, &["@shop.example".into()]).unwrap();
        assert_eq!(
            m.iter().map(|x| x.role).collect::<Vec<_>>(),
            vec![Role::Customer, Role::Agent, Role::Customer]
        );
    }
}

//! Output writers: JSON lines, a JSON array, CSV rows per turn, and a
//! human-readable table; plus the CSV of call summaries for archives, and
//! the outputs of concurrent calls ([`calls`]).

pub mod calls;

use std::io::{self, Write};

use crate::event::{Event, SummaryEvent, TurnEvent};

/// Output format of `score`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON event per line (the streaming contract).
    Jsonl,
    /// One JSON array of events.
    Json,
    /// One CSV row per turn.
    Csv,
    /// An aligned table for people.
    Table,
}

impl Format {
    /// File extension for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Table => "txt",
        }
    }
}

/// Writes events in one format.
pub struct EventWriter<W: Write> {
    out: W,
    format: Format,
    count: usize,
}

const TURN_CSV_HEADER: &str = "call_id,turn_id,leg,role,start,end,label,score,p_negative,p_neutral,p_positive,intensity,energy_db,pitch_hz,rate_wps,pause_ratio,text,score_5,emotion,frustration,sarcasm,trend";

/// Quote a CSV field when needed (RFC 4180).
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f32>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

fn turn_csv(t: &TurnEvent) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        csv_field(&t.call_id),
        t.turn_id,
        t.leg,
        t.role.as_str(),
        t.start,
        t.end,
        t.polarity.label.as_str(),
        t.polarity.score,
        t.polarity.probs.negative,
        t.polarity.probs.neutral,
        t.polarity.probs.positive,
        t.intensity,
        t.prosody.energy_db_mean,
        opt(t.prosody.pitch_hz_mean),
        opt(t.prosody.speaking_rate_wps),
        t.prosody.pause_ratio,
        csv_field(&t.text),
        t.score_5,
        t.emotion.as_ref().map(|e| e.label.as_str()).unwrap_or(""),
        t.indicators
            .as_ref()
            .map(|i| i.frustration.score.to_string())
            .unwrap_or_default(),
        t.indicators
            .as_ref()
            .map(|i| i.sarcasm.score.to_string())
            .unwrap_or_default(),
        opt(t.trend)
    )
}

fn mmss(s: f64) -> String {
    let s = s.max(0.0);
    format!("{:02}:{:05.2}", (s / 60.0) as u64, s % 60.0)
}

impl<W: Write> EventWriter<W> {
    /// A writer; call [`EventWriter::finish`] at the end.
    pub fn new(out: W, format: Format) -> Self {
        EventWriter {
            out,
            format,
            count: 0,
        }
    }

    /// Write one event.
    pub fn write(&mut self, e: &Event) -> io::Result<()> {
        let first = self.count == 0;
        self.count += 1;
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, e)?;
                self.out.write_all(b"\n")?;
            }
            Format::Json => {
                self.out.write_all(if first { b"[\n" } else { b",\n" })?;
                serde_json::to_writer(&mut self.out, e)?;
            }
            Format::Csv => {
                if first {
                    writeln!(self.out, "{TURN_CSV_HEADER}")?;
                }
                if let Event::Turn(t) = e {
                    writeln!(self.out, "{}", turn_csv(t))?;
                }
            }
            Format::Table => match e {
                Event::Turn(t) => {
                    if first {
                        writeln!(
                            self.out,
                            "{:<11} {:<8} {:<8} {:>6} {:>5}  {:<12} text",
                            "time", "role", "polarity", "score", "int.", "emotion"
                        )?;
                    }
                    writeln!(
                        self.out,
                        "{:<11} {:<8} {:<8} {:>6.2} {:>5.2}  {:<12} {}",
                        mmss(t.start),
                        t.role.as_str(),
                        t.polarity.label.as_str(),
                        t.polarity.score,
                        t.intensity,
                        t.emotion.as_ref().map(|e| e.label.as_str()).unwrap_or("-"),
                        t.text
                    )?;
                }
                Event::Partial(p) => {
                    writeln!(
                        self.out,
                        "{:<11} {:<8} ~{:<7} {:>6.2} {:>5}  {} …",
                        mmss(p.start),
                        p.role.as_str(),
                        p.polarity.label.as_str(),
                        p.polarity.score,
                        "",
                        p.text
                    )?;
                }
                Event::Shift(x) => {
                    writeln!(
                        self.out,
                        "{:<11} {:<8} >> mood shift {:?}: {:+.2} -> {:+.2} (turns {:?})",
                        mmss(x.at),
                        x.role.as_str(),
                        x.direction,
                        x.from,
                        x.to,
                        x.evidence_turns
                    )?;
                }
                Event::Recovered(x) => {
                    writeln!(
                        self.out,
                        "{:<11} {:<8} >> recovered {:+.2} -> {:+.2} after agent turns {:?}",
                        mmss(x.at),
                        x.role.as_str(),
                        x.from,
                        x.to,
                        x.agent_turns
                    )?;
                }
                Event::Alert(x) => {
                    writeln!(
                        self.out,
                        "{:<11} {:<8} !! ALERT {} ({:?}): {}",
                        mmss(x.at),
                        "",
                        x.rule_id,
                        x.severity,
                        x.message
                    )?;
                }
                Event::Assist(x) => {
                    writeln!(
                        self.out,
                        "{:<11} {:<8} -> HINT {} ({:?}): {}",
                        mmss(x.at),
                        "agent",
                        x.hint_id,
                        x.tone,
                        x.message
                    )?;
                }
                Event::Summary(s) => {
                    writeln!(
                        self.out,
                        "-- {} ({}, {} turns)",
                        s.call_id,
                        mmss(s.duration),
                        s.turns
                    )?;
                    for sp in &s.speakers {
                        writeln!(
                            self.out,
                            "   {:<8} turns {:>3}  talk {:>6.1}s  mean {:>6}  last {:>6}",
                            sp.role.as_str(),
                            sp.turns,
                            sp.talk_time,
                            sp.mean_sentiment
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or("-".into()),
                            sp.last_sentiment
                                .map(|v| format!("{v:.2}"))
                                .unwrap_or("-".into()),
                        )?;
                    }
                }
            },
        }
        Ok(())
    }

    /// Flush what was written (live output: after every event).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Close the output (ends the JSON array) and flush.
    pub fn finish(mut self) -> io::Result<W> {
        self.close()?;
        Ok(self.out)
    }

    /// [`EventWriter::finish`] for a writer that is shared: nothing may be
    /// written after it.
    pub fn close(&mut self) -> io::Result<()> {
        if self.format == Format::Json {
            self.out
                .write_all(if self.count == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()
    }
}

/// Header of the call-summary CSV.
pub const SUMMARY_CSV_HEADER: &str = "call_id,file,status,error,duration_s,turns,agent_turns,agent_mean,agent_last,customer_turns,customer_mean,customer_last,customer_most_negative_start,wall_s";

/// One call-summary CSV row (`summary` is None for a failed file).
pub fn summary_csv_row(
    call_id: &str,
    file: &str,
    summary: Option<&SummaryEvent>,
    error: Option<&str>,
) -> String {
    let f = |v: Option<f32>| v.map(|x| x.to_string()).unwrap_or_default();
    let (mut at, mut am, mut al, mut ct, mut cm, mut cl, mut cneg) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    if let Some(s) = summary {
        for sp in &s.speakers {
            match sp.role {
                crate::event::Role::Agent => {
                    at = sp.turns.to_string();
                    am = f(sp.mean_sentiment);
                    al = f(sp.last_sentiment);
                }
                _ => {
                    ct = sp.turns.to_string();
                    cm = f(sp.mean_sentiment);
                    cl = f(sp.last_sentiment);
                    cneg = sp
                        .most_negative_turn
                        .as_ref()
                        .map(|t| t.start.to_string())
                        .unwrap_or_default();
                }
            }
        }
    }
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        csv_field(call_id),
        csv_field(file),
        if error.is_some() && summary.is_none() {
            "failed"
        } else if error.is_some() {
            "partial"
        } else {
            "ok"
        },
        csv_field(error.unwrap_or("")),
        summary.map(|s| s.duration.to_string()).unwrap_or_default(),
        summary.map(|s| s.turns.to_string()).unwrap_or_default(),
        at,
        am,
        al,
        ct,
        cm,
        cl,
        cneg,
        summary
            .map(|s| s.stats.wall_seconds.to_string())
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn empty_json_output_is_an_empty_array() {
        let w = EventWriter::new(Vec::new(), Format::Json);
        let out = w.finish().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "[]\n");
    }
}

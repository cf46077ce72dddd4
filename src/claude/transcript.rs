//! Usage read from Claude Code's transcripts, for a session whose Claude Code sent no
//! telemetry (started before our agents set the exporter, or with telemetry off).
//!
//! A transcript (`<claude config dir>/projects/<project>/<claude session id>.jsonl`) has an
//! `assistant` line per streamed chunk of a reply, each with the reply's `message.id`, the
//! API `requestId`, `message.model` and `message.usage` (`input_tokens`, `output_tokens`,
//! `cache_read_input_tokens`, `cache_creation_input_tokens`), the counts growing as the
//! reply streams: a reply counts once, with its chunk of most output tokens. Transcripts
//! carry no price; a `costUSD` field (older versions wrote one) is summed when present,
//! otherwise the cost stays 0 — no price table is guessed here.
//!
//! Bounded: a line over [`MAX_LINE_BYTES`] is skipped, a file is read up to
//! [`MAX_FILE_BYTES`]; reading blocks, so callers run it on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;

use super::usage::Tokens;

/// Longest transcript line read; longer ones (a huge tool result) carry no usage we need.
pub(crate) const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Most of a transcript read.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// What transcripts say a Claude session used.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TranscriptUsage {
    /// Tokens by model.
    pub(crate) by_model: BTreeMap<String, Tokens>,
    /// Sum of the `costUSD` fields, 0 when there are none.
    pub(crate) cost_usd: f64,
    /// Replies counted.
    pub(crate) replies: u64,
}

impl TranscriptUsage {
    /// Adds another transcript's usage.
    pub(crate) fn add(&mut self, other: TranscriptUsage) {
        for (model, tokens) in other.by_model {
            let mine = self.by_model.entry(model).or_default();
            mine.input += tokens.input;
            mine.output += tokens.output;
            mine.cache_read += tokens.cache_read;
            mine.cache_creation += tokens.cache_creation;
        }
        self.cost_usd += other.cost_usd;
        self.replies += other.replies;
    }
}

#[derive(Deserialize)]
struct Line {
    #[serde(rename = "requestId")]
    request_id: Option<String>,
    #[serde(rename = "costUSD")]
    cost_usd: Option<f64>,
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    id: Option<String>,
    model: Option<String>,
    usage: Option<Usage>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: f64,
    #[serde(default)]
    output_tokens: f64,
    #[serde(default)]
    cache_read_input_tokens: f64,
    #[serde(default)]
    cache_creation_input_tokens: f64,
}

/// One reply as its best chunk says.
struct Reply {
    model: String,
    tokens: Tokens,
    cost_usd: f64,
}

/// Reads one transcript.
pub(crate) fn read(path: &Path) -> io::Result<TranscriptUsage> {
    let file = File::open(path)?;
    parse(BufReader::new(file.take(MAX_FILE_BYTES)))
}

/// Sums a transcript's replies.
pub(crate) fn parse(mut reader: impl BufRead) -> io::Result<TranscriptUsage> {
    let mut replies: HashMap<String, Reply> = HashMap::new();
    let mut anonymous: Vec<Reply> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            skip_line(&mut reader)?;
            continue;
        }
        let Some((key, reply)) = reply_of(&line) else {
            continue;
        };
        match key {
            Some(key) => {
                let best = replies.entry(key).or_insert(Reply {
                    model: reply.model.clone(),
                    tokens: Tokens::default(),
                    cost_usd: 0.0,
                });
                if reply.tokens.output >= best.tokens.output {
                    *best = reply;
                }
            }
            None => anonymous.push(reply),
        }
    }
    let mut usage = TranscriptUsage::default();
    for reply in replies.into_values().chain(anonymous) {
        usage.replies += 1;
        usage.cost_usd += reply.cost_usd;
        usage.add(TranscriptUsage {
            by_model: BTreeMap::from([(reply.model, reply.tokens)]),
            cost_usd: 0.0,
            replies: 0,
        });
    }
    Ok(usage)
}

/// A line's reply and its deduplication key (`message.id` + `requestId`), if it has usage.
fn reply_of(line: &[u8]) -> Option<(Option<String>, Reply)> {
    let parsed: Line = serde_json::from_slice(line).ok()?;
    let message = parsed.message?;
    let usage = message.usage?;
    let key = match (&message.id, &parsed.request_id) {
        (None, None) => None,
        (id, request) => Some(format!(
            "{}\u{0}{}",
            id.as_deref().unwrap_or_default(),
            request.as_deref().unwrap_or_default()
        )),
    };
    let finite = |n: f64| if n.is_finite() && n > 0.0 { n } else { 0.0 };
    Some((
        key,
        Reply {
            model: message
                .model
                .unwrap_or_else(|| super::usage::UNKNOWN.into()),
            tokens: Tokens {
                input: finite(usage.input_tokens),
                output: finite(usage.output_tokens),
                cache_read: finite(usage.cache_read_input_tokens),
                cache_creation: finite(usage.cache_creation_input_tokens),
            },
            cost_usd: parsed.cost_usd.map(finite).unwrap_or_default(),
        },
    ))
}

/// Consumes the rest of an overlong line.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let all = buffer.len();
                reader.consume(all);
            }
        }
    }
}

#[cfg(test)]
mod tests;

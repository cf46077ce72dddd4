//! Claude Code sessions as Claude Code itself reports them: hooks (the activity tracker, on
//! main) and OpenTelemetry (cost and tokens, here).
//!
//! - `otlp`: OTLP/HTTP bodies decoded with the generated OTLP messages, reduced to the
//!   datapoints and events the ledger counts.
//! - `usage`: the pure usage ledger (cumulative and delta Sums, attribution at read time).
//! - `ledger`: the ledger behind a handle, written through to storage.
//! - `transcript`: usage read from Claude Code's transcripts when no telemetry came.

pub(crate) mod ledger;
pub mod otlp;
pub(crate) mod transcript;
pub(crate) mod usage;

//! An agent's output lines as `GET /sessions/{id}/agents/{name}/logs` sends them. The agent
//! module keeps them as plain data (`agent::LogLine`); their wire shape — the keys, the
//! stream's word, the time as Unix seconds — is written here, beside the other wire shapes.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::session::seconds;
use crate::agent::{LogLine, Stream};

impl Serialize for LogLine {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut line = serializer.serialize_struct("LogLine", 3)?;
        line.serialize_field("stream", &self.stream)?;
        line.serialize_field("line", &self.line)?;
        line.serialize_field("timestamp", &seconds(self.timestamp))?;
        line.end()
    }
}

/// `stdout` or `stderr`.
impl Serialize for Stream {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;

    #[test]
    fn a_line_is_written_with_its_time_in_unix_seconds() {
        let line = LogLine {
            stream: Stream::Stderr,
            line: "oops".to_owned(),
            timestamp: UNIX_EPOCH + Duration::from_millis(1_500),
        };
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            json!({"stream": "stderr", "line": "oops", "timestamp": 1.5})
        );
        assert_eq!(serde_json::to_value(Stream::Stdout).unwrap(), "stdout");
    }
}

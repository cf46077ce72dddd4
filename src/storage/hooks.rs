//! The hook tables (schema v4): `hook_activity`, one row per session per hour of what its
//! hook events counted (totals are sums of its rows, trends group them by hour), and
//! `hook_names`, how often each tool, command word and file was used per session.
//!
//! Counts go in and out as [`HookCounts`], this module's own type, so the surface stays
//! backend-neutral.

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use super::metrics::{count, int};
use super::{Storage, StorageError};

/// What hook events counted (one event's, an hour's, a session's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HookCounts {
    /// Tool uses finished.
    pub tool_uses: u64,
    /// Commands run.
    pub commands_executed: u64,
    /// Files created.
    pub files_created: u64,
    /// Files modified.
    pub files_modified: u64,
    /// Files deleted.
    pub files_deleted: u64,
    /// Tool uses that failed.
    pub errors: u64,
    /// Response times measured.
    pub responses: u64,
    /// Their sum, milliseconds.
    pub response_ms_total: f64,
    /// The longest, milliseconds.
    pub response_ms_max: f64,
}

/// The names one hook event used, for the most-used lists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookNames {
    /// The tool.
    pub tool: Option<String>,
    /// Command words.
    pub commands: Vec<String>,
    /// Files.
    pub files: Vec<String>,
}

/// One hook event's counts and names, for its session's hour (Unix seconds of its start).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookCountsAdded {
    /// The session.
    pub session: Uuid,
    /// The hour.
    pub hour: i64,
    /// What the event counted.
    pub counts: HookCounts,
    /// The names it used.
    pub names: HookNames,
}

/// Which list of names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookNameKind {
    /// Tools.
    Tool,
    /// Command words.
    Command,
    /// Files.
    File,
}

impl HookNameKind {
    /// The `kind` column's value.
    fn as_str(self) -> &'static str {
        match self {
            HookNameKind::Tool => "tool",
            HookNameKind::Command => "command",
            HookNameKind::File => "file",
        }
    }
}

impl Storage {
    /// Adds one hook event's counts to its session's `hour` (Unix seconds of its start),
    /// and its names to the most-used lists, in one transaction.
    pub async fn add_hook_counts(
        &self,
        session: Uuid,
        hour: i64,
        counts: HookCounts,
        names: HookNames,
    ) -> Result<(), StorageError> {
        self.add_hook_counts_batch(vec![HookCountsAdded {
            session,
            hour,
            counts,
            names,
        }])
        .await
    }

    /// Adds many hook events' counts (each to its session's hour) and names, in one
    /// transaction: a burst of hook events costs one write, not one each.
    pub async fn add_hook_counts_batch(
        &self,
        added: Vec<HookCountsAdded>,
    ) -> Result<(), StorageError> {
        if added.is_empty() {
            return Ok(());
        }
        self.grouped(move |conn| {
            let tx = conn.savepoint()?;
            for one in &added {
                add(&tx, one)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Every session's hook totals.
    pub async fn hook_totals(&self) -> Result<Vec<(Uuid, HookCounts)>, StorageError> {
        self.call(|conn| totals(conn)).await
    }

    /// Every session's hook counts summed per hour from `since` (Unix seconds), oldest
    /// first.
    pub async fn hook_counts_by_hour(
        &self,
        since: i64,
    ) -> Result<Vec<(i64, HookCounts)>, StorageError> {
        self.call(move |conn| by_hour(conn, since)).await
    }

    /// The `limit` most used names of `kind` over every session, with their uses.
    pub async fn most_used_hook_names(
        &self,
        kind: HookNameKind,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, StorageError> {
        self.call(move |conn| most_used(conn, kind, limit)).await
    }

    /// Deletes a session's hook counts and names.
    pub async fn forget_hook_counts(&self, session: Uuid) -> Result<(), StorageError> {
        self.grouped(move |conn| {
            let id = session.to_string();
            // Both or neither, even when it runs outside a group's transaction.
            let sp = conn.savepoint()?;
            sp.execute("DELETE FROM hook_activity WHERE session_id = ?1", [&id])?;
            sp.execute("DELETE FROM hook_names WHERE session_id = ?1", [&id])?;
            sp.commit()?;
            Ok(())
        })
        .await
    }
}

/// Adds one event's counts and names, inside the caller's transaction.
fn add(tx: &Connection, added: &HookCountsAdded) -> Result<(), StorageError> {
    let HookCountsAdded {
        session,
        hour,
        counts: a,
        names,
    } = added;
    {
        tx.prepare_cached(
            "INSERT INTO hook_activity (session_id, hour, tool_uses, commands_executed,
                files_created, files_modified, files_deleted, errors, responses,
                response_ms_total, response_ms_max)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (session_id, hour) DO UPDATE SET
                tool_uses = tool_uses + excluded.tool_uses,
                commands_executed = commands_executed + excluded.commands_executed,
                files_created = files_created + excluded.files_created,
                files_modified = files_modified + excluded.files_modified,
                files_deleted = files_deleted + excluded.files_deleted,
                errors = errors + excluded.errors,
                responses = responses + excluded.responses,
                response_ms_total = response_ms_total + excluded.response_ms_total,
                response_ms_max = max(response_ms_max, excluded.response_ms_max)",
        )?
        .execute(params![
            session.to_string(),
            hour,
            int(a.tool_uses),
            int(a.commands_executed),
            int(a.files_created),
            int(a.files_modified),
            int(a.files_deleted),
            int(a.errors),
            int(a.responses),
            a.response_ms_total,
            a.response_ms_max,
        ])?;
        let mut name = tx.prepare_cached(
            "INSERT INTO hook_names (session_id, kind, name, uses) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (session_id, kind, name) DO UPDATE SET uses = uses + 1",
        )?;
        let used = names
            .tool
            .iter()
            .map(|t| (HookNameKind::Tool, t))
            .chain(names.commands.iter().map(|c| (HookNameKind::Command, c)))
            .chain(names.files.iter().map(|f| (HookNameKind::File, f)));
        for (kind, value) in used {
            name.execute(params![session.to_string(), kind.as_str(), value])?;
        }
    }
    Ok(())
}

const SUMS: &str = "sum(tool_uses), sum(commands_executed), sum(files_created),
    sum(files_modified), sum(files_deleted), sum(errors), sum(responses),
    sum(response_ms_total), max(response_ms_max)";

fn totals(conn: &Connection) -> Result<Vec<(Uuid, HookCounts)>, StorageError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT session_id, {SUMS} FROM hook_activity GROUP BY session_id"
    ))?;
    let rows = select.query_map([], |row| Ok((row.get::<_, String>(0)?, counts(row, 1)?)))?;
    let mut totals = Vec::new();
    for row in rows {
        let (id, counts) = row?;
        if let Ok(id) = id.parse() {
            totals.push((id, counts));
        }
    }
    Ok(totals)
}

fn by_hour(conn: &Connection, since: i64) -> Result<Vec<(i64, HookCounts)>, StorageError> {
    let mut select = conn.prepare_cached(&format!(
        "SELECT hour, {SUMS} FROM hook_activity WHERE hour >= ?1
         GROUP BY hour ORDER BY hour"
    ))?;
    let rows = select.query_map([since], |row| Ok((row.get(0)?, counts(row, 1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn most_used(
    conn: &Connection,
    kind: HookNameKind,
    limit: usize,
) -> Result<Vec<(String, u64)>, StorageError> {
    let mut select = conn.prepare_cached(
        "SELECT name, sum(uses) AS n FROM hook_names WHERE kind = ?1
         GROUP BY name ORDER BY n DESC, name LIMIT ?2",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = select.query_map(params![kind.as_str(), limit], |row| {
        Ok((row.get(0)?, count(row.get(1)?)))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The [`SUMS`] columns of `row` from column `from` on.
fn counts(row: &Row<'_>, from: usize) -> rusqlite::Result<HookCounts> {
    let n = |i: usize| {
        row.get::<_, Option<i64>>(from + i)
            .map(|n| count(n.unwrap_or(0)))
    };
    Ok(HookCounts {
        tool_uses: n(0)?,
        commands_executed: n(1)?,
        files_created: n(2)?,
        files_modified: n(3)?,
        files_deleted: n(4)?,
        errors: n(5)?,
        responses: n(6)?,
        response_ms_total: row.get::<_, Option<f64>>(from + 7)?.unwrap_or(0.0),
        response_ms_max: row.get::<_, Option<f64>>(from + 8)?.unwrap_or(0.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_add_up_per_hour_and_names_stay_in_their_list() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let counts = |ms: f64| HookCounts {
            tool_uses: 1,
            errors: 1,
            responses: 1,
            response_ms_total: ms,
            response_ms_max: ms,
            ..HookCounts::default()
        };
        let names = HookNames {
            tool: Some("Bash".into()),
            commands: vec!["ls".into(), "ls".into()],
            files: vec!["Bash".into()],
        };
        storage
            .add_hook_counts(a, 0, counts(10.0), names.clone())
            .await
            .unwrap();
        storage
            .add_hook_counts(a, 3600, counts(30.0), HookNames::default())
            .await
            .unwrap();
        storage
            .add_hook_counts(b, 3600, counts(5.0), names)
            .await
            .unwrap();

        let mut totals = storage.hook_totals().await.unwrap();
        totals.sort_by_key(|(id, _)| *id != a);
        assert_eq!(totals[0].0, a);
        let t = totals[0].1;
        assert_eq!((t.tool_uses, t.errors, t.responses), (2, 2, 2));
        assert_eq!((t.response_ms_total, t.response_ms_max), (40.0, 30.0));
        let hours = storage.hook_counts_by_hour(3600).await.unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].0, hours[0].1.tool_uses), (3600, 2));

        // "Bash" is both a tool and a file: each list counts its own uses.
        let tools = storage
            .most_used_hook_names(HookNameKind::Tool, 10)
            .await
            .unwrap();
        assert_eq!(tools, [("Bash".to_owned(), 2)]);
        let commands = storage
            .most_used_hook_names(HookNameKind::Command, 10)
            .await
            .unwrap();
        assert_eq!(commands, [("ls".to_owned(), 4)]);
        let files = storage
            .most_used_hook_names(HookNameKind::File, 1)
            .await
            .unwrap();
        assert_eq!(files, [("Bash".to_owned(), 2)]);

        storage.forget_hook_counts(a).await.unwrap();
        let left = storage.hook_totals().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, b);
        storage.close().await.unwrap();
    }
}

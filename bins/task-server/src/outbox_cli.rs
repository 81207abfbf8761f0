//! `task-api outbox status|list|replay`: the operator's view of the event outbox on the configured
//! `DATABASE_URL`, human-readable by default and JSON with `--json`.

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use slog::{Logger, info};
use task_store::{
    DbConfig, OpenError, OutboxFilter, OutboxMessage, OutboxStatus, Store, StoreError,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// `task-api outbox …`.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutboxArgs {
    /// Print JSON (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum OutboxCommand {
    /// The backlog (events waiting, the oldest one's age), the blocked keys (waiting for a retry or leased)
    /// and the moved-aside rows.
    Status,
    /// Pending rows (or moved-aside ones), oldest first: id, topic, key, attempts, age, last error.
    List {
        /// List the rows moved aside after too many rejections instead of the pending ones.
        #[arg(long)]
        moved_aside: bool,
        /// The most rows listed.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Re-queue moved-aside rows (attempts reset to zero): every one with `--all`, or those given with `--id`.
    #[command(group = clap::ArgGroup::new("which").required(true).args(["all", "ids"]))]
    Replay {
        /// Re-queue every moved-aside row.
        #[arg(long)]
        all: bool,
        /// Re-queue this moved-aside row (repeatable).
        #[arg(long = "id", value_name = "UUID")]
        ids: Vec<Uuid>,
    },
}

/// Why an `outbox` command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboxCliError {
    #[error("cannot open the database")]
    Open(#[source] Box<OpenError>),
    #[error("the outbox query failed")]
    Store(#[from] StoreError),
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
}

/// Runs the command against `database`, writing its result to `out`.
pub(crate) async fn run(
    args: &OutboxArgs,
    database: &DbConfig,
    log: &Logger,
    out: &mut dyn Write,
) -> Result<(), OutboxCliError> {
    let store = Store::open(database, log)
        .await
        .map_err(|err| OutboxCliError::Open(Box::new(err)))?;
    let now = OffsetDateTime::now_utc();
    let res = match &args.command {
        OutboxCommand::Status => {
            let status = store.outbox_status(now).await?;
            if args.json {
                writeln!(out, "{}", status_json(&status, now))?;
            } else {
                write_status(out, &status, now)?;
            }
            Ok(())
        }
        OutboxCommand::List { moved_aside, limit } => {
            let filter = if *moved_aside {
                OutboxFilter::MovedAside
            } else {
                OutboxFilter::Pending
            };
            let rows = store.list_outbox(filter, *limit).await?;
            if args.json {
                let rows: Vec<Value> = rows.iter().map(|row| row_json(row, now)).collect();
                writeln!(out, "{}", Value::Array(rows))?;
            } else {
                write_rows(out, &rows, filter, now)?;
            }
            Ok(())
        }
        OutboxCommand::Replay { all, ids } => {
            let which = (!*all).then_some(ids.as_slice());
            let replayed = store.replay_outbox(which, now).await?;
            info!(log, "re-queued {} moved-aside outbox rows", replayed; "replayed" => replayed);
            if args.json {
                writeln!(out, "{}", json!({ "replayed": replayed }))?;
            } else {
                writeln!(
                    out,
                    "re-queued {replayed} moved-aside event(s); a running relay delivers them within its poll interval"
                )?;
                if let Some(ids) = which
                    && replayed < ids.len()
                {
                    writeln!(
                        out,
                        "{} of the given ids were not moved-aside rows and were left alone",
                        ids.len() - replayed
                    )?;
                }
            }
            Ok(())
        }
    };
    store.close();
    res
}

fn rfc3339(instant: OffsetDateTime) -> String {
    instant.format(&Rfc3339).unwrap_or_default()
}

fn age_seconds(since: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (now - since).as_seconds_f64().max(0.0)
}

/// A duration in seconds as a short human text (`42.3s`, `5m 12s`, `3h 04m`, `2d 05h`).
fn human_age(seconds: f64) -> String {
    // Whole seconds are precise enough past the first minute; the cast saturates.
    let whole = seconds as u64;
    match whole {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m {:02}s", whole / 60, whole % 60),
        3600..86_400 => format!("{}h {:02}m", whole / 3600, whole % 3600 / 60),
        _ => format!("{}d {:02}h", whole / 86_400, whole % 86_400 / 3600),
    }
}

fn status_json(status: &OutboxStatus, now: OffsetDateTime) -> Value {
    let oldest = status.backlog.oldest_pending_at;
    json!({
        "backlog": status.backlog.pending,
        "oldest_pending_at": oldest.map(rfc3339),
        "oldest_pending_age_seconds": oldest.map(|at| age_seconds(at, now)),
        "blocked_keys": status.blocked_keys,
        "moved_aside": status.moved_aside,
    })
}

fn write_status(
    out: &mut dyn Write,
    status: &OutboxStatus,
    now: OffsetDateTime,
) -> std::io::Result<()> {
    writeln!(
        out,
        "backlog:        {} event(s) waiting",
        status.backlog.pending
    )?;
    match status.backlog.oldest_pending_at {
        Some(at) => writeln!(
            out,
            "oldest pending: {} ago (written {})",
            human_age(age_seconds(at, now)),
            rfc3339(at)
        )?,
        None => writeln!(out, "oldest pending: -")?,
    }
    writeln!(
        out,
        "blocked keys:   {} (waiting for a retry or leased by a relay)",
        status.blocked_keys
    )?;
    writeln!(out, "moved aside:    {} event(s)", status.moved_aside)?;
    if status.moved_aside > 0 {
        writeln!(
            out,
            "see `task-api outbox list --moved-aside`; re-queue with `task-api outbox replay --all` or `--id`"
        )?;
    }
    Ok(())
}

fn row_json(row: &OutboxMessage, now: OffsetDateTime) -> Value {
    json!({
        "id": row.id,
        "seq": row.seq,
        "topic": row.topic,
        "partition_key": row.partition_key,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": rfc3339(row.created_at),
        "age_seconds": age_seconds(row.created_at, now),
        "next_attempt_at": rfc3339(row.next_attempt_at),
        "claimed_until": row.claimed_until.map(rfc3339),
        "moved_aside_at": row.failed_at.map(rfc3339),
    })
}

/// The longest `last_error` shown in the text listing (the JSON has it whole).
const SHOWN_ERROR_CHARS: usize = 100;

fn write_rows(
    out: &mut dyn Write,
    rows: &[OutboxMessage],
    filter: OutboxFilter,
    now: OffsetDateTime,
) -> std::io::Result<()> {
    if rows.is_empty() {
        let what = match filter {
            OutboxFilter::Pending => "no pending events",
            OutboxFilter::MovedAside => "no moved-aside events",
        };
        return writeln!(out, "{what}");
    }
    writeln!(
        out,
        "{:<36}  {:<16}  {:<36}  {:>8}  {:>9}  last error",
        "id", "topic", "key", "attempts", "age"
    )?;
    for row in rows {
        let error: String = row
            .last_error
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(SHOWN_ERROR_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        writeln!(
            out,
            "{:<36}  {:<16}  {:<36}  {:>8}  {:>9}  {}",
            row.id,
            row.topic,
            row.partition_key,
            row.attempts,
            human_age(age_seconds(row.created_at, now)),
            error
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(human_age(0.04), "0.0s");
        assert_eq!(human_age(42.31), "42.3s");
        assert_eq!(human_age(312.0), "5m 12s");
        assert_eq!(human_age(3.0 * 3600.0 + 240.0), "3h 04m");
        assert_eq!(human_age(2.0 * 86_400.0 + 5.0 * 3600.0), "2d 05h");
    }
}

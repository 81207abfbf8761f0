//! The relay drain (issue 17 goal 4): a backlog of outbox rows written straight into a fresh, migrated database
//! through `task-store` (so the rows are exactly what task-api writes), then one `task-api` in outbox mode started
//! against a 204 sink, timed from the sink's view until every event arrived, with the order of each partition key
//! checked by the `sequence` the benchmark gave the events.

use std::time::{Duration, Instant};

use anyhow::Context;
use slog::{Logger, info, warn};
use task_store::{DbConfig, NewOutboxMessage, Store};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::server::Server;
use crate::sink::{OrderBy, Sinks};
use crate::{Backend, Cli, MODES, Sidecar};

/// Rows written per `enqueue_outbox` call (one transaction).
const CHUNK: usize = 2_000;

/// What one drain measured.
#[derive(Debug, Clone)]
pub(crate) struct DrainResult {
    pub(crate) backend: String,
    /// Events in the backlog and the partition keys they are spread over.
    pub(crate) events: u64,
    pub(crate) users: usize,
    /// Seconds writing the backlog took (not part of the drain).
    pub(crate) insert_seconds: f64,
    /// Events that reached the sink (duplicates included) and distinct ones.
    pub(crate) received: u64,
    pub(crate) duplicates: u64,
    /// From the first to the last event's arrival at the sink.
    pub(crate) first_to_last_seconds: f64,
    /// From starting task-api to the last event's arrival (process start and the first claim included).
    pub(crate) start_to_last_seconds: f64,
    /// Checked and out-of-order events (order per partition key by `sequence`).
    pub(crate) checked: u64,
    pub(crate) out_of_order: u64,
    /// CPU seconds task-api used from its start to the end of the drain.
    pub(crate) cpu_seconds: Option<f64>,
    /// Whether every event arrived before the timeout.
    pub(crate) complete: bool,
}

impl DrainResult {
    /// Distinct events per second from the first to the last arrival.
    pub(crate) fn events_per_second(&self) -> f64 {
        (self.received - self.duplicates) as f64 / self.first_to_last_seconds.max(f64::MIN_POSITIVE)
    }

    /// Every event arrived, each key in order.
    pub(crate) fn order_kept(&self) -> bool {
        self.complete && self.out_of_order == 0 && self.checked >= self.events
    }
}

/// The backlog's row `index` (0-based): the event of user `index % users`, with `sequence` `index + 1` (so
/// each key's sequences grow in insertion order), as task-api would have stored it for a `task.updated`.
pub(crate) fn backlog_message(
    index: usize,
    user_ids: &[Uuid],
    now: OffsetDateTime,
) -> NewOutboxMessage {
    let user = user_ids[index % user_ids.len()].to_string();
    let id = Uuid::new_v4();
    let task =
        Uuid::from_u128(0xbe4c_0000_0000_0000_0000_0000_0000_0000 | index as u128).to_string();
    let time = now.format(&Rfc3339).unwrap_or_default();
    let correlation = Uuid::new_v4().to_string();
    let payload = serde_json::json!({
        "specversion": "1.0",
        "id": id.to_string(),
        "source": "pakaura/api",
        "type": "task.updated",
        "time": time,
        "subject": task,
        "datacontenttype": "application/json",
        "traceid": correlation,
        "correlationid": correlation,
        "partitionkey": user,
        "sequence": format!("{:020}", index + 1),
        "data": {
            "task_id": task,
            "user_id": user,
            "changes": {"title": format!("drain {index}")},
            "timestamp": time,
        },
    });
    NewOutboxMessage {
        id,
        topic: "task-events".to_owned(),
        partition_key: user,
        payload: payload.to_string(),
        traceparent: None,
    }
}

/// Writes the backlog, starts task-api in outbox mode against a 204 sink and times the drain.
pub(crate) async fn run(cli: &Cli, log: &Logger, backend: &Backend) -> anyhow::Result<DrainResult> {
    let mode = *MODES
        .iter()
        .find(|mode| mode.delivery == "outbox" && mode.sidecar == Sidecar::Ok)
        .context("no outbox mode")?;
    let sinks = Sinks::start(OrderBy::PartitionKey)?;
    let tag = format!("{}-drain", backend.name);
    let mut env = crate::server_env(cli, &mode, sinks.ok_addr);
    let url = backend.fresh_database(cli, &cli.binary, &tag, &env).await?;
    env.push(("DATABASE_URL".to_owned(), url.clone()));

    let events = cli.drain_events;
    let users = cli.drain_users.max(1);
    let user_ids: Vec<Uuid> = (0..users).map(|_| Uuid::new_v4()).collect();
    let inserting = Instant::now();
    let store = Store::open(&DbConfig::with_url(url), log)
        .await
        .context("opening the drain database")?;
    let now = OffsetDateTime::now_utc();
    let mut expected = std::collections::HashMap::with_capacity(events);
    for start in (0..events).step_by(CHUNK) {
        let chunk: Vec<NewOutboxMessage> = (start..(start + CHUNK).min(events))
            .map(|index| backlog_message(index, &user_ids, now))
            .collect();
        expected.extend(
            chunk
                .iter()
                .enumerate()
                .map(|(offset, row)| (row.id.to_string(), (start + offset) as u64)),
        );
        store
            .enqueue_outbox(&chunk)
            .await
            .context("writing the drain backlog")?;
    }
    store.close();
    drop(store);
    // The events carry `sequence`; should a relay ever drop it, the sink falls back to the write order.
    sinks.ok.observer.expect_order(expected);
    let insert_seconds = inserting.elapsed().as_secs_f64();
    info!(log, "drain backlog written"; "backend" => backend.name, "events" => events, "users" => users,
        "seconds" => insert_seconds);

    let started = Instant::now();
    let server = Server::start(&cli.binary, &env, cli.work_dir.join(format!("{tag}.log"))).await?;
    let deadline = started + Duration::from_secs_f64(cli.drain_timeout_seconds);
    let complete = loop {
        if sinks.ok.events.load(std::sync::atomic::Ordering::Relaxed) >= events as u64 {
            break true;
        }
        if Instant::now() > deadline {
            warn!(log, "drain unfinished"; "backend" => backend.name,
                "received" => sinks.ok.events.load(std::sync::atomic::Ordering::Relaxed));
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_seconds = server.cpu_seconds();
    server.stop(Duration::from_secs(10)).await;
    backend.drop_database(&tag).await;
    let received = sinks.ok.events.load(std::sync::atomic::Ordering::Relaxed);
    let result = sinks.ok.observer.with(|state| {
        let span = |from: Option<Instant>| match (from, state.last) {
            (Some(from), Some(last)) => last.saturating_duration_since(from).as_secs_f64(),
            _ => 0.0,
        };
        DrainResult {
            backend: backend.name.to_owned(),
            events: events as u64,
            users,
            insert_seconds,
            received,
            duplicates: state.duplicates,
            first_to_last_seconds: span(state.first),
            start_to_last_seconds: span(Some(started)),
            checked: state.order.checked,
            out_of_order: state.order.out_of_order,
            cpu_seconds,
            complete,
        }
    });
    info!(log, "drain done"; "backend" => backend.name, "events_per_second" => result.events_per_second(),
        "out_of_order" => result.out_of_order);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_rows_spread_over_the_users_with_growing_sequences_per_key() {
        let users: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let now = OffsetDateTime::now_utc();
        let rows: Vec<NewOutboxMessage> = (0..9).map(|i| backlog_message(i, &users, now)).collect();
        let mut last: std::collections::HashMap<String, String> = Default::default();
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row.partition_key, users[index % 3].to_string());
            let event: serde_json::Value = serde_json::from_str(&row.payload).unwrap();
            assert_eq!(event["id"], row.id.to_string());
            assert_eq!(event["partitionkey"], row.partition_key);
            assert_eq!(event["specversion"], "1.0");
            let sequence = event["sequence"].as_str().unwrap().to_owned();
            assert_eq!(sequence.len(), 20);
            if let Some(previous) = last.insert(row.partition_key.clone(), sequence.clone()) {
                assert!(previous < sequence, "{previous} then {sequence}");
            }
            assert!(OffsetDateTime::parse(event["time"].as_str().unwrap(), &Rfc3339).is_ok());
        }
    }

    #[test]
    fn drain_rate_counts_distinct_events_and_order_needs_every_event_checked() {
        let mut result = DrainResult {
            backend: "sqlite".into(),
            events: 100,
            users: 10,
            insert_seconds: 1.0,
            received: 110,
            duplicates: 10,
            first_to_last_seconds: 0.004,
            start_to_last_seconds: 0.5,
            checked: 110,
            out_of_order: 0,
            cpu_seconds: None,
            complete: true,
        };
        assert!((result.events_per_second() - 25_000.0).abs() < 1e-6);
        assert!(result.order_kept());
        result.out_of_order = 1;
        assert!(!result.order_kept());
        result.out_of_order = 0;
        result.complete = false;
        assert!(!result.order_kept());
    }
}

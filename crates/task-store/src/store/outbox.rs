//! The outbox half of [`Store`]: writing rows on their own, the relay's fenced claim / delete / release /
//! failure, and the operator's view (status, listing, replay, the backlog gauges).
//!
//! Every claim carries a fencing token (`lease_id`, a fresh random UUID written on each row it hands out). A
//! relay settles rows (deletes them, releases them, records a failure) only where they still carry its token:
//! once its lease expired and another relay claimed the same rows, whatever the first one still does with them
//! changes nothing, and it is told how many rows were fenced off.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{BackendQueries, Pools, Store};
use crate::error::StoreError;
use crate::models::{
    Delivered, FailureOutcome, OutboxBacklog, OutboxClaim, OutboxFilter, OutboxMessage,
    OutboxStatus, Settled, truncate_error,
};
use crate::pool::SqliteConn;
use crate::rows::{DbUuid, OutboxRow};

/// The pending rows that hold their partition key back at `$now` (waiting for a retry or leased), as
/// `(partition_key, next_attempt_at, claimed_until)`, read through `ix_event_outbox_blocking`.
macro_rules! load_blocking {
    ($conn:ident, $now:expr) => {{
        let now: OffsetDateTime = $now;
        let blocking: Vec<(String, OffsetDateTime, Option<OffsetDateTime>)> = event_outbox::table
            .select((
                event_outbox::partition_key,
                event_outbox::next_attempt_at,
                event_outbox::claimed_until,
            ))
            .filter(event_outbox::failed_at.is_null())
            // Spelled as in `ix_event_outbox_blocking`, so both planners match the partial index.
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(attempts > 0 OR claimed_until IS NOT NULL)",
            ))
            .filter(
                event_outbox::next_attempt_at
                    .gt(now)
                    .or(event_outbox::claimed_until.gt(now).assume_not_null()),
            )
            .load($conn)
            .await?;
        blocking
    }};
}

impl Store {
    /// Writes outbox rows on their own (mutations write theirs through [`crate::Staged`] or `insert_task`).
    #[cfg(feature = "test-util")]
    pub async fn enqueue_outbox(
        &self,
        messages: &[crate::models::NewOutboxMessage],
    ) -> Result<(), StoreError> {
        let now = task_domain::normalize(OffsetDateTime::now_utc());
        in_transaction!(self, |conn| {
            insert_outbox!(conn, messages, now);
            Ok::<_, StoreError>(())
        })
    }

    /// Claims up to `limit` deliverable rows for `lease` and returns them in insertion order (`seq`).
    ///
    /// A row is deliverable when it was not moved aside and no row of its partition key is waiting for a retry
    /// (`next_attempt_at > now` after a failure) or leased (`claimed_until > now`): the rows of one partition key
    /// are handed out in order and never overtake a failed one. The claim leases the **first** claimed row of
    /// each key (`claimed_until = now + lease`), which holds the whole key, so every other row is written once
    /// (inserted) and once claimed (its fencing token) before it is delivered (deleted); the returned messages
    /// all carry the key's lease and the claim's fencing token ([`OutboxClaim::lease`]). On
    /// PostgreSQL claims are serialized with a transaction-scoped advisory lock and rows are locked `FOR UPDATE
    /// SKIP LOCKED`, so several relays can run.
    ///
    /// The cost is bounded by the batch, not the backlog: blocked keys come from a small partial index; when
    /// some key is blocked the claim reads the oldest `4 × limit` pending rows and skips the blocked keys' ones,
    /// and only if that leaves fewer than `limit` rows (the blocked keys' rows fill it) are the ready keys found
    /// with one index probe per pending key instead of walking every pending row in `seq` order (a hanging
    /// sidecar used to make each claim read the whole backlog to hand out nothing).
    pub async fn claim_outbox(
        &self,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<OutboxClaim, StoreError> {
        self.settle_and_claim_outbox(None, limit, lease, now)
            .await
            .map(|(_, claim)| claim)
    }

    /// [`Store::mark_outbox_delivered`] of an earlier claim's `delivered` rows, then [`Store::claim_outbox`],
    /// in **one** transaction: a relay working through a backlog settles each round with the next claim instead
    /// of in a transaction of its own (one commit, and on SQLite one turn of the writer lock, per round instead
    /// of two). The delete comes first, so the keys it frees are claimable at once. The delete is fenced as
    /// [`Store::mark_outbox_delivered`]'s is; should the transaction fail, neither happened.
    pub async fn settle_and_claim_outbox(
        &self,
        delivered: Option<Delivered<'_>>,
        limit: usize,
        lease: Duration,
        now: OffsetDateTime,
    ) -> Result<(Settled, OutboxClaim), StoreError> {
        let delivered: Option<(DbUuid, Vec<DbUuid>)> = delivered
            .filter(|delivered| !delivered.ids.is_empty())
            .map(|delivered| {
                (
                    DbUuid(delivered.lease),
                    delivered.ids.iter().copied().map(DbUuid).collect(),
                )
            });
        let now = task_domain::normalize(now);
        let lease_until = task_domain::normalize(now + lease);
        let token = Uuid::new_v4();
        let limit = limit.max(1);
        let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
        let (deleted, rows, blocked_until): (usize, Vec<OutboxRow>, Option<OffsetDateTime>) =
            in_transaction!(self, |conn| {
                BackendQueries::serialize_claims(conn).await?;
                let deleted = match &delivered {
                    Some((settle_lease, ids)) => {
                        diesel::delete(
                            event_outbox::table
                                .filter(event_outbox::id.eq_any(ids))
                                .filter(event_outbox::lease_id.eq(*settle_lease)),
                        )
                        .execute(conn)
                        .await?
                    }
                    None => 0,
                };
                let blocking = load_blocking!(conn, now);
                let blocked = blocked_keys(blocking, now);
                let window = limit.saturating_mul(CLAIM_WINDOW);
                let rows = if blocked.is_empty() {
                    BackendQueries::oldest_pending(conn, limit_sql).await?
                } else if let Some(rows) = ready_in_window(
                    BackendQueries::oldest_pending(conn, i64::try_from(window).unwrap_or(i64::MAX))
                        .await?,
                    &blocked,
                    limit,
                    window,
                ) {
                    rows
                } else {
                    let mut ready: Vec<PendingKey> = diesel::sql_query(PENDING_KEYS)
                        .load::<PendingKey>(conn)
                        .await?
                        .into_iter()
                        .filter(|key| !blocked.contains_key(&key.partition_key))
                        .collect();
                    ready.sort_by_key(|key| key.head);
                    let mut rows: Vec<OutboxRow> = Vec::new();
                    for key in ready {
                        // Every row of this key comes after its head: once `limit` older rows are in hand,
                        // neither it nor any later key can contribute.
                        if rows.len() >= limit
                            && rows.last().is_some_and(|last| last.seq < key.head)
                        {
                            break;
                        }
                        let of_key =
                            BackendQueries::oldest_of_key(conn, &key.partition_key, limit_sql)
                                .await?;
                        rows.extend(of_key);
                        rows.sort_by_key(|row| row.seq);
                        rows.truncate(limit);
                    }
                    rows
                };
                let mut leased_keys = std::collections::HashSet::new();
                let heads: Vec<DbUuid> = rows
                    .iter()
                    .filter(|row| leased_keys.insert(row.partition_key.as_str()))
                    .map(|row| row.id)
                    .collect();
                if !heads.is_empty() {
                    // The heads hold their keys; every claimed row carries the token that fences its settling.
                    // One statement, so each row gets one new version (on PostgreSQL a changed `claimed_until`
                    // means new entries in every index of the row: two updates wrote them twice).
                    let claimed: Vec<DbUuid> = rows.iter().map(|row| row.id).collect();
                    let leased_until = Some(lease_until)
                        .into_sql::<diesel::dsl::SqlTypeOf<event_outbox::claimed_until>>();
                    diesel::update(event_outbox::table.filter(event_outbox::id.eq_any(&claimed)))
                        .set((
                            event_outbox::lease_id.eq(Some(DbUuid(token))),
                            event_outbox::claimed_until.eq(diesel::dsl::case_when(
                                event_outbox::id.eq_any(&heads),
                                leased_until,
                            )
                            .otherwise(event_outbox::claimed_until)),
                        ))
                        .execute(conn)
                        .await?;
                }
                Ok::<_, StoreError>((deleted, rows, blocked.into_values().min()))
            })?;
        let settled = Settled {
            settled: deleted,
            fenced: delivered
                .as_ref()
                .map_or(0, |(_, ids)| ids.len().saturating_sub(deleted)),
        };
        let claim = OutboxClaim {
            messages: rows
                .into_iter()
                .map(|row| OutboxMessage {
                    claimed_until: Some(lease_until),
                    lease_id: Some(token),
                    ..OutboxMessage::from(row)
                })
                .collect(),
            lease: token,
            lease_until,
            blocked_until,
        };
        Ok((settled, claim))
    }

    /// Deletes delivered rows that still carry the claim's fencing token `lease`; rows another claim took
    /// over (after this one's lease expired) or that are gone are counted as fenced and left alone.
    pub async fn mark_outbox_delivered(
        &self,
        lease: Uuid,
        ids: &[Uuid],
    ) -> Result<Settled, StoreError> {
        let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
        let settled = with_write_conn!(self, |conn| {
            diesel::delete(
                event_outbox::table
                    .filter(event_outbox::id.eq_any(&ids))
                    .filter(event_outbox::lease_id.eq(DbUuid(lease))),
            )
            .execute(conn)
            .await?
        });
        Ok(Settled {
            settled,
            fenced: ids.len().saturating_sub(settled),
        })
    }

    /// Gives claimed rows back without counting an attempt (a relay skipping the rest of a partition after a
    /// failure, or shutting down): clears the lease of those that still carry the fencing token `lease`.
    #[cfg(feature = "test-util")]
    pub async fn release_outbox(&self, lease: Uuid, ids: &[Uuid]) -> Result<Settled, StoreError> {
        let ids: Vec<DbUuid> = ids.iter().copied().map(DbUuid).collect();
        let settled = with_write_conn!(self, |conn| {
            diesel::update(
                event_outbox::table
                    .filter(event_outbox::id.eq_any(&ids))
                    .filter(event_outbox::lease_id.eq(DbUuid(lease))),
            )
            .set((
                event_outbox::claimed_until.eq(None::<OffsetDateTime>),
                event_outbox::lease_id.eq(None::<DbUuid>),
            ))
            .execute(conn)
            .await?
        });
        Ok(Settled {
            settled,
            fenced: ids.len().saturating_sub(settled),
        })
    }

    /// Records a failed delivery of a row claimed with the fencing token `lease`: one more attempt,
    /// `last_error` (cut to 2000 characters), the lease released. Below `max_attempts` the row becomes claimable
    /// again at `retry_at`; at `max_attempts` it is moved aside (`failed_at = now`) and never claimed again.
    /// [`FailureOutcome::Fenced`] (nothing written) if the row no longer carries `lease` or is gone.
    pub async fn record_outbox_failure(
        &self,
        lease: Uuid,
        id: Uuid,
        error: &str,
        retry_at: OffsetDateTime,
        max_attempts: u32,
        now: OffsetDateTime,
    ) -> Result<FailureOutcome, StoreError> {
        let error = truncate_error(error);
        let now = task_domain::normalize(now);
        let retry_at = task_domain::normalize(retry_at);
        in_transaction!(self, |conn| {
            let attempts: Option<i32> = event_outbox::table
                .find(DbUuid(id))
                .filter(event_outbox::lease_id.eq(DbUuid(lease)))
                .select(event_outbox::attempts)
                .first(conn)
                .await
                .optional()?;
            let Some(attempts) = attempts else {
                return Ok::<_, StoreError>(FailureOutcome::Fenced);
            };
            let attempts = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
            let moved_aside = attempts >= max_attempts;
            // Fenced again: on PostgreSQL another relay's claim may have committed since the read.
            let updated = diesel::update(
                event_outbox::table
                    .find(DbUuid(id))
                    .filter(event_outbox::lease_id.eq(DbUuid(lease))),
            )
            .set((
                event_outbox::attempts.eq(i32::try_from(attempts).unwrap_or(i32::MAX)),
                event_outbox::last_error.eq(Some(&error)),
                event_outbox::claimed_until.eq(None::<OffsetDateTime>),
                event_outbox::lease_id.eq(None::<DbUuid>),
                event_outbox::next_attempt_at.eq(retry_at),
                event_outbox::failed_at.eq(moved_aside.then_some(now)),
            ))
            .execute(conn)
            .await?;
            Ok(if updated == 0 {
                FailureOutcome::Fenced
            } else if moved_aside {
                FailureOutcome::MovedAside { attempts }
            } else {
                FailureOutcome::Retry { attempts }
            })
        })
    }

    /// How many rows wait for delivery and how many were moved aside.
    #[cfg(feature = "test-util")]
    pub async fn outbox_counts(&self) -> Result<crate::models::OutboxCounts, StoreError> {
        let (pending, failed): (i64, i64) = with_conn!(self, |conn| {
            let pending = event_outbox::table
                .filter(event_outbox::failed_at.is_null())
                .count()
                .get_result(conn)
                .await?;
            let failed = event_outbox::table
                .filter(event_outbox::failed_at.is_not_null())
                .count()
                .get_result(conn)
                .await?;
            (pending, failed)
        });
        Ok(crate::models::OutboxCounts {
            pending: u64::try_from(pending).unwrap_or(0),
            failed: u64::try_from(failed).unwrap_or(0),
        })
    }

    /// The pending row count and the oldest pending row's `created_at`, for the `/metrics` gauges: two cheap
    /// statements on one connection (a count of the pending rows, a drained outbox holds a handful; the oldest
    /// is the first pending entry of the `seq` index).
    pub async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError> {
        let (pending, oldest): (i64, Option<OffsetDateTime>) = with_conn!(self, |conn| {
            let pending = event_outbox::table
                .filter(event_outbox::failed_at.is_null())
                .count()
                .get_result(conn)
                .await?;
            let oldest = event_outbox::table
                .filter(event_outbox::failed_at.is_null())
                .order(event_outbox::seq.asc())
                .select(event_outbox::created_at)
                .first(conn)
                .await
                .optional()?;
            (pending, oldest)
        });
        Ok(OutboxBacklog {
            pending: u64::try_from(pending).unwrap_or(0),
            oldest_pending_at: oldest,
        })
    }

    /// The backlog, the keys held back at `now` (waiting for a retry or leased) and the moved-aside rows, for
    /// `task-api outbox status`.
    pub async fn outbox_status(&self, now: OffsetDateTime) -> Result<OutboxStatus, StoreError> {
        let now = task_domain::normalize(now);
        let backlog = self.outbox_backlog().await?;
        let (blocked, moved_aside): (usize, i64) = with_conn!(self, |conn| {
            let blocking = load_blocking!(conn, now);
            let moved_aside = event_outbox::table
                .filter(event_outbox::failed_at.is_not_null())
                .count()
                .get_result(conn)
                .await?;
            (blocked_keys(blocking, now).len(), moved_aside)
        });
        Ok(OutboxStatus {
            backlog,
            blocked_keys: u64::try_from(blocked).unwrap_or(u64::MAX),
            moved_aside: u64::try_from(moved_aside).unwrap_or(0),
        })
    }

    /// Up to `limit` pending or moved-aside rows, oldest (`seq`) first, for `task-api outbox list`.
    pub async fn list_outbox(
        &self,
        filter: OutboxFilter,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<OutboxRow> = with_conn!(self, |conn| {
            let query = event_outbox::table.into_boxed();
            let query = match filter {
                OutboxFilter::Pending => query.filter(event_outbox::failed_at.is_null()),
                OutboxFilter::MovedAside => query.filter(event_outbox::failed_at.is_not_null()),
            };
            query
                .order(event_outbox::seq.asc())
                .limit(limit)
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(OutboxMessage::from).collect())
    }

    /// Puts moved-aside rows back in the queue (all of them, or those of `ids`): attempts reset to zero,
    /// claimable at once, their `last_error` kept for the record. Returns how many were re-queued; ids of rows
    /// that are not moved aside are ignored.
    ///
    /// A re-queued row keeps its `seq`, so it goes before the pending rows of its key, but after the ones
    /// delivered while it was aside: it reaches consumers late, which the `sequence` attribute lets them see.
    pub async fn replay_outbox(
        &self,
        ids: Option<&[Uuid]>,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let now = task_domain::normalize(now);
        let ids: Option<Vec<DbUuid>> = ids.map(|ids| ids.iter().copied().map(DbUuid).collect());
        with_write_conn!(self, |conn| {
            let changes = (
                event_outbox::attempts.eq(0),
                event_outbox::failed_at.eq(None::<OffsetDateTime>),
                event_outbox::next_attempt_at.eq(now),
                event_outbox::claimed_until.eq(None::<OffsetDateTime>),
                event_outbox::lease_id.eq(None::<DbUuid>),
            );
            let moved_aside = event_outbox::table.filter(event_outbox::failed_at.is_not_null());
            let replayed = match &ids {
                Some(ids) => {
                    diesel::update(moved_aside.filter(event_outbox::id.eq_any(ids)))
                        .set(changes)
                        .execute(conn)
                        .await?
                }
                None => {
                    diesel::update(moved_aside)
                        .set(changes)
                        .execute(conn)
                        .await?
                }
            };
            Ok(replayed)
        })
    }

    /// Every outbox row, moved-aside ones included, in insertion order: for tests and operator tooling.
    #[cfg(feature = "test-util")]
    pub async fn outbox_rows(&self) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows: Vec<OutboxRow> = with_conn!(self, |conn| {
            event_outbox::table
                .order(event_outbox::seq.asc())
                .load(conn)
                .await?
        });
        Ok(rows.into_iter().map(OutboxMessage::from).collect())
    }
}

/// Each pending partition key with the `seq` of its oldest pending row, found with one probe of
/// `ix_event_outbox_partition` per key (a "skip scan": the next key is the smallest one above the last), so the
/// cost does not grow with the rows behind each key. No parameters, so one text serves both backends.
const PENDING_KEYS: &str = "\
WITH RECURSIVE pending_keys(partition_key) AS (
    SELECT (SELECT partition_key FROM event_outbox WHERE failed_at IS NULL ORDER BY partition_key LIMIT 1)
  UNION ALL
    SELECT (SELECT o.partition_key FROM event_outbox o
            WHERE o.failed_at IS NULL AND o.partition_key > pending_keys.partition_key
            ORDER BY o.partition_key LIMIT 1)
    FROM pending_keys WHERE pending_keys.partition_key IS NOT NULL
)
SELECT k.partition_key AS partition_key,
       (SELECT o.seq FROM event_outbox o WHERE o.failed_at IS NULL AND o.partition_key = k.partition_key
        ORDER BY o.seq LIMIT 1) AS head
FROM pending_keys k WHERE k.partition_key IS NOT NULL";

/// A row of [`PENDING_KEYS`].
#[derive(QueryableByName)]
struct PendingKey {
    #[diesel(sql_type = diesel::sql_types::Text)]
    partition_key: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    head: i64,
}

/// How many times the batch a claim reads in `seq` order, past the rows of blocked keys, before it looks the
/// ready keys up one by one instead.
const CLAIM_WINDOW: usize = 4;

/// The first `limit` rows of `scanned` (the oldest `window` pending rows, in `seq` order) whose key `blocked` does
/// not hold back, if that settles the claim: `limit` of them were found, or `scanned` held every pending row.
/// Otherwise (the blocked keys' rows fill the window: a long backlog behind a retrying key) `None`, and the ready
/// keys are looked up one by one. Every pending row of a returned row's key that is older is in the window
/// too, and so returned before it: a key's rows are handed out from its oldest, without gaps.
fn ready_in_window(
    scanned: Vec<OutboxRow>,
    blocked: &std::collections::BTreeMap<String, OffsetDateTime>,
    limit: usize,
    window: usize,
) -> Option<Vec<OutboxRow>> {
    let complete = scanned.len() < window;
    let ready: Vec<OutboxRow> = scanned
        .into_iter()
        .filter(|row| !blocked.contains_key(&row.partition_key))
        .take(limit)
        .collect();
    (ready.len() >= limit || complete).then_some(ready)
}

/// The partition keys that `blocking` rows (partition key, `next_attempt_at`, `claimed_until`) hold back at
/// `now`, each with the instant it frees up (its last retry time or lease end).
fn blocked_keys(
    blocking: Vec<(String, OffsetDateTime, Option<OffsetDateTime>)>,
    now: OffsetDateTime,
) -> std::collections::BTreeMap<String, OffsetDateTime> {
    let mut blocked = std::collections::BTreeMap::new();
    for (key, next_attempt_at, claimed_until) in blocking {
        let free_at = [Some(next_attempt_at), claimed_until]
            .into_iter()
            .flatten()
            .filter(|instant| *instant > now)
            .max()
            .unwrap_or(now);
        blocked
            .entry(key)
            .and_modify(|until: &mut OffsetDateTime| *until = (*until).max(free_at))
            .or_insert(free_at);
    }
    blocked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, key: &str) -> OutboxRow {
        let now = OffsetDateTime::now_utc();
        OutboxRow {
            id: DbUuid(Uuid::new_v4()),
            seq,
            topic: "t".to_owned(),
            partition_key: key.to_owned(),
            payload: String::new(),
            attempts: 0,
            next_attempt_at: now,
            claimed_until: None,
            last_error: None,
            failed_at: None,
            created_at: now,
            traceparent: None,
            lease_id: None,
        }
    }

    fn seqs(rows: Option<Vec<OutboxRow>>) -> Option<Vec<i64>> {
        rows.map(|rows| rows.iter().map(|row| row.seq).collect())
    }

    #[test]
    fn the_window_skips_blocked_keys_and_gives_up_when_they_fill_it() {
        let scanned = || vec![row(1, "u"), row(2, "v"), row(3, "u"), row(4, "w")];
        let blocked: std::collections::BTreeMap<String, OffsetDateTime> =
            [("u".to_owned(), OffsetDateTime::now_utc())].into();
        assert_eq!(
            seqs(ready_in_window(scanned(), &blocked, 2, 4)),
            Some(vec![2, 4]),
            "enough ready rows in the window"
        );
        assert_eq!(
            seqs(ready_in_window(scanned(), &blocked, 3, 4)),
            None,
            "a full window with too few ready rows: more may lie past it"
        );
        assert_eq!(
            seqs(ready_in_window(scanned(), &blocked, 3, 5)),
            Some(vec![2, 4]),
            "fewer rows than the window: every pending row was seen"
        );
    }
}

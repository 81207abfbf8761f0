//! The storage contract suite: every test in `contract.rs` runs against SQLite (always, on a temporary file) and
//! PostgreSQL (a fresh database per test when `TEST_DATABASE_URL` is set; skipped with a message otherwise,
//! and failing when `CI` is set).

mod backends;
mod contract;
mod support;

/// Generates one `#[tokio::test]` per backend for each contract test function `contract::$name(&Store)`.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::support::TestDb::sqlite().await;
                    crate::contract::$name(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = crate::support::TestDb::postgres().await else { return };
                    crate::contract::$name(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

contract_tests!(
    users_are_created_and_found_by_normalized_email_and_id,
    a_taken_email_is_a_unique_violation,
    a_task_round_trips_with_its_due_date_and_timestamps,
    a_missing_task_is_not_found,
    tasks_are_listed_newest_first_per_user_with_the_completed_filter,
    a_task_for_an_unknown_user_is_a_foreign_key_violation,
    an_update_writes_the_task_and_its_outbox_rows_together,
    a_rejected_update_rolls_back_the_change_and_the_outbox,
    an_update_that_changes_nothing_writes_nothing,
    updating_or_deleting_a_missing_task_is_not_found,
    concurrent_updates_of_one_task_are_serialized,
    concurrent_updates_of_one_task_see_sequence_and_time_in_commit_order,
    a_delete_removes_the_row_and_writes_the_outbox,
    clear_completed_removes_only_the_users_completed_tasks,
    inserting_a_task_writes_its_outbox_rows_in_order,
    outbox_claims_lease_rows_and_keep_partition_order,
    a_claim_settles_the_previous_claims_rows_first_and_fenced,
    outbox_failures_back_off_then_move_aside,
    outbox_releases_make_rows_claimable_again,
    concurrent_claims_never_hand_out_a_row_twice,
    a_blocked_key_with_a_long_backlog_holds_back_only_itself,
    a_key_leased_by_another_relay_is_skipped_until_its_lease_ends,
    an_expired_lease_is_fenced_off_once_another_relay_claims_the_rows,
    outbox_status_counts_backlog_blocked_keys_and_moved_aside_rows,
    moved_aside_rows_are_listed_and_replayed,
);

//! The storage contract: what both backends must do the same way. Each function gets a freshly migrated store.

use std::time::Duration;

use task_domain::{DueDate, Email, Task, TaskEvent, TaskId, TaskPatch, TaskTitle, UserId};
use task_store::{
    Delivered, FailureOutcome, NewOutboxMessage, NewUser, OutboxCounts, Settled, Staged, Store,
    StoreError, User,
};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const T0: OffsetDateTime = datetime!(2026-02-01 10:00:00.123456 UTC);

/// The error type of the test closures: the store's, or the closure's own refusal.
#[derive(Debug)]
enum TestError {
    Store(#[expect(dead_code, reason = "read through Debug in assertion messages")] StoreError),
    Forbidden,
}

impl From<StoreError> for TestError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

async fn user(store: &Store, email: &str) -> User {
    store
        .create_user(NewUser {
            id: UserId::new_v4(),
            email: Email::parse(email).expect("test emails are valid"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            now: T0,
        })
        .await
        .expect("create user")
}

fn title(text: &str) -> TaskTitle {
    TaskTitle::parse(text).expect("test titles are valid")
}

/// Stores a new task with `outbox` through the store's transactional insert.
async fn insert(
    store: &Store,
    task: &Task,
    outbox: Vec<NewOutboxMessage>,
) -> Result<(), StoreError> {
    store
        .insert_task(task, |_| {
            Ok::<_, StoreError>(Staged::new(()).with_outbox(outbox))
        })
        .await
}

async fn task(store: &Store, owner: &User, text: &str, at: OffsetDateTime) -> Task {
    let (task, _) = Task::create(TaskId::new_v4(), owner.id, title(text), None, at);
    insert(store, &task, Vec::new()).await.expect("insert task");
    task
}

/// One outbox message per event, the way `task-api` writes them (payload content is opaque to the store).
fn messages(task: &Task, events: &[TaskEvent]) -> Vec<NewOutboxMessage> {
    events
        .iter()
        .map(|event| NewOutboxMessage {
            id: Uuid::new_v4(),
            topic: if matches!(event, TaskEvent::Sync(_)) {
                "task-updates"
            } else {
                "task-events"
            }
            .to_owned(),
            partition_key: task.user_id().to_string(),
            payload: format!("{{\"event\":\"{event:?}\",\"task_id\":\"{}\"}}", task.id()),
            traceparent: Some(TRACEPARENT.to_owned()),
        })
        .collect()
}

fn message(partition_key: &str, payload: &str) -> NewOutboxMessage {
    NewOutboxMessage {
        id: Uuid::new_v4(),
        topic: "task-events".to_owned(),
        partition_key: partition_key.to_owned(),
        payload: payload.to_owned(),
        traceparent: None,
    }
}

/// The `traceparent` that `messages` stores with every event.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn payloads(rows: &[task_store::OutboxMessage]) -> Vec<&str> {
    rows.iter().map(|row| row.payload.as_str()).collect()
}

pub(crate) async fn users_are_created_and_found_by_normalized_email_and_id(store: &Store) {
    let created = user(store, " Alice@Example.com ").await;
    assert_eq!(created.email.as_str(), "alice@example.com");
    assert_eq!(created.created_at, T0);

    let by_email = store
        .find_user_by_email(&Email::parse("ALICE@example.COM").unwrap())
        .await
        .unwrap();
    assert_eq!(by_email.as_ref(), Some(&created));
    let by_id = store.find_user(created.id).await.unwrap();
    assert_eq!(by_id.as_ref(), Some(&created));

    assert_eq!(store.find_user(UserId::new_v4()).await.unwrap(), None);
    assert_eq!(
        store
            .find_user_by_email(&Email::parse("bob@example.com").unwrap())
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn a_taken_email_is_a_unique_violation(store: &Store) {
    user(store, "carol@example.com").await;
    let again = store
        .create_user(NewUser {
            id: UserId::new_v4(),
            email: Email::parse("CAROL@example.com").unwrap(),
            password_hash: "x".to_owned(),
            now: T0,
        })
        .await;
    match again {
        Err(StoreError::UniqueViolation { constraint }) => {
            assert!(constraint.contains("email"), "{constraint}")
        }
        other => panic!("expected a unique violation, got {other:?}"),
    }
}

pub(crate) async fn a_task_round_trips_with_its_due_date_and_timestamps(store: &Store) {
    let owner = user(store, "dave@example.com").await;
    let due = DueDate::new(datetime!(2026-03-04 05:06:07.891011 +02:00));
    let (created, _) = Task::create(
        TaskId::new_v4(),
        owner.id,
        title("  Ship it  "),
        Some(due),
        T0,
    );
    insert(store, &created, Vec::new()).await.unwrap();

    let stored = store.get_task(created.id()).await.unwrap();
    assert_eq!(stored, created);
    assert_eq!(stored.title().as_str(), "Ship it");
    assert_eq!(stored.due_date(), Some(due));
    assert_eq!(stored.created_at(), T0);
    assert!(!stored.completed());
}

pub(crate) async fn a_missing_task_is_not_found(store: &Store) {
    assert!(matches!(
        store.get_task(TaskId::new_v4()).await,
        Err(StoreError::NotFound)
    ));
}

pub(crate) async fn tasks_are_listed_newest_first_per_user_with_the_completed_filter(
    store: &Store,
) {
    let owner = user(store, "erin@example.com").await;
    let other = user(store, "frank@example.com").await;
    let first = task(store, &owner, "first", T0).await;
    let second = task(store, &owner, "second", T0 + Duration::from_secs(1)).await;
    let third = task(
        store,
        &owner,
        "third",
        T0 + Duration::from_micros(1_000_001),
    )
    .await;
    task(store, &other, "not mine", T0 + Duration::from_secs(5)).await;
    store
        .update_task(second.id(), |task, _| {
            Ok::<_, StoreError>(Staged::new(task.complete(T0 + Duration::from_secs(9))))
        })
        .await
        .unwrap();

    let titles = |tasks: Vec<Task>| {
        tasks
            .iter()
            .map(|task| task.title().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        titles(store.list_tasks(owner.id, None).await.unwrap()),
        ["third", "second", "first"]
    );
    assert_eq!(
        titles(store.list_tasks(owner.id, Some(true)).await.unwrap()),
        ["second"]
    );
    assert_eq!(
        titles(store.list_tasks(owner.id, Some(false)).await.unwrap()),
        ["third", "first"]
    );
    assert_eq!(
        titles(store.list_tasks(UserId::new_v4(), None).await.unwrap()),
        Vec::<String>::new()
    );
    let _ = (first, third);
}

pub(crate) async fn a_task_for_an_unknown_user_is_a_foreign_key_violation(store: &Store) {
    let (orphan, _) = Task::create(
        TaskId::new_v4(),
        UserId::new_v4(),
        title("orphan"),
        None,
        T0,
    );
    let res = insert(store, &orphan, vec![message("p", "x")]).await;
    assert!(
        matches!(res, Err(StoreError::ForeignKeyViolation { .. })),
        "{res:?}"
    );
    assert_eq!(
        store.outbox_counts().await.unwrap(),
        OutboxCounts {
            pending: 0,
            failed: 0
        },
        "rolled back"
    );
}

pub(crate) async fn an_update_writes_the_task_and_its_outbox_rows_together(store: &Store) {
    let owner = user(store, "gina@example.com").await;
    let before = task(store, &owner, "draft", T0).await;
    let due = DueDate::new(T0 + Duration::from_secs(3600));
    let later = T0 + Duration::from_secs(60);
    let patch = TaskPatch {
        title: Some(title("final")),
        completed: Some(true),
        due_date: Some(Some(due)),
    };

    let (updated, events) = store
        .update_task(before.id(), |task, _| {
            let events = task.update(patch, later);
            let outbox = messages(task, &events);
            Ok::<_, StoreError>(Staged::new(events).with_outbox(outbox))
        })
        .await
        .unwrap();

    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(updated.title().as_str(), "final");
    assert_eq!(store.get_task(before.id()).await.unwrap(), updated);
    assert_eq!(updated.updated_at(), later);
    assert_eq!(updated.created_at(), T0);
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "insertion order is kept"
    );
    assert!(rows[0].payload.contains("Updated"), "{}", rows[0].payload);
    assert!(rows[3].payload.contains("Sync"), "{}", rows[3].payload);
    assert!(
        rows.iter()
            .all(|row| row.partition_key == owner.id.to_string() && row.attempts == 0)
    );
}

pub(crate) async fn a_rejected_update_rolls_back_the_change_and_the_outbox(store: &Store) {
    let owner = user(store, "hank@example.com").await;
    let before = task(store, &owner, "keep me", T0).await;
    let stranger = UserId::new_v4();

    let res = store
        .update_task(before.id(), |task, _| {
            let events = task.update(
                TaskPatch {
                    title: Some(title("hijacked")),
                    ..TaskPatch::default()
                },
                T0,
            );
            let _outbox = messages(task, &events);
            if task.user_id() != stranger {
                return Err(TestError::Forbidden);
            }
            Ok(Staged::new(events))
        })
        .await;

    assert!(matches!(res, Err(TestError::Forbidden)), "{res:?}");
    assert_eq!(store.get_task(before.id()).await.unwrap(), before);
    assert_eq!(store.outbox_counts().await.unwrap().pending, 0);
}

pub(crate) async fn an_update_that_changes_nothing_writes_nothing(store: &Store) {
    let owner = user(store, "iris@example.com").await;
    let before = task(store, &owner, "same", T0).await;
    let (after, events) = store
        .update_task(before.id(), |task, _| {
            let events = task.update(
                TaskPatch {
                    title: Some(title("same")),
                    ..TaskPatch::default()
                },
                T0 + Duration::from_secs(5),
            );
            let outbox = messages(task, &events);
            Ok::<_, StoreError>(Staged::new(events).with_outbox(outbox))
        })
        .await
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(after, before);
    assert_eq!(store.get_task(before.id()).await.unwrap().updated_at(), T0);
    assert_eq!(store.outbox_counts().await.unwrap().pending, 0);
}

pub(crate) async fn updating_or_deleting_a_missing_task_is_not_found(store: &Store) {
    let update = store
        .update_task(TaskId::new_v4(), |_, _| {
            Ok::<_, StoreError>(Staged::new(()))
        })
        .await;
    assert!(matches!(update, Err(StoreError::NotFound)), "{update:?}");
    let delete = store
        .delete_task(TaskId::new_v4(), |_, _| {
            Ok::<_, StoreError>(Staged::new(()))
        })
        .await;
    assert!(matches!(delete, Err(StoreError::NotFound)), "{delete:?}");
}

pub(crate) async fn concurrent_updates_of_one_task_are_serialized(store: &Store) {
    let owner = user(store, "jack@example.com").await;
    let shared = task(store, &owner, "x", T0).await.id();
    let mut workers = tokio::task::JoinSet::new();
    for letter in ["a", "b", "c", "d", "e", "f"] {
        let store = store.clone();
        workers.spawn(async move {
            store
                .update_task(shared, move |task, _| {
                    let appended = title(&format!("{}{letter}", task.title()));
                    let events = task.update(
                        TaskPatch {
                            title: Some(appended),
                            ..TaskPatch::default()
                        },
                        T0,
                    );
                    Ok::<_, StoreError>(Staged::new(events))
                })
                .await
        });
    }
    while let Some(res) = workers.join_next().await {
        res.expect("worker ran").expect("update committed");
    }
    let stored = store.get_task(shared).await.unwrap();
    let mut letters: Vec<char> = stored.title().as_str().chars().collect();
    letters.sort_unstable();
    assert_eq!(
        letters.into_iter().collect::<String>(),
        "abcdefx",
        "no update was lost"
    );
}

/// The `Locked` context follows the commit order of one task: each concurrent update sees the title the previous
/// commit left, and its sequence block and instant are after that commit's.
pub(crate) async fn concurrent_updates_of_one_task_see_sequence_and_time_in_commit_order(
    store: &Store,
) {
    let owner = user(store, "lena@example.com").await;
    let shared = task(store, &owner, "x", T0).await.id();
    let mut workers = tokio::task::JoinSet::new();
    for letter in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        let store = store.clone();
        workers.spawn(async move {
            store
                .update_task(shared, move |task, locked| {
                    let appended = format!("{}{letter}", task.title());
                    let events = task.update(
                        TaskPatch {
                            title: Some(title(&appended)),
                            ..TaskPatch::default()
                        },
                        locked.now,
                    );
                    assert!(!events.is_empty());
                    Ok::<_, StoreError>(Staged::new((appended, locked)))
                })
                .await
        });
    }
    let mut commits = Vec::new();
    while let Some(res) = workers.join_next().await {
        let (_, (title, locked)) = res.expect("worker ran").expect("update committed");
        commits.push((title, locked));
    }
    // Each commit appended one letter to what the previous commit left, so the title length is the commit order.
    commits.sort_by_key(|(title, _)| title.len());
    for pair in commits.windows(2) {
        let ((before_title, before), (after_title, after)) = (&pair[0], &pair[1]);
        assert!(after_title.starts_with(before_title.as_str()));
        assert!(
            after.sequence > before.sequence,
            "{after_title} committed after {before_title} but took {:?} <= {:?}",
            after.sequence,
            before.sequence
        );
        assert!(
            after.sequence.nth_text(0).unwrap() > before.sequence.nth_text(99).unwrap(),
            "the texts sort like the commits"
        );
        assert!(after.now >= before.now, "time went backwards for one task");
    }
}

pub(crate) async fn a_delete_removes_the_row_and_writes_the_outbox(store: &Store) {
    let owner = user(store, "kate@example.com").await;
    let (doomed, _) = Task::create(
        TaskId::new_v4(),
        owner.id,
        title("doomed"),
        Some(DueDate::new(T0 + Duration::from_secs(60))),
        T0,
    );
    insert(store, &doomed, Vec::new()).await.unwrap();

    let refused = store
        .delete_task(doomed.id(), |_, _| {
            Err::<Staged<()>, _>(TestError::Forbidden)
        })
        .await;
    assert!(matches!(refused, Err(TestError::Forbidden)));
    assert!(
        store.get_task(doomed.id()).await.is_ok(),
        "a refused delete keeps the row"
    );

    let (deleted, events) = store
        .delete_task(doomed.id(), |task, _| {
            let events = task.delete();
            let outbox = messages(task, &events);
            Ok::<_, StoreError>(Staged::new(events).with_outbox(outbox))
        })
        .await
        .unwrap();
    assert_eq!(deleted, doomed);
    assert_eq!(
        events.len(),
        3,
        "deleted, reminder cancelled, sync: {events:?}"
    );
    assert!(matches!(
        store.get_task(doomed.id()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.outbox_counts().await.unwrap().pending, 3);
}

pub(crate) async fn clear_completed_removes_only_the_users_completed_tasks(store: &Store) {
    let owner = user(store, "liam@example.com").await;
    let other = user(store, "mona@example.com").await;
    let old_done = task(store, &owner, "old done", T0).await;
    let open = task(store, &owner, "open", T0 + Duration::from_secs(1)).await;
    let new_done = task(store, &owner, "new done", T0 + Duration::from_secs(2)).await;
    let others_done = task(store, &other, "other's done", T0).await;
    for id in [old_done.id(), new_done.id(), others_done.id()] {
        store
            .update_task(id, |task, _| {
                Ok::<_, StoreError>(Staged::new(task.complete(T0)))
            })
            .await
            .unwrap();
    }

    let (removed, count) = store
        .delete_completed(owner.id, |tasks, _| {
            let outbox = task_domain::clear_completed(tasks)
                .into_iter()
                .flat_map(|(id, events)| {
                    let task = tasks
                        .iter()
                        .find(|task| task.id() == id)
                        .expect("event of a removed task");
                    messages(task, &events)
                })
                .collect();
            Ok::<_, StoreError>(Staged::new(tasks.len()).with_outbox(outbox))
        })
        .await
        .unwrap();

    assert_eq!(count, 2);
    let removed_titles: Vec<&str> = removed.iter().map(|task| task.title().as_str()).collect();
    assert_eq!(removed_titles, ["old done", "new done"], "oldest first");
    assert!(removed.iter().all(Task::completed));
    let left: Vec<TaskId> = store
        .list_tasks(owner.id, None)
        .await
        .unwrap()
        .iter()
        .map(Task::id)
        .collect();
    assert_eq!(left, [open.id()]);
    assert_eq!(store.list_tasks(other.id, None).await.unwrap().len(), 1);
    assert_eq!(
        store.outbox_counts().await.unwrap().pending,
        4,
        "deleted + sync for each removed task"
    );

    let (none, _) = store
        .delete_completed(owner.id, |tasks, _| {
            Ok::<_, StoreError>(Staged::new(tasks.len()))
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

pub(crate) async fn inserting_a_task_writes_its_outbox_rows_in_order(store: &Store) {
    let owner = user(store, "nina@example.com").await;
    let (created, events) = Task::create(
        TaskId::new_v4(),
        owner.id,
        title("with reminder"),
        Some(DueDate::new(T0 + Duration::from_secs(600))),
        T0,
    );
    let outbox = messages(&created, &events);
    insert(store, &created, outbox.clone()).await.unwrap();
    let rows = store.outbox_rows().await.unwrap();
    let ids: Vec<Uuid> = rows.iter().map(|row| row.id).collect();
    let expected: Vec<Uuid> = outbox.iter().map(|message| message.id).collect();
    assert_eq!(ids, expected);
    assert_eq!(rows[2].topic, "task-updates");
    assert!(
        rows.iter()
            .all(|row| row.traceparent.as_deref() == Some(TRACEPARENT)),
        "the traceparent is stored with each event"
    );
    let plain = message("p", "{}");
    store
        .enqueue_outbox(std::slice::from_ref(&plain))
        .await
        .unwrap();
    let rows = store.outbox_rows().await.unwrap();
    let stored = rows.iter().find(|row| row.id == plain.id).unwrap();
    assert_eq!(stored.traceparent, None);
}

pub(crate) async fn outbox_claims_lease_rows_and_keep_partition_order(store: &Store) {
    store
        .enqueue_outbox(&[message("p1", "a"), message("p1", "b"), message("p2", "c")])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);

    let claim = store.claim_outbox(10, lease, now).await.unwrap();
    let claimed = claim.messages.clone();
    assert_eq!(payloads(&claimed), ["a", "b", "c"]);
    assert!(claimed.iter().all(|row| row.lease_id == Some(claim.lease)));
    assert!(
        claimed
            .iter()
            .all(|row| row.claimed_until.is_some_and(|until| until > now))
    );
    assert!(
        store
            .claim_outbox(10, lease, now)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "leased rows are not handed out twice"
    );
    let stored = store.outbox_rows().await.unwrap();
    let leased: Vec<&str> = stored
        .iter()
        .filter(|row| row.claimed_until.is_some())
        .map(|row| row.payload.as_str())
        .collect();
    assert_eq!(
        leased,
        ["a", "c"],
        "only the first row of each key is leased: it holds the key"
    );

    let limited = store
        .claim_outbox(1, lease, now + Duration::from_secs(31))
        .await
        .unwrap();
    assert_eq!(
        payloads(&limited.messages),
        ["a"],
        "an expired lease frees the rows, oldest first"
    );
    assert_ne!(limited.lease, claim.lease, "each claim has its own token");

    assert_eq!(
        store
            .mark_outbox_delivered(claim.lease, &[claimed[0].id, claimed[2].id])
            .await
            .unwrap(),
        Settled {
            settled: 1,
            fenced: 1
        },
        "a was claimed again since: the first claim may no longer delete it"
    );
    assert_eq!(
        store
            .mark_outbox_delivered(limited.lease, &[claimed[0].id])
            .await
            .unwrap(),
        Settled {
            settled: 1,
            fenced: 0
        }
    );
    let rest = store
        .claim_outbox(10, lease, now + Duration::from_secs(62))
        .await
        .unwrap()
        .messages;
    assert_eq!(payloads(&rest), ["b"]);
    assert_eq!(
        store.outbox_counts().await.unwrap(),
        OutboxCounts {
            pending: 1,
            failed: 0
        }
    );
}

pub(crate) async fn a_claim_settles_the_previous_claims_rows_first_and_fenced(store: &Store) {
    store
        .enqueue_outbox(&[
            message("p1", "a"),
            message("p1", "b"),
            message("p2", "c"),
            message("p2", "d"),
        ])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    let first = store.claim_outbox(2, lease, now).await.unwrap();
    assert_eq!(payloads(&first.messages), ["a", "b"]);
    let a = first.messages[0].id;

    // Delivered but not deleted yet: a's lease holds p1, so a claim without the settle passes p1 over.
    let unsettled = store.claim_outbox(10, lease, now).await.unwrap();
    assert_eq!(
        payloads(&unsettled.messages),
        ["c", "d"],
        "no row of p1 is handed out while its delivered head is unsettled"
    );

    // After the leases ended: settling a with the next claim deletes it first, so p1 is claimable in that claim.
    let later = now + Duration::from_secs(31);
    let (settled, second) = store
        .settle_and_claim_outbox(
            Some(Delivered {
                lease: first.lease,
                ids: &[a],
            }),
            10,
            lease,
            later,
        )
        .await
        .unwrap();
    assert_eq!(
        settled,
        Settled {
            settled: 1,
            fenced: 0
        }
    );
    assert_eq!(
        payloads(&second.messages),
        ["b", "c", "d"],
        "a is gone; b, whose head it was, comes in the same claim"
    );

    // The first claim's token no longer holds b (the second claim's does): settling it is fenced, and the claim
    // still happens.
    let b = second.messages[0].id;
    let (fenced, third) = store
        .settle_and_claim_outbox(
            Some(Delivered {
                lease: first.lease,
                ids: &[b],
            }),
            10,
            lease,
            later + Duration::from_secs(31),
        )
        .await
        .unwrap();
    assert_eq!(
        fenced,
        Settled {
            settled: 0,
            fenced: 1
        },
        "a settle after losing the lease deletes nothing"
    );
    assert_eq!(payloads(&third.messages), ["b", "c", "d"]);
    assert_eq!(
        store.outbox_counts().await.unwrap(),
        OutboxCounts {
            pending: 3,
            failed: 0
        }
    );
}

pub(crate) async fn outbox_failures_back_off_then_move_aside(store: &Store) {
    store
        .enqueue_outbox(&[message("p1", "a"), message("p1", "b"), message("p2", "c")])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    let claim = store.claim_outbox(10, lease, now).await.unwrap();
    let claimed = claim.messages.clone();
    let a = claimed[0].id;

    let retry_at = now + Duration::from_secs(60);
    let outcome = store
        .record_outbox_failure(claim.lease, a, "sidecar said 500", retry_at, 3, now)
        .await
        .unwrap();
    assert_eq!(outcome, FailureOutcome::Retry { attempts: 1 });
    store
        .release_outbox(claim.lease, &[claimed[1].id])
        .await
        .unwrap();
    store
        .mark_outbox_delivered(claim.lease, &[claimed[2].id])
        .await
        .unwrap();

    let blocked = store
        .claim_outbox(10, lease, now + Duration::from_secs(1))
        .await
        .unwrap()
        .messages;
    assert!(
        blocked.is_empty(),
        "b waits behind a, which waits for its retry: {:?}",
        payloads(&blocked)
    );

    let after_backoff = now + Duration::from_secs(61);
    let again_claim = store.claim_outbox(10, lease, after_backoff).await.unwrap();
    let again = again_claim.messages.clone();
    assert_eq!(payloads(&again), ["a", "b"]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("sidecar said 500"));

    let long_error = "e".repeat(5000);
    assert_eq!(
        store
            .record_outbox_failure(
                again_claim.lease,
                a,
                &long_error,
                after_backoff,
                3,
                after_backoff
            )
            .await
            .unwrap(),
        FailureOutcome::Retry { attempts: 2 }
    );
    assert_eq!(
        store
            .record_outbox_failure(
                again_claim.lease,
                a,
                "still down",
                after_backoff,
                3,
                after_backoff
            )
            .await
            .unwrap(),
        FailureOutcome::Fenced,
        "a failure releases the row: its claim cannot record another one"
    );
    let third = store.claim_outbox(1, lease, after_backoff).await.unwrap();
    assert_eq!(payloads(&third.messages), ["a"]);
    assert_eq!(
        store
            .record_outbox_failure(
                third.lease,
                a,
                "still down",
                after_backoff,
                3,
                after_backoff
            )
            .await
            .unwrap(),
        FailureOutcome::MovedAside { attempts: 3 }
    );
    store
        .release_outbox(again_claim.lease, &[again[1].id])
        .await
        .unwrap();
    let unblocked = store
        .claim_outbox(10, lease, after_backoff)
        .await
        .unwrap()
        .messages;
    assert_eq!(
        payloads(&unblocked),
        ["b"],
        "a moved-aside row no longer holds its partition back"
    );
    assert_eq!(
        store.outbox_counts().await.unwrap(),
        OutboxCounts {
            pending: 1,
            failed: 1
        }
    );

    let rows = store.outbox_rows().await.unwrap();
    let moved = rows
        .iter()
        .find(|row| row.id == a)
        .expect("moved-aside rows are kept");
    assert!(moved.failed_at.is_some());
    assert_eq!(moved.last_error.as_deref(), Some("still down"));
    let missing = store
        .record_outbox_failure(claim.lease, Uuid::new_v4(), "x", now, 3, now)
        .await;
    assert!(matches!(missing, Ok(FailureOutcome::Fenced)), "{missing:?}");
}

pub(crate) async fn outbox_releases_make_rows_claimable_again(store: &Store) {
    store.enqueue_outbox(&[message("p1", "a")]).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let claim = store
        .claim_outbox(10, Duration::from_secs(300), now)
        .await
        .unwrap();
    assert_eq!(
        store
            .release_outbox(claim.lease, &[claim.messages[0].id])
            .await
            .unwrap(),
        Settled {
            settled: 1,
            fenced: 0
        }
    );
    let again = store
        .claim_outbox(10, Duration::from_secs(300), now)
        .await
        .unwrap()
        .messages;
    assert_eq!(payloads(&again), ["a"]);
    assert_eq!(again[0].attempts, 0, "a release is not a failed attempt");
}

pub(crate) async fn concurrent_claims_never_hand_out_a_row_twice(store: &Store) {
    let batch: Vec<NewOutboxMessage> = (0..20)
        .map(|n| message(&format!("p{}", n % 5), &format!("m{n:02}")))
        .collect();
    store.enqueue_outbox(&batch).await.unwrap();
    let now = OffsetDateTime::now_utc();
    let mut relays = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        relays.spawn(async move { store.claim_outbox(5, Duration::from_secs(30), now).await });
    }
    let mut claimed = Vec::new();
    while let Some(res) = relays.join_next().await {
        claimed.extend(res.expect("relay ran").expect("claim committed").messages);
    }
    claimed.sort_by_key(|row| row.seq);
    // The first claim takes the oldest row of each partition; the others find every partition leased.
    assert_eq!(payloads(&claimed), ["m00", "m01", "m02", "m03", "m04"]);
}

pub(crate) async fn a_blocked_key_with_a_long_backlog_holds_back_only_itself(store: &Store) {
    let backlog: Vec<NewOutboxMessage> = (0..2000)
        .map(|n| message("blocked", &format!("b{n:04}")))
        .collect();
    store.enqueue_outbox(&backlog).await.unwrap();
    store
        .enqueue_outbox(&[
            message("p2", "x1"),
            message("p3", "y1"),
            message("p2", "x2"),
            message("p3", "y2"),
            message("p2", "x3"),
        ])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    let first = store.claim_outbox(1, lease, now).await.unwrap();
    assert_eq!(payloads(&first.messages), ["b0000"]);
    assert_eq!(first.blocked_until, None, "nothing was blocked yet");
    let retry_at = task_domain::normalize(now + Duration::from_secs(60));
    store
        .record_outbox_failure(
            first.lease,
            first.messages[0].id,
            "sidecar down",
            retry_at,
            20,
            now,
        )
        .await
        .unwrap();

    let later = now + Duration::from_secs(1);
    let some = store.claim_outbox(3, lease, later).await.unwrap();
    assert_eq!(
        payloads(&some.messages),
        ["x1", "y1", "x2"],
        "the oldest ready rows of the other keys, in insertion order"
    );
    assert_eq!(some.blocked_until, Some(retry_at));
    store
        .mark_outbox_delivered(
            some.lease,
            &some.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let rest = store.claim_outbox(10, lease, later).await.unwrap();
    assert_eq!(payloads(&rest.messages), ["y2", "x3"]);
    store
        .mark_outbox_delivered(
            rest.lease,
            &rest.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let none = store.claim_outbox(10, lease, later).await.unwrap();
    assert!(none.messages.is_empty(), "{:?}", payloads(&none.messages));
    assert_eq!(
        none.blocked_until,
        Some(retry_at),
        "the relay learns when to look again"
    );

    let after_retry = now + Duration::from_secs(61);
    let resumed = store.claim_outbox(3, lease, after_retry).await.unwrap();
    assert_eq!(payloads(&resumed.messages), ["b0000", "b0001", "b0002"]);
    assert_eq!(resumed.messages[0].attempts, 1);
    assert_eq!(resumed.blocked_until, None);
}

pub(crate) async fn a_key_leased_by_another_relay_is_skipped_until_its_lease_ends(store: &Store) {
    store
        .enqueue_outbox(&[message("p1", "a"), message("p1", "b"), message("p2", "c")])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    let mine = store.claim_outbox(1, lease, now).await.unwrap();
    assert_eq!(payloads(&mine.messages), ["a"]);
    let other = store.claim_outbox(10, lease, now).await.unwrap();
    assert_eq!(
        payloads(&other.messages),
        ["c"],
        "b waits while a is leased, even though b itself was not claimed"
    );
    assert_eq!(
        other.blocked_until,
        Some(task_domain::normalize(now + lease)),
        "the lease end frees the key"
    );
}

pub(crate) async fn an_expired_lease_is_fenced_off_once_another_relay_claims_the_rows(
    store: &Store,
) {
    store
        .enqueue_outbox(&[message("p1", "a"), message("p1", "b"), message("p2", "c")])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    let relay_a = store.claim_outbox(10, lease, now).await.unwrap();
    assert_eq!(payloads(&relay_a.messages), ["a", "b", "c"]);
    // Relay A stalls past its lease; relay B takes the same rows over.
    let later = now + Duration::from_secs(31);
    let relay_b = store.claim_outbox(10, lease, later).await.unwrap();
    assert_eq!(payloads(&relay_b.messages), ["a", "b", "c"]);
    let ids: Vec<Uuid> = relay_a.messages.iter().map(|row| row.id).collect();

    let fenced = Settled {
        settled: 0,
        fenced: 3,
    };
    assert_eq!(
        store
            .mark_outbox_delivered(relay_a.lease, &ids)
            .await
            .unwrap(),
        fenced,
        "A may not delete rows B holds"
    );
    assert_eq!(
        store.release_outbox(relay_a.lease, &ids).await.unwrap(),
        fenced,
        "A may not clear B's lease"
    );
    assert_eq!(
        store
            .record_outbox_failure(relay_a.lease, ids[0], "late", later, 3, later)
            .await
            .unwrap(),
        FailureOutcome::Fenced,
        "A may not record a failure on a row B holds"
    );
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(rows.len(), 3, "nothing deleted");
    assert!(rows.iter().all(|row| row.lease_id == Some(relay_b.lease)));
    assert!(
        rows.iter()
            .all(|row| row.attempts == 0 && row.last_error.is_none())
    );
    assert!(
        store
            .claim_outbox(10, lease, later)
            .await
            .unwrap()
            .messages
            .is_empty(),
        "B's lease still holds both keys"
    );

    // B's settling works.
    assert_eq!(
        store
            .record_outbox_failure(relay_b.lease, ids[2], "500", later, 3, later)
            .await
            .unwrap(),
        FailureOutcome::Retry { attempts: 1 }
    );
    assert_eq!(
        store
            .mark_outbox_delivered(relay_b.lease, &ids[..2])
            .await
            .unwrap(),
        Settled {
            settled: 2,
            fenced: 0
        }
    );
    let rows = store.outbox_rows().await.unwrap();
    assert_eq!(payloads(&rows), ["c"]);
    assert_eq!(rows[0].attempts, 1);
    assert_eq!(
        rows[0].lease_id, None,
        "a recorded failure releases the row"
    );
}

pub(crate) async fn outbox_status_counts_backlog_blocked_keys_and_moved_aside_rows(store: &Store) {
    let empty = store
        .outbox_status(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        empty,
        task_store::OutboxStatus {
            backlog: task_store::OutboxBacklog {
                pending: 0,
                oldest_pending_at: None
            },
            blocked_keys: 0,
            moved_aside: 0,
        }
    );
    store
        .enqueue_outbox(&[message("p1", "a"), message("p2", "b")])
        .await
        .unwrap();
    let first_written = store.outbox_rows().await.unwrap()[0].created_at;
    store
        .enqueue_outbox(&[message("p1", "a2"), message("p3", "c"), message("p4", "d")])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let lease = Duration::from_secs(30);
    // p1's head fails (waits for a retry) and is moved aside; p2 then fails and waits; p3 is leased.
    let claim = store.claim_outbox(2, lease, now).await.unwrap();
    assert_eq!(payloads(&claim.messages), ["a", "b"]);
    let retry_at = now + Duration::from_secs(60);
    store
        .record_outbox_failure(claim.lease, claim.messages[0].id, "403", retry_at, 1, now)
        .await
        .unwrap();
    store
        .record_outbox_failure(claim.lease, claim.messages[1].id, "500", retry_at, 5, now)
        .await
        .unwrap();
    let leased = store.claim_outbox(1, lease, now).await.unwrap();
    assert_eq!(payloads(&leased.messages), ["a2"]);

    let status = store.outbox_status(now).await.unwrap();
    assert_eq!(status.backlog.pending, 4, "b, a2, c, d");
    assert_eq!(
        status.backlog.oldest_pending_at,
        Some(first_written),
        "b was written with a"
    );
    assert_eq!(status.blocked_keys, 2, "p2 retrying, p1 leased: {status:?}");
    assert_eq!(status.moved_aside, 1);
    assert_eq!(store.outbox_backlog().await.unwrap(), status.backlog);
    let after_all = now + Duration::from_secs(120);
    assert_eq!(
        store.outbox_status(after_all).await.unwrap().blocked_keys,
        0,
        "retries due and leases expired hold nothing back"
    );
}

pub(crate) async fn moved_aside_rows_are_listed_and_replayed(store: &Store) {
    store
        .enqueue_outbox(&[
            message("p1", "a"),
            message("p2", "b"),
            message("p3", "c"),
            message("p3", "d"),
        ])
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let claim = store
        .claim_outbox(3, Duration::from_secs(30), now)
        .await
        .unwrap();
    assert_eq!(payloads(&claim.messages), ["a", "b", "c"]);
    for row in &claim.messages[..2] {
        let outcome = store
            .record_outbox_failure(claim.lease, row.id, "rejected: 400", now, 1, now)
            .await
            .unwrap();
        assert_eq!(outcome, FailureOutcome::MovedAside { attempts: 1 });
    }
    use task_store::OutboxFilter;
    let aside = store
        .list_outbox(OutboxFilter::MovedAside, 10)
        .await
        .unwrap();
    assert_eq!(payloads(&aside), ["a", "b"]);
    assert!(aside.iter().all(|row| row.failed_at.is_some()));
    let pending = store.list_outbox(OutboxFilter::Pending, 10).await.unwrap();
    assert_eq!(payloads(&pending), ["c", "d"]);
    let limited = store.list_outbox(OutboxFilter::Pending, 1).await.unwrap();
    assert_eq!(payloads(&limited), ["c"]);

    let b = aside[1].id;
    assert_eq!(
        store
            .replay_outbox(Some(&[b, pending[0].id, Uuid::new_v4()]), now)
            .await
            .unwrap(),
        1,
        "only moved-aside rows are re-queued"
    );
    let rows = store.outbox_rows().await.unwrap();
    let replayed = rows.iter().find(|row| row.id == b).unwrap();
    assert_eq!(replayed.failed_at, None);
    assert_eq!(replayed.attempts, 0, "attempts start over");
    assert_eq!(replayed.last_error.as_deref(), Some("rejected: 400"));
    let retaken = store
        .claim_outbox(10, Duration::from_secs(30), now + Duration::from_secs(31))
        .await
        .unwrap();
    assert_eq!(
        payloads(&retaken.messages),
        ["b", "c", "d"],
        "the replayed row is claimable again"
    );
    assert_eq!(store.replay_outbox(None, now).await.unwrap(), 1, "a");
    assert_eq!(
        store
            .list_outbox(OutboxFilter::MovedAside, 10)
            .await
            .unwrap()
            .len(),
        0
    );
}

//! Table-driven tests of the domain rules: one `check` row per line of SPEC §3.3, plus title and email parsing.

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::{
    DueDate, Email, EmailError, Task, TaskEvent, TaskId, TaskParts, TaskPatch, TaskTitle,
    TitleError, UserId, clear_completed,
};

const CREATED: OffsetDateTime = datetime!(2026-01-01 08:00 UTC);
const NOW: OffsetDateTime = datetime!(2026-01-02 09:30 UTC);

/// A due date `hours` after the creation time, so rows can name dates by a small number.
fn due(hours: i64) -> DueDate {
    DueDate::new(CREATED + Duration::hours(hours))
}

fn title(text: &str) -> TaskTitle {
    TaskTitle::parse(text).expect("test titles are valid")
}

/// A stored task in a given state.
fn task(title_text: &str, completed: bool, due_hours: Option<i64>) -> Task {
    Task::from_parts(TaskParts {
        id: TaskId::from_uuid(uuid::Uuid::from_u128(1)),
        user_id: UserId::from_uuid(uuid::Uuid::from_u128(2)),
        title: title(title_text),
        completed,
        due_date: due_hours.map(due),
        created_at: CREATED,
        updated_at: CREATED,
    })
}

/// Events in a compact form: `task.updated{title=B,due_date=+5h} ; reminder.rescheduled(+5h) ; sync.task(updated)`.
fn render(events: &[TaskEvent]) -> String {
    let date = |due: Option<DueDate>| match due {
        Some(due) => format!("+{}h", (due.instant() - CREATED).whole_hours()),
        None => "null".to_owned(),
    };
    let rendered: Vec<String> = events
        .iter()
        .map(|event| match event {
            TaskEvent::Created => "task.created".to_owned(),
            TaskEvent::Updated(fields) => {
                let mut changes = Vec::new();
                if let Some(title) = &fields.title {
                    changes.push(format!("title={title}"));
                }
                if let Some(due_date) = fields.due_date {
                    changes.push(format!("due_date={}", date(due_date)));
                }
                format!("task.updated{{{}}}", changes.join(","))
            }
            TaskEvent::Completed => "task.completed".to_owned(),
            TaskEvent::Uncompleted => "task.uncompleted".to_owned(),
            TaskEvent::Deleted => "task.deleted".to_owned(),
            TaskEvent::Reminder(change) => match change.due_date() {
                Some(due) => format!("reminder.{}({})", change.action(), date(Some(due))),
                None => format!("reminder.{}", change.action()),
            },
            TaskEvent::Sync(action) => format!("sync.task({})", action.as_str()),
        })
        .collect();
    rendered.join(" ; ")
}

/// Applies `patch` to `before` and compares the rendered events; also checks that a no-op leaves the task alone
/// and that any change moves `updated_at` to now.
#[track_caller]
fn check_update(before: Task, patch: TaskPatch, expected: &str) {
    let mut after = before.clone();
    let events = after.update(patch, NOW);
    assert_eq!(render(&events), expected);
    if events.is_empty() {
        assert_eq!(
            after, before,
            "a change that changes nothing leaves the task as it was"
        );
    } else {
        assert_eq!(after.updated_at(), NOW);
        assert_eq!(after.created_at(), before.created_at());
    }
}

fn patch(
    title_text: Option<&str>,
    completed: Option<bool>,
    due_date: Option<Option<i64>>,
) -> TaskPatch {
    TaskPatch {
        title: title_text.map(title),
        completed,
        due_date: due_date.map(|due_date| due_date.map(due)),
    }
}

#[test]
fn patch_rows_of_spec_3_3() {
    // Title only.
    check_update(
        task("A", false, None),
        patch(Some("B"), None, None),
        "task.updated{title=B} ; sync.task(updated)",
    );
    check_update(task("A", false, None), patch(Some("A"), None, None), "");
    // Completion flips: never task.updated.
    check_update(
        task("A", false, None),
        patch(None, Some(true), None),
        "task.completed ; sync.task(completed)",
    );
    check_update(
        task("A", true, None),
        patch(None, Some(false), None),
        "task.uncompleted ; sync.task(uncompleted)",
    );
    check_update(task("A", true, None), patch(None, Some(true), None), "");
    check_update(task("A", false, None), patch(None, Some(false), None), "");
    // Both in one PATCH: both events; the sync action is the completion.
    check_update(
        task("A", false, None),
        patch(Some("B"), Some(true), None),
        "task.updated{title=B} ; task.completed ; sync.task(completed)",
    );
    check_update(
        task("A", true, None),
        patch(Some("B"), Some(false), None),
        "task.updated{title=B} ; task.uncompleted ; sync.task(uncompleted)",
    );
    // Nothing at all, or only current values.
    check_update(task("A", false, None), TaskPatch::default(), "");
    check_update(
        task("A", true, Some(5)),
        patch(Some("A"), Some(true), Some(Some(5))),
        "",
    );
}

#[test]
fn due_date_rows_of_spec_3_3() {
    check_update(
        task("A", false, None),
        patch(None, None, Some(Some(5))),
        "task.updated{due_date=+5h} ; reminder.scheduled(+5h) ; sync.task(updated)",
    );
    check_update(
        task("A", false, Some(5)),
        patch(None, None, Some(Some(7))),
        "task.updated{due_date=+7h} ; reminder.rescheduled(+7h) ; sync.task(updated)",
    );
    check_update(
        task("A", false, Some(5)),
        patch(None, None, Some(None)),
        "task.updated{due_date=null} ; reminder.cancelled ; sync.task(updated)",
    );
    check_update(
        task("A", false, Some(5)),
        patch(None, None, Some(Some(5))),
        "",
    );
    check_update(task("A", false, None), patch(None, None, Some(None)), "");
    check_update(
        task("A", false, Some(5)),
        patch(Some("B"), Some(true), Some(Some(9))),
        "task.updated{title=B,due_date=+9h} ; task.completed ; reminder.rescheduled(+9h) ; sync.task(completed)",
    );
}

#[test]
fn due_dates_equal_at_microsecond_precision_are_no_change() {
    let stored = task("A", false, Some(5));
    let same_but_nanos = DueDate::new(due(5).instant() + Duration::nanoseconds(999));
    let mut after = stored.clone();
    let events = after.update(
        TaskPatch {
            due_date: Some(Some(same_but_nanos)),
            ..TaskPatch::default()
        },
        NOW,
    );
    assert_eq!(render(&events), "");
}

#[test]
fn create_rows_of_spec_3_3() {
    #[track_caller]
    fn check(due_hours: Option<i64>, expected: &str) {
        let (created, events) = Task::create(
            TaskId::new_v4(),
            UserId::new_v4(),
            title("A"),
            due_hours.map(due),
            NOW,
        );
        assert_eq!(render(&events), expected);
        assert!(!created.completed());
        assert_eq!((created.created_at(), created.updated_at()), (NOW, NOW));
    }
    check(None, "task.created ; sync.task(created)");
    check(
        Some(3),
        "task.created ; reminder.scheduled(+3h) ; sync.task(created)",
    );
}

#[test]
fn complete_and_uncomplete_rows() {
    #[track_caller]
    fn check(before: Task, complete: bool, expected: &str) {
        let mut after = before;
        let events = if complete {
            after.complete(NOW)
        } else {
            after.uncomplete(NOW)
        };
        assert_eq!(render(&events), expected);
        assert_eq!(after.completed(), complete);
    }
    check(
        task("A", false, None),
        true,
        "task.completed ; sync.task(completed)",
    );
    check(task("A", true, None), true, "");
    check(
        task("A", true, Some(1)),
        false,
        "task.uncompleted ; sync.task(uncompleted)",
    );
    check(task("A", false, None), false, "");
}

#[test]
fn delete_rows_of_spec_3_3() {
    #[track_caller]
    fn check(before: Task, expected: &str) {
        assert_eq!(render(&before.delete()), expected);
    }
    check(task("A", false, None), "task.deleted ; sync.task(deleted)");
    check(
        task("A", true, Some(2)),
        "task.deleted ; reminder.cancelled ; sync.task(deleted)",
    );
}

#[test]
fn clear_completed_deletes_only_completed_tasks_in_order() {
    let first = Task::from_parts(TaskParts {
        id: TaskId::from_uuid(uuid::Uuid::from_u128(10)),
        ..task("A", true, None).into_parts()
    });
    let open = Task::from_parts(TaskParts {
        id: TaskId::from_uuid(uuid::Uuid::from_u128(11)),
        ..task("B", false, None).into_parts()
    });
    let second = Task::from_parts(TaskParts {
        id: TaskId::from_uuid(uuid::Uuid::from_u128(12)),
        ..task("C", true, Some(4)).into_parts()
    });
    let cleared: Vec<(u128, String)> = clear_completed(&[first, open, second])
        .into_iter()
        .map(|(id, events)| (id.into_uuid().as_u128(), render(&events)))
        .collect();
    assert_eq!(
        cleared,
        vec![
            (10, "task.deleted ; sync.task(deleted)".to_owned()),
            (
                12,
                "task.deleted ; reminder.cancelled ; sync.task(deleted)".to_owned()
            ),
        ]
    );
    assert!(clear_completed(&[task("A", false, Some(1))]).is_empty());
}

#[test]
fn every_mutation_ends_with_exactly_one_sync_event() {
    let mut samples = vec![
        Task::create(
            TaskId::new_v4(),
            UserId::new_v4(),
            title("A"),
            Some(due(1)),
            NOW,
        )
        .1,
        task("A", false, Some(1)).delete(),
    ];
    let mut open = task("A", false, Some(1));
    samples.push(open.update(patch(Some("B"), Some(true), Some(None)), NOW));
    for events in samples {
        let syncs = events
            .iter()
            .filter(|event| matches!(event, TaskEvent::Sync(_)))
            .count();
        assert_eq!(syncs, 1, "{}", render(&events));
        assert!(
            matches!(events.last(), Some(TaskEvent::Sync(_))),
            "{}",
            render(&events)
        );
    }
}

#[test]
fn title_parsing() {
    #[track_caller]
    fn check(raw: &str, expected: Result<&str, TitleError>) {
        assert_eq!(
            TaskTitle::parse(raw)
                .map(TaskTitle::into_string)
                .as_deref()
                .map_err(Clone::clone),
            expected
        );
    }
    check("Buy milk", Ok("Buy milk"));
    check("  padded\t\n", Ok("padded"));
    check("", Err(TitleError::Empty));
    check(" \t\n ", Err(TitleError::Empty));
    check(&"a".repeat(500), Ok(&"a".repeat(500)));
    check(&format!("  {}  ", "a".repeat(500)), Ok(&"a".repeat(500)));
    check(
        &"a".repeat(501),
        Err(TitleError::TooLong {
            chars: 501,
            max: 500,
        }),
    );
    // Control characters inside are refused (trimming still removes surrounding whitespace).
    check("Buy\0milk", Err(TitleError::ControlCharacter));
    check("\0", Err(TitleError::ControlCharacter));
    check("Buy\nmilk", Err(TitleError::ControlCharacter));
    check("Buy\tmilk", Err(TitleError::ControlCharacter));
    check("Buy\u{1b}[2Jmilk", Err(TitleError::ControlCharacter));
    check("Buy\u{7f}milk", Err(TitleError::ControlCharacter));
    check("Buy\u{9b}milk", Err(TitleError::ControlCharacter));
    check(
        "Buy milk \u{2603} \u{200d}",
        Ok("Buy milk \u{2603} \u{200d}"),
    );
    // Characters, not bytes: 500 two-byte characters are fine, 501 are not.
    check(&"é".repeat(500), Ok(&"é".repeat(500)));
    check(
        &"é".repeat(501),
        Err(TitleError::TooLong {
            chars: 501,
            max: 500,
        }),
    );
}

#[test]
fn email_parsing() {
    #[track_caller]
    fn check(raw: &str, expected: Result<&str, EmailError>) {
        assert_eq!(
            Email::parse(raw)
                .map(Email::into_string)
                .as_deref()
                .map_err(Clone::clone),
            expected
        );
    }
    check(" Alice@Example.COM ", Ok("alice@example.com"));
    check("a.b+tag@sub.example.org", Ok("a.b+tag@sub.example.org"));
    check("", Err(EmailError::Empty));
    check("alice", Err(EmailError::Shape));
    check("@example.com", Err(EmailError::Shape));
    check("alice@", Err(EmailError::Shape));
    check("alice@localhost", Err(EmailError::Shape));
    check("alice@example..com", Err(EmailError::Shape));
    check("alice@.example.com", Err(EmailError::Shape));
    check("a@b@example.com", Err(EmailError::Shape));
    check("al ice@example.com", Err(EmailError::Shape));
    // PostgreSQL refuses NUL in text: it must be a validation error here, not a database error later.
    check("al\0ice@example.com", Err(EmailError::ControlCharacter));
    check("alice@example.com\0", Err(EmailError::ControlCharacter));
    check("al\u{7f}ice@example.com", Err(EmailError::ControlCharacter));
    check("al\u{85}ice@example.com", Err(EmailError::ControlCharacter));
    check(
        "alice\u{1b}[31m@example.com",
        Err(EmailError::ControlCharacter),
    );
    check(
        &format!("{}@example.com", "a".repeat(250)),
        Err(EmailError::TooLong { max: 254 }),
    );
}

#[test]
fn due_dates_are_kept_in_utc_at_microsecond_precision() {
    let due = DueDate::new(datetime!(2026-03-01 12:00:00.123456789 +02:00));
    assert_eq!(due.instant(), datetime!(2026-03-01 10:00:00.123456 UTC));
    assert_eq!(due.instant().offset(), time::UtcOffset::UTC);
}

#[test]
fn due_dates_are_limited_to_the_epoch_through_year_9999_in_utc() {
    use crate::DueDateError;
    // Converting to UTC crosses into year 10000: refused, not a panic.
    assert_eq!(
        DueDate::try_new(datetime!(9999-12-31 23:30:00 -1)),
        Err(DueDateError::OutOfRange)
    );
    // Year 0 in local time is year -1 in UTC, which RFC 3339 cannot write.
    assert_eq!(
        DueDate::try_new(datetime!(0000-01-01 00:30:00 +1)),
        Err(DueDateError::OutOfRange)
    );
    assert_eq!(
        DueDate::try_new(datetime!(1969-12-31 23:59:59.999999 UTC)),
        Err(DueDateError::OutOfRange)
    );
    assert_eq!(
        DueDate::try_new(datetime!(1970-01-01 01:00:00 +1)).map(|d| d.instant()),
        Ok(DueDate::MIN)
    );
    assert_eq!(
        DueDate::try_new(datetime!(9999-12-31 23:59:59.999999999 UTC)).map(|d| d.instant()),
        Ok(DueDate::MAX),
        "nanoseconds are truncated before the range check"
    );
    // `new` never panics: it clamps (only values already checked reach it).
    assert_eq!(
        DueDate::new(datetime!(9999-12-31 23:30:00 -1)).instant(),
        DueDate::MAX
    );
    assert_eq!(
        DueDate::new(datetime!(0000-01-01 00:30:00 +1)).instant(),
        DueDate::MIN
    );
    assert_eq!(
        crate::normalize(datetime!(9999-12-31 23:30:00 -1)),
        datetime!(9999-12-31 23:30:00 -1),
        "normalize keeps an instant it cannot convert"
    );
}

//! Request and response bodies of the REST API, and their conversion from JSON with field-level errors.

use serde::Serialize;
use serde_json::{Map, Value};
use task_domain::{DueDate, Task, TaskPatch, TaskTitle, TitleError};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::events::rfc3339;

/// `POST /auth/register` and `POST /auth/login`.
#[derive(Debug, Clone, ToSchema)]
pub struct Credentials {
    /// The email address (unique, case-insensitive).
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f]+@[^@.\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f]+(?:\.[^@.\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f]+)+[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: String,
    /// The password (at least 8 characters to register; no NUL).
    #[schema(format = Password, min_length = 8, pattern = r"^[^\u0000]*$")]
    pub password: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserResponse {
    /// The user id.
    pub id: Uuid,
    /// The (lowercased) email.
    pub email: String,
    /// When the user registered (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
}

/// A plain `{"message": …}` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageResponse {
    /// What happened.
    pub message: String,
}

/// `POST /tasks`.
#[derive(Debug, Clone, ToSchema)]
pub struct CreateTaskRequest {
    /// 1 to 500 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]{0,498}[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub title: String,
    /// When the task is due (RFC 3339, between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z); optional.
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^(?:19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub due_date: Option<String>,
}

/// `PATCH /tasks/{id}`: every field optional; `due_date: null` clears the due date.
#[derive(Debug, Clone, ToSchema)]
pub struct UpdateTaskRequest {
    /// A new title (as in `POST /tasks`).
    #[schema(
        min_length = 1,
        pattern = r"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]{0,498}[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub title: Option<String>,
    /// A new completion state.
    pub completed: Option<bool>,
    /// A new due date (RFC 3339, between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z), or `null` to clear it.
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^(?:19[7-9][0-9]|[2-9][0-9]{3})-")]
    pub due_date: Option<String>,
}

/// A task as the API shows it (no `user_id`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskResponse {
    /// The task id.
    pub id: Uuid,
    /// The title.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
    /// When it is due (RFC 3339), or `null`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_date: Option<String>,
    /// When it was created (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// When it last changed (RFC 3339).
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

impl From<&Task> for TaskResponse {
    fn from(task: &Task) -> Self {
        Self {
            id: task.id().into_uuid(),
            title: task.title().as_str().to_owned(),
            completed: task.completed(),
            due_date: task.due_date().map(|due| rfc3339(due.instant())),
            created_at: rfc3339(task.created_at()),
            updated_at: rfc3339(task.updated_at()),
        }
    }
}

/// `GET /tasks` answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaskListResponse {
    /// The tasks, newest first.
    pub tasks: Vec<TaskResponse>,
    /// How many.
    pub count: usize,
}

/// The health answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `healthy`.
    pub status: &'static str,
    /// The service version.
    pub version: &'static str,
    /// The project phase, as the original service reports it.
    pub phase: u32,
}

/// Collects field errors while reading a JSON object.
struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    fn new(body: Value) -> Result<Self, ApiError> {
        match body {
            Value::Object(object) => Ok(Self {
                object,
                errors: Vec::new(),
            }),
            _ => Err(ApiError::field(
                "body",
                "Request body must be a JSON object",
            )),
        }
    }

    /// `None` when absent or null.
    fn string(&mut self, name: &str) -> Option<String> {
        match self.object.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, format!("{name} must be a string")));
                None
            }
        }
    }

    fn required_string(&mut self, name: &str) -> Option<String> {
        if !self.object.contains_key(name) || self.object.get(name) == Some(&Value::Null) {
            self.errors
                .push(FieldError::new(name, format!("{name} is required")));
            return None;
        }
        self.string(name)
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        match self.object.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(value)) => Some(value),
            Some(_) => {
                self.errors
                    .push(FieldError::new(name, format!("{name} must be a boolean")));
                None
            }
        }
    }

    /// Absent: `None`; null: `Some(None)`; a string: `Some(Some(text))`.
    fn nullable_string(&mut self, name: &str) -> Option<Option<String>> {
        match self.object.remove(name) {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(text)) => Some(Some(text)),
            Some(_) => {
                self.errors.push(FieldError::new(
                    name,
                    format!("{name} must be a date-time string or null"),
                ));
                None
            }
        }
    }

    fn push(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let message = if self.errors.len() == 1 {
            self.errors[0].message.clone()
        } else {
            "Request validation failed".to_owned()
        };
        Err(ApiError::Validation {
            message,
            details: self.errors,
        })
    }
}

/// Why a `due_date` text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueDateInputError {
    /// Not one of the accepted forms.
    Format,
    /// Outside 1970-01-01T00:00:00Z..=9999-12-31T23:59:59.999999Z once converted to UTC ([`DueDate::try_new`]).
    OutOfRange,
}

impl DueDateInputError {
    fn message(self) -> &'static str {
        match self {
            DueDateInputError::Format => "due_date must be an RFC 3339 date-time",
            DueDateInputError::OutOfRange => {
                "due_date must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z"
            }
        }
    }
}

/// Parses a due date: RFC 3339, or a date-time without offset (taken as UTC), or a date (midnight UTC); the result
/// must lie in [`DueDate::MIN`]..=[`DueDate::MAX`] in UTC, so it is always written back as RFC 3339.
pub fn parse_due_date(text: &str) -> Result<DueDate, DueDateInputError> {
    let in_range = |instant: OffsetDateTime| {
        DueDate::try_new(instant).map_err(|_| DueDateInputError::OutOfRange)
    };
    let text = text.trim();
    if let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) {
        return in_range(instant);
    }
    let naive = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let naive_frac =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    for format in [naive, naive_frac] {
        if let Ok(local) = PrimitiveDateTime::parse(text, &format) {
            return in_range(local.assume_utc());
        }
    }
    let date = format_description!("[year]-[month]-[day]");
    match Date::parse(text, &date) {
        Ok(day) => in_range(day.midnight().assume_utc()),
        Err(_) => Err(DueDateInputError::Format),
    }
}

fn title_message(err: &TitleError) -> String {
    match err {
        TitleError::Empty => "Title must not be empty".to_owned(),
        TitleError::TooLong { max, .. } => format!("Title must be at most {max} characters"),
        TitleError::ControlCharacter => "Title must not contain control characters".to_owned(),
    }
}

/// A validated `POST /tasks` body.
#[derive(Debug, Clone)]
pub struct NewTaskInput {
    /// The title.
    pub title: TaskTitle,
    /// The due date.
    pub due_date: Option<DueDate>,
}

/// Reads a `POST /tasks` body.
pub fn parse_create(body: Value) -> Result<NewTaskInput, ApiError> {
    let mut fields = Fields::new(body)?;
    let title = fields.required_string("title");
    let due_text = fields.string("due_date");
    let title = title.and_then(|raw| match TaskTitle::parse(&raw) {
        Ok(title) => Some(title),
        Err(err) => {
            fields.push("title", title_message(&err));
            None
        }
    });
    let due_date = match due_text {
        None => None,
        Some(text) => match parse_due_date(&text) {
            Ok(due) => Some(due),
            Err(err) => {
                fields.push("due_date", err.message());
                None
            }
        },
    };
    fields.finish()?;
    let title = title.ok_or_else(|| ApiError::field("title", "title is required"))?;
    Ok(NewTaskInput { title, due_date })
}

/// Reads a `PATCH /tasks/{id}` body.
pub fn parse_update(body: Value) -> Result<TaskPatch, ApiError> {
    let mut fields = Fields::new(body)?;
    let title = fields.string("title");
    let completed = fields.bool("completed");
    let due_text = fields.nullable_string("due_date");
    let title = title.and_then(|raw| match TaskTitle::parse(&raw) {
        Ok(title) => Some(title),
        Err(err) => {
            fields.push("title", title_message(&err));
            None
        }
    });
    let due_date = match due_text {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => match parse_due_date(&text) {
            Ok(due) => Some(Some(due)),
            Err(DueDateInputError::Format) => {
                fields.push("due_date", "due_date must be an RFC 3339 date-time or null");
                None
            }
            Err(err) => {
                fields.push("due_date", err.message());
                None
            }
        },
    };
    fields.finish()?;
    Ok(TaskPatch {
        title,
        completed,
        due_date,
    })
}

/// Reads a register or login body: `(email, password)` as given.
///
/// A control character in the email, or a NUL in the password, is a 422 on both routes: PostgreSQL refuses NUL in
/// text (a lookup would be a 500), no address contains one, and bcrypt (legacy hashes) cannot represent a NUL in a
/// password, so the original service refused those too. Other characters in a password are the user's choice.
pub fn parse_credentials(body: Value) -> Result<(String, String), ApiError> {
    let mut fields = Fields::new(body)?;
    let email = fields.required_string("email");
    let password = fields.required_string("password");
    // The limit applies to the address as sent, surrounding whitespace included, as the document's `maxLength`
    // says (`Email::parse` checks it again after trimming).
    if email
        .as_deref()
        .is_some_and(|e| e.chars().count() > task_domain::Email::MAX_CHARS)
    {
        fields.push(
            "email",
            format!(
                "email must be at most {} characters",
                task_domain::Email::MAX_CHARS
            ),
        );
    }
    // Surrounding whitespace is trimmed before the address is read (`Email::parse`), control characters included.
    if email
        .as_deref()
        .is_some_and(|e| e.trim().chars().any(char::is_control))
    {
        fields.push("email", "email must not contain control characters");
    }
    if password.as_deref().is_some_and(|p| p.contains('\0')) {
        fields.push("password", "password must not contain NUL characters");
    }
    fields.finish()?;
    match (email, password) {
        (Some(email), Some(password)) => Ok((email, password)),
        _ => Err(ApiError::field("body", "email and password are required")),
    }
}

/// Reads the `completed` filter of `GET /tasks`.
pub fn parse_completed_filter(raw: Option<&str>) -> Result<Option<bool>, ApiError> {
    match raw.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(Some(true)),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(Some(false)),
        Some(_) => Err(ApiError::field("completed", "completed must be a boolean")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn details(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation { details, .. } => details.into_iter().map(|d| d.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn create_bodies_are_checked_field_by_field() {
        let ok =
            parse_create(json!({"title": "  Buy milk  ", "due_date": "2030-01-02T03:04:05+02:00"}))
                .unwrap();
        assert_eq!(ok.title.as_str(), "Buy milk");
        assert_eq!(
            rfc3339(ok.due_date.unwrap().instant()),
            "2030-01-02T01:04:05.000000Z"
        );
        assert_eq!(details(parse_create(json!({})).unwrap_err()), ["title"]);
        assert_eq!(
            details(parse_create(json!({"title": 5})).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            details(parse_create(json!({"title": "   "})).unwrap_err()),
            ["title"]
        );
        assert_eq!(
            details(parse_create(json!({"title": "x", "due_date": "soon"})).unwrap_err()),
            ["due_date"]
        );
        assert_eq!(details(parse_create(json!([1])).unwrap_err()), ["body"]);
        assert!(parse_create(json!({"title": "é".repeat(500)})).is_ok());
        assert_eq!(
            details(parse_create(json!({"title": "é".repeat(501)})).unwrap_err()),
            ["title"]
        );
    }

    #[test]
    fn update_bodies_distinguish_absent_and_null_due_dates() {
        assert_eq!(parse_update(json!({})).unwrap(), TaskPatch::default());
        assert_eq!(
            parse_update(json!({"due_date": null})).unwrap().due_date,
            Some(None)
        );
        assert_eq!(
            parse_update(json!({"completed": true})).unwrap().completed,
            Some(true)
        );
        assert_eq!(
            details(parse_update(json!({"completed": "yes"})).unwrap_err()),
            ["completed"]
        );
        assert_eq!(
            details(parse_update(json!({"title": "", "completed": 1})).unwrap_err()),
            ["completed", "title"]
        );
    }

    #[test]
    fn due_dates_accept_rfc3339_naive_and_plain_dates() {
        assert!(parse_due_date("2030-01-02T03:04:05Z").is_ok());
        assert_eq!(
            rfc3339(parse_due_date("2030-01-02T03:04:05").unwrap().instant()),
            "2030-01-02T03:04:05.000000Z"
        );
        assert_eq!(
            rfc3339(parse_due_date("2030-01-02").unwrap().instant()),
            "2030-01-02T00:00:00.000000Z"
        );
        assert_eq!(parse_due_date("02/01/2030"), Err(DueDateInputError::Format));
        assert_eq!(parse_due_date(""), Err(DueDateInputError::Format));
    }

    #[test]
    fn due_dates_outside_the_range_are_validation_errors_not_panics() {
        for text in [
            // Year 10000 once in UTC: this panicked in the conversion.
            "9999-12-31T23:30:00-01:00",
            // Year -1 once in UTC: this was answered as a Unix timestamp, not RFC 3339.
            "0000-01-01T00:30:00+01:00",
            "0000-01-01",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(
                parse_due_date(text),
                Err(DueDateInputError::OutOfRange),
                "{text}"
            );
            assert_eq!(
                details(parse_create(json!({"title": "x", "due_date": text})).unwrap_err()),
                ["due_date"],
                "{text}"
            );
            assert_eq!(
                details(parse_update(json!({"due_date": text})).unwrap_err()),
                ["due_date"],
                "{text}"
            );
        }
        for (text, written) in [
            ("1970-01-01T01:00:00+01:00", "1970-01-01T00:00:00.000000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            ("9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59.000000Z"),
        ] {
            assert_eq!(
                rfc3339(parse_due_date(text).unwrap().instant()),
                written,
                "{text}"
            );
        }
    }

    #[test]
    fn control_characters_in_credentials_are_validation_errors() {
        assert_eq!(
            details(
                parse_credentials(json!({"email": "a\0@example.com", "password": "12345678"}))
                    .unwrap_err()
            ),
            ["email"]
        );
        assert_eq!(
            details(
                parse_credentials(
                    json!({"email": "a@example.com\u{1b}", "password": "pass\0word"})
                )
                .unwrap_err()
            ),
            ["email", "password"]
        );
        let (email, _) = parse_credentials(
            json!({"email": "\u{85}a@example.com\u{85}\t", "password": "12345678"}),
        )
        .unwrap();
        assert_eq!(
            email, "\u{85}a@example.com\u{85}\t",
            "surrounding whitespace is trimmed later, not refused"
        );
        let padded = format!("  {}@example.com", "a".repeat(241));
        assert_eq!(padded.chars().count(), 255);
        assert_eq!(
            details(
                parse_credentials(json!({"email": padded, "password": "12345678"})).unwrap_err()
            ),
            ["email"],
            "the documented maxLength holds for the raw value"
        );
        let (_, password) =
            parse_credentials(json!({"email": "a@example.com", "password": "tab\there ünïcode"}))
                .unwrap();
        assert_eq!(
            password, "tab\there ünïcode",
            "other characters are the user's choice"
        );
    }

    #[test]
    fn control_characters_in_titles_are_validation_errors() {
        for title in ["a\0b", "\0", "a\u{1b}[2Jb", "line\nbreak", "a\u{7f}"] {
            assert_eq!(
                details(parse_create(json!({ "title": title })).unwrap_err()),
                ["title"],
                "{title:?}"
            );
            assert_eq!(
                details(parse_update(json!({ "title": title })).unwrap_err()),
                ["title"],
                "{title:?}"
            );
        }
    }

    #[test]
    fn completed_filter_accepts_booleans_only() {
        assert_eq!(parse_completed_filter(None).unwrap(), None);
        assert_eq!(parse_completed_filter(Some("true")).unwrap(), Some(true));
        assert_eq!(parse_completed_filter(Some("0")).unwrap(), Some(false));
        assert!(parse_completed_filter(Some("maybe")).is_err());
    }
}

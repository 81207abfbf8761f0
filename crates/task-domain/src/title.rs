//! `TaskTitle`: a trimmed title of 1 to 500 characters, without control characters.

use std::fmt;

/// A task title: trimmed, 1 to [`TaskTitle::MAX_CHARS`] characters (Unicode scalar values, not bytes), with no
/// control character (Unicode `Cc`: NUL, tab, newline, DEL, the C1 range) inside.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskTitle(String);

/// Why a title was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    /// Nothing but whitespace.
    #[error("title must not be empty")]
    Empty,
    /// Longer than the limit after trimming.
    #[error("title must be at most {max} characters, got {chars}")]
    TooLong {
        /// Characters after trimming.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// Contains a control character (after trimming): PostgreSQL refuses NUL in text, and the others are never
    /// meant in a one-line title.
    #[error("title must not contain control characters")]
    ControlCharacter,
}

impl TaskTitle {
    /// The longest title, in characters, after trimming (the original service's `VARCHAR(500)`).
    pub const MAX_CHARS: usize = 500;

    /// Trims `raw` and checks its length and characters.
    pub fn parse(raw: &str) -> Result<Self, TitleError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(TitleError::Empty);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(TitleError::ControlCharacter);
        }
        let chars = trimmed.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(TitleError::TooLong {
                chars,
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The title text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl TryFrom<&str> for TaskTitle {
    type Error = TitleError;

    fn try_from(raw: &str) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl AsRef<str> for TaskTitle {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

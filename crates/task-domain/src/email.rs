//! `Email`: a trimmed, lowercased address with a plausible shape.

use std::fmt;

/// An email address: trimmed and lowercased (addresses are unique case-insensitively), with one `@`, a
/// non-empty local part, a dotted domain, no whitespace or control character, and at most [`Email::MAX_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an email address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing but whitespace.
    #[error("email must not be empty")]
    Empty,
    /// Longer than the limit.
    #[error("email must be at most {max} characters")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not of the form `local@domain.tld`.
    #[error("email is not a valid address")]
    Shape,
    /// Contains a control character (NUL, DEL, the C0/C1 ranges), which no address has and PostgreSQL refuses.
    #[error("email must not contain control characters")]
    ControlCharacter,
}

impl Email {
    /// The longest address accepted (RFC 5321's path limit).
    pub const MAX_CHARS: usize = 254;

    /// Trims, lowercases and checks `raw`.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let normalized = raw.trim().to_lowercase();
        if normalized.is_empty() {
            return Err(EmailError::Empty);
        }
        if normalized.chars().any(char::is_control) {
            return Err(EmailError::ControlCharacter);
        }
        if normalized.chars().count() > Self::MAX_CHARS {
            return Err(EmailError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let Some((local, domain)) = normalized.split_once('@') else {
            return Err(EmailError::Shape);
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || !domain_ok || normalized.chars().any(char::is_whitespace) {
            return Err(EmailError::Shape);
        }
        Ok(Self(normalized))
    }

    /// The normalized address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps the address.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

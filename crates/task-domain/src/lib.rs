//! The task domain: entity, newtypes and the domain events each change produces. No IO, no serde, no async.
#![doc = include_str!("../README.md")]

mod email;
mod events;
mod ids;
mod instant;
mod task;
mod title;

#[cfg(test)]
mod tests;

pub use crate::email::{Email, EmailError};
pub use crate::events::{ReminderChange, SyncAction, TaskEvent, UpdatedFields};
pub use crate::ids::{TaskId, UserId};
pub use crate::instant::{DueDate, DueDateError, normalize};
pub use crate::task::{Task, TaskParts, TaskPatch, clear_completed};
pub use crate::title::{TaskTitle, TitleError};

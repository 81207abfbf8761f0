//! The users half of [`Store`]: registration, lookups and password hash upgrades.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use task_domain::{Email, UserId};
use time::OffsetDateTime;

use super::{Pools, Store};
use crate::error::StoreError;
use crate::models::{NewUser, User};
use crate::pool::SqliteConn;
use crate::rows::{DbUuid, UserRow};

impl Store {
    /// Registers a user. A taken email fails with [`StoreError::UniqueViolation`].
    pub async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let now = task_domain::normalize(new.now);
        with_write_conn!(self, |conn| {
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(DbUuid::from(new.id)),
                    users::email.eq(new.email.as_str()),
                    users::password_hash.eq(&new.password_hash),
                    users::created_at.eq(now),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await?;
        });
        Ok(User {
            id: new.id,
            email: new.email,
            password_hash: new.password_hash,
            created_at: now,
            updated_at: now,
        })
    }

    /// The user with this (normalized) email, if any.
    pub async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .filter(users::email.eq(email.as_str()))
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }

    /// Whether a user with this id exists: one primary-key lookup reading only the id, cheap enough to run on
    /// every authenticated request (a token outlives a deleted user).
    pub async fn user_exists(&self, id: UserId) -> Result<bool, StoreError> {
        let found: Option<DbUuid> = with_conn!(self, |conn| {
            users::table
                .find(DbUuid::from(id))
                .select(users::id)
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.is_some())
    }

    /// Replaces a user's password hash (an upgrade after a successful login) and bumps `updated_at`. A user
    /// that no longer exists is [`StoreError::NotFound`].
    pub async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let now = task_domain::normalize(now);
        let updated = with_conn!(self, |conn| {
            diesel::update(users::table.find(DbUuid::from(id)))
                .set((
                    users::password_hash.eq(password_hash),
                    users::updated_at.eq(now),
                ))
                .execute(conn)
                .await?
        });
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Whether any stored password hash starts with `prefix` (`$2` for bcrypt, `$argon2` for Argon2). Reads
    /// the users table once (no index on the hash): meant for startup, not for requests.
    pub async fn has_password_hash_with_prefix(&self, prefix: &str) -> Result<bool, StoreError> {
        let pattern = format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let found: Option<DbUuid> = with_conn!(self, |conn| {
            users::table
                .filter(users::password_hash.like(&pattern).escape('\\'))
                .select(users::id)
                .first(conn)
                .await
                .optional()?
        });
        Ok(found.is_some())
    }

    /// The user with this id, if any.
    pub async fn find_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_conn!(self, |conn| {
            users::table
                .find(DbUuid::from(id))
                .first(conn)
                .await
                .optional()?
        });
        row.map(User::try_from).transpose()
    }
}

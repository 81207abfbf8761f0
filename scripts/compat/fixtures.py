"""Writes the cutover test fixtures with the original service's own libraries (see scripts/compat-venv).

Run: scripts/compat-venv python scripts/compat/fixtures.py
Writes:
  crates/task-api/tests/fixtures/original_tokens.json  tokens and a bcrypt hash as the original makes them
  crates/task-store/tests/fixtures/original_schema.sql the original's tables as its Alembic migrations 001 and
                                                       002 create them (DDL compiled by SQLAlchemy, PostgreSQL)
  crates/task-store/tests/fixtures/original_queries.sql the statements the original's ORM code issues, compiled
                                                       by SQLAlchemy with literal values
The schema below describes the original's tables (api/src/db/migrations/versions/001_initial_schema.py and
002_conversations.py, api/src/models/*.py); it is a description for the compiler, not the original's code.
"""
import json
import pathlib
from datetime import datetime, timedelta, timezone
from uuid import UUID

import bcrypt
import sqlalchemy as sa
from jose import jwt
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = "original-service-secret-for-the-compat-fixtures"
USER_ID = UUID("6f1c1a52-3d0e-4b8e-9f3a-2c1d5e7a9b01")
EMAIL = "legacy@example.com"
PASSWORD = "legacy-password-1"


def original_token(user_id, email, now, secret=SECRET, hours=24):
    """The payload and call of the original's JWTAuth.create_token: float iat/exp from datetime.timestamp()."""
    payload = {
        "sub": str(user_id),
        "email": email,
        "iat": now.timestamp(),
        "exp": now.timestamp() + hours * 3600,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def tokens():
    far = datetime(2099, 12, 31, 10, 0, 0, 123456, tzinfo=timezone.utc) - timedelta(hours=24)
    past = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)
    out = {
        "secret": SECRET,
        "user_id": str(USER_ID),
        "email": EMAIL,
        "password": PASSWORD,
        "bcrypt_hash": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=12)).decode(),
        "valid_token": original_token(USER_ID, EMAIL, far),
        "expired_token": original_token(USER_ID, EMAIL, past),
        "forged_token": original_token(USER_ID, EMAIL, far, secret="not-the-secret"),
    }
    path = ROOT / "crates/task-api/tests/fixtures/original_tokens.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


def schema():
    md = sa.MetaData()
    users = sa.Table(
        "users", md,
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    tasks = sa.Table(
        "tasks", md,
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.CheckConstraint("LENGTH(TRIM(title)) > 0", name="tasks_title_not_empty"),
    )
    conversations = sa.Table(
        "conversations", md,
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
    )
    messages = sa.Table(
        "messages", md,
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("conversation_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("tool_calls", postgresql.JSONB, nullable=True),
        sa.Column("tool_results", postgresql.JSONB, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"], ondelete="CASCADE"),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system')", name="messages_valid_role"),
    )
    alembic_version = sa.Table(
        "alembic_version", md,
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
    )
    indexes = [
        sa.Index("idx_users_email_lower", users.c.email),
        sa.Index("idx_tasks_user_id", tasks.c.user_id),
        sa.Index("idx_tasks_user_completed", tasks.c.user_id, tasks.c.completed),
        sa.Index("idx_conversations_user_id", conversations.c.user_id),
        sa.Index("idx_conversations_updated_at", conversations.c.user_id, conversations.c.updated_at),
        sa.Index("idx_messages_conversation_id", messages.c.conversation_id),
        sa.Index("idx_messages_created_at", messages.c.conversation_id, messages.c.created_at),
    ]
    dialect = postgresql.dialect()
    ddl = ["-- Generated by scripts/compat/fixtures.py (SQLAlchemy %s, PostgreSQL dialect): the original service's\n"
           "-- schema after its Alembic migrations 001_initial_schema and 002_conversations. Do not edit.\n" % sa.__version__]
    for table in [alembic_version, users, tasks, conversations, messages]:
        ddl.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
    for index in indexes:
        ddl.append(str(CreateIndex(index).compile(dialect=dialect)).strip() + ";\n")
    ddl.append("INSERT INTO alembic_version (version_num) VALUES ('002_conversations');\n")
    (ROOT / "crates/task-store/tests/fixtures/original_schema.sql").write_text("\n".join(ddl))

    def sql(stmt):
        return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip() + ";"

    uid = USER_ID
    task_id = UUID("6f1c1a52-3d0e-4b8e-9f3a-2c1d5e7a9b02")
    conv_id = UUID("6f1c1a52-3d0e-4b8e-9f3a-2c1d5e7a9b03")
    msg_id = UUID("6f1c1a52-3d0e-4b8e-9f3a-2c1d5e7a9b04")
    now = datetime(2026, 12, 2, 13, 47, 37, 12500, tzinfo=timezone.utc)
    u = users.c
    t = tasks.c
    queries = [
        # AuthService.register: the case-insensitive lookup, then the insert (the ORM sends every column).
        ("register: find by lower(email)", sql(sa.select(users).where(sa.func.lower(u.email) == "legacy2@example.com"))),
        ("register: insert user", sql(users.insert().values(id=uid, email="legacy2@example.com",
                                                            password_hash="$2b$12$" + "x" * 53,
                                                            created_at=now, updated_at=now))),
        # get_current_user: the user by id (with the `selectin` load of its tasks).
        ("auth: user by id", sql(sa.select(users).where(u.id == uid))),
        ("auth: selectin tasks of users", sql(sa.select(tasks).where(t.user_id.in_([uid])))),
        # TaskService.create / list / get / update / delete.
        ("tasks: insert", sql(tasks.insert().values(id=task_id, user_id=uid, title="from the original",
                                                    completed=False, created_at=now, updated_at=now))),
        ("tasks: list", sql(sa.select(tasks).where(t.user_id == uid).order_by(sa.desc(t.created_at)))),
        ("tasks: list completed", sql(sa.select(tasks).where(t.user_id == uid).where(t.completed == True)  # noqa: E712
                                      .order_by(sa.desc(t.created_at)))),
        ("tasks: get", sql(sa.select(tasks).where(t.id == task_id))),
        ("tasks: update", sql(tasks.update().where(t.id == task_id).values(title="renamed", completed=True,
                                                                           updated_at=now))),
        # The AI assistant (ConversationService): its conversation and message tables.
        ("ai: insert conversation", sql(conversations.insert().values(id=conv_id, user_id=uid, created_at=now,
                                                                      updated_at=now))),
        ("ai: latest conversation", sql(sa.select(conversations).where(conversations.c.user_id == uid)
                                        .order_by(conversations.c.updated_at.desc()).limit(1))),
        ("ai: insert message", sql(messages.insert().values(id=msg_id, conversation_id=conv_id, role="user",
                                                            content="add a task", created_at=now))),
        ("ai: touch conversation", sql(conversations.update().where(conversations.c.id == conv_id)
                                       .values(updated_at=now))),
        ("ai: messages", sql(sa.select(messages).where(messages.c.conversation_id == conv_id)
                             .order_by(messages.c.created_at))),
        ("tasks: delete", sql(tasks.delete().where(t.id == task_id))),
    ]
    lines = ["-- Generated by scripts/compat/fixtures.py (SQLAlchemy %s, PostgreSQL dialect, literal values): the\n"
             "-- statements the original service's ORM code issues, one per block, in an order that works on an empty\n"
             "-- database. Each block starts with a `-- name:` line. Do not edit.\n" % sa.__version__]
    for name, text in queries:
        lines.append("-- name: %s\n%s\n" % (name, text))
    (ROOT / "crates/task-store/tests/fixtures/original_queries.sql").write_text("\n".join(lines))


if __name__ == "__main__":
    tokens()
    schema()

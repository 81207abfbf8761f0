# Developer entry points. Install just with `cargo install just --locked`; CI does not need it.
set shell := ["bash", "-euo", "pipefail", "-c"]

database_url := env_var_or_default("DATABASE_URL", "sqlite://pakaura.db")

[private]
default:
    @just --list

# Format every crate.
fmt:
    cargo fmt --all

# Clippy with warnings as errors, as CI runs it.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The whole test suite (starts the local stack it needs).
test *FLAGS:
    scripts/test {{FLAGS}}

# Start PostgreSQL, Kafka and daprd for local work.
stack-up *SERVICES:
    scripts/stack up {{SERVICES}}

# Stop the local stack.
stack-down:
    scripts/stack down

# Apply pending migrations to DATABASE_URL.
migrate:
    DATABASE_URL={{database_url}} cargo run -p task-server -- migrate

# Run the service (embedded SQLite unless DATABASE_URL says otherwise).
run *FLAGS:
    DATABASE_URL={{database_url}} cargo run --release -p task-server -- {{FLAGS}}

# Validate the Helm chart and Dapr components.
check-deploy:
    scripts/check-deploy

# Everything CI runs.
ci:
    bash .ci/run

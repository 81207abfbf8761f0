//! The local stack's scripts, without a running stack: `scripts/daprd` (the one way to find and start `daprd`, used
//! by `scripts/stack`, `examples/run-with-daprd` and the e2e harness) and the parts of `scripts/stack` that start
//! nothing. Each test runs them with a state folder of its own and the stack's port settings cleared, so they
//! neither see nor touch a running stack. See docs/LOCAL-STACK.md.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, ensure};
use uuid::Uuid;

/// The settings of `scripts/lib.sh` that a caller's environment could carry in.
const STACK_SETTINGS: &[&str] = &[
    "PAKAURA_STATE_DIR",
    "PAKAURA_PG_PORT",
    "PAKAURA_KAFKA_PORT",
    "PAKAURA_KAFKA_CONTROLLER_PORT",
    "PAKAURA_DAPR_HTTP_PORT",
    "PAKAURA_DAPR_GRPC_PORT",
    "PAKAURA_DAPR_METRICS_PORT",
    "PAKAURA_DAPRD_BIN",
    "PAKAURA_STACK_STARTED_FILE",
];

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// A state folder of its own, deleted on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("pakaura-scripts-test-{}", Uuid::new_v4().simple())))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the repository script `script` with `args`, the stack settings cleared, the state folder `state` and `env`.
fn run(
    script: &str,
    args: &[&str],
    state: &StateDir,
    env: &[(&str, &str)],
) -> anyhow::Result<Output> {
    let mut command = Command::new(repo_root().join(script));
    command.args(args);
    for var in STACK_SETTINGS {
        command.env_remove(var);
    }
    command.env("PAKAURA_STATE_DIR", &state.0);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .with_context(|| format!("running {script}"))
}

/// Like [`run`], but the script must succeed; returns its standard output.
fn run_ok(
    script: &str,
    args: &[&str],
    state: &StateDir,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let output = run(script, args, state, env)?;
    ensure!(
        output.status.success(),
        "{script} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The value that follows `flag` in `argv`, each time it occurs.
fn values_of<'a>(argv: &'a [&'a str], flag: &str) -> Vec<&'a str> {
    argv.windows(2)
        .filter(|pair| pair[0] == flag)
        .map(|pair| pair[1])
        .collect()
}

#[test]
fn daprd_resources_are_the_checked_in_folder_on_the_default_kafka_port() -> anyhow::Result<()> {
    let state = StateDir::new();
    let resources = run_ok("scripts/daprd", &["resources"], &state, &[])?;
    assert_eq!(
        Path::new(resources.trim()).canonicalize()?,
        repo_root().join("deploy/dapr/local")
    );
    Ok(())
}

#[test]
fn daprd_resources_name_the_kafka_port_of_a_second_stack() -> anyhow::Result<()> {
    let state = StateDir::new();
    let env = [("PAKAURA_KAFKA_PORT", "19292")];
    let resources = PathBuf::from(run_ok("scripts/daprd", &["resources"], &state, &env)?.trim());
    assert!(
        resources.starts_with(&state.0),
        "{} is not under the state folder",
        resources.display()
    );
    let pubsub = std::fs::read_to_string(resources.join("pubsub-kafka.yaml"))?;
    assert!(pubsub.contains("value: \"127.0.0.1:19292\""), "{pubsub}");
    assert!(!pubsub.contains("19092"), "{pubsub}");
    // Everything else is the checked-in folder as it is.
    let checked_in = repo_root().join("deploy/dapr/local");
    let expected = std::fs::read_to_string(checked_in.join("pubsub-kafka.yaml"))?
        .replace("\"127.0.0.1:19092\"", "\"127.0.0.1:19292\"");
    assert_eq!(pubsub, expected);
    assert_eq!(
        std::fs::read_to_string(resources.join("daprd-config.yaml"))?,
        std::fs::read_to_string(checked_in.join("daprd-config.yaml"))?
    );
    // Asked again: the same folder.
    let again = run_ok("scripts/daprd", &["resources"], &state, &env)?;
    assert_eq!(Path::new(again.trim()), resources);
    Ok(())
}

#[test]
fn daprd_command_is_the_standard_line_then_the_callers_flags() -> anyhow::Result<()> {
    let state = StateDir::new();
    let env = [
        ("PAKAURA_DAPRD_BIN", "/bin/true"),
        ("PAKAURA_KAFKA_PORT", "19292"),
    ];
    let resources = run_ok("scripts/daprd", &["resources"], &state, &env)?;
    let resources = resources.trim();
    let out = run_ok(
        "scripts/daprd",
        &[
            "command",
            "--app-id",
            "some-app",
            "--dapr-http-port",
            "3999",
        ],
        &state,
        &env,
    )?;
    let argv: Vec<&str> = out.lines().collect();
    assert_eq!(argv.first(), Some(&"/bin/true"), "{argv:?}");
    assert_eq!(values_of(&argv, "--mode"), ["standalone"], "{argv:?}");
    assert_eq!(
        values_of(&argv, "--resources-path"),
        [resources],
        "{argv:?}"
    );
    assert_eq!(
        values_of(&argv, "--config"),
        [format!("{resources}/daprd-config.yaml").as_str()],
        "{argv:?}"
    );
    for listener in [
        "--dapr-listen-addresses",
        "--dapr-internal-grpc-listen-address",
        "--metrics-listen-address",
        "--app-channel-address",
    ] {
        assert_eq!(
            values_of(&argv, listener),
            ["127.0.0.1"],
            "{listener} in {argv:?}"
        );
    }
    assert_eq!(
        argv[argv.len() - 4..],
        ["--app-id", "some-app", "--dapr-http-port", "3999"],
        "the caller's flags come last: {argv:?}"
    );
    Ok(())
}

#[test]
fn daprd_needs_an_app_id_and_an_executable() -> anyhow::Result<()> {
    let state = StateDir::new();
    let output = run(
        "scripts/daprd",
        &["command", "--dapr-http-port", "3999"],
        &state,
        &[("PAKAURA_DAPRD_BIN", "/bin/true")],
    )?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--app-id is required"));
    let missing = state.0.join("no-daprd-here");
    let output = run(
        "scripts/daprd",
        &["path"],
        &state,
        &[("PAKAURA_DAPRD_BIN", missing.to_str().context("utf-8 path")?)],
    )?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not an executable"));
    Ok(())
}

#[test]
fn daprd_path_ignores_a_stale_pid_file() -> anyhow::Result<()> {
    let state = StateDir::new();
    // The stack's pid file names a live process that is not daprd: this test.
    std::fs::create_dir_all(state.0.join("run"))?;
    std::fs::write(
        state.0.join("run/daprd.pid"),
        std::process::id().to_string(),
    )?;
    // No build in the cache, no ~/.dapr: the daprd found is the one on PATH.
    let bin = state.0.join("bin");
    std::fs::create_dir_all(&bin)?;
    let fake = bin.join("daprd");
    std::fs::write(&fake, "#!/bin/sh\n")?;
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let cache = state.0.join("cache");
    let home = state.0.join("home");
    let found = run_ok(
        "scripts/daprd",
        &["path"],
        &state,
        &[
            ("PATH", path.as_str()),
            ("PAKAURA_CACHE_DIR", cache.to_str().context("utf-8 path")?),
            ("HOME", home.to_str().context("utf-8 path")?),
        ],
    )?;
    assert_eq!(Path::new(found.trim()), fake);
    Ok(())
}

#[test]
fn an_example_sidecar_follows_the_kafka_port_of_the_stack() -> anyhow::Result<()> {
    let state = StateDir::new();
    let env = [
        ("PAKAURA_DAPRD_BIN", "/bin/true"),
        ("PAKAURA_KAFKA_PORT", "19292"),
    ];
    let resources = run_ok("scripts/daprd", &["resources"], &state, &env)?;
    let out = run_ok(
        "examples/run-with-daprd",
        &[
            "--app-id",
            "task-subscriber",
            "--app-port",
            "6002",
            "--dapr-http-port",
            "3998",
            "--dapr-grpc-port",
            "50998",
            "--print-command",
        ],
        &state,
        &env,
    )?;
    let argv: Vec<&str> = out.lines().collect();
    let examples = repo_root().join("examples/dapr");
    assert_eq!(argv.first(), Some(&"/bin/true"), "{argv:?}");
    assert_eq!(
        values_of(&argv, "--resources-path"),
        [resources.trim(), examples.to_str().context("utf-8 path")?],
        "the stack's resources first, then the examples': {argv:?}"
    );
    assert_eq!(values_of(&argv, "--app-id"), ["task-subscriber"]);
    assert_eq!(values_of(&argv, "--app-port"), ["6002"]);
    assert_eq!(values_of(&argv, "--dapr-http-port"), ["3998"]);
    assert_eq!(values_of(&argv, "--dapr-grpc-port"), ["50998"]);
    assert!(argv.contains(&"--enable-metrics=false"), "{argv:?}");
    Ok(())
}

#[test]
fn kafka_listens_on_the_configured_ports() -> anyhow::Result<()> {
    let state = StateDir::new();
    // The service file's own config writer, as `scripts/stack up kafka` runs it before starting the broker.
    let script = "source scripts/lib.sh && source scripts/stack.d/common.sh && source scripts/stack.d/kafka.sh \
        && kafka_write_config && cat \"$PAKAURA_STATE_DIR/kafka/server.properties\"";
    let mut command = Command::new("bash");
    command.current_dir(repo_root()).args(["-c", script]);
    for var in STACK_SETTINGS {
        command.env_remove(var);
    }
    let output = command
        .env("PAKAURA_STATE_DIR", &state.0)
        .env("PAKAURA_KAFKA_PORT", "19292")
        .env("PAKAURA_KAFKA_CONTROLLER_PORT", "19293")
        .output()?;
    ensure!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let properties = String::from_utf8(output.stdout)?;
    for line in [
        "controller.quorum.voters=1@127.0.0.1:19293",
        "listeners=PLAINTEXT://127.0.0.1:19292,CONTROLLER://127.0.0.1:19293",
        "advertised.listeners=PLAINTEXT://127.0.0.1:19292",
    ] {
        assert!(
            properties.lines().any(|l| l == line),
            "{line} missing from:\n{properties}"
        );
    }
    assert!(!properties.contains("1909"), "{properties}");
    Ok(())
}

#[test]
fn stack_status_and_env_of_a_stack_that_is_not_running() -> anyhow::Result<()> {
    let state = StateDir::new();
    // Ports nothing listens on, so that no running stack is mistaken for this one.
    let env = [
        ("PAKAURA_PG_PORT", "1"),
        ("PAKAURA_KAFKA_PORT", "2"),
        ("PAKAURA_DAPR_HTTP_PORT", "3"),
    ];
    let status = run_ok("scripts/stack", &["status"], &state, &env)?;
    assert_eq!(
        status.lines().collect::<Vec<_>>(),
        [
            "postgres  stopped",
            "kafka     stopped",
            "daprd     stopped"
        ]
    );
    let exports = run_ok("scripts/stack", &["env"], &state, &env)?;
    assert_eq!(
        exports.lines().collect::<Vec<_>>(),
        [
            "# postgres is not running: scripts/stack up postgres",
            "# kafka is not running: scripts/stack up kafka",
            "# daprd is not running: scripts/stack up daprd",
        ]
    );
    let output = run("scripts/stack", &["up", "mysql"], &state, &env)?;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown service 'mysql'"));
    Ok(())
}

//! The Markdown report: machine notes, one results table per database backend with ratios against publishing off,
//! the throughput of every round, what reached the sinks, and the goals checked against the numbers.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::load::Outcome;
use crate::{Mode, Sidecar};

/// The measurements of one configuration.
pub(crate) struct ModeResult {
    pub(crate) mode: Mode,
    /// All measured rounds merged.
    pub(crate) outcome: Outcome,
    /// Requests per second of each round.
    pub(crate) rounds: Vec<f64>,
    /// Successful requests of the warm-up (they publish events too).
    pub(crate) warmup_ok: u64,
    /// Events the 204 sink received (204 sink only).
    pub(crate) events_at_sink: Option<u64>,
    /// Connections the hanging sink accepted (hanging sink only).
    pub(crate) hanging_connections: Option<u64>,
    /// Event-related lines of the server's `/metrics` at the end.
    pub(crate) metrics: Vec<String>,
    /// CPU time the server process used over the whole run (warm-up included), if known.
    pub(crate) cpu_seconds: Option<f64>,
}

/// The five configurations against one backend.
pub(crate) struct Run {
    pub(crate) backend: String,
    pub(crate) modes: Vec<ModeResult>,
}

/// What the machine was and how busy it was.
pub(crate) struct Machine {
    command: String,
    started: String,
    cpus: usize,
    cpu_model: String,
    load_start: Option<f64>,
    load_end: Option<f64>,
    load_mean: Option<f64>,
    load_max: Option<f64>,
}

impl Machine {
    /// Notes the command, the time, the CPUs and the load average now.
    pub(crate) fn probe(command: String) -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            command,
            started: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            load_start: crate::load_average(),
            load_end: None,
            load_mean: None,
            load_max: None,
        }
    }

    /// Records the load average at the end and over the rounds.
    pub(crate) fn finish(&mut self, load_end: Option<f64>, samples: &[f64]) {
        self.load_end = load_end;
        if !samples.is_empty() {
            self.load_mean = Some(samples.iter().sum::<f64>() / samples.len() as f64);
            self.load_max = samples.iter().copied().reduce(f64::max);
        }
    }
}

fn ms(nanos: Option<u64>) -> String {
    nanos.map_or_else(|| "-".to_owned(), |n| format!("{:.2}", n as f64 / 1e6))
}

fn ratio(value: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (value, base) {
        (Some(value), Some(base)) if base > 0.0 => Some(value / base),
        _ => None,
    }
}

fn show_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
}

fn show_load(value: Option<f64>) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| format!("{v:.2}"))
}

fn sidecar(mode: &Mode) -> &'static str {
    match mode.sidecar {
        Sidecar::None => "none",
        Sidecar::Ok => "204 at once",
        Sidecar::Hanging => "never answers",
    }
}

fn p(result: &ModeResult, q: f64) -> Option<u64> {
    result.outcome.latencies.quantile(q)
}

/// One goal check: `(what, measured, goal, verdict)`.
fn check_latency(name: String, value: &ModeResult, base: &ModeResult) -> [String; 4] {
    match (p(value, 0.99), p(base, 0.99)) {
        (Some(v), Some(b)) => {
            let delta = (v as f64 - b as f64) / 1e6;
            let verdict = if delta < 1.0 {
                "met".to_owned()
            } else {
                format!("missed by {:.2} ms", delta - 1.0)
            };
            [
                name,
                format!("{delta:+.2} ms"),
                "< +1 ms".to_owned(),
                verdict,
            ]
        }
        _ => [
            name,
            "-".to_owned(),
            "< +1 ms".to_owned(),
            "no data".to_owned(),
        ],
    }
}

fn check_throughput(name: String, value: &ModeResult, base: &ModeResult) -> [String; 4] {
    let r = value.outcome.throughput() / base.outcome.throughput().max(f64::MIN_POSITIVE);
    let verdict = if r >= 0.95 {
        "met".to_owned()
    } else {
        format!("missed by {:.1} points", (0.95 - r) * 100.0)
    };
    [
        name,
        format!("{:.1} %", r * 100.0),
        "≥ 95 %".to_owned(),
        verdict,
    ]
}

/// Renders the whole report.
pub(crate) fn render(settings: &str, machine: &Machine, runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# load-bench report\n");
    let _ = writeln!(out, "- started: {}", machine.started);
    let _ = writeln!(out, "- command: `{}`", machine.command);
    let _ = writeln!(out, "- settings: {settings}");
    let _ = writeln!(
        out,
        "- machine: {} CPUs ({}), shared with whatever else runs",
        machine.cpus, machine.cpu_model
    );
    let _ = writeln!(
        out,
        "- 1-minute load average: {} at start, {} mean after rounds (max {}), {} at end",
        show_load(machine.load_start),
        show_load(machine.load_mean),
        show_load(machine.load_max),
        show_load(machine.load_end)
    );
    for run in runs {
        render_run(&mut out, run);
    }
    out
}

fn render_run(out: &mut String, run: &Run) {
    let Some(off) = run.modes.iter().find(|r| !r.mode.publishing) else {
        return;
    };
    let _ = writeln!(out, "\n## {}\n", run.backend);
    let _ = writeln!(
        out,
        "| mode | sidecar | requests ok | errors | req/s | p50 ms | p99 ms | max ms | req/s vs off | p50 vs off | \
         p99 vs off | p99 − off ms |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let off_p99 = p(off, 0.99);
    for result in &run.modes {
        let o = &result.outcome;
        let p99_delta = match (p(result, 0.99), off_p99) {
            (Some(v), Some(b)) => format!("{:+.2}", (v as f64 - b as f64) / 1e6),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            result.mode.key,
            sidecar(&result.mode),
            o.ok,
            o.errors,
            o.throughput(),
            ms(p(result, 0.5)),
            ms(p(result, 0.99)),
            ms(o.latencies.max()),
            show_ratio(Some(
                o.throughput() / off.outcome.throughput().max(f64::MIN_POSITIVE)
            )),
            show_ratio(ratio(
                p(result, 0.5).map(|v| v as f64),
                p(off, 0.5).map(|v| v as f64)
            )),
            show_ratio(ratio(
                p(result, 0.99).map(|v| v as f64),
                off_p99.map(|v| v as f64)
            )),
            p99_delta,
        );
    }

    let rounds = run.modes.iter().map(|r| r.rounds.len()).max().unwrap_or(0);
    let _ = writeln!(out, "\nRequests/s of each round (noise check):\n");
    let header: String = (1..=rounds).map(|n| format!(" round {n} |")).collect();
    let _ = writeln!(out, "| mode |{header}");
    let _ = writeln!(out, "|---|{}", "---:|".repeat(rounds));
    for result in &run.modes {
        let cells: String = result.rounds.iter().map(|r| format!(" {r:.0} |")).collect();
        let _ = writeln!(out, "| {} |{cells}", result.mode.key);
    }

    let _ = writeln!(
        out,
        "\nEvents (every request is one mutation, which publishes two events):\n"
    );
    let _ = writeln!(
        out,
        "| mode | successful requests incl. warm-up | at the sink | event counters in /metrics |"
    );
    let _ = writeln!(out, "|---|---:|---|---|");
    for result in &run.modes {
        let requests = result.outcome.ok + result.warmup_ok;
        let sink = match (result.events_at_sink, result.hanging_connections) {
            (Some(events), _) => format!(
                "{events} events ({:.2} per request)",
                events as f64 / requests.max(1) as f64
            ),
            (None, Some(connections)) => {
                format!("{connections} connections held, nothing answered")
            }
            _ => "-".to_owned(),
        };
        let metrics = if result.metrics.is_empty() {
            "-".to_owned()
        } else {
            result.metrics.join("<br>")
        };
        let _ = writeln!(
            out,
            "| {} | {requests} | {sink} | {metrics} |",
            result.mode.key
        );
    }

    let _ = writeln!(
        out,
        "\nCPU of the task-api process (user + system, all threads, warm-up included; {}):\n",
        if run.backend == "postgresql" {
            "PostgreSQL's own processes are not included"
        } else {
            "SQLite runs inside it"
        }
    );
    let _ = writeln!(out, "| mode | CPU s | µs per request | vs off |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let per_request = |result: &ModeResult| {
        let requests = (result.outcome.ok + result.warmup_ok).max(1) as f64;
        result.cpu_seconds.map(|cpu| cpu * 1e6 / requests)
    };
    let off_cpu = run
        .modes
        .iter()
        .find(|r| !r.mode.publishing)
        .and_then(per_request);
    for result in &run.modes {
        let (cpu, micros, ratio) = match (result.cpu_seconds, per_request(result)) {
            (Some(cpu), Some(micros)) => (
                format!("{cpu:.2}"),
                format!("{micros:.0}"),
                off_cpu.map_or("-".to_owned(), |off| format!("{:.2}", micros / off)),
            ),
            _ => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(out, "| {} | {cpu} | {micros} | {ratio} |", result.mode.key);
    }

    let _ = writeln!(out, "\nGoals:\n");
    let _ = writeln!(out, "| check | measured | goal | verdict |");
    let _ = writeln!(out, "|---|---:|---|---|");
    let find = |key: &str| run.modes.iter().find(|r| r.mode.key == key);
    for result in run.modes.iter().filter(|r| r.mode.publishing) {
        let key = result.mode.key;
        for row in [
            check_latency(format!("{key}: p99 added vs off"), result, off),
            check_throughput(format!("{key}: req/s vs off"), result, off),
        ] {
            let _ = writeln!(out, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
        }
    }
    for (hanging, answering) in [("ff-hang", "ff-204"), ("outbox-hang", "outbox-204")] {
        if let (Some(h), Some(a)) = (find(hanging), find(answering)) {
            for row in [
                check_latency(format!("{hanging}: p99 vs {answering}"), h, a),
                check_throughput(format!("{hanging}: req/s vs {answering}"), h, a),
            ] {
                let _ = writeln!(out, "| {} | {} | {} | {} |", row[0], row[1], row[2], row[3]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::MODES;

    fn result(mode: Mode, latency_ns: u64, ok: u64) -> ModeResult {
        let mut outcome = Outcome {
            ok,
            elapsed: Duration::from_secs(1),
            ..Outcome::default()
        };
        for _ in 0..ok {
            outcome.latencies.record(latency_ns);
        }
        ModeResult {
            mode,
            outcome,
            rounds: vec![ok as f64],
            warmup_ok: 0,
            events_at_sink: None,
            hanging_connections: None,
            metrics: Vec::new(),
            cpu_seconds: None,
        }
    }

    #[test]
    fn verdicts_follow_the_goals() {
        let off = result(MODES[0], 2_000_000, 1000);
        let fast = result(MODES[1], 2_500_000, 990);
        let slow = result(MODES[2], 4_000_000, 900);
        assert_eq!(check_latency("x".into(), &fast, &off)[3], "met");
        assert_eq!(
            check_latency("x".into(), &slow, &off)[3],
            "missed by 1.00 ms"
        );
        assert_eq!(check_throughput("x".into(), &fast, &off)[3], "met");
        assert_eq!(
            check_throughput("x".into(), &slow, &off)[3],
            "missed by 5.0 points"
        );
        let text = render(
            "s",
            &Machine::probe("cmd".into()),
            &[Run {
                backend: "sqlite".into(),
                modes: vec![off, fast, slow],
            }],
        );
        assert!(text.contains("| ff-204 | 204 at once | 990 | 0 | 990 | 2.50 | 2.50 | 2.50 | 0.99 | 1.25 | 1.25 | +0.50 |"), "{text}");
    }
}

//! The Markdown report: the goals of issue 17 checked against the numbers (MET / MISSED), machine notes, per
//! database backend one results table per load shape with ratios against publishing off, the throughput of every
//! round, what reached the sinks, the commit-to-sidecar latency, the relay drain, and the charts.

use std::fmt::Write;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use hdrhistogram::Histogram;

use crate::charts::Image;
use crate::drain::DrainResult;
use crate::load::{Outcome, Shape, max, quantile};
use crate::{Mode, Sidecar};

/// What one shape measured against one configuration.
pub(crate) struct ShapeResult {
    pub(crate) shape: Shape,
    /// All measured rounds merged.
    pub(crate) outcome: Outcome,
    /// Requests per second of each round.
    pub(crate) rounds: Vec<f64>,
    /// Successful requests of the warm-up (they publish events too).
    pub(crate) warmup_ok: u64,
    /// CPU time the server process used during this shape's measured rounds, if known.
    pub(crate) cpu_seconds: Option<f64>,
    /// Event `time` (inside the transaction, just before commit) to arrival at the 204 sink, in nanoseconds
    /// (204 sink only).
    pub(crate) sink_latency: Option<Histogram<u64>>,
}

impl ShapeResult {
    pub(crate) fn p(&self, q: f64) -> Option<u64> {
        quantile(&self.outcome.latencies, q)
    }

    /// CPU microseconds per measured request.
    fn cpu_per_request(&self) -> Option<f64> {
        self.cpu_seconds
            .map(|cpu| cpu * 1e6 / self.outcome.ok.max(1) as f64)
    }
}

/// The measurements of one configuration (one server), per shape.
pub(crate) struct ModeResult {
    pub(crate) mode: Mode,
    pub(crate) shapes: Vec<ShapeResult>,
    /// Events the 204 sink received (204 sink only).
    pub(crate) events_at_sink: Option<u64>,
    /// Connections the hanging sink accepted (hanging sink only).
    pub(crate) hanging_connections: Option<u64>,
    /// Order of each task's events at the sink by `sequence`: (checked, out of order, without a sequence).
    pub(crate) order: (u64, u64, u64),
    /// Events that reached the sink more than once.
    pub(crate) duplicates: u64,
    /// Event-related lines of the server's `/metrics` at the end.
    pub(crate) metrics: Vec<String>,
}

/// Every configuration against one backend.
pub(crate) struct Run {
    pub(crate) backend: String,
    pub(crate) modes: Vec<ModeResult>,
}

impl Run {
    /// The result of `mode` under the shape `shape`.
    pub(crate) fn get(&self, mode: &str, shape: &str) -> Option<&ShapeResult> {
        self.modes
            .iter()
            .find(|m| m.mode.key == mode)?
            .shapes
            .iter()
            .find(|s| s.shape.key == shape)
    }

    /// The shapes measured, in order.
    pub(crate) fn shapes(&self) -> Vec<Shape> {
        self.modes
            .first()
            .map(|m| m.shapes.iter().map(|s| s.shape).collect())
            .unwrap_or_default()
    }
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

/// One checked goal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GoalRow {
    /// Issue 17 goal number.
    pub(crate) goal: u8,
    /// Backend and shape it applies to.
    pub(crate) scope: String,
    /// What is compared.
    pub(crate) check: String,
    pub(crate) measured: String,
    pub(crate) target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` reported only or not measured.
    pub(crate) met: Option<bool>,
}

impl GoalRow {
    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "MET",
            Some(false) => "**MISSED**",
            None => "-",
        }
    }
}

/// A goal comparing `value` with `off` of the same backend and shape: req/s ratio, p99 added and (when
/// `cpu_limit` is given) CPU per request ratio.
fn against_off(
    goal: u8,
    scope: &str,
    value: &ShapeResult,
    off: &ShapeResult,
    throughput_min: f64,
    p99_added_max_ms: f64,
    cpu_limit: Option<f64>,
) -> Vec<GoalRow> {
    let row = |check: &str, measured: String, target: String, met: Option<bool>| GoalRow {
        goal,
        scope: scope.to_owned(),
        check: check.to_owned(),
        measured,
        target,
        met,
    };
    let ratio = value.outcome.throughput() / off.outcome.throughput().max(f64::MIN_POSITIVE);
    let mut rows = vec![row(
        "req/s vs off",
        format!(
            "{:.1} % ({:.0} vs {:.0})",
            ratio * 100.0,
            value.outcome.throughput(),
            off.outcome.throughput()
        ),
        format!("≥ {:.0} %", throughput_min * 100.0),
        Some(ratio >= throughput_min),
    )];
    rows.push(match (value.p(0.99), off.p(0.99)) {
        (Some(v), Some(o)) => {
            let added = (v as f64 - o as f64) / 1e6;
            row(
                "p99 added vs off",
                format!("{added:+.2} ms ({} vs {} ms)", ms(Some(v)), ms(Some(o))),
                format!("< {p99_added_max_ms} ms"),
                Some(added < p99_added_max_ms),
            )
        }
        _ => row(
            "p99 added vs off",
            "no data".to_owned(),
            format!("< {p99_added_max_ms} ms"),
            None,
        ),
    });
    if let Some(limit) = cpu_limit {
        rows.push(match (value.cpu_per_request(), off.cpu_per_request()) {
            (Some(v), Some(o)) if o > 0.0 => row(
                "task-api CPU per request vs off",
                format!("{:.2}× ({v:.0} vs {o:.0} µs)", v / o),
                format!("≤ {limit:.2}×"),
                Some(v / o <= limit),
            ),
            _ => row(
                "task-api CPU per request vs off",
                "not measured".to_owned(),
                format!("≤ {limit:.2}×"),
                None,
            ),
        });
    }
    rows
}

/// Issue 17's goals checked against the runs and drains.
pub(crate) fn goals(runs: &[Run], drains: &[DrainResult]) -> Vec<GoalRow> {
    let mut rows = Vec::new();
    if let Some(sqlite) = runs.iter().find(|r| r.backend == "sqlite") {
        for shape in sqlite.shapes().iter().filter(|s| !s.traceparent) {
            if let Some(off) = sqlite.get("off", shape.key) {
                let scope = format!("sqlite, {} ({} connections)", shape.key, shape.connections);
                let check = |name: &str, value: Option<u64>, limit_ms: f64| GoalRow {
                    goal: 1,
                    scope: scope.clone(),
                    check: format!("publishing off: {name}"),
                    measured: format!("{} ms", ms(value)),
                    target: format!("≤ {limit_ms} ms"),
                    met: value.map(|v| v as f64 / 1e6 <= limit_ms),
                };
                rows.push(check("p99", off.p(0.99), 5.0));
                rows.push(check("max", max(&off.outcome.latencies), 50.0));
            }
        }
    }
    for (goal, mode, throughput, p99, cpu) in [
        (2u8, "ff-204", 0.97, 1.0, Some(1.05)),
        (2u8, "ff-204-samekey", 0.97, 1.0, Some(1.05)),
        (3u8, "outbox-204", 0.90, 2.0, None),
    ] {
        for run in runs {
            for shape in run.shapes() {
                if let (Some(value), Some(off)) =
                    (run.get(mode, shape.key), run.get("off", shape.key))
                {
                    let scope = format!("{}, {}: {mode}", run.backend, shape.key);
                    rows.extend(against_off(goal, &scope, value, off, throughput, p99, cpu));
                }
            }
        }
    }
    for drain in drains {
        let scope = format!(
            "{}: drain of {} events over {} users",
            drain.backend, drain.events, drain.users
        );
        rows.push(GoalRow {
            goal: 4,
            scope: scope.clone(),
            check: "events/s (first to last arrival at the sink)".to_owned(),
            measured: format!(
                "{:.0} ({} of {} in {:.2} s{})",
                drain.events_per_second(),
                drain.received - drain.duplicates,
                drain.events,
                drain.first_to_last_seconds,
                if drain.complete { "" } else { ", UNFINISHED" }
            ),
            target: "≥ 20000".to_owned(),
            met: Some(drain.complete && drain.events_per_second() >= 20_000.0),
        });
        rows.push(GoalRow {
            goal: 4,
            scope,
            check: "order per partition key (by `sequence`)".to_owned(),
            measured: format!(
                "{} out of order of {} checked, {} duplicates",
                drain.out_of_order, drain.checked, drain.duplicates
            ),
            target: "0 out of order, all checked".to_owned(),
            met: Some(drain.order_kept()),
        });
    }
    for run in runs {
        for shape in run.shapes() {
            if let Some(latency) = run
                .get("outbox-204", shape.key)
                .and_then(|r| r.sink_latency.as_ref())
            {
                rows.push(GoalRow {
                    goal: 4,
                    scope: format!("{}, {}: outbox-204 steady load", run.backend, shape.key),
                    check: "commit to sidecar, p50 / p99".to_owned(),
                    measured: format!(
                        "{} / {} ms ({} events)",
                        ms(quantile(latency, 0.5)),
                        ms(quantile(latency, 0.99)),
                        latency.len()
                    ),
                    target: "reported".to_owned(),
                    met: None,
                });
            }
        }
    }
    rows
}

/// Renders the whole report; `images` are the charts written next to it, linked as `link_prefix` + file name.
pub(crate) fn render(
    settings: &str,
    machine: &Machine,
    runs: &[Run],
    drains: &[DrainResult],
    images: &[Image],
    link_prefix: &str,
) -> String {
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

    let rows = goals(runs, drains);
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    let missed = rows.iter().filter(|r| r.met == Some(false)).count();
    let _ = writeln!(out, "\n## Goals (issue 17): {met} met, {missed} missed\n");
    let _ = writeln!(
        out,
        "| goal | scope | check | measured | target | verdict |"
    );
    let _ = writeln!(out, "|---:|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            row.goal,
            row.scope,
            row.check,
            row.measured,
            row.target,
            row.verdict()
        );
    }

    if !images.is_empty() {
        let _ = writeln!(out, "\n## Charts\n");
        for image in images {
            let _ = writeln!(out, "![{}]({link_prefix}{})\n", image.title, image.file);
        }
    }
    for run in runs {
        render_run(&mut out, run);
    }
    if !drains.is_empty() {
        let _ = writeln!(out, "\n## Relay drain\n");
        let _ = writeln!(
            out,
            "A backlog written straight into `event_outbox` (through task-store, the rows task-api writes), then \
             one task-api in outbox mode started against a 204 sink; the sink checks each partition key's order \
             by the events' `sequence`.\n"
        );
        let _ = writeln!(
            out,
            "| backend | events | users | writing the backlog s | arrived | duplicates | first → last s | \
             events/s | task-api start → last s | out of order | task-api CPU s |"
        );
        let _ = writeln!(
            out,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for d in drains {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {} | {} | {:.2} | {:.0} | {:.2} | {} | {} |",
                d.backend,
                d.events,
                d.users,
                d.insert_seconds,
                d.received,
                d.duplicates,
                d.first_to_last_seconds,
                d.events_per_second(),
                d.start_to_last_seconds,
                d.out_of_order,
                d.cpu_seconds.map_or("-".to_owned(), |c| format!("{c:.2}"))
            );
        }
    }
    out
}

fn render_run(out: &mut String, run: &Run) {
    let _ = writeln!(out, "\n## {}", run.backend);
    for shape in run.shapes() {
        let Some(off) = run.get("off", shape.key) else {
            continue;
        };
        let _ = writeln!(
            out,
            "\n### {}: {} user(s) on {} connections{}\n",
            shape.key,
            shape.users,
            shape.connections,
            if shape.traceparent {
                ", a new `traceparent` on every request"
            } else {
                ", no trace headers"
            }
        );
        let _ = writeln!(
            out,
            "| mode | sidecar | requests ok | errors | req/s | p50 ms | p99 ms | max ms | req/s vs off | \
             p99 − off ms | CPU µs/request | CPU vs off | commit → sidecar p50 / p99 ms |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let off_p99 = off.p(0.99);
        let off_cpu = off.cpu_per_request();
        for mode in &run.modes {
            let Some(result) = mode.shapes.iter().find(|s| s.shape.key == shape.key) else {
                continue;
            };
            let o = &result.outcome;
            let p99_delta = match (result.p(0.99), off_p99) {
                (Some(v), Some(b)) => format!("{:+.2}", (v as f64 - b as f64) / 1e6),
                _ => "-".to_owned(),
            };
            let cpu = result.cpu_per_request();
            let sink = result.sink_latency.as_ref().map_or("-".to_owned(), |h| {
                format!("{} / {}", ms(quantile(h, 0.5)), ms(quantile(h, 0.99)))
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                mode.mode.key,
                sidecar(&mode.mode),
                o.ok,
                o.errors,
                o.throughput(),
                ms(result.p(0.5)),
                ms(result.p(0.99)),
                ms(max(&o.latencies)),
                show_ratio(Some(
                    o.throughput() / off.outcome.throughput().max(f64::MIN_POSITIVE)
                )),
                p99_delta,
                cpu.map_or("-".to_owned(), |c| format!("{c:.0}")),
                show_ratio(match (cpu, off_cpu) {
                    (Some(c), Some(b)) if b > 0.0 => Some(c / b),
                    _ => None,
                }),
                sink,
            );
        }
        let rounds = run
            .modes
            .iter()
            .flat_map(|m| m.shapes.iter().map(|s| s.rounds.len()))
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "\nRequests/s of each round (noise check):\n");
        let header: String = (1..=rounds).map(|n| format!(" round {n} |")).collect();
        let _ = writeln!(out, "| mode |{header}");
        let _ = writeln!(out, "|---|{}", "---:|".repeat(rounds));
        for mode in &run.modes {
            if let Some(result) = mode.shapes.iter().find(|s| s.shape.key == shape.key) {
                let cells: String = result.rounds.iter().map(|r| format!(" {r:.0} |")).collect();
                let _ = writeln!(out, "| {} |{cells}", mode.mode.key);
            }
        }
    }

    let _ = writeln!(
        out,
        "\nEvents (every request is one mutation, which publishes two events; order checked per task by \
         `sequence` where the events carry one):\n"
    );
    let _ = writeln!(
        out,
        "| mode | successful requests incl. warm-up | at the sink | duplicates | order per task | event counters in /metrics |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---|---|");
    for mode in &run.modes {
        let requests: u64 = mode.shapes.iter().map(|s| s.outcome.ok + s.warmup_ok).sum();
        let sink = match (mode.events_at_sink, mode.hanging_connections) {
            (Some(events), _) => format!(
                "{events} events ({:.2} per request)",
                events as f64 / requests.max(1) as f64
            ),
            (None, Some(connections)) => {
                format!("{connections} connections held, nothing answered")
            }
            _ => "-".to_owned(),
        };
        let (checked, out_of_order, unchecked) = mode.order;
        let order = if mode.events_at_sink.is_none() {
            "-".to_owned()
        } else if checked == 0 {
            format!("not checked ({unchecked} events without `sequence`)")
        } else {
            format!("{out_of_order} out of order of {checked}")
        };
        let metrics = if mode.metrics.is_empty() {
            "-".to_owned()
        } else {
            mode.metrics.join("<br>")
        };
        let _ = writeln!(
            out,
            "| {} | {requests} | {sink} | {} | {order} | {metrics} |",
            mode.mode.key, mode.duplicates
        );
    }
    let _ = writeln!(
        out,
        "\nCPU is the task-api process's (user + system, all threads) during the measured rounds of the shape; {}.",
        if run.backend.starts_with("postgresql") {
            "PostgreSQL's own processes are not included"
        } else {
            "SQLite runs inside it"
        }
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::MODES;

    const ONE_USER: Shape = Shape {
        key: "1-user",
        users: 1,
        connections: 8,
        traceparent: false,
    };

    fn shape(latency_ns: u64, ok: u64, cpu: f64) -> ShapeResult {
        let mut outcome = Outcome {
            ok,
            elapsed: Duration::from_secs(1),
            ..Outcome::default()
        };
        for _ in 0..ok {
            outcome.latencies.record(latency_ns).unwrap();
        }
        ShapeResult {
            shape: ONE_USER,
            outcome,
            rounds: vec![ok as f64],
            warmup_ok: 0,
            cpu_seconds: Some(cpu),
            sink_latency: None,
        }
    }

    fn mode(mode: Mode, result: ShapeResult) -> ModeResult {
        ModeResult {
            mode,
            shapes: vec![result],
            events_at_sink: None,
            hanging_connections: None,
            order: (0, 0, 0),
            duplicates: 0,
            metrics: Vec::new(),
        }
    }

    fn verdicts(rows: &[GoalRow], goal: u8) -> Vec<(String, Option<bool>)> {
        rows.iter()
            .filter(|r| r.goal == goal)
            .map(|r| (r.check.clone(), r.met))
            .collect()
    }

    #[test]
    fn goals_are_met_or_missed_by_their_thresholds() {
        // off: 1000 req/s, 2 ms, 1000 µs CPU per request.
        // ff: 980 req/s (98 %), 2.9 ms (+0.9), 1.04× CPU: all met.
        // outbox: 890 req/s (89 %), 4.1 ms (+2.1): both missed.
        let run = Run {
            backend: "sqlite".into(),
            modes: vec![
                mode(MODES[0], shape(2_000_000, 1000, 1.0)),
                mode(MODES[1], shape(2_900_000, 980, 0.98 * 1.04)),
                mode(MODES[2], shape(4_100_000, 890, 0.89)),
            ],
        };
        let drain = DrainResult {
            backend: "sqlite".into(),
            events: 1000,
            users: 10,
            insert_seconds: 0.1,
            received: 1000,
            duplicates: 0,
            first_to_last_seconds: 0.04,
            start_to_last_seconds: 0.3,
            checked: 1000,
            out_of_order: 0,
            cpu_seconds: None,
            complete: true,
        };
        let rows = goals(std::slice::from_ref(&run), std::slice::from_ref(&drain));
        assert_eq!(
            verdicts(&rows, 1),
            vec![
                ("publishing off: p99".to_owned(), Some(true)),
                ("publishing off: max".to_owned(), Some(true)),
            ]
        );
        assert_eq!(
            verdicts(&rows, 2),
            vec![
                ("req/s vs off".to_owned(), Some(true)),
                ("p99 added vs off".to_owned(), Some(true)),
                ("task-api CPU per request vs off".to_owned(), Some(true)),
            ]
        );
        assert_eq!(
            verdicts(&rows, 3),
            vec![
                ("req/s vs off".to_owned(), Some(false)),
                ("p99 added vs off".to_owned(), Some(false)),
            ]
        );
        assert_eq!(
            verdicts(&rows, 4).iter().map(|v| v.1).collect::<Vec<_>>(),
            vec![Some(true), Some(true)],
            "25 000 events/s, in order"
        );

        // A slow drain and a tail on the embedded default miss.
        let slow = DrainResult {
            first_to_last_seconds: 0.1,
            ..drain
        };
        let mut tail = shape(2_000_000, 1000, 1.0);
        tail.outcome.latencies.record(60_000_000).unwrap();
        let spiky = Run {
            backend: "sqlite".into(),
            modes: vec![mode(MODES[0], tail)],
        };
        let rows = goals(&[spiky], &[slow]);
        assert_eq!(
            verdicts(&rows, 1),
            vec![
                ("publishing off: p99".to_owned(), Some(true)),
                ("publishing off: max".to_owned(), Some(false)),
            ]
        );
        assert_eq!(verdicts(&rows, 4)[0].1, Some(false), "10 000 events/s");
    }

    #[test]
    fn the_report_has_a_goal_table_a_table_per_shape_and_the_charts() {
        let ingress = Shape {
            key: "ingress",
            users: 64,
            connections: 64,
            traceparent: true,
        };
        let with_ingress = |m: Mode, latency: u64, ok: u64| {
            let mut result = mode(m, shape(latency, ok, 1.0));
            let mut second = shape(latency * 2, ok / 2, 1.0);
            second.shape = ingress;
            result.shapes.push(second);
            result
        };
        let run = Run {
            backend: "sqlite".into(),
            modes: vec![
                with_ingress(MODES[0], 2_000_000, 1000),
                with_ingress(MODES[1], 2_500_000, 990),
            ],
        };
        let images = [Image {
            title: "sqlite latency".into(),
            file: "report-sqlite-cdf-1-user.svg".into(),
        }];
        let text = render(
            "s",
            &Machine::probe("cmd".into()),
            &[run],
            &[],
            &images,
            "bench/",
        );
        assert!(text.contains("## Goals (issue 17): "), "{text}");
        assert!(
            text.contains("![sqlite latency](bench/report-sqlite-cdf-1-user.svg)"),
            "{text}"
        );
        assert!(
            text.contains("### 1-user: 1 user(s) on 8 connections, no trace headers"),
            "{text}"
        );
        assert!(
            text.contains("### ingress: 64 user(s) on 64 connections, a new `traceparent`"),
            "{text}"
        );
        assert!(
            text.contains("| ff-204 | 204 at once | 990 | 0 | 990 | 2.50 | 2.50 | 2.50 | 0.99 | +0.50 | 1010 | 1.01 | - |"),
            "{text}"
        );
        assert!(
            text.contains("| ff-204 | 204 at once | 495 | 0 | 495 | 5.00 |"),
            "{text}"
        );
    }
}

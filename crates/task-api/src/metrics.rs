//! Prometheus metrics: HTTP request counts and latencies, plus the event dispatcher's counters.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// One value of an extra metric rendered at scrape time (the dispatcher's counters).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraMetric {
    /// Metric name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// The value.
    pub value: f64,
}

/// The service's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// Registers the HTTP metrics in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests handled, by method, route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency, by method and route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route"],
        )
        .expect("static metric definition is valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(latency.clone()))
            .expect("metric registered once");
        Self {
            registry,
            requests,
            latency,
        }
    }

    /// Records one finished request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// The Prometheus text exposition of everything, `extra` appended.
    pub fn render(&self, extra: &[ExtraMetric]) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        for metric in extra {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n",
                name = metric.name,
                help = metric.help,
                kind = metric.kind,
                value = metric.value
            ));
        }
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_extra_metrics() {
        let metrics = Metrics::new();
        metrics.observe("GET", "/api/v1/health", 200, 0.002);
        let text = metrics.render(&[ExtraMetric {
            name: "events_published_total",
            help: "events published",
            kind: "counter",
            value: 3.0,
        }]);
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/api/v1/health",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("http_request_duration_seconds_bucket"));
        assert!(text.contains("# TYPE events_published_total counter\nevents_published_total 3\n"));
    }
}

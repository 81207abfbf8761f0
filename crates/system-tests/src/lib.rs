//! Tests of the whole system against the real local stack (PostgreSQL, Kafka, `daprd`) that `scripts/stack up`
//! starts. The tests live in `tests/stack/` (the
//! stack's smoke test) and `tests/e2e/` (the `task-api` binary end to end, and fault injection); this library holds
//! their shared helpers: endpoint lookup with the skip/CI rule, a minimal client for `daprd`'s HTTP publish API, and
//! a reader of Kafka topics.
//!
//! Each test reads its endpoints from the environment (`scripts/stack env` prints them):
//! `PAKAURA_DAPR_HTTP_ENDPOINT`, `PAKAURA_KAFKA_BOOTSTRAP`, `TEST_DATABASE_URL`. When one is missing the test says
//! `skipped: …` and passes, unless `CI` is set, where it fails.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;

/// The value of the environment variable `var`, which names an endpoint of the local stack.
///
/// When it is missing, prints `skipped: …` and returns `None`; under CI (`CI` set) a missing endpoint is a failure.
#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why on the test output"
)]
pub fn stack_endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "{var} is not set, and CI is: start the stack with `scripts/stack up` and `eval \"$(scripts/stack env)\"`"
            )
        }
        _ => {
            eprintln!(
                "skipped: {var} is not set (run `scripts/stack up` and `eval \"$(scripts/stack env)\"`)"
            );
            None
        }
    }
}

/// A client of `daprd`'s HTTP publish API, written for the tests (no dependency on the crate under test).
#[derive(Clone)]
pub struct RawPublisher {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The content type of a structured CloudEvent in JSON.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

impl RawPublisher {
    /// A publisher for the sidecar at `base` (`http://127.0.0.1:3500`).
    pub fn new(base: &str) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        }
    }

    /// Waits until the sidecar reports its outbound side (components) ready.
    pub async fn wait_until_ready(&self, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}/v1.0/healthz/outbound", self.base);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let request = http::Request::get(&url).body(Full::new(Bytes::new()))?;
            let last =
                match tokio::time::timeout(Duration::from_secs(2), self.client.request(request))
                    .await
                {
                    Ok(Ok(response)) if response.status().is_success() => return Ok(()),
                    Ok(Ok(response)) => format!("status {}", response.status()),
                    Ok(Err(error)) => format!("{error:#}"),
                    Err(_) => "no answer within 2 s".to_owned(),
                };
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "daprd at {} is not ready after {within:?}: {last}",
                    self.base
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Publishes one structured CloudEvent to `pubsub`/`topic` with Kafka partition key `partition_key`, sending
    /// `traceparent` as the W3C trace context header when given. Succeeds only on `204 No Content`.
    pub async fn publish(
        &self,
        pubsub: &str,
        topic: &str,
        partition_key: &str,
        traceparent: Option<&str>,
        event: &serde_json::Value,
    ) -> anyhow::Result<()> {
        ensure!(
            partition_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "partition key {partition_key:?} would need URL encoding"
        );
        let url = format!(
            "{}/v1.0/publish/{pubsub}/{topic}?metadata.partitionKey={partition_key}",
            self.base
        );
        let mut request =
            http::Request::post(&url).header(http::header::CONTENT_TYPE, CLOUDEVENTS_JSON);
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(event)?)))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .with_context(|| format!("POST {url}: no answer within 10 s"))?
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        if status != http::StatusCode::NO_CONTENT {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            bail!(
                "POST {url}: status {status}, body {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }
}

/// One Kafka record as the tests look at it.
pub struct ReadRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Reads given Kafka topics partition by partition, from the offsets noted by [`KafkaReader::mark`].
pub struct KafkaReader {
    partitions: Vec<PartitionClient>,
    start: Vec<i64>,
}

impl KafkaReader {
    /// Connects to `bootstrap` and checks that every topic exists with `partitions` partitions.
    pub async fn connect(
        bootstrap: &str,
        topics: &[&str],
        partitions: usize,
    ) -> anyhow::Result<Self> {
        // rskafka retries forever while no broker answers: bound it.
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            rskafka::client::ClientBuilder::new(vec![bootstrap.to_owned()])
                .client_id("pakaura-system-tests")
                .build(),
        )
        .await
        .with_context(|| format!("no Kafka broker answered at {bootstrap} within 30 s"))?
        .with_context(|| format!("connecting to Kafka at {bootstrap}"))?;
        let listed = client.list_topics().await.context("listing Kafka topics")?;
        let mut clients = Vec::new();
        for &topic in topics {
            let found = listed.iter().find(|t| t.name == topic).with_context(|| {
                format!("Kafka topic {topic} does not exist (scripts/stack up creates it)")
            })?;
            ensure!(
                found.partitions.len() == partitions,
                "Kafka topic {topic} has {} partitions, expected {partitions}",
                found.partitions.len()
            );
            for &partition in &found.partitions {
                clients.push(
                    client
                        .partition_client(topic, partition, UnknownTopicHandling::Retry)
                        .await
                        .with_context(|| format!("a client for {topic}/{partition}"))?,
                );
            }
        }
        Ok(Self {
            partitions: clients,
            start: Vec::new(),
        })
    }

    /// Reconnects to `bootstrap` (after the broker restarted), keeping the offsets noted by
    /// [`KafkaReader::mark`].
    pub async fn reconnect(
        &mut self,
        bootstrap: &str,
        topics: &[&str],
        partitions: usize,
    ) -> anyhow::Result<()> {
        let fresh = Self::connect(bootstrap, topics, partitions).await?;
        let old: BTreeMap<(String, i32), i64> = self
            .partitions
            .iter()
            .zip(&self.start)
            .map(|(p, &start)| ((p.topic().to_owned(), p.partition()), start))
            .collect();
        let mut start = Vec::new();
        for partition in &fresh.partitions {
            let key = (partition.topic().to_owned(), partition.partition());
            start.push(
                *old.get(&key)
                    .with_context(|| format!("{}/{} was not marked", key.0, key.1))?,
            );
        }
        self.partitions = fresh.partitions;
        self.start = start;
        Ok(())
    }

    /// Notes the current end of every partition: [`KafkaReader::read_new`] returns what comes after it.
    pub async fn mark(&mut self) -> anyhow::Result<()> {
        self.start.clear();
        for partition in &self.partitions {
            self.start
                .push(partition.get_offset(OffsetAt::Latest).await?);
        }
        Ok(())
    }

    /// Every record written since [`KafkaReader::mark`], up to the current end of each partition.
    pub async fn read_new(&self) -> anyhow::Result<Vec<ReadRecord>> {
        ensure!(
            self.start.len() == self.partitions.len(),
            "read_new called before mark"
        );
        let mut out = Vec::new();
        for (partition, &start) in self.partitions.iter().zip(&self.start) {
            let end = partition.get_offset(OffsetAt::Latest).await?;
            let mut offset = start;
            while offset < end {
                let (records, _high_watermark) = partition
                    .fetch_records(offset, 1..4_000_000, 500)
                    .await
                    .with_context(|| {
                        format!(
                            "fetching {}/{} at {offset}",
                            partition.topic(),
                            partition.partition()
                        )
                    })?;
                let Some(last) = records.last() else {
                    bail!(
                        "no records at {}/{} offset {offset} although the end is {end}",
                        partition.topic(),
                        partition.partition()
                    );
                };
                offset = last.offset + 1;
                out.extend(records.into_iter().filter(|r| r.offset < end).map(
                    |RecordAndOffset { record, offset }| ReadRecord {
                        topic: partition.topic().to_owned(),
                        partition: partition.partition(),
                        offset,
                        key: record.key,
                        headers: record.headers,
                        value: record.value,
                    },
                ));
            }
        }
        Ok(out)
    }
}

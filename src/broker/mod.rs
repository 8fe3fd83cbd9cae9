//! The RabbitMQ adapter (lapin). The only place that speaks AMQP.
//!
//! A [`Session`] is one connection with one channel in publisher-confirm mode and the topology
//! declared. Every broker wait (connect, declare, publish confirm, close) has a timeout: a lapin
//! publisher was seen hanging forever after its TCP connection dropped.
//!
//! Recovery is ours rather than lapin's auto-recovery: when a session fails (connection lost,
//! heartbeat missed, channel closed by the broker, e.g. `consumer_timeout`) the worker drops it
//! and opens a new one with backoff. One code path covers connection- and channel-level
//! failures alike, and deliveries of the dead session can never be acked on the new one (their
//! delivery tags would name other messages); the broker redelivers them instead, which the
//! runner makes harmless.
//!
//! `AMQP_URL` may name several nodes of one cluster ([`nodes`]): a session opens on one of
//! them, trying the others in turn when it cannot, over TLS for `amqps://` nodes.

mod acks;
pub mod headers;
pub mod message;
pub mod nodes;
pub mod producer;
pub mod topology;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use crate::telemetry::redact;
use crate::tls::TlsFiles;
pub use topology::Topology;

/// Header naming why we dead-lettered a message.
pub const HEADER_REASON: &str = "x-decay-reason";
/// Header with the human detail of a dead letter.
pub const HEADER_DETAIL: &str = "x-decay-detail";
/// Header with the time a message was dead-lettered (RFC 3339).
pub const HEADER_DEAD_AT: &str = "x-decay-dead-lettered-at";
pub use headers::{HEADER_ATTEMPT, HEADER_DELIVERY_COUNT, RetryCounter, RetryCounts};
/// Header of a dead letter: deliveries of the message before it was parked. Our own name,
/// because quorum queues rewrite `x-delivery-count` when the dead-letter queue redelivers.
pub const HEADER_DEAD_DELIVERIES: &str = "x-decay-deliveries";

/// Default AMQP URL: the local broker of the test setup.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default base name of exchanges and queues.
pub const DEFAULT_BASE: &str = "decay.jobs";
/// Default delivery limit.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 10;
/// Default AMQP heartbeat, seconds.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;
/// Default timeout of one broker operation.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`, or several comma-separated
    /// URLs of the nodes of one cluster ([`nodes`]).
    pub url: String,
    /// Extra trusted CAs and the client identity for `amqps://` nodes (none: the bundled
    /// roots, no client certificate).
    pub tls: TlsFiles,
    /// Base name of exchanges and queues.
    pub base: String,
    /// Quorum-queue delivery limit before the broker dead-letters a crash-looping message.
    pub delivery_limit: u32,
    /// AMQP heartbeat in seconds: a dead peer is noticed within about twice this.
    pub heartbeat_secs: u16,
    /// Timeout of every single broker operation.
    pub op_timeout: Duration,
}

impl BrokerConfig {
    pub fn topology(&self) -> Topology {
        Topology::new(&self.base, self.delivery_limit)
    }
}

/// Broker failures. All of them mean "this session is unusable or the operation's effect is
/// unknown": callers reconnect and retry; nothing is acked on an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("broker operation `{0}` timed out after {1:?}")]
    Timeout(&'static str, Duration),
    #[error("broker refused (nack) the publish to `{0}`")]
    Nacked(String),
    #[error("broker returned the publish to `{0}` as unroutable")]
    Unroutable(String),
    #[error("invalid AMQP URL: {0}")]
    Url(String),
    /// TLS to the broker failed on a certificate: ours was refused, or the broker's is not
    /// trusted (or not valid for its host name). Retrying cannot help.
    #[error(
        "TLS to the broker at {node} refused: {reason} (check --amqp-ca-file, the host name in AMQP_URL, and --amqp-client-cert/--amqp-client-key)"
    )]
    Tls { node: String, reason: String },
    /// A queue exists with other arguments than ours (declared by another version of
    /// decay-worker, or with another `--delivery-limit`). Retrying cannot help.
    #[error(
        "the broker refused our topology: {0}. The queue was declared with other arguments (another decay-worker version, or another --delivery-limit); drain and delete it, or use another --queue base"
    )]
    TopologyMismatch(String),
}

impl BrokerError {
    /// True when retrying cannot succeed without an operator changing something.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            BrokerError::Url(_) | BrokerError::TopologyMismatch(_) | BrokerError::Tls { .. }
        )
    }
}

/// Our TLS files in lapin's form: extra CAs are added to the bundled roots.
fn lapin_tls(files: &TlsFiles) -> OwnedTLSConfig {
    OwnedTLSConfig {
        identity: files
            .client_identity()
            .map(|(cert, key)| OwnedIdentity::PKCS8 {
                pem: cert.to_vec(),
                key: key.to_vec(),
            }),
        cert_chain: files.ca_pem().map(str::to_string),
    }
}

/// A connect that failed on a certificate becomes [`BrokerError::Tls`].
fn refused_certificate(e: BrokerError, node: &str) -> BrokerError {
    if let BrokerError::Amqp(err) = &e
        && let Some(reason) = crate::tls::certificate_refusal(err)
    {
        return BrokerError::Tls {
            node: node.to_string(),
            reason,
        };
    }
    e
}

/// A declare refused with 406 PRECONDITION_FAILED is a topology mismatch.
fn declare_error(e: BrokerError) -> BrokerError {
    if let BrokerError::Amqp(err) = &e
        && let lapin::ErrorKind::ProtocolError(amqp) = err.kind()
        && amqp.get_id() == 406
    {
        return BrokerError::TopologyMismatch(amqp.get_message().to_string());
    }
    e
}

/// Run a broker operation with the session timeout.
async fn timed<T, F>(what: &'static str, limit: Duration, f: F) -> Result<T, BrokerError>
where
    F: std::future::Future<Output = lapin::Result<T>>,
{
    match tokio::time::timeout(limit, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(BrokerError::Timeout(what, limit)),
    }
}

/// One connection, one confirm-mode channel, topology declared.
pub struct Session {
    conn: Connection,
    channel: Channel,
    topology: Topology,
    op_timeout: Duration,
    acks: Acks,
    /// The node this session is on ([`nodes::Node::label`]).
    node: String,
}

/// The channel's unsettled delivery tags ([`acks::Ledger`]), and a lock held while ack and
/// nack frames are planned and sent, so that a `multiple` ack can never overtake a single ack
/// it covers.
#[derive(Default, Clone)]
struct Acks {
    ledger: Arc<Mutex<acks::Ledger>>,
    sending: Arc<tokio::sync::Mutex<()>>,
}

impl Acks {
    fn ledger(&self) -> std::sync::MutexGuard<'_, acks::Ledger> {
        // A panic elsewhere while holding it left a consistent set (each step is one call).
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A delivered job message with what the worker needs to decide and to ack.
pub struct JobDelivery {
    inner: Delivery,
}

impl JobDelivery {
    pub fn body(&self) -> &[u8] {
        &self.inner.data
    }
    pub fn delivery_tag(&self) -> u64 {
        self.inner.delivery_tag
    }
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }
    /// Earlier failed deliveries of this message (quorum queues count them), bounded.
    pub fn delivery_count(&self) -> u32 {
        headers::delivery_count(self.inner.properties.headers().as_ref())
    }
    /// How many times we already re-published this message to wait, bounded.
    pub fn attempt(&self) -> u32 {
        self.retry_counts().0.total
    }
    /// Our retry counters, bounded and validated ([`headers`]), with what was wrong with
    /// them (the caller logs it).
    pub fn retry_counts(&self) -> (RetryCounts, Vec<headers::Anomaly>) {
        RetryCounts::read(self.inner.properties.headers().as_ref())
    }
}

/// The stream of deliveries of one consumer.
pub struct JobConsumer {
    consumer: Consumer,
    acks: Acks,
}

impl JobConsumer {
    /// The next delivery; `None` when the consumer or its channel ended (reconnect).
    pub async fn next(&mut self) -> Option<Result<JobDelivery, BrokerError>> {
        let next = self.consumer.next().await?;
        Some(match next {
            Ok(inner) => {
                self.acks.ledger().delivered(inner.delivery_tag);
                Ok(JobDelivery { inner })
            }
            Err(e) => Err(e.into()),
        })
    }

    /// The next delivery if one is already here, without waiting.
    pub fn next_ready(&mut self) -> Option<Option<Result<JobDelivery, BrokerError>>> {
        futures_util::FutureExt::now_or_never(self.next())
    }

    pub fn tag(&self) -> String {
        self.consumer.tag().to_string()
    }
}

impl Session {
    /// Connect, open a confirm-mode channel and declare the topology, on the first node of
    /// `cfg.url` (in [`nodes`]' order) where all of it succeeds. Each failing node is logged
    /// and the next one tried; the error is the last node's, except that a topology mismatch
    /// (the same on every node of a cluster) returns at once, and certificate refusals are
    /// permanent only when every node refused.
    pub async fn open(cfg: &BrokerConfig, name: &str) -> Result<Session, BrokerError> {
        let nodes = nodes::parse(&cfg.url).map_err(BrokerError::Url)?;
        let n = nodes.len();
        // The last certificate refusal, and the last other failure.
        let (mut refusal, mut failure) = (None, None);
        for i in nodes::order(n) {
            let node = &nodes[i];
            match Session::open_on(cfg, node, name).await {
                Ok(session) => {
                    nodes::opened(i, n);
                    tracing::debug!(node = %node.label, "broker session opened");
                    return Ok(session);
                }
                Err(e @ BrokerError::TopologyMismatch(_)) => return Err(e),
                Err(e) => {
                    if n > 1 {
                        tracing::warn!(node = %node.label, error = %describe(&e),
                            "broker node failed; trying the next");
                    }
                    if matches!(e, BrokerError::Tls { .. }) {
                        refusal = Some(e);
                    } else {
                        failure = Some(e);
                    }
                }
            }
        }
        // A node that is merely down may come back: only when every node refused our TLS is
        // the refusal the answer. (The list is never empty: `nodes::parse` says so.)
        Err(failure
            .or(refusal)
            .unwrap_or_else(|| BrokerError::Url("no broker node".into())))
    }

    async fn open_on(
        cfg: &BrokerConfig,
        node: &nodes::Node,
        name: &str,
    ) -> Result<Session, BrokerError> {
        let mut uri = node.uri.clone();
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(cfg.heartbeat_secs);
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(cfg.op_timeout.as_millis() as u64);
        }
        let props = ConnectionProperties::default()
            .with_connection_name(format!("{name} @ {}", node.label).into());
        let runtime = lapin::runtime::default_runtime()?;
        let conn = timed(
            "connect",
            cfg.op_timeout,
            Connection::connect_uri_with_config(uri, props, lapin_tls(&cfg.tls), runtime),
        )
        .await
        .map_err(|e| refused_certificate(e, &node.label))?;
        let channel = timed("channel.open", cfg.op_timeout, conn.create_channel()).await?;
        timed(
            "confirm.select",
            cfg.op_timeout,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let topology = cfg.topology();
        timed("declare", cfg.op_timeout, topology.declare(&channel))
            .await
            .map_err(declare_error)?;
        Ok(Session {
            conn,
            channel,
            topology,
            op_timeout: cfg.op_timeout,
            acks: Acks::default(),
            node: node.label.clone(),
        })
    }

    /// The node this session is on (`amqps://host:port`, no credentials).
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// True while both the connection and the channel are usable.
    pub fn is_open(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }

    /// Publish with a persistent delivery mode and wait for the broker's confirm.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), BrokerError> {
        let confirm = timed(
            "publish",
            self.op_timeout,
            self.channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body,
                props.with_delivery_mode(2),
            ),
        )
        .await?;
        match timed("publish.confirm", self.op_timeout, confirm).await? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(BrokerError::Unroutable(routing_key.to_string())),
            Confirmation::Nack(_) => Err(BrokerError::Nacked(routing_key.to_string())),
            // We always select confirm mode, so this would be a lapin bug: treat as unknown.
            Confirmation::NotRequested => Err(BrokerError::Nacked(routing_key.to_string())),
        }
    }

    /// Publish a job message to the main exchange, confirmed.
    pub async fn publish_job(&self, id: &crate::ids::DecayJobId) -> Result<(), BrokerError> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into());
        self.publish_confirmed(
            self.topology.exchange(),
            self.topology.routing_key(),
            &message::encode_body(id),
            props,
        )
        .await
    }

    /// Publish raw bytes to the main exchange: the requeue of a dead letter, whose body is
    /// republished as it was parked, whatever it is.
    pub async fn publish_raw(&self, body: &[u8], headers: FieldTable) -> Result<(), BrokerError> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        self.publish_confirmed(
            self.topology.exchange(),
            self.topology.routing_key(),
            body,
            props,
        )
        .await
    }

    /// Re-publish a delivery to the retry tier fitting `wait`, with its counters incremented:
    /// the total, and `counter`'s when the reason has a budget; the TTL then routes it back to
    /// the main queue. Returns the tier's delay.
    pub async fn publish_retry(
        &self,
        delivery: &JobDelivery,
        wait: Duration,
        counter: Option<RetryCounter>,
    ) -> Result<Duration, BrokerError> {
        let (tier, delay) = Topology::tier_for(wait);
        let mut headers = carried_headers(&delivery.inner.properties);
        delivery.retry_counts().0.next(counter).write(&mut headers);
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers);
        self.publish_confirmed("", &self.topology.retry_queue(tier), delivery.body(), props)
            .await?;
        Ok(delay)
    }

    /// Park a delivery in the dead-letter queue with its reason, confirmed.
    pub async fn publish_dead(
        &self,
        delivery: &JobDelivery,
        reason: &str,
        detail: &str,
    ) -> Result<(), BrokerError> {
        let mut headers = carried_headers(&delivery.inner.properties);
        headers.insert(HEADER_REASON.into(), long(reason));
        headers.insert(HEADER_DETAIL.into(), long(detail));
        headers.insert(
            HEADER_DEAD_AT.into(),
            long(&chrono::Utc::now().to_rfc3339()),
        );
        // Our own count, not the broker's `x-delivery-count` (whose meaning changed across
        // RabbitMQ versions): this delivery plus every retry re-publish before it.
        headers.insert(
            HEADER_DEAD_DELIVERIES.into(),
            AMQPValue::LongLongInt(i64::from(delivery.attempt()) + 1),
        );
        let mut props = BasicProperties::default().with_headers(headers);
        if let Some(ct) = delivery.inner.properties.content_type() {
            props = props.with_content_type(ct.clone());
        }
        self.publish_confirmed("", &self.topology.dead_queue(), delivery.body(), props)
            .await
    }

    /// Start consuming the main queue with at most `prefetch` unacked deliveries.
    pub async fn consume(&self, prefetch: u16, tag: &str) -> Result<JobConsumer, BrokerError> {
        timed(
            "basic.qos",
            self.op_timeout,
            self.channel.basic_qos(prefetch, BasicQosOptions::default()),
        )
        .await?;
        let consumer = timed(
            "basic.consume",
            self.op_timeout,
            self.channel.basic_consume(
                self.topology.queue().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await?;
        Ok(JobConsumer {
            consumer,
            acks: self.acks.clone(),
        })
    }

    /// Stop a consumer: the broker sends no more deliveries; unacked ones stay ours until
    /// acked or the channel closes (then they are requeued).
    pub async fn cancel(&self, tag: &str) -> Result<(), BrokerError> {
        timed(
            "basic.cancel",
            self.op_timeout,
            self.channel
                .basic_cancel(tag.into(), BasicCancelOptions::default()),
        )
        .await
    }

    /// Ack a delivery (after its job is settled, or after it was re-published).
    pub async fn ack(&self, d: &JobDelivery) -> Result<(), BrokerError> {
        self.ack_all(&[d]).await
    }

    /// Ack a set of deliveries of this session (a batch, after its commit) with as few frames
    /// as is safe: one `multiple` ack where the tags are contiguous among the unsettled ones
    /// and all in the set, single acks for the rest. A tag is taken out of the unsettled set
    /// before its frame is sent, so even when the ack fails (its effect unknown) it is never
    /// nacked or acked again: if the ack was lost, the broker redelivers the message when the
    /// channel closes.
    pub async fn ack_all(&self, ds: &[&JobDelivery]) -> Result<(), BrokerError> {
        let _sending = self.acks.sending.lock().await;
        let tags: Vec<u64> = ds.iter().map(|d| d.delivery_tag()).collect();
        let plan = self.acks.ledger().take_for_ack(&tags);
        let by_tag = |tag: u64| ds.iter().find(|d| d.delivery_tag() == tag);
        if let Some(d) = plan.multiple_upto.and_then(by_tag) {
            let opts = BasicAckOptions { multiple: true };
            timed("basic.ack", self.op_timeout, d.inner.acker.ack(opts)).await?;
        }
        for d in plan.singles.into_iter().filter_map(by_tag) {
            ack(&d.inner, self.op_timeout).await?;
        }
        Ok(())
    }

    /// Give a delivery back to the broker for redelivery, unless it is no longer ours to
    /// settle (an ack of it was already sent, whatever became of it).
    pub async fn requeue(&self, d: &JobDelivery) -> Result<(), BrokerError> {
        let _sending = self.acks.sending.lock().await;
        if !self.acks.ledger().take_for_requeue(d.delivery_tag()) {
            return Ok(());
        }
        requeue(&d.inner, self.op_timeout).await
    }

    /// Messages ready and consumers of a queue (passive declare).
    pub async fn queue_counts(&self, queue: &str) -> Result<(u32, u32), BrokerError> {
        let q = timed(
            "queue.declare(passive)",
            self.op_timeout,
            self.channel.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ),
        )
        .await?;
        Ok((q.message_count(), q.consumer_count()))
    }

    /// Open a channel for taking parked messages off the dead queue (see [`Intake`]).
    pub async fn intake(&self) -> Result<Intake, BrokerError> {
        let channel = timed("channel.open", self.op_timeout, self.conn.create_channel()).await?;
        Ok(Intake {
            channel,
            queue: self.topology.dead_queue(),
            op_timeout: self.op_timeout,
        })
    }

    /// Close channel and connection, bounded by the timeout.
    pub async fn close(self) {
        let _ = timed(
            "channel.close",
            self.op_timeout,
            self.channel.close(200, "bye".into()),
        )
        .await;
        let _ = timed(
            "connection.close",
            self.op_timeout,
            self.conn.close(200, "bye".into()),
        )
        .await;
    }
}

async fn ack(d: &Delivery, limit: Duration) -> Result<(), BrokerError> {
    timed("basic.ack", limit, d.acker.ack(BasicAckOptions::default()))
        .await
        .map(|_| ())
}

async fn requeue(d: &Delivery, limit: Duration) -> Result<(), BrokerError> {
    let opts = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    timed("basic.nack", limit, d.acker.nack(opts))
        .await
        .map(|_| ())
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Headers kept when a message is re-published (ours minus dead-letter ones, and none of the
/// broker's `x-death` bookkeeping, which would only grow).
fn carried_headers(props: &BasicProperties) -> FieldTable {
    let mut out = FieldTable::default();
    if let Some(h) = props.headers() {
        for (k, v) in h {
            if RetryCounts::is_counter_header(k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    headers::string(headers, key)
}

/// The broker's own dead-letter reason (`x-first-death-reason`), e.g. `delivery_limit`.
fn broker_death_reason(headers: Option<&FieldTable>) -> Option<String> {
    header_str(headers, "x-first-death-reason")
}

/// A message parked in the dead queue, read from its headers: ours (`x-decay-*`) when we
/// parked it, the broker's (`x-first-death-*`) when the broker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedLetter {
    pub job_id: Option<crate::ids::DecayJobId>,
    pub reason: String,
    pub detail: String,
    pub dead_lettered_at: Option<chrono::DateTime<chrono::Utc>>,
    pub deliveries: i64,
    /// The body, at most [`message::MAX_MESSAGE_BYTES`] of it.
    pub body: Vec<u8>,
    /// The body's full length.
    pub body_bytes: usize,
}

impl ParkedLetter {
    fn of(d: &Delivery) -> ParkedLetter {
        let headers = d.properties.headers().as_ref();
        let ours = header_str(headers, HEADER_REASON);
        let (reason, detail) = match ours {
            Some(reason) => (
                reason,
                header_str(headers, HEADER_DETAIL).unwrap_or_default(),
            ),
            None => {
                let reason = broker_death_reason(headers).unwrap_or_else(|| "unknown".into());
                let queue = header_str(headers, "x-first-death-queue").unwrap_or_default();
                (
                    reason,
                    format!("dead-lettered by the broker from queue `{queue}`"),
                )
            }
        };
        ParkedLetter {
            job_id: message::parse_body(&d.data).ok(),
            reason: bounded_token(&reason),
            detail: detail.chars().take(MAX_DETAIL_CHARS).collect(),
            dead_lettered_at: header_str(headers, HEADER_DEAD_AT).and_then(|t| {
                chrono::DateTime::parse_from_rfc3339(&t)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            }),
            deliveries: headers::bounded_int(headers, HEADER_DEAD_DELIVERIES)
                .or_else(|| headers::bounded_int(headers, HEADER_DELIVERY_COUNT).map(|n| n + 1))
                .unwrap_or(1)
                .clamp(0, i64::from(i32::MAX)),
            body: d.data[..d.data.len().min(message::MAX_MESSAGE_BYTES)].to_vec(),
            body_bytes: d.data.len(),
        }
    }
}

/// Longest detail kept with a dead letter (headers come from outside).
const MAX_DETAIL_CHARS: usize = 1000;

/// A reason token as the `dead_letters` table accepts it: lowercase letters, digits and `_`,
/// starting with a letter, at most 64 characters; anything else becomes `unknown`.
fn bounded_token(reason: &str) -> String {
    let ok = reason.len() <= 64
        && reason.starts_with(|c: char| c.is_ascii_lowercase())
        && reason
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        reason.to_string()
    } else {
        "unknown".to_string()
    }
}

/// A channel that takes parked messages off the dead queue one at a time with `basic.get`.
/// Each message stays unacked until [`Intake::ack`] (after its row is committed) or
/// [`Intake::requeue`] (the commit failed), so a crash in between only redelivers it.
pub struct Intake {
    channel: Channel,
    queue: String,
    op_timeout: Duration,
}

/// A message taken by an [`Intake`], not yet acked.
pub struct ParkedMessage {
    delivery: Delivery,
    pub letter: ParkedLetter,
}

impl Intake {
    /// The next parked message, or `None` when the queue is empty.
    pub async fn next(&self) -> Result<Option<ParkedMessage>, BrokerError> {
        let got = timed(
            "basic.get",
            self.op_timeout,
            self.channel
                .basic_get(self.queue.as_str().into(), BasicGetOptions::default()),
        )
        .await?;
        Ok(got.map(|m| ParkedMessage {
            letter: ParkedLetter::of(&m.delivery),
            delivery: m.delivery,
        }))
    }

    /// The message is recorded: remove it from the queue.
    pub async fn ack(&self, m: &ParkedMessage) -> Result<(), BrokerError> {
        ack(&m.delivery, self.op_timeout).await
    }

    /// Recording failed: hand the message back to the queue.
    pub async fn requeue(&self, m: &ParkedMessage) -> Result<(), BrokerError> {
        requeue(&m.delivery, self.op_timeout).await
    }

    /// Close the channel; anything still unacked goes back to the queue.
    pub async fn close(self) {
        let _ = timed(
            "channel.close",
            self.op_timeout,
            self.channel.close(200, "intake done".into()),
        )
        .await;
    }
}

/// Wrap an ack/nack failure for logs.
pub fn describe(e: &BrokerError) -> String {
    redact(&e.to_string())
}

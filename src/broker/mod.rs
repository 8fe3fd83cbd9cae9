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

pub mod message;
pub mod producer;
pub mod topology;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use crate::telemetry::redact;
pub use topology::Topology;

/// Header naming why we dead-lettered a message.
pub const HEADER_REASON: &str = "x-decay-reason";
/// Header with the human detail of a dead letter.
pub const HEADER_DETAIL: &str = "x-decay-detail";
/// Header with the time a message was dead-lettered (RFC 3339).
pub const HEADER_DEAD_AT: &str = "x-decay-dead-lettered-at";
/// Header counting how many times we re-published a message to wait (retry tiers).
pub const HEADER_ATTEMPT: &str = "x-decay-attempt";
/// Header RabbitMQ quorum queues set with the number of earlier failed deliveries.
pub const HEADER_DELIVERY_COUNT: &str = "x-delivery-count";
/// Header of a dead letter: deliveries of the message before it was parked. Our own name,
/// because quorum queues rewrite `x-delivery-count` when the dead-letter queue redelivers.
pub const HEADER_DEAD_DELIVERIES: &str = "x-decay-deliveries";

/// Broker settings.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// AMQP URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
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
    /// Earlier failed deliveries of this message (quorum queues count them).
    pub fn delivery_count(&self) -> i64 {
        header_int(
            self.inner.properties.headers().as_ref(),
            HEADER_DELIVERY_COUNT,
        )
        .unwrap_or(0)
    }
    /// How many times we already re-published this message to wait.
    pub fn attempt(&self) -> u32 {
        header_int(self.inner.properties.headers().as_ref(), HEADER_ATTEMPT)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    }
}

/// The stream of deliveries of one consumer.
pub struct JobConsumer {
    consumer: Consumer,
}

impl JobConsumer {
    /// The next delivery; `None` when the consumer or its channel ended (reconnect).
    pub async fn next(&mut self) -> Option<Result<JobDelivery, BrokerError>> {
        self.consumer.next().await.map(|r| {
            r.map(|inner| JobDelivery { inner })
                .map_err(BrokerError::from)
        })
    }

    pub fn tag(&self) -> String {
        self.consumer.tag().to_string()
    }
}

/// A message in the dead-letter queue, as `dead-letters list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub job_id: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
    pub dead_lettered_at: Option<String>,
    pub delivery_count: i64,
    pub body: String,
}

impl Session {
    /// Connect, open a confirm-mode channel and declare the topology.
    pub async fn open(cfg: &BrokerConfig, name: &str) -> Result<Session, BrokerError> {
        let mut uri: AMQPUri = cfg
            .url
            .parse()
            .map_err(|e: String| BrokerError::Url(redact(&e)))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(cfg.heartbeat_secs);
        }
        if uri.query.connection_timeout.is_none() {
            uri.query.connection_timeout = Some(cfg.op_timeout.as_millis() as u64);
        }
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let conn = timed(
            "connect",
            cfg.op_timeout,
            Connection::connect_uri(uri, props),
        )
        .await?;
        let channel = timed("channel.open", cfg.op_timeout, conn.create_channel()).await?;
        timed(
            "confirm.select",
            cfg.op_timeout,
            channel.confirm_select(ConfirmSelectOptions::default()),
        )
        .await?;
        let topology = cfg.topology();
        timed("declare", cfg.op_timeout, topology.declare(&channel)).await?;
        Ok(Session {
            conn,
            channel,
            topology,
            op_timeout: cfg.op_timeout,
        })
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

    /// Publish raw bytes to the main exchange (tests, requeue of dead letters).
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

    /// Re-publish a delivery to the retry tier fitting `wait`, with its attempt counter
    /// incremented; the TTL then routes it back to the main queue. Returns the tier's delay.
    pub async fn publish_retry(
        &self,
        delivery: &JobDelivery,
        wait: Duration,
    ) -> Result<Duration, BrokerError> {
        let (tier, delay) = Topology::tier_for(wait);
        let mut headers = carried_headers(&delivery.inner.properties);
        headers.insert(
            HEADER_ATTEMPT.into(),
            AMQPValue::LongLongInt(i64::from(delivery.attempt()) + 1),
        );
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
        headers.insert(
            HEADER_DEAD_DELIVERIES.into(),
            AMQPValue::LongLongInt(delivery.delivery_count() + 1),
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
        Ok(JobConsumer { consumer })
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
        timed(
            "basic.ack",
            self.op_timeout,
            d.inner.acker.ack(BasicAckOptions::default()),
        )
        .await
        .map(|_| ())
    }

    /// Give a delivery back to the broker for redelivery.
    pub async fn requeue(&self, d: &JobDelivery) -> Result<(), BrokerError> {
        timed(
            "basic.nack",
            self.op_timeout,
            d.inner.acker.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            }),
        )
        .await
        .map(|_| ())
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

    /// Read every message of the dead-letter queue without removing any: each is held unacked
    /// until the end, then the channel is closed so the broker requeues them all in order.
    pub async fn peek_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BrokerError> {
        let ch = timed("channel.open", self.op_timeout, self.conn.create_channel()).await?;
        let mut out = Vec::new();
        let queue = self.topology.dead_queue();
        while out.len() < limit {
            let got = timed(
                "basic.get",
                self.op_timeout,
                ch.basic_get(queue.as_str().into(), BasicGetOptions::default()),
            )
            .await?;
            let Some(msg) = got else { break };
            out.push(dead_letter_of(&msg.delivery));
        }
        let _ = timed(
            "channel.close",
            self.op_timeout,
            ch.close(200, "peek done".into()),
        )
        .await;
        Ok(out)
    }

    /// Move dead letters back to the main queue: each is re-published (confirmed, reason
    /// headers dropped, attempt counter reset) **before** it is acked, so an interruption can
    /// duplicate a message (harmless) but never lose one. `select` picks which to move by job
    /// id; the others are left in place. Returns the ids moved.
    pub async fn requeue_dead_letters(
        &self,
        select: &dyn Fn(&DeadLetter) -> bool,
        limit: usize,
    ) -> Result<Vec<String>, BrokerError> {
        let ch = timed("channel.open", self.op_timeout, self.conn.create_channel()).await?;
        let queue = self.topology.dead_queue();
        let (total, _) = self.queue_counts(&queue).await?;
        let mut moved = Vec::new();
        let mut seen = 0u32;
        while seen < total && moved.len() < limit {
            let got = timed(
                "basic.get",
                self.op_timeout,
                ch.basic_get(queue.as_str().into(), BasicGetOptions::default()),
            )
            .await?;
            let Some(msg) = got else { break };
            seen += 1;
            let letter = dead_letter_of(&msg.delivery);
            if !select(&letter) {
                continue; // stays unacked; requeued in place when the channel closes
            }
            self.publish_raw(&msg.delivery.data, FieldTable::default())
                .await?;
            timed(
                "basic.ack",
                self.op_timeout,
                msg.delivery.acker.ack(BasicAckOptions::default()),
            )
            .await?;
            moved.push(letter.job_id.unwrap_or(letter.body));
        }
        let _ = timed(
            "channel.close",
            self.op_timeout,
            ch.close(200, "requeue done".into()),
        )
        .await;
        Ok(moved)
    }

    /// Delete this session's topology (tests).
    pub async fn delete_topology(&self) -> Result<(), BrokerError> {
        timed(
            "delete",
            self.op_timeout,
            self.topology.delete(&self.channel),
        )
        .await
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

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Headers kept when a message is re-published (ours minus dead-letter ones, and none of the
/// broker's `x-death` bookkeeping, which would only grow).
fn carried_headers(props: &BasicProperties) -> FieldTable {
    let mut out = FieldTable::default();
    if let Some(h) = props.headers() {
        for (k, v) in h {
            if k.as_str() == HEADER_ATTEMPT {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

fn header_int(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        _ => None,
    }
}

fn header_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The broker's own dead-letter reason (`x-first-death-reason`), e.g. `delivery_limit`.
fn broker_death_reason(headers: Option<&FieldTable>) -> Option<String> {
    header_str(headers, "x-first-death-reason")
}

/// Deliveries of a message the broker dead-lettered itself: its `x-death` count.
fn broker_death_count(headers: Option<&FieldTable>) -> Option<i64> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    deaths.as_slice().iter().find_map(|d| match d {
        AMQPValue::FieldTable(t) => header_int(Some(t), "count"),
        _ => None,
    })
}

fn dead_letter_of(d: &Delivery) -> DeadLetter {
    let headers = d.properties.headers().as_ref();
    DeadLetter {
        job_id: message::parse_body(&d.data).ok().map(|id| id.to_string()),
        reason: header_str(headers, HEADER_REASON)
            .or_else(|| broker_death_reason(headers))
            .unwrap_or_else(|| "unknown".into()),
        detail: header_str(headers, HEADER_DETAIL),
        dead_lettered_at: header_str(headers, HEADER_DEAD_AT),
        delivery_count: header_int(headers, HEADER_DEAD_DELIVERIES)
            .or_else(|| broker_death_count(headers))
            .unwrap_or(0),
        body: String::from_utf8_lossy(&d.data).chars().take(200).collect(),
    }
}

/// Wrap an ack/nack failure for logs.
pub fn describe(e: &BrokerError) -> String {
    redact(&e.to_string())
}

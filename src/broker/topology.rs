//! Exchanges and queues, all named from one base (default `decay.jobs`) so tests and tenants
//! isolate by choosing another base. Declared idempotently by every worker and producer.
//!
//! ```text
//! producer ─► exchange <base> (direct) ──<base>──► quorum queue <base> ─► workers
//!                 ▲                                   │ x-delivery-limit exceeded
//!                 │ TTL expiry (dead-letter)           ▼
//!   queue <base>.retry.<tier>  ◄── worker: wait   exchange <base>.dlx ──► queue <base>.dead
//!                                  worker: malformed / not found ───────► queue <base>.dead
//! ```
//!
//! One retry queue per delay, because per-queue TTL only expires messages at the queue head:
//! mixing delays in one queue would hold short waits behind long ones.
//!
//! Every queue is a quorum queue (replicated in a cluster, so a node loss loses no waiting
//! message) that states its delivery limit explicitly: since RabbitMQ 4.0 a quorum queue
//! without one gets a default of 20, and a message past it is dropped when the queue has no
//! dead-letter target. The main queue's limit is the operator's (`--delivery-limit`); the
//! retry and dead queues are never consumed in a loop, so theirs is [`PARKED_DELIVERY_LIMIT`].
//! Queues that dead-letter (main: past its limit; retry tiers: on TTL expiry) do so
//! at-least-once: the broker keeps the message until the target queue has confirmed it.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Retry tiers: (name suffix, delay). Waits pick the longest tier not above the wait.
pub const RETRY_TIERS: [(&str, Duration); 5] = [
    ("1s", Duration::from_secs(1)),
    ("10s", Duration::from_secs(10)),
    ("1m", Duration::from_secs(60)),
    ("10m", Duration::from_secs(600)),
    ("1h", Duration::from_secs(3600)),
];

/// The delivery limit of queues no consumer loops on (retry tiers, the dead queue). It is
/// explicit because brokers differ in their default (none before 4.0, 20 since) and drop what
/// passes it; it is large because a message there is only ever handed back when a dead-letter
/// intake fails before its database commit. 3.x refuses negative values, so "unlimited" (-1,
/// 4.x only) cannot be used on every version.
pub const PARKED_DELIVERY_LIMIT: i64 = 1_000_000;

/// A queue to declare: its name, arguments, and the (exchange, routing key) it is bound with.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    pub args: FieldTable,
    pub bind: Option<(String, String)>,
}

/// All names derived from the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    base: String,
    delivery_limit: u32,
}

impl Topology {
    pub fn new(base: &str, delivery_limit: u32) -> Topology {
        Topology {
            base: base.to_string(),
            delivery_limit,
        }
    }

    /// The direct exchange producers publish to (routing key = [`Topology::routing_key`]).
    pub fn exchange(&self) -> &str {
        &self.base
    }

    /// The routing key of job messages.
    pub fn routing_key(&self) -> &str {
        &self.base
    }

    /// The main quorum queue.
    pub fn queue(&self) -> &str {
        &self.base
    }

    /// Dead-letter exchange of the main queue (broker-side dead letters, e.g. delivery limit).
    pub fn dlx(&self) -> String {
        format!("{}.dlx", self.base)
    }

    /// The parking queue for dead letters.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.base)
    }

    /// The retry queue of a tier.
    pub fn retry_queue(&self, tier: &str) -> String {
        format!("{}.retry.{tier}", self.base)
    }

    /// The tier for a wait: the longest delay not above `wait`, at least the shortest tier.
    /// A wait longer than the longest tier cycles through it again.
    pub fn tier_for(wait: Duration) -> (&'static str, Duration) {
        let mut chosen = RETRY_TIERS[0];
        for t in RETRY_TIERS {
            if t.1 <= wait {
                chosen = t;
            }
        }
        chosen
    }

    /// Declare everything (idempotent).
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            self.exchange().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
        ch.exchange_declare(
            self.dlx().into(),
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;

        let qopts = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for q in self.queues() {
            ch.queue_declare(q.name.as_str().into(), qopts, q.args)
                .await?;
            if let Some((exchange, key)) = q.bind {
                ch.queue_bind(
                    q.name.as_str().into(),
                    exchange.as_str().into(),
                    key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Every queue of the topology with its arguments and binding, main queue first.
    pub fn queues(&self) -> Vec<QueueSpec> {
        let mut main = quorum(i64::from(self.delivery_limit));
        dead_letter_to(&mut main, &self.dlx(), None);
        let mut out = vec![
            QueueSpec {
                name: self.queue().to_string(),
                args: main,
                bind: Some((self.exchange().to_string(), self.routing_key().to_string())),
            },
            QueueSpec {
                name: self.dead_queue(),
                args: quorum(PARKED_DELIVERY_LIMIT),
                bind: Some((self.dlx(), self.routing_key().to_string())),
            },
        ];
        for (tier, delay) in RETRY_TIERS {
            let mut args = quorum(PARKED_DELIVERY_LIMIT);
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            dead_letter_to(&mut args, self.exchange(), Some(self.routing_key()));
            out.push(QueueSpec {
                name: self.retry_queue(tier),
                args,
                bind: None,
            });
        }
        out
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Arguments of a quorum queue with an explicit delivery limit.
fn quorum(delivery_limit: i64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("quorum"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(delivery_limit),
    );
    args
}

/// Dead-letter to `exchange` (with `routing_key`, else the message's own), at-least-once:
/// RabbitMQ (3.10+) then keeps the message until the target queue confirmed it, which needs
/// the `reject-publish` overflow mode (no length limit is set, so it never rejects).
fn dead_letter_to(args: &mut FieldTable, exchange: &str, routing_key: Option<&str>) {
    args.insert("x-dead-letter-exchange".into(), string(exchange));
    if let Some(key) = routing_key {
        args.insert("x-dead-letter-routing-key".into(), string(key));
    }
    args.insert("x-dead-letter-strategy".into(), string("at-least-once"));
    args.insert("x-overflow".into(), string("reject-publish"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_base() {
        let t = Topology::new("t1", 10);
        assert_eq!(t.exchange(), "t1");
        assert_eq!(t.queue(), "t1");
        assert_eq!(t.dlx(), "t1.dlx");
        assert_eq!(t.dead_queue(), "t1.dead");
        assert_eq!(t.retry_queue("10s"), "t1.retry.10s");
    }

    #[test]
    fn every_queue_is_quorum_with_an_explicit_delivery_limit() {
        let t = Topology::new("t1", 7);
        let queues = t.queues();
        assert_eq!(queues.len(), 2 + RETRY_TIERS.len());
        for q in &queues {
            let args = q.args.inner();
            assert_eq!(
                args.get("x-queue-type"),
                Some(&string("quorum")),
                "{}",
                q.name
            );
            let limit = match args.get("x-delivery-limit") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                other => panic!("{}: x-delivery-limit {other:?}", q.name),
            };
            let expected = if q.name == "t1" {
                7
            } else {
                PARKED_DELIVERY_LIMIT
            };
            assert_eq!(limit, expected, "{}", q.name);
        }
        // Queues that dead-letter do it at-least-once.
        for q in queues.iter().filter(|q| q.name != "t1.dead") {
            let args = q.args.inner();
            assert_eq!(
                args.get("x-dead-letter-strategy"),
                Some(&string("at-least-once")),
                "{}",
                q.name
            );
            assert_eq!(args.get("x-overflow"), Some(&string("reject-publish")));
        }
        assert!(
            !queues[1]
                .args
                .inner()
                .contains_key("x-dead-letter-exchange")
        );
    }

    #[test]
    fn tier_choice() {
        assert_eq!(Topology::tier_for(Duration::from_millis(10)).0, "1s");
        assert_eq!(Topology::tier_for(Duration::from_secs(3)).0, "1s");
        assert_eq!(Topology::tier_for(Duration::from_secs(10)).0, "10s");
        assert_eq!(Topology::tier_for(Duration::from_secs(59)).0, "10s");
        assert_eq!(Topology::tier_for(Duration::from_secs(700)).0, "10m");
        assert_eq!(Topology::tier_for(Duration::from_secs(86400)).0, "1h");
    }
}

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

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
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
        let mut main = FieldTable::default();
        main.insert("x-queue-type".into(), string("quorum"));
        main.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        main.insert("x-dead-letter-exchange".into(), string(&self.dlx()));
        ch.queue_declare(self.queue().into(), qopts, main).await?;
        ch.queue_bind(
            self.queue().into(),
            self.exchange().into(),
            self.routing_key().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

        let mut dead = FieldTable::default();
        dead.insert("x-queue-type".into(), string("quorum"));
        ch.queue_declare(self.dead_queue().into(), qopts, dead)
            .await?;
        ch.queue_bind(
            self.dead_queue().into(),
            self.dlx().into(),
            self.routing_key().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

        for (tier, delay) in RETRY_TIERS {
            let mut args = FieldTable::default();
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            args.insert("x-dead-letter-exchange".into(), string(self.exchange()));
            args.insert(
                "x-dead-letter-routing-key".into(),
                string(self.routing_key()),
            );
            ch.queue_declare(self.retry_queue(tier).into(), qopts, args)
                .await?;
        }
        Ok(())
    }

    /// Delete every queue and exchange of this base (tests clean up with this).
    pub async fn delete(&self, ch: &Channel) -> lapin::Result<()> {
        let mut queues = vec![self.queue().to_string(), self.dead_queue()];
        queues.extend(RETRY_TIERS.iter().map(|(t, _)| self.retry_queue(t)));
        for q in queues {
            ch.queue_delete(q.into(), QueueDeleteOptions::default())
                .await?;
        }
        for x in [self.exchange().to_string(), self.dlx()] {
            ch.exchange_delete(x.into(), Default::default()).await?;
        }
        Ok(())
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
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
    fn tier_choice() {
        assert_eq!(Topology::tier_for(Duration::from_millis(10)).0, "1s");
        assert_eq!(Topology::tier_for(Duration::from_secs(3)).0, "1s");
        assert_eq!(Topology::tier_for(Duration::from_secs(10)).0, "10s");
        assert_eq!(Topology::tier_for(Duration::from_secs(59)).0, "10s");
        assert_eq!(Topology::tier_for(Duration::from_secs(700)).0, "10m");
        assert_eq!(Topology::tier_for(Duration::from_secs(86400)).0, "1h");
    }
}

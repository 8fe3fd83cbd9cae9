//! Broker: a raw lapin channel for pipelined, confirmed publishing.

use crate::*;

pub(crate) struct Publisher {
    pub(crate) conn: Connection,
    pub(crate) channel: Channel,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
}

impl Publisher {
    pub(crate) async fn open(url: &str, exchange: &str, routing_key: &str) -> Result<Publisher> {
        let props =
            ConnectionProperties::default().with_connection_name("decay-bench publisher".into());
        let conn = tokio::time::timeout(Duration::from_secs(15), Connection::connect(url, props))
            .await
            .context("connecting to RabbitMQ timed out")?
            .with_context(|| format!("connecting to RabbitMQ at {}", redact(url)))?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Publisher {
            conn,
            channel,
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        })
    }

    /// Send one job message exactly as `Session::publish_job` does (persistent, mandatory,
    /// JSON body, message id), without waiting for its confirm.
    pub(crate) async fn send(&self, id: &DecayJobId) -> Result<PublisherConfirm> {
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_message_id(id.to_string().into())
            .with_delivery_mode(2);
        Ok(self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &encode_body(id),
                props,
            )
            .await?)
    }

    pub(crate) async fn settle(confirms: Vec<PublisherConfirm>) -> Result<()> {
        for c in confirms {
            match tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .context("publisher confirm timed out")??
            {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => bail!("a publish was returned as unroutable"),
                Confirmation::Nack(_) => bail!("the broker nacked a publish"),
                Confirmation::NotRequested => bail!("confirms are not enabled on the channel"),
            }
        }
        Ok(())
    }

    /// Publish all ids, `batch` in flight, every one confirmed.
    pub(crate) async fn publish_all(&self, ids: &[DecayJobId], batch: usize) -> Result<()> {
        for chunk in ids.chunks(batch.max(1)) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for id in chunk {
                confirms.push(self.send(id).await?);
            }
            Publisher::settle(confirms).await?;
        }
        Ok(())
    }

    pub(crate) async fn close(self) {
        let _ = self.channel.close(200, "bye".into()).await;
        let _ = self.conn.close(200, "bye".into()).await;
    }
}

//! The scrape: [`Metrics`] in the Prometheus text format, written by the
//! `prometheus-client` crate (names, help, escaping, histogram buckets),
//! from a collector that reads the counts at each scrape.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::messages::RosterGauge;

use super::{
    BATCH_BOUNDS_NANOS, BATCH_SAMPLE_EVERY, ConnectionRefusal, CutOff, LoginRefusal, Metrics,
    TRANSPORTS,
};

/// The `Content-Type` of what [`render`] writes.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics of a server as a scrape (Prometheus text format 0.0.4),
/// with the number online from the broker's `roster`.
pub fn render(metrics: &Arc<Metrics>, roster: &RosterGauge) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        metrics: metrics.clone(),
        online: roster.online(),
    }));
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// What one scrape writes: the counts, and the roster's size read once.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    online: usize,
}

impl Collector for Scrape {
    fn encode(&self, mut out: DescriptorEncoder<'_>) -> fmt::Result {
        let totals = self.metrics.totals();
        let by_transport = |values: [u64; 3]| {
            TRANSPORTS
                .iter()
                .map(|t| t.name())
                .zip(values)
                .collect::<Vec<_>>()
        };
        let broker = &self.metrics.broker;
        family(
            &mut out,
            MetricType::Gauge,
            "achat_connections_open",
            "Connections open (sessions), by transport.",
            "transport",
            &by_transport(totals.open),
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_connections",
            "Connections admitted (sessions started), by transport.",
            "transport",
            &by_transport(totals.opened),
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_connections_refused",
            "Connections turned away before they became sessions, by reason.",
            "reason",
            &labelled(&ConnectionRefusal::ALL.map(|r| r.label()), totals.refused),
        )?;
        single(
            &mut out,
            MetricType::Gauge,
            "achat_users_logged_in",
            "Users logged in on this node.",
            broker.logged_in.get(),
        )?;
        single(
            &mut out,
            MetricType::Gauge,
            "achat_users_online",
            "Users online in all: what /who lists (every node's, in cluster mode).",
            self.online as u64,
        )?;
        single(
            &mut out,
            MetricType::Counter,
            "achat_logins",
            "Logins that succeeded.",
            totals.logins,
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_logins_refused",
            "Logins refused with an error line, by reason.",
            "reason",
            &labelled(&LoginRefusal::ALL.map(|r| r.label()), totals.logins_refused),
        )?;
        single(
            &mut out,
            MetricType::Counter,
            "achat_login_timeouts",
            "Connections closed for not logging in within --login-timeout.",
            totals.login_timeouts,
        )?;
        single(
            &mut out,
            MetricType::Counter,
            "achat_lines_routed",
            "Chat lines routed by the broker (not commands).",
            broker.lines_routed.get(),
        )?;
        single(
            &mut out,
            MetricType::Counter,
            "achat_deliveries",
            "Chat lines queued for a recipient on this node (a line to three counts three).",
            broker.deliveries.get(),
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_read_bytes",
            "Protocol bytes read from clients (inside TLS, out of WebSocket frames), by transport.",
            "transport",
            &by_transport(totals.bytes_read),
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_written_bytes",
            "Protocol bytes written to clients (inside TLS, out of WebSocket frames), by transport.",
            "transport",
            &by_transport(totals.bytes_written),
        )?;
        family(
            &mut out,
            MetricType::Counter,
            "achat_slow_consumers_cut_off",
            "Connections cut off as slow consumers, by reason.",
            "reason",
            &labelled(&CutOff::ALL.map(|r| r.label()), totals.cut_off),
        )?;
        let (buckets, sum_nanos) = broker.batch_time.snapshot();
        let bounds = BATCH_BOUNDS_NANOS
            .iter()
            .map(|&nanos| nanos as f64 / 1e9)
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(buckets).collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let help = format!(
            "The broker's time to route one batch (the requests of one read), \
             one batch in {BATCH_SAMPLE_EVERY} timed."
        );
        out.encode_descriptor(
            "achat_broker_batch_seconds",
            &help,
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum_nanos as f64 / 1e9, count, &buckets, None)
    }
}

/// Pairs labels with their values.
fn labelled<const N: usize>(
    labels: &[&'static str; N],
    values: [u64; N],
) -> Vec<(&'static str, u64)> {
    labels.iter().copied().zip(values).collect()
}

/// One metric without labels.
fn single(
    out: &mut DescriptorEncoder<'_>,
    kind: MetricType,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, kind)?;
    write_value(&mut metric, kind, value)
}

/// One metric with one label, a sample per value of it.
fn family(
    out: &mut DescriptorEncoder<'_>,
    kind: MetricType,
    name: &str,
    help: &str,
    label: &'static str,
    samples: &[(&'static str, u64)],
) -> fmt::Result {
    let mut metric = out.encode_descriptor(name, help, None, kind)?;
    for &(value_label, value) in samples {
        let labels = [(label, value_label)];
        let mut sample = metric.encode_family(&labels)?;
        write_value(&mut sample, kind, value)?;
    }
    Ok(())
}

fn write_value(
    metric: &mut prometheus_client::encoding::MetricEncoder<'_>,
    kind: MetricType,
    value: u64,
) -> fmt::Result {
    match kind {
        MetricType::Counter => metric.encode_counter::<NoLabelSet, _, u64>(&value, None),
        _ => metric.encode_gauge(&value),
    }
}

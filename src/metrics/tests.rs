use std::sync::Arc;
use std::time::Duration;

use super::*;

#[test]
fn a_threads_shard_is_its_own_and_the_scrape_sums_them_all() {
    let metrics = Metrics::new();
    let here = metrics.shard();
    assert!(Arc::ptr_eq(&here, &metrics.shard()), "one shard per thread");
    here.opened.of(Transport::Tcp).add(2);
    here.bytes_read.of(Transport::WebSocket).add(10);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let metrics = metrics.clone();
            std::thread::spawn(move || {
                let shard = metrics.shard();
                for _ in 0..1000 {
                    shard.opened.of(Transport::Tcp).add(1);
                    shard.bytes_read.of(Transport::WebSocket).add(3);
                }
                shard.closed.of(Transport::Tcp).add(1000);
                shard.login_refused(LoginRefusal::Taken);
                shard.cut_off(CutOff::Stalled);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let totals = metrics.totals();
    assert_eq!(totals.opened, [3002, 0, 0]);
    assert_eq!(totals.open, [2, 0, 0]);
    assert_eq!(totals.bytes_read, [0, 0, 9010]);
    assert_eq!(totals.logins_refused[LoginRefusal::Taken as usize], 3);
    assert_eq!(totals.cut_off, [0, 3]);
}

#[test]
fn two_servers_in_one_process_count_apart() {
    let (one, two) = (Metrics::new(), Metrics::new());
    one.shard().logins.add(1);
    two.shard().logins.add(5);
    assert_eq!(one.totals().logins, 1);
    assert_eq!(two.totals().logins, 5);
    // A server that is gone leaves no shard behind in the thread's list
    // once the thread counts for another.
    drop(one);
    let three = Metrics::new();
    three.shard();
    SHARDS.with_borrow(|mine| assert_eq!(mine.len(), 2));
}

#[test]
fn durations_fall_in_the_bucket_of_the_first_bound_they_do_not_pass() {
    let histogram = Histogram::default();
    histogram.observe(Duration::from_nanos(1_000)); // at the first bound
    histogram.observe(Duration::from_nanos(1_001));
    histogram.observe(Duration::from_secs(1)); // past the last
    let (buckets, sum) = histogram.snapshot();
    assert_eq!(buckets[0], 1);
    assert_eq!(buckets[1], 1);
    assert_eq!(buckets[BATCH_BOUNDS_NANOS.len()], 1);
    assert_eq!(buckets.iter().sum::<u64>(), 3);
    assert_eq!(sum, 1_000_002_001);
}

#[test]
fn the_first_batch_is_timed_then_one_in_sixteen() {
    let mut sampler = BatchSampler::default();
    let timed: Vec<bool> = (0..33).map(|_| sampler.start().is_some()).collect();
    let at: Vec<usize> = (0..33).filter(|&i| timed[i]).collect();
    assert_eq!(at, [0, 16, 32]);
}

#[test]
fn the_scrape_is_prometheus_text_with_every_metric() {
    let metrics = Metrics::new();
    let shard = metrics.shard();
    shard.opened.of(Transport::Tls).add(4);
    shard.closed.of(Transport::Tls).add(1);
    shard.logins.add(3);
    metrics.broker.deliveries.add(7);
    metrics.broker.batch_time.observe(Duration::from_micros(3));
    metrics.refused(ConnectionRefusal::Full);
    let roster = crate::messages::RosterGauge::default();
    roster.set_online(2);
    let text = render(&metrics, &roster).unwrap();
    for line in [
        "# TYPE achat_connections_open gauge",
        "achat_connections_open{transport=\"tls\"} 3",
        "achat_connections_total{transport=\"tls\"} 4",
        "# TYPE achat_logins_total counter",
        "achat_logins_total 3",
        "achat_users_online 2",
        "achat_deliveries_total 7",
        "achat_connections_refused_total{reason=\"full\"} 1",
        "achat_connections_refused_total{reason=\"origin\"} 0",
        "achat_broker_batch_seconds_bucket{le=\"2.5e-06\"} 0",
        "achat_broker_batch_seconds_bucket{le=\"5e-06\"} 1",
        "achat_broker_batch_seconds_bucket{le=\"+Inf\"} 1",
        "achat_broker_batch_seconds_count 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

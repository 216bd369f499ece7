//! Wide fan-outs go out in slices (`broker/slices.rs`).

use super::*;
use crate::broker::slices::{SLICE_PEERS, SLICES_IN_FLIGHT, WIDE_FANOUT};

/// Readers enough for a wide fan-out of several slices.
const READERS: usize = WIDE_FANOUT + 3 * SLICE_PEERS;

/// Logs in a sender `fl` (id 0) and [`READERS`] readers (ids 1..) whose
/// probes keep their slices until let go.
async fn crowd(broker: &Addr<Broker>) -> (TestPeer, Vec<TestPeer>) {
    let sender = login(broker, 0, "fl", true).await;
    let mut readers = Vec::new();
    for i in 1..=READERS as u64 {
        let mut reader = connect_keeping(broker, i, true, true);
        ask(broker, i, &format!("r{i}")).await.unwrap();
        assert!(reader.line().await.starts_with("server: welcome"));
        readers.push(reader);
    }
    (sender, readers)
}

/// The readers that have received a line so far (each gets one).
fn received(readers: &mut [TestPeer]) -> Vec<usize> {
    let mut got = Vec::new();
    for (i, reader) in readers.iter_mut().enumerate() {
        if let Ok(Seen::Line(line)) = reader.seen.try_recv() {
            assert_eq!(line, "from fl: hi");
            got.push(i);
        }
    }
    got
}

/// Has the readers `which` take their output (drop their slices), and
/// waits for the broker to hand the next slices over.
async fn let_go(broker: &Addr<Broker>, readers: &[TestPeer], which: &[usize]) {
    for &i in which {
        readers[i].probe.send(LetGo).await.unwrap();
    }
    sync(broker).await;
}

#[actix::test]
async fn a_wide_broadcast_goes_out_a_few_slices_at_a_time_and_reaches_everyone() {
    let broker = start();
    let (sender, mut readers) = crowd(&broker).await;
    send(&broker, &sender, "fl", &["*: hi"]).await;
    sync(&broker).await;
    let mut total = 0;
    loop {
        let got = received(&mut readers);
        if got.is_empty() {
            break;
        }
        // While those sessions have not taken theirs, nobody else gets it.
        assert!(got.len() <= SLICES_IN_FLIGHT * SLICE_PEERS, "{}", got.len());
        total += got.len();
        let_go(&broker, &readers, &got).await;
    }
    assert_eq!(total, READERS);
}

#[actix::test]
async fn a_line_of_its_own_takes_a_waiting_peer_out_of_the_queue_in_order() {
    let broker = start();
    let (sender, mut readers) = crowd(&broker).await;
    send(&broker, &sender, "fl", &["*: hi"]).await;
    sync(&broker).await;
    let first = received(&mut readers);
    assert!(first.len() < READERS);
    // A reader still waiting for its slice (nobody let go); a line to it
    // alone goes now, after the broadcast that waited.
    let waiting = (0..READERS).find(|i| !first.contains(i)).unwrap();
    let name = format!("r{}", waiting + 1);
    send(&broker, &sender, "fl", &[&format!("{name}: just you")]).await;
    let reader = &mut readers[waiting];
    assert_eq!(reader.line().await, "from fl: hi");
    assert_eq!(reader.line().await, "from fl: just you");
}

#[actix::test]
async fn a_broadcaster_gets_its_credit_back_once_its_slices_have_gone_out() {
    let broker = start();
    let (sender, mut readers) = crowd(&broker).await;
    let credits = Arc::new(tokio::sync::Semaphore::new(1));
    let permit = credits.clone().try_acquire_owned().unwrap();
    broker
        .send(Route {
            from: sender.id,
            batch: batch("fl", &["*: hi"]),
            credit: Credit::new(permit),
        })
        .await
        .unwrap();
    sync(&broker).await;
    assert_eq!(credits.available_permits(), 0, "credit back too early");
    while credits.available_permits() == 0 {
        let got = received(&mut readers);
        assert!(
            !got.is_empty(),
            "slices stopped before the credit came back"
        );
        let_go(&broker, &readers, &got).await;
    }
}

#[actix::test]
async fn a_narrow_fan_out_goes_out_at_once() {
    let broker = start();
    let (sender, mut readers) = crowd(&broker).await;
    let names: Vec<String> = (1..=WIDE_FANOUT).map(|i| format!("r{i}")).collect();
    send(
        &broker,
        &sender,
        "fl",
        &[&format!("{}: hi", names.join(","))],
    )
    .await;
    sync(&broker).await;
    assert_eq!(received(&mut readers).len(), WIDE_FANOUT);
}

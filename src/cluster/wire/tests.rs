//! Round trips of every frame, and garbage that must be refused.

use super::*;

fn round_trip(frame: Frame<'_>) {
    let envelope = Envelope { from: "n1", frame };
    let bytes = envelope.to_bytes();
    assert_eq!(Envelope::parse(&bytes), Ok(envelope));
}

#[test]
fn every_frame_round_trips() {
    let mut records = Vec::new();
    write_record(
        &mut records,
        7,
        false,
        ["bob", "zoë"].into_iter(),
        b"from a: hi\n",
    );
    write_record(&mut records, 8, true, std::iter::empty(), b"from a: all\n");
    round_trip(Frame::Lines {
        seq: 42,
        records: &records,
    });
    round_trip(Frame::Done(vec![1, 2, 9]));
    round_trip(Frame::Lost(vec![]));
    round_trip(Frame::Tick {
        sent: 10,
        done_below: 4,
    });
    round_trip(Frame::NotOnline {
        conn: 3,
        names: "bob,carol,",
    });
}

#[test]
fn records_come_back_in_order() {
    let mut buf = Vec::new();
    write_record(
        &mut buf,
        7,
        false,
        ["bob", "zoë"].into_iter(),
        b"from a: hi\n",
    );
    write_record(&mut buf, 8, true, std::iter::empty(), b"from a: all\n");
    let frame = lines_frame("n1", 5, &buf);
    let Ok(Envelope {
        from: "n1",
        frame: Frame::Lines { seq: 5, records: r },
    }) = Envelope::parse(&frame)
    else {
        panic!("not a lines frame");
    };
    let got: Vec<Record<'_>> = records(r).collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].recipients().collect::<Vec<_>>(), ["bob", "zoë"]);
    assert_eq!(got[0].line, b"from a: hi\n");
    assert!(got[1].everyone && got[1].names.is_empty());
}

#[test]
fn garbage_is_malformed_never_a_panic() {
    for bytes in [&b""[..], b"\x01", b"\x09\x00", b"\x02\x01a\xff\xff\xff\xff"] {
        assert!(Envelope::parse(bytes).is_err(), "{bytes:?}");
    }
    let mut buf = Vec::new();
    write_record(&mut buf, 1, false, ["x"].into_iter(), b"line\n");
    buf.truncate(buf.len() - 2);
    let got: Vec<_> = records(&buf).collect();
    assert_eq!(got.len(), 1);
    assert!(got[0].is_err());
    assert!(Beat::parse(b"\x05ab").is_err());
    assert!(Presence::parse(b"\x00\0\0\0\0\0\0\0\0\xff\xff\xff\xff").is_err());
}

#[test]
fn beats_presence_and_rosters_round_trip() {
    let beat = Beat {
        from: "n2",
        generation: 9,
        leaving: true,
    };
    assert_eq!(Beat::parse(&beat.to_bytes()), Ok(beat));
    let presence = Presence {
        from: "n2",
        generation: 10,
        changes: vec![(true, "alice"), (false, "zoë")],
    };
    assert_eq!(Presence::parse(&presence.to_bytes()), Ok(presence));
    let names = ["a", "bb", "ccc", "dddd"];
    let parts = Roster::split(3, &names, 5);
    assert!(parts.len() > 1);
    let encoded: Vec<Vec<u8>> = parts.iter().map(Roster::to_bytes).collect();
    let back: Vec<&str> = encoded
        .iter()
        .flat_map(|bytes| Roster::parse(bytes).unwrap().names)
        .collect();
    assert_eq!(back, names);
    assert!(parts.iter().all(|p| p.parts == parts.len() as u32));
    assert_eq!(Roster::split(1, &[], 5).len(), 1);
}

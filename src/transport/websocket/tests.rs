//! The WebSocket stream fed by hand: frames in, lines out, and back.
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the client sends; dropping it is the end of the stream.
struct Client(mpsc::UnboundedSender<Bytes>);

impl Client {
    fn feed_data(&mut self, bytes: Bytes) {
        self.0.send(bytes).unwrap();
    }
}

/// A WebSocket fed by hand: the client, the socket, and the receiving
/// end of its output.
fn socket() -> (Client, WebSocket, Frames) {
    let (client, mut incoming) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| {
        incoming
            .poll_recv(cx)
            .map(|bytes| bytes.map(Ok::<_, actix_http::error::PayloadError>))
    });
    let payload = Payload::from(Box::pin(stream) as actix_http::BoxedPayloadStream);
    let (out, frames) = channel();
    (Client(client), WebSocket::new(payload, out, 100), frames)
}

/// A frame as a client sends it (masked).
fn client_frame(payload: &[u8], op: OpCode, fin: bool) -> Bytes {
    let mut frame = BytesMut::new();
    Parser::write_message(&mut frame, payload, op, fin, true);
    frame.freeze()
}

/// Decodes what the server sent, as a client.
fn server_frames(frames: &mut Frames) -> Vec<Frame> {
    let mut bytes = BytesMut::new();
    while let Ok(chunk) = frames.try_recv() {
        bytes.extend_from_slice(&chunk);
    }
    let mut codec = Codec::new().client_mode();
    let mut decoded = Vec::new();
    while let Some(frame) = codec.decode(&mut bytes).unwrap() {
        decoded.push(frame);
    }
    decoded
}

#[tokio::test]
async fn text_messages_become_lines_and_fragments_are_joined() {
    let (mut client, mut ws, _frames) = socket();
    client.feed_data(client_frame(b"alice", OpCode::Text, true));
    client.feed_data(client_frame(b"bob: a\nbob: b\n", OpCode::Text, true));
    client.feed_data(client_frame(b"bob: fr", OpCode::Text, false));
    client.feed_data(client_frame(b"ag", OpCode::Continue, false));
    client.feed_data(client_frame(b"ment", OpCode::Continue, true));
    drop(client); // the end of the stream
    let mut read = String::new();
    ws.read_to_string(&mut read).await.unwrap();
    assert_eq!(read, "alice\nbob: a\nbob: b\nbob: fragment\n");
}

#[tokio::test]
async fn lines_become_text_frames_and_shutdown_closes_normally() {
    let (_client, mut ws, mut frames) = socket();
    ws.write_all(b"server: one\nfrom bob: two\n").await.unwrap();
    ws.shutdown().await.unwrap();
    assert_eq!(
        server_frames(&mut frames),
        [
            Frame::Text(Bytes::from_static(b"server: one")),
            Frame::Text(Bytes::from_static(b"from bob: two")),
            Frame::Close(Some(CloseCode::Normal.into())),
        ]
    );
}

#[tokio::test]
async fn a_part_line_waits_for_its_end() {
    let (_client, mut ws, _frames) = socket();
    let n = std::future::poll_fn(|cx| Pin::new(&mut ws).poll_write(cx, b"whole\npart"))
        .await
        .unwrap();
    assert_eq!(n, 6);
}

#[tokio::test]
async fn binary_and_huge_frames_end_input_with_their_codes() {
    let (mut client, mut ws, mut frames) = socket();
    client.feed_data(client_frame(b"\x00\x01", OpCode::Binary, true));
    let mut buf = [0u8; 64];
    assert_eq!(ws.read(&mut buf).await.unwrap(), 0);
    let Frame::Close(Some(reason)) = &server_frames(&mut frames)[0] else {
        panic!("no close frame");
    };
    assert_eq!(reason.code, CloseCode::Unsupported);

    let (mut client, mut ws, mut frames) = socket();
    client.feed_data(client_frame(&vec![b'x'; 70 * 1024], OpCode::Text, true));
    assert_eq!(ws.read(&mut buf).await.unwrap(), 0);
    let Frame::Close(Some(reason)) = &server_frames(&mut frames)[0] else {
        panic!("no close frame");
    };
    assert_eq!(reason.code, CloseCode::Size);
}

#[tokio::test]
async fn a_ping_is_answered_and_a_close_is_echoed() {
    let (mut client, mut ws, mut frames) = socket();
    client.feed_data(client_frame(b"hi", OpCode::Ping, true));
    let mut close = BytesMut::new();
    Parser::write_close(&mut close, Some(CloseCode::Away.into()), true);
    client.feed_data(close.freeze());
    let mut buf = [0u8; 64];
    assert_eq!(ws.read(&mut buf).await.unwrap(), 0);
    assert_eq!(
        server_frames(&mut frames),
        [
            Frame::Pong(Bytes::from_static(b"hi")),
            Frame::Close(Some(CloseCode::Away.into())),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_server_pings_an_idle_client_and_gives_up_on_a_silent_one() {
    let (mut client, mut ws, mut frames) = socket();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PING_INTERVAL + Duration::from_secs(1), ws.read(&mut buf));
    assert!(read.await.is_err(), "nothing to read yet");
    assert_eq!(server_frames(&mut frames), [Frame::Ping(Bytes::new())]);
    // An answer keeps it open past the silence limit...
    client.feed_data(client_frame(b"", OpCode::Pong, true));
    let read = tokio::time::timeout(SILENCE_LIMIT - PING_INTERVAL, ws.read(&mut buf));
    assert!(read.await.is_err(), "still open");
    // ...and silence from then on ends input, with a close (going away).
    let read = tokio::time::timeout(SILENCE_LIMIT + PING_INTERVAL, ws.read(&mut buf));
    assert_eq!(read.await.expect("ended").unwrap(), 0);
    let sent = server_frames(&mut frames);
    let Some(Frame::Close(Some(reason))) = sent.last() else {
        panic!("no close frame: {sent:?}");
    };
    assert_eq!(reason.code, CloseCode::Away);
}

#[test]
fn a_refusal_is_the_line_then_try_again_later() {
    let mut bytes =
        BytesMut::from(&refusal(b"error: server full (2 connections), try again later\n")[..]);
    let mut codec = Codec::new().client_mode();
    assert_eq!(
        codec.decode(&mut bytes).unwrap(),
        Some(Frame::Text(Bytes::from_static(
            b"error: server full (2 connections), try again later"
        )))
    );
    assert_eq!(
        codec.decode(&mut bytes).unwrap(),
        Some(Frame::Close(Some(CloseCode::Again.into())))
    );
}

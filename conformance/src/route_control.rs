//! A RouteControl client as outside programs use it: tonic over the
//! agent's Unix socket, with the event stream and a bounded wait for one
//! event in it.

use hyper_util::rt::TokioIo;
use novanet_proto::api::route_control_client::RouteControlClient;
use novanet_proto::api::{EventType, RouteEvent, StreamEventsRequest};
use std::path::PathBuf;
use tonic::transport::{Channel, Endpoint, Uri};

/// A client on the agent's socket.
pub async fn client(socket: PathBuf) -> RouteControlClient<Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("a fixed URI")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect to the agent's socket");
    RouteControlClient::new(channel)
}

/// A stream of every event.
pub async fn all_events(c: &mut RouteControlClient<Channel>) -> tonic::Streaming<RouteEvent> {
    c.stream_events(StreamEventsRequest {
        owner_filter: String::new(),
        event_types: vec![],
    })
    .await
    .expect("StreamEvents")
    .into_inner()
}

/// Waits (at most [`crate::checks::SETTLE`]) for an event of `kind` whose
/// detail or a metadata value holds `what` (anything when empty); other
/// events are skipped.
pub async fn expect_event(stream: &mut tonic::Streaming<RouteEvent>, kind: EventType, what: &str) -> RouteEvent {
    let deadline = tokio::time::Instant::now() + crate::checks::SETTLE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(e)))
                if e.r#type == kind as i32
                    && (what.is_empty() || e.detail.contains(what) || e.metadata.values().any(|v| v == what)) =>
            {
                return e
            }
            Ok(Ok(Some(_))) => continue,
            other => panic!("no {kind:?} event for {what:?}: {other:?}"),
        }
    }
}

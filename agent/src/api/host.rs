//! The host of the gRPC services: the Unix socket (private from the moment
//! it exists), the HTTP/2 front every connection goes through
//! ([`super::authority`]), the request timing layer with its method labels
//! taken from the services' own method table, and the three services.

use crate::control::Control;
use novanet_proto::api::route_control_server::RouteControlServer;
use std::path::Path;
use std::pin::Pin;
use tokio_stream::Stream;

/// Binds a Unix socket that is 0600 from the moment it exists: it is
/// created under a umask that leaves only the owner's bits (a chmod after
/// bind would leave a window where any local user may connect). The umask
/// is the process's, so binds are serialised and it is restored at once.
pub fn bind_private(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = UMASK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: umask only swaps the process's file mode mask.
    let previous = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    // SAFETY: as above, putting the previous mask back.
    unsafe { libc::umask(previous) };
    let listener = bound?;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        return Err(std::io::Error::other(format!("created with mode {mode:o}, not 600")));
    }
    Ok(listener)
}

/// Serves the API on a Unix socket (mode 0600; a stale socket file is
/// replaced) until `shutdown` resolves; removes the socket afterwards.
pub async fn serve(
    control: Control,
    enforcer: Option<std::sync::Arc<crate::policy::enforcer::Enforcer>>,
    path: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        // A directory of our own; an existing one (such as /run or /tmp) is
        // never touched.
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("listen_socket directory {}: {e}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750));
    }
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| anyhow::anyhow!("stale listen_socket {}: {e}", path.display()))?;
    }
    let listener = bind_private(path).map_err(|e| anyhow::anyhow!("listen_socket {}: {e}", path.display()))?;
    tracing::info!(socket = %path.display(), "RouteControl API listening");
    let incoming = incoming_through_front(listener);
    let timing = RequestTiming(control.metrics.grpc_seconds.clone());
    let result = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(move |inner| Timed {
            inner,
            timing: timing.clone(),
        }))
        .add_service(RouteControlServer::new(super::route_control::Service::new(
            control.clone(),
        )))
        .add_service(
            novanet_proto::insight::routing_insight_server::RoutingInsightServer::new(super::insight::Insight::new(
                control.clone(),
            )),
        )
        .add_service(novanet_proto::insight::node_lifecycle_server::NodeLifecycleServer::new(
            super::lifecycle::Lifecycle::new(control),
        ))
        .add_service(
            novanet_proto::datapath_insight::datapath_insight_server::DatapathInsightServer::new(
                super::datapath_insight::Insight::new(enforcer),
            ),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    result.map_err(|e| anyhow::anyhow!("RouteControl API: {e}"))
}

/// Most client connections open at once; one past it is closed as it is
/// accepted. With frames capped at 16 KiB and header blocks at 256 KiB,
/// this bounds what the front can be made to hold.
const MAX_CONNECTIONS: usize = 256;

/// Accepted connections, each relayed through the HTTP/2 front that
/// replaces an invalid `:authority` (see [`super::authority`]); the gRPC
/// server reads the in-memory end. Accepting stops when the server drops
/// the stream at shutdown.
fn incoming_through_front(
    listener: tokio::net::UnixListener,
) -> impl Stream<Item = std::io::Result<tokio::io::DuplexStream>> {
    const RELAY_BUFFER: usize = 64 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (client, _) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::warn!(
                    limit = MAX_CONNECTIONS,
                    "RouteControl connection refused: too many open"
                );
                continue;
            };
            let (server_end, front_end) = tokio::io::duplex(RELAY_BUFFER);
            tokio::spawn(async move {
                super::authority::serve(client, front_end).await;
                drop(permit);
            });
            if tx.send(Ok(server_end)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The RPC of a request path, as the services declare it; None for a
/// path no service serves.
fn method_of(path: &str) -> Option<&'static novanet_proto::Method> {
    novanet_proto::METHODS.iter().find(|m| m.path == path)
}

/// The `method` label of a request path (`/package.Service/Method`): the
/// RPC's name, or `_unknown` for a path no service serves, so a client
/// cannot grow the histogram by sending made-up paths.
fn method_label(path: &str) -> &'static str {
    method_of(path).map(|m| m.name).unwrap_or("_unknown")
}

/// Times every unary RPC into `grpc_request_duration_seconds{method}`.
#[derive(Clone)]
struct RequestTiming(prometheus::HistogramVec);

#[derive(Clone)]
struct Timed<S> {
    inner: S,
    timing: RequestTiming,
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Timed<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        // A stream's lifetime is not a request's duration: not timed.
        let streaming = method_of(req.uri().path()).is_some_and(|m| m.server_streaming);
        let method = method_label(req.uri().path());
        let timer = (!streaming).then(|| self.timing.0.with_label_values(&[method]).start_timer());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            if let Some(t) = timer {
                t.observe_duration();
            }
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_socket_is_private_from_the_moment_it_exists() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("novanet-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("api.sock");
        let _ = std::fs::remove_file(&path);
        // A permissive process umask, as a container may start with.
        // SAFETY: umask swaps the process's file mode mask.
        let before = unsafe { libc::umask(0o000) };
        let bound = bind_private(&path);
        // SAFETY: as above.
        unsafe { libc::umask(before) };
        let _listener = bound.expect("bound");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn metric_labels_come_from_the_served_methods_only() {
        assert_eq!(
            method_label("/novaroute.v1.RouteControl/AdvertisePrefix"),
            "AdvertisePrefix"
        );
        assert_eq!(method_label("/novanet.routing.v1.RoutingInsight/GetRib"), "GetRib");
        assert_eq!(method_label("/x/made-up-1234"), "_unknown");
        assert_eq!(method_label("/novaroute.v1.RouteControl/Made-up"), "_unknown");
        assert_eq!(method_label(""), "_unknown");
        // Every RPC of the three services has its own label (these four
        // were once counted as `_unknown`), the streams are known as such.
        for path in [
            "/novanet.routing.v1.RoutingInsight/GetOspf",
            "/novanet.datapath.v1.DatapathInsight/ListIdentities",
            "/novanet.datapath.v1.DatapathInsight/GetPolicy",
            "/novanet.datapath.v1.DatapathInsight/StreamFlows",
        ] {
            assert_eq!(method_label(path), path.rsplit('/').next().unwrap(), "{path}");
        }
        let streams: Vec<&str> = novanet_proto::METHODS
            .iter()
            .filter(|m| m.server_streaming)
            .map(|m| m.name)
            .collect();
        assert_eq!(streams, ["StreamEvents", "StreamFlows"]);
        assert!(novanet_proto::METHODS.len() >= 13 + 5, "{:?}", novanet_proto::METHODS);
    }
}

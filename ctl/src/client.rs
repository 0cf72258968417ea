//! Connecting to the agent's socket (RouteControl, RoutingInsight and
//! DatapathInsight on one connection), with one clear line when it cannot
//! be reached.

use hyper_util::rt::TokioIo;
use novanet_proto::api::route_control_client::RouteControlClient;
use novanet_proto::insight::routing_insight_client::RoutingInsightClient;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// Default agent socket.
pub const DEFAULT_SOCKET: &str = "/run/novaroute/novaroute.sock";

/// Both services on one connection.
pub struct Agent {
    pub control: RouteControlClient<Channel>,
    pub insight: RoutingInsightClient<Channel>,
    pub datapath: novanet_proto::datapath_insight::datapath_insight_client::DatapathInsightClient<Channel>,
    pub lifecycle: novanet_proto::insight::node_lifecycle_client::NodeLifecycleClient<Channel>,
}

/// Explains why the socket cannot be used, before trying gRPC.
fn check_socket(path: &Path) -> anyhow::Result<()> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(match e.kind() {
            std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "agent socket {} not found: is novanet-agent running? (--socket or NOVANET_SOCKET)",
                    path.display()
                )
            }
            std::io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!("permission denied on {}: run as root", path.display())
            }
            std::io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!("agent not running: nothing listens on {}", path.display())
            }
            _ => anyhow::anyhow!("cannot reach the agent at {}: {e}", path.display()),
        }),
    }
}

/// Connects to the agent.
pub async fn connect(path: &Path) -> anyhow::Result<Agent> {
    check_socket(path)?;
    let socket: PathBuf = path.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")?
        .timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?)) }
        }))
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the agent at {}: {e}", path.display()))?;
    Ok(Agent {
        control: RouteControlClient::new(channel.clone()),
        insight: RoutingInsightClient::new(channel.clone()),
        lifecycle: novanet_proto::insight::node_lifecycle_client::NodeLifecycleClient::new(channel.clone()),
        datapath: novanet_proto::datapath_insight::datapath_insight_client::DatapathInsightClient::new(channel),
    })
}

/// One line for an RPC error.
pub fn rpc_error(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

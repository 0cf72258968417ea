//! The `DatapathInsight` service (`novanet.datapath.v1`) on the API
//! socket: identities, the compiled policy and its counters, and the TC
//! programs' flow and drop events for `novanetctl identity`, `policy`,
//! `flows` and `drops`.

// tonic's Status is the error type of every gRPC handler.
#![allow(clippy::result_large_err)]

use crate::policy::enforcer::Enforcer;
use novanet_ebpf::maps::{Direction, EventKind, FlowEvent};
use novanet_proto::datapath_insight::datapath_insight_server::DatapathInsight;
use novanet_proto::datapath_insight::*;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The service; without identity policy every call says it is off.
pub struct Insight {
    enforcer: Option<Arc<Enforcer>>,
}

impl Insight {
    pub fn new(enforcer: Option<Arc<Enforcer>>) -> Self {
        Insight { enforcer }
    }

    fn enforcer(&self) -> Result<&Arc<Enforcer>, Status> {
        self.enforcer
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("identity policy is off on this node (datapath.enabled)"))
    }
}

fn flow(e: &Enforcer, ev: &FlowEvent) -> Flow {
    Flow {
        timestamp_ns: ev.timestamp_ns,
        kind: if ev.kind == EventKind::Drop { "drop" } else { "flow" }.into(),
        direction: if ev.direction == Direction::Ingress {
            "ingress"
        } else {
            "egress"
        }
        .into(),
        src: ev.src.to_string(),
        dst: ev.dst.to_string(),
        sport: ev.sport as u32,
        dport: ev.dport as u32,
        protocol: ev.protocol as u32,
        src_identity: ev.src_identity,
        dst_identity: ev.dst_identity,
        src_name: e.identity_name(ev.src_identity),
        dst_name: e.identity_name(ev.dst_identity),
    }
}

type FlowStream = Pin<Box<dyn Stream<Item = Result<Flow, Status>> + Send>>;

#[tonic::async_trait]
impl DatapathInsight for Insight {
    async fn list_identities(
        &self,
        _: Request<ListIdentitiesRequest>,
    ) -> Result<Response<ListIdentitiesResponse>, Status> {
        let view = self.enforcer()?.view();
        let identities = view
            .identities
            .iter()
            .map(|(id, k)| Identity {
                identity: *id,
                namespace: k.namespace.clone(),
                labels: k.labels.clone().into_iter().collect(),
                ingress_isolated: view.ingress_isolated.contains(id),
                egress_isolated: view.egress_isolated.contains(id),
            })
            .collect();
        Ok(Response::new(ListIdentitiesResponse { identities }))
    }

    async fn get_policy(&self, _: Request<GetPolicyRequest>) -> Result<Response<GetPolicyResponse>, Status> {
        let e = self.enforcer()?;
        let view = e.view();
        let c = e.counters();
        Ok(Response::new(GetPolicyResponse {
            policies: view.policies as u32,
            ingress_entries: view.ingress_entries as u32,
            egress_entries: view.egress_entries as u32,
            attached_interfaces: e.attached(),
            ingress_allowed: c.ingress_allow,
            ingress_denied: c.ingress_deny,
            egress_allowed: c.egress_allow,
            egress_denied: c.egress_deny,
            events_lost: c.events_lost,
            warnings: view.warnings,
        }))
    }

    type StreamFlowsStream = FlowStream;

    async fn stream_flows(&self, req: Request<StreamFlowsRequest>) -> Result<Response<FlowStream>, Status> {
        let e = self.enforcer()?.clone();
        let r = req.into_inner();
        let kind = match r.kind.as_str() {
            "" => None,
            "drop" | "drops" => Some(EventKind::Drop),
            "flow" | "flows" => Some(EventKind::Flow),
            other => {
                return Err(Status::invalid_argument(format!(
                    "kind {} is not drop or flow",
                    crate::control::shown(other)
                )))
            }
        };
        // Subscribed before the recent ones are read: nothing falls between.
        let mut live = e.subscribe();
        let recent: Vec<Result<Flow, Status>> = e.recent(kind).iter().map(|ev| Ok(flow(&e, ev))).collect();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            for f in recent {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            if r.no_follow {
                return;
            }
            loop {
                match live.recv().await {
                    Ok(ev) if kind.is_none_or(|k| ev.kind == k) => {
                        if tx.send(Ok(flow(&e, &ev))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

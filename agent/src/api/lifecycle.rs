//! The `NodeLifecycle` service (`novanet.routing.v1`): start or end the
//! node's drain, and say what a SIGTERM would do now
//! ([`crate::lifecycle`]). On the RouteControl socket, which only root
//! reaches.

#![allow(clippy::result_large_err)]

use crate::control::Control;
use crate::lifecycle::{DrainCause, OnStop};
use novanet_proto::insight::node_lifecycle_server::NodeLifecycle;
use novanet_proto::insight::*;
use tonic::{Request, Response, Status};

pub struct Lifecycle {
    control: Control,
}

impl Lifecycle {
    pub fn new(control: Control) -> Self {
        Lifecycle { control }
    }

    fn status(&self) -> LifecycleStatus {
        let drain = self.control.lifecycle.drain();
        let on_sigterm = self.control.config.borrow().on_sigterm;
        let (on_sigterm, reason) = match self.control.lifecycle.on_stop(on_sigterm) {
            OnStop::Restart => ("restart", String::new()),
            OnStop::Decommission(why) => ("decommission", why),
        };
        LifecycleStatus {
            draining: drain.is_some(),
            drain_cause: drain.as_ref().map(|d| d.cause.name().to_string()).unwrap_or_default(),
            draining_since: drain.map(|d| d.since).unwrap_or(0),
            on_sigterm: on_sigterm.into(),
            on_sigterm_reason: reason,
        }
    }
}

#[tonic::async_trait]
impl NodeLifecycle for Lifecycle {
    async fn drain(&self, req: Request<DrainRequest>) -> Result<Response<LifecycleStatus>, Status> {
        let lifecycle = &self.control.lifecycle;
        let result = if req.into_inner().undo {
            lifecycle.end_drain().await
        } else {
            lifecycle.start_drain(DrainCause::Operator).await
        };
        result.map_err(|e| Status::unavailable(format!("the BGP speaker: {e}")))?;
        Ok(Response::new(self.status()))
    }

    async fn get_lifecycle(&self, _: Request<GetLifecycleRequest>) -> Result<Response<LifecycleStatus>, Status> {
        Ok(Response::new(self.status()))
    }
}

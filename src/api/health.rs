//! `GET /health`: liveness plus the state of each subsystem.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use warp::http::StatusCode;
use warp::reply::Response;

use super::dto::{self, Health};
use super::{envelope, ApiContext};

/// The state of one subsystem as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Working normally.
    Running,
    /// Working, but not fully (e.g. retrying a failed dependency).
    Degraded,
    /// Shutting down; new work is refused.
    Stopping,
}

/// The subsystems `/health` lists, shared between the server, which registers and updates
/// them, and the route, which reports them. Cloning shares the same list.
#[derive(Debug, Clone, Default)]
pub struct Services {
    states: Arc<RwLock<BTreeMap<String, ServiceState>>>,
}

impl Services {
    /// Registers `name` or changes its state.
    pub fn set(&self, name: impl Into<String>, state: ServiceState) {
        self.states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), state);
    }

    /// The state of `name` right now, if it is registered.
    pub fn state(&self, name: &str) -> Option<ServiceState> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    /// The states right now, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ServiceState> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) async fn get(ctx: ApiContext) -> Response {
    let health = Health {
        status: "healthy",
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: ctx.started_at.elapsed().as_secs_f64(),
        services: ctx
            .services
            .snapshot()
            .into_iter()
            .map(|(name, state)| (name, dto::service_state(state)))
            .collect(),
    };
    envelope::success(StatusCode::OK, &health)
}

//! What the agent says when a watch fails: an API server that refuses the
//! agent's ServiceAccount a verb (401, 403) is named as an RBAC problem at
//! error level, and a kind it does not serve (404: the chart's CRDs not
//! installed) as such, each once, with where it is fixed; other failures
//! (the server away, 410 Gone, a timeout) stay warnings. Every watch keeps
//! retrying with backoff either way: the agent never exits over them.
//! What is refused now is also kept ([`refused_now`]) for the node's
//! state, where it shows as a condition until the watch delivers again,
//! or until no retry has been refused for [`REFUSAL_KEPT`] (a watch that
//! works again but has nothing to tell yields no event; the retries of a
//! refused one come at most 30 s apart).

use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a refusal counts after the last retry it refused.
pub const REFUSAL_KEPT: Duration = Duration::from_secs(90);

/// The watches refused, by what they watch: (HTTP code, the server's
/// words, when last refused).
static REFUSED: Mutex<BTreeMap<String, (u16, String, Instant)>> = Mutex::new(BTreeMap::new());

/// Every watch the API server refuses now: (what it watches, HTTP code,
/// the server's words).
pub fn refused_now() -> Vec<(String, u16, String)> {
    let all = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    current(&all, Instant::now())
}

fn current(all: &BTreeMap<String, (u16, String, Instant)>, now: Instant) -> Vec<(String, u16, String)> {
    all.iter()
        .filter(|(_, (.., at))| now.saturating_duration_since(*at) < REFUSAL_KEPT)
        .map(|(what, (code, message, _))| (what.clone(), *code, message.clone()))
        .collect()
}

fn set_refused(what: &str, refused: Option<(u16, String)>) {
    let mut all = REFUSED.lock().unwrap_or_else(|e| e.into_inner());
    match refused {
        Some((code, message)) => {
            all.insert(what.to_string(), (code, message, Instant::now()));
        }
        None => {
            all.remove(what);
        }
    }
}

/// The API status a watch failure carries, if any.
fn status(e: &watcher::Error) -> Option<&kube::core::Status> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s),
        watcher::Error::WatchError(s) => Some(s),
        _ => None,
    }
}

/// The server's words when it refuses this agent's identity (401, 403)
/// or does not serve the kind (404).
pub fn refusal(e: &watcher::Error) -> Option<String> {
    status(e).filter(|s| matches!(s.code, 401 | 403 | 404)).map(|s| {
        if s.message.is_empty() {
            format!("{} {}", s.code, s.reason)
        } else {
            s.message.clone()
        }
    })
}

fn not_served(e: &watcher::Error) -> bool {
    status(e).is_some_and(|s| s.code == 404)
}

/// The failures of one watch, reported without flooding the log: a
/// refusal is an error the first time it is seen (and again once it has
/// changed); everything else is a warning.
#[derive(Default)]
pub struct WatchFailures {
    last_refusal: Option<String>,
}

impl WatchFailures {
    /// Reports one failure of the watch of `what`; `meanwhile` says what
    /// the agent keeps doing.
    pub fn report(&mut self, e: &watcher::Error, what: &str, meanwhile: &str) {
        if let (Some(message), Some(code)) = (refusal(e), status(e).map(|s| s.code)) {
            set_refused(what, Some((code, message)));
        }
        match refusal(e) {
            Some(message) if not_served(e) => {
                if self.last_refusal.as_deref() != Some(message.as_str()) {
                    tracing::warn!(
                        refused = %message,
                        "the API server does not serve {what} (are the chart's CRDs installed? \
                         `kubectl get crd | grep novanet`); retrying with backoff, {meanwhile}"
                    );
                    self.last_refusal = Some(message);
                }
            }
            Some(message) => {
                if self.last_refusal.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        refused = %message,
                        "the API server refuses this agent's ServiceAccount access to {what}: its ClusterRole or Role \
                         lacks a verb (the chart's RBAC grants get, list and watch; check `kubectl get clusterrole` \
                         for the release); retrying with backoff, {meanwhile}"
                    );
                    self.last_refusal = Some(message);
                } else {
                    tracing::debug!(refused = %message, "watch of {what} still refused");
                }
            }
            None => {
                self.last_refusal = None;
                tracing::warn!(error = %e, "watch of {what} failed: retrying with backoff, {meanwhile}");
            }
        }
    }

    /// The watch works again.
    pub fn recovered(&mut self, what: &str) {
        set_refused(what, None);
        if self.last_refusal.take().is_some() {
            tracing::info!("the API server allows the watch of {what} again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: message.into(),
            ..Default::default()
        }))
    }

    #[test]
    fn only_401_403_and_404_are_said_once() {
        let forbidden = watcher::Error::WatchStartFailed(api_error(403, "nodes is forbidden"));
        assert_eq!(refusal(&forbidden).as_deref(), Some("nodes is forbidden"));
        let gone = watcher::Error::WatchError(Box::new(kube::core::Status {
            code: 410,
            ..Default::default()
        }));
        assert_eq!(refusal(&gone), None);
        assert_eq!(refusal(&watcher::Error::NoResourceVersion), None);
    }

    #[test]
    fn a_refusal_is_kept_until_the_watch_works() {
        let mut f = WatchFailures::default();
        let forbidden = watcher::Error::WatchStartFailed(api_error(403, "widgets is forbidden"));
        f.report(&forbidden, "Widgets", "nothing changes");
        assert!(refused_now().contains(&("Widgets".into(), 403, "widgets is forbidden".into())));
        f.recovered("Widgets");
        assert!(!refused_now().iter().any(|(w, ..)| w == "Widgets"));
        let mut all = BTreeMap::new();
        let then = Instant::now();
        all.insert("Gadgets".to_string(), (403, "no".to_string(), then));
        assert_eq!(
            current(&all, then + Duration::from_secs(30)).len(),
            1,
            "retries still refused"
        );
        assert!(
            current(&all, then + REFUSAL_KEPT).is_empty(),
            "no refused retry for long: gone"
        );
    }
}

//! Supervision of session tasks: a panic while handling one peer's bytes
//! ends that peer's task only; the core is told and starts it again.

use std::future::Future;
use tokio::task::{AbortHandle, JoinHandle};

/// A supervised task: abort it through `abort`; `done` resolves when it
/// ends, with the panic message if it panicked.
pub(crate) struct Supervised {
    pub abort: AbortHandle,
    pub done: JoinHandle<Option<String>>,
}

/// Spawns `task` under supervision.
pub(crate) fn spawn<F>(task: F) -> Supervised
where
    F: Future<Output = ()> + Send + 'static,
{
    let inner = tokio::spawn(task);
    let abort = inner.abort_handle();
    let done = tokio::spawn(async move {
        match inner.await {
            Err(e) if e.is_panic() => Some(panic_message(e.into_panic())),
            _ => None,
        }
    });
    Supervised { abort, done }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_reported_not_propagated() {
        let s = spawn(async { panic!("bad bytes from 10.0.0.1") });
        assert_eq!(s.done.await.unwrap().as_deref(), Some("bad bytes from 10.0.0.1"));
    }

    #[tokio::test]
    async fn a_normal_end_or_abort_is_not_a_panic() {
        let s = spawn(async {});
        assert_eq!(s.done.await.unwrap(), None);
        let s = spawn(std::future::pending());
        s.abort.abort();
        assert_eq!(s.done.await.unwrap(), None);
    }
}

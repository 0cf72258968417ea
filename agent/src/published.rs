//! Publishing on a watch channel only what changed: the receivers of a
//! value that stayed the same are not woken (a pipeline pass, a state
//! write, a link rescan saved).

use tokio::sync::watch;

/// Sends `value` when it differs from what `tx` holds; says whether it
/// did.
pub fn publish<T: PartialEq>(tx: &watch::Sender<T>, value: T) -> bool {
    tx.send_if_modified(|held| {
        let changed = *held != value;
        if changed {
            *held = value;
        }
        changed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_change_wakes_the_receivers() {
        let (tx, mut rx) = watch::channel(1);
        rx.borrow_and_update();
        assert!(!publish(&tx, 1));
        assert!(!rx.has_changed().unwrap());
        assert!(publish(&tx, 2));
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 2);
    }
}

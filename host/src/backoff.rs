//! The one backoff policy of every retry loop in wasq: a delay that starts
//! at `first` and doubles on every failure up to `max`, back to `first` on
//! success. A leaf: it imports nothing of wasq's.
//!
//! Hand-written rather than a crate such as `backon`: each loop here waits
//! on other events too (a stop signal, a wake token) in its own `select!`,
//! so it needs the next delay as a value, which is these few lines.

use std::time::Duration;

/// Doubling delays between `first` and `max`.
///
/// ```
/// use std::time::Duration;
/// use wasq::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// assert_eq!(b.next_delay(), Duration::from_millis(200));
/// assert_eq!(b.next_delay(), Duration::from_millis(300));
/// assert_eq!(b.next_delay(), Duration::from_millis(300));
/// b.reset();
/// assert_eq!(b.next_delay(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `first`, doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the next one is twice as long (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// The delay [`next_delay`](Self::next_delay) will return, without
    /// moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to `first` (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

//! Follow-up tasks a handler asks for with `wasq:task/enqueue`.
//!
//! The runtime knows no broker. While a handler runs, each `enqueue` call is
//! checked against the task type's grants and limits and recorded here with
//! an id derived from the parent task's id and the call's sequence number
//! ([`follow_up_id`]). The [`Execution`](super::Execution) of a run that
//! succeeded carries them; the worker sends them to Redis after the handler
//! returned `Ok` and before it acknowledges the parent. A failed run carries
//! none, so a retried or archived run enqueues nothing.
//!
//! Because the ids are derived, a parent that runs again after its follow-ups
//! were sent (its worker died before the acknowledgement) asks for the same
//! ids again, and the second enqueue of each is a no-op.

use std::time::Duration;

use serde::Serialize;

/// Most follow-ups one run may enqueue.
pub const MAX_FOLLOW_UPS: usize = 1000;

/// Most payload bytes the follow-ups of one run may carry together.
pub const MAX_FOLLOW_UP_BYTES: u64 = 16 << 20;

/// A follow-up task a handler asked to enqueue, after the host checked its
/// grants and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// The task id: the guest's own, or [`follow_up_id`] of the parent.
    pub id: String,
    /// Task type.
    pub task_type: String,
    /// Payload bytes.
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// Target queue (granted to the parent's task type).
    pub queue: String,
    /// Max retries.
    pub max_retry: Option<u32>,
    /// Delay before it may run, counted from when it is sent.
    pub process_in: Option<Duration>,
    /// Timeout.
    pub timeout: Option<Duration>,
    /// Retention as completed.
    pub retention: Option<Duration>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

/// The id of the `seq`-th follow-up (counting from 1) of task `parent`: a
/// UUID (version 5) of the two, so every run of the parent derives the same
/// ids in the same order.
///
/// ```
/// use wasq::runtime::follow_up_id;
/// assert_eq!(follow_up_id("parent", 1), follow_up_id("parent", 1));
/// assert_ne!(follow_up_id("parent", 1), follow_up_id("parent", 2));
/// ```
pub fn follow_up_id(parent: &str, seq: usize) -> String {
    /// The namespace of follow-up ids (a random UUID, fixed forever).
    const NAMESPACE: uuid::Uuid = uuid::uuid!("5b0f3c52-6c1e-4d55-9a57-0d6f8e2f7a31");
    uuid::Uuid::new_v5(&NAMESPACE, format!("{parent}/{seq}").as_bytes()).to_string()
}

/// The follow-ups of one run, bounded by [`MAX_FOLLOW_UPS`] and
/// [`MAX_FOLLOW_UP_BYTES`].
#[derive(Debug, Default)]
pub(crate) struct FollowUps {
    pub tasks: Vec<FollowUp>,
    bytes: u64,
    /// Calls so far, the refused ones included, so a call's id does not
    /// depend on whether an earlier call was refused by a limit.
    calls: usize,
}

impl FollowUps {
    /// The id the next call gets, unless the guest chose one.
    pub fn next_id(&mut self, parent: &str) -> String {
        self.calls += 1;
        follow_up_id(parent, self.calls)
    }

    /// Records `task`, or says which limit it would break.
    pub fn push(&mut self, task: FollowUp) -> Result<(), String> {
        if self.tasks.len() >= MAX_FOLLOW_UPS {
            return Err(format!(
                "a run may enqueue at most {MAX_FOLLOW_UPS} follow-up tasks"
            ));
        }
        let bytes = self.bytes + task.payload.len() as u64;
        if bytes > MAX_FOLLOW_UP_BYTES {
            return Err(format!(
                "the follow-up tasks of a run may carry at most {MAX_FOLLOW_UP_BYTES} payload bytes together"
            ));
        }
        self.bytes = bytes;
        self.tasks.push(task);
        Ok(())
    }
}

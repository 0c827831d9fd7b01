//! Claiming: pending tasks into `active` with a lease, in one script call
//! (`claim.lua`, with the shared `claim_step.lua`), and the waits for work
//! (the wake token, and the probe for tasks written without one).

use std::time::Duration;

use redis::AsyncCommands as _;

use super::{Broker, BrokerError, Claim, Conn, Held, QueueKeys, QueueLimits, scripts};

/// A task claimed by a worker.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Task id.
    pub id: String,
    /// The raw `msg` bytes (may be invalid if another tool wrote them).
    pub msg: Vec<u8>,
}

/// Pairs a claim script's flat `id, msg, id, msg, ...` reply.
pub(super) fn claimed_tasks(flat: Vec<Vec<u8>>) -> Result<Vec<Claimed>, BrokerError> {
    let mut claimed = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(id), Some(msg)) = (it.next(), it.next()) {
        let id = String::from_utf8(id)
            .map_err(|_| BrokerError::Protocol("task id is not UTF-8".into()))?;
        claimed.push(Claimed { id, msg });
    }
    Ok(claimed)
}

impl Broker {
    /// Claims up to `n` pending tasks of `queue` with a lease until
    /// `lease_expiry` (Unix seconds). Empty when the queue is empty or
    /// paused.
    ///
    /// `hint` carries the ids expected at the pending list's tail from one
    /// claim to the next (oldest first): each claim returns the ids behind
    /// the ones it took, so a worker draining a queue claims in one round
    /// trip instead of a peek and a claim. An empty hint means peek first.
    /// A stale hint (another worker took those tasks) costs one extra
    /// round trip, never a wrong claim: the script re-checks every id.
    pub async fn claim(
        &self,
        queue: &QueueKeys,
        n: usize,
        lease_expiry: i64,
        hint: &mut Vec<String>,
    ) -> Result<Vec<Claimed>, BrokerError> {
        let claim = self
            .claim_within(queue, n, lease_expiry, hint, &QueueLimits::default())
            .await?;
        Ok(claim.tasks)
    }

    /// [`claim`](Self::claim) within the queue's `limits`, decided in the
    /// claim script: [`Claim::held`] says when a limit took fewer tasks
    /// than were pending, and until when the rate's next token is due.
    pub async fn claim_within(
        &self,
        queue: &QueueKeys,
        n: usize,
        lease_expiry: i64,
        hint: &mut Vec<String>,
        limits: &QueueLimits,
    ) -> Result<Claim, BrokerError> {
        let mut conn = self.conn.clone();
        let limit_args = limits.args();
        // A stale hint comes back fresh with nothing claimed: try again with
        // it, a few times, before calling the queue empty.
        for _ in 0..3 {
            let ids: Vec<String> = if hint.is_empty() {
                let mut peeked: Vec<String> =
                    conn.lrange(queue.pending(), -(n as isize), -1).await?;
                peeked.reverse();
                peeked
            } else {
                let take = n.min(hint.len());
                hint.drain(..take).collect()
            };
            hint.clear();
            if ids.is_empty() {
                return Ok(Claim::default());
            }
            let mut inv = scripts::CLAIM.prepare_invoke();
            inv.key(queue.pending())
                .key(queue.paused())
                .key(queue.active())
                .key(queue.lease())
                .key(queue.limit())
                .arg(lease_expiry)
                .arg(&*self.owner)
                .arg((2 * n).clamp(16, 64))
                .arg(&limit_args[..]);
            for id in &ids {
                inv.key(queue.task(id)).arg(id);
            }
            let (flat, next, held): (Vec<Vec<u8>>, Vec<String>, i64) =
                inv.invoke_async(&mut conn).await?;
            // The hint lists the tail newest first; keep it oldest first.
            hint.extend(next.into_iter().rev());
            let claim = Claim {
                tasks: claimed_tasks(flat)?,
                held: Held::from_reply(held),
            };
            if !claim.tasks.is_empty() || hint.is_empty() || claim.held.is_some() {
                return Ok(claim);
            }
        }
        Ok(Claim::default())
    }

    /// Blocks up to `timeout` for a wake token of `queue` on `conn` (a
    /// connection from [`blocking_conn`](Self::blocking_conn)). True when
    /// work may be pending.
    pub async fn wait_for_work(
        conn: &mut Conn,
        queue: &QueueKeys,
        timeout: Duration,
    ) -> Result<bool, BrokerError> {
        let popped: Option<(String, String)> =
            conn.blpop(queue.wake(), timeout.as_secs_f64()).await?;
        Ok(popped.is_some())
    }

    /// Whether `queue` has pending tasks and is not paused, on `conn` (the
    /// connection of [`wait_for_work`](Self::wait_for_work)): how a worker
    /// sees tasks that a producer wrote without a wake token.
    pub async fn has_pending(conn: &mut Conn, queue: &QueueKeys) -> Result<bool, BrokerError> {
        let (pending, paused): (u64, bool) = redis::pipe()
            .llen(queue.pending())
            .exists(queue.paused())
            .query_async(conn)
            .await?;
        Ok(pending > 0 && !paused)
    }
}

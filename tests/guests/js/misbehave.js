// A JavaScript guest written to misbehave, like tests/guests/misbehave in
// Rust: the payload {"do": "<mode>", ...} picks what it does, and
// tests/e2e/js.rs checks that the host classifies each exactly as it does
// for Rust. StarlingMonkey gives JS no file API, so there is no file mode.

import { defineHandler, enqueue, EnqueueError, log, RateLimited, Retry, Revoke, SkipRetry } from 'wasq-guest';

function fail(depth) {
  if (depth > 0) return fail(depth - 1);
  throw new RangeError('deliberate error for the test');
}

export const handle = defineHandler((task) => {
  if (task.group !== undefined) {
    // A task that aggregates a group answers with its group and members.
    return {
      group: task.group,
      members: task.members.map((m) => ({ id: m.id, type: m.taskType, payload: m.text() })),
    };
  }
  const req = task.json();
  switch (req.do) {
    case 'ok':
      return task.payload;
    case 'loop': {
      let n = 0;
      for (;;) n = (n + 1) | 0;
    }
    case 'memory': {
      // Keep 1 MiB blocks alive until the host refuses to grow memory.
      const blocks = [];
      for (;;) blocks.push(new Uint8Array(1 << 20).fill(blocks.length & 255));
    }
    case 'sleep':
      // Waits on the host (a timer) far past any timeout.
      return new Promise((resolve) => setTimeout(() => resolve('woke'), 600_000));
    case 'retry-after':
      throw new Retry('try again later', { after: 1500 });
    case 'revoke':
      throw new Revoke('nobody wants this');
    case 'rate-limited':
      throw new RateLimited(req.ms, 'the API said 429');
    case 'throw':
      fail(3);
      return 'unreachable';
    case 'enqueue':
      // As the Rust guest does: a refusal archives the task.
      try {
        return enqueue('webhooks:sync', { data: 1 }, { queue: req.queue });
      } catch (error) {
        if (error instanceof EnqueueError) throw new SkipRetry(`${error.message} [${error.kind}]`);
        throw error;
      }
    case 'info':
      return {
        id: task.id,
        taskType: task.taskType,
        queue: task.queue,
        retried: task.retried,
        maxRetry: task.maxRetry,
        headers: task.headers,
        bytes: task.payload.length,
      };
    default:
      return `unknown mode ${req.do}`;
  }
});

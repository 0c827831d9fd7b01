// wasq-guest: write wasq task handlers in JavaScript.
//
// A handler is an ES module that exports `handle`, the export of the world
// `wasq:task/handler@0.2.0` (wit/wasq.wit). `wasq build handler.js -o
// handler.wasm` turns it into a component with ComponentizeJS:
//
//   import { defineHandler, log } from 'wasq-guest';
//
//   export const handle = defineHandler(async (task) => {
//     const { to, from } = task.json();
//     log.info(`sending email from user ${from} to user ${to}`, { from, to });
//     return `email sent from ${from} to ${to}`;
//   });
//
// The handler may be async. What it returns is the task's result: a string
// (UTF-8), a Uint8Array or ArrayBuffer (as is), undefined or null (empty), or
// any other value as JSON. What it throws says what the host does next:
// `Retry` (optionally `{ after: ms }`), `SkipRetry` (archive now), `Revoke`
// (drop the task), `RateLimited` (run it again after `after` ms without
// using up a retry); anything else is a retry whose message carries the
// error's name, message and stack.

import { log as rawLog } from 'wasq:task/log@0.2.0';
import { enqueue as rawEnqueue } from 'wasq:task/enqueue@0.2.0';
import { setProgress as rawSetProgress } from 'wasq:task/context@0.2.0';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a handler throws to say what happens to its task. */
export class TaskError extends Error {
  constructor(message, kind) {
    super(String(message));
    this.name = 'TaskError';
    this.kind = kind;
  }
}

/** Retry the task with backoff while retries are left, or `after` ms. */
export class Retry extends TaskError {
  constructor(message, { after } = {}) {
    super(message, 'retry');
    this.name = 'Retry';
    this.after = after;
  }
}

/** Archive the task now: retrying cannot help. */
export class SkipRetry extends TaskError {
  constructor(message) {
    super(message, 'skip-retry');
    this.name = 'SkipRetry';
  }
}

/** Drop the task: it is no longer wanted, and nothing is archived. */
export class Revoke extends TaskError {
  constructor(message) {
    super(message, 'revoke');
    this.name = 'Revoke';
  }
}

/** Run the task again after `after` ms without using up a retry or
 * counting a failure: what it depends on said "not now" (a 429, a quota). */
export class RateLimited extends TaskError {
  constructor(after, message = 'rate limited') {
    super(message, 'rate-limited');
    this.name = 'RateLimited';
    this.after = after;
  }
}

/** Why the host refused an `enqueue`: `kind` is `denied`, `invalid`,
 * `conflict` or `unavailable`, `message` the host's words. */
export class EnqueueError extends Error {
  constructor(kind, message) {
    const what = {
      denied: 'enqueue denied',
      invalid: 'invalid enqueue',
      conflict: 'task id conflict',
      unavailable: 'broker unavailable',
    }[kind] ?? kind;
    super(`${what}: ${message}`);
    this.name = 'EnqueueError';
    this.kind = kind;
    this.hostMessage = message;
  }
}

/** One task of an aggregated group. */
export class Member {
  constructor(raw) {
    /** Its id. */
    this.id = raw.id;
    /** Its task type. */
    this.taskType = raw.taskType;
    /** Its payload bytes (a Uint8Array). */
    this.payload = raw.payload;
    /** Its headers, as an object. */
    this.headers = Object.fromEntries(raw.headers ?? []);
  }

  /** The payload as UTF-8 text. */
  text() {
    return decoder.decode(this.payload);
  }

  /** The payload parsed as JSON; one that does not parse is a `SkipRetry`. */
  json() {
    return parseJson(this.text(), `group member ${this.id} (${this.taskType})`);
  }
}

// A payload's text parsed as JSON; text that does not parse is a
// `SkipRetry` (the same bytes would fail again) naming what it belongs to.
function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SkipRetry(`payload of ${what} is not the expected JSON: ${error.message}`);
  }
}

/** The task being handled. */
export class Task {
  constructor(raw) {
    /** The task's id. */
    this.id = raw.id;
    /** The task type, e.g. `notifications:email`. */
    this.taskType = raw.taskType;
    /** The queue the task came from. */
    this.queue = raw.queue;
    /** The raw payload bytes (a Uint8Array). */
    this.payload = raw.payload;
    /** How many times this task was retried before this attempt. */
    this.retried = raw.retried;
    /** How many retries the task allows. */
    this.maxRetry = raw.maxRetry;
    /** The deadline in ms since the Unix epoch (a number), or undefined. */
    this.deadlineMs = raw.deadlineMs === undefined ? undefined : Number(raw.deadlineMs);
    /** The headers, as an object. */
    this.headers = Object.fromEntries(raw.headers ?? []);
    /** For a task that aggregates a group: the group's name, else undefined. */
    this.group = raw.group ?? undefined;
    /** The group's tasks, oldest first (empty for any other task). */
    this.members = (raw.members ?? []).map((m) => new Member(m));
  }

  /** The payload as UTF-8 text. */
  text() {
    return decoder.decode(this.payload);
  }

  /** The payload parsed as JSON. A payload that does not parse is a
   * `SkipRetry`: the same bytes would fail again. */
  json() {
    return parseJson(this.text(), this.taskType);
  }
}

function fieldList(fields) {
  return Object.entries(fields ?? {}).map(([key, value]) => [
    key,
    typeof value === 'string' ? value : JSON.stringify(value) ?? String(value),
  ]);
}

function logAt(level) {
  return (message, fields) => rawLog(level, String(message), fieldList(fields));
}

/** Structured logging: `log.info(message, { key: value })`; the host tags
 * each line with the task's id, type and queue. `console.log` works too. */
export const log = {
  trace: logAt('trace'),
  debug: logAt('debug'),
  info: logAt('info'),
  warn: logAt('warn'),
  error: logAt('error'),
};

function payloadBytes(payload) {
  if (payload instanceof Uint8Array) return payload;
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (typeof payload === 'string') return encoder.encode(payload);
  if (payload === undefined || payload === null) return new Uint8Array(0);
  return encoder.encode(JSON.stringify(payload));
}

function millis(ms) {
  return ms === undefined || ms === null ? undefined : BigInt(Math.max(0, Math.round(ms)));
}

/** Enqueues a follow-up task; returns its id. `payload` is bytes, a string
 * or a value sent as JSON. Options: `queue` (it must be granted to the task
 * type), `maxRetry`, `processIn` (ms), `timeout` (ms), `taskId`,
 * `retention` (ms), `headers` (an object). Throws an `EnqueueError`. */
export function enqueue(taskType, payload, options = {}) {
  const opts = {
    queue: options.queue,
    maxRetry: options.maxRetry,
    processInMs: millis(options.processIn),
    timeoutMs: millis(options.timeout),
    taskId: options.taskId,
    retentionMs: millis(options.retention),
    headers: Object.entries(options.headers ?? {}).map(([k, v]) => [k, String(v)]),
  };
  try {
    return rawEnqueue(String(taskType), payloadBytes(payload), opts);
  } catch (error) {
    const payload = error?.payload;
    if (payload && typeof payload.tag === 'string') {
      throw new EnqueueError(payload.tag, payload.val);
    }
    throw error;
  }
}

/** Reports progress of long work, 0 to 100 (larger values count as 100). */
export function setProgress(percent) {
  rawSetProgress(Math.max(0, Math.min(100, Math.round(Number(percent)) || 0)));
}

function resultBytes(value) {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  return encoder.encode(JSON.stringify(value) ?? 'null');
}

function describe(error) {
  if (error instanceof Error) {
    const head = `${error.name}: ${error.message}`;
    // The last frames are ComponentizeJS's bindings (a build-time scratch
    // path): not the handler's.
    const stack = typeof error.stack === 'string'
      ? error.stack
          .trimEnd()
          .split('\n')
          .filter((line) => !line.includes('/sources/initializer.js'))
          .join('\n')
      : '';
    return stack ? `${head}\n${stack}` : head;
  }
  try {
    return `thrown: ${JSON.stringify(error)}`;
  } catch {
    return `thrown: ${String(error)}`;
  }
}

function taskError(error) {
  if (error instanceof Retry) {
    return { tag: 'retry', val: { message: error.message, delayMs: millis(error.after) } };
  }
  if (error instanceof SkipRetry) return { tag: 'skip-retry', val: error.message };
  if (error instanceof Revoke) return { tag: 'revoke', val: error.message };
  if (error instanceof RateLimited) {
    return { tag: 'rate-limited', val: { message: error.message, afterMs: millis(error.after) ?? 0n } };
  }
  return { tag: 'retry', val: { message: describe(error), delayMs: undefined } };
}

/** Wraps a handler, `(task) => result` (sync or async), as the component's
 * `handle`: `export const handle = defineHandler(async (task) => ...)`. */
export function defineHandler(handler) {
  return async (raw) => {
    try {
      return { tag: 'ok', val: resultBytes(await handler(new Task(raw))) };
    } catch (error) {
      return { tag: 'err', val: taskError(error) };
    }
  };
}

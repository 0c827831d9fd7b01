// Types of wasq-guest (index.js): write wasq task handlers in JavaScript.

/** The task being handled. */
export class Task {
  /** The task's id. */
  readonly id: string;
  /** The task type, e.g. `notifications:email`. */
  readonly taskType: string;
  /** The queue the task came from. */
  readonly queue: string;
  /** The raw payload bytes. */
  readonly payload: Uint8Array;
  /** How many times this task was retried before this attempt. */
  readonly retried: number;
  /** How many retries the task allows. */
  readonly maxRetry: number;
  /** The deadline in ms since the Unix epoch, if any. */
  readonly deadlineMs: number | undefined;
  /** The headers set by whoever enqueued the task. */
  readonly headers: Record<string, string>;
  /** For a task that aggregates a group: the group's name. */
  readonly group: string | undefined;
  /** The group's tasks, oldest first (empty for any other task). */
  readonly members: Member[];
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON; a payload that does not parse throws `SkipRetry`. */
  json<T = any>(): T;
}

/** What a handler may return: the task's result. */
export type Output = string | Uint8Array | ArrayBuffer | ArrayBufferView | undefined | null | unknown;

/** One task of an aggregated group. */
export class Member {
  readonly id: string;
  readonly taskType: string;
  readonly payload: Uint8Array;
  readonly headers: Record<string, string>;
  text(): string;
  json(): unknown;
}

/** Wraps a handler as the component's `handle` export:
 * `export const handle = defineHandler(async (task) => ...)`. */
export function defineHandler(
  handler: (task: Task) => Output | Promise<Output>,
): (raw: unknown) => Promise<unknown>;

/** The base of `Retry`, `SkipRetry`, `Revoke` and `RateLimited`. */
export class TaskError extends Error {
  readonly kind: 'retry' | 'skip-retry' | 'revoke' | 'rate-limited';
}
/** Retry with backoff while retries are left, or after `after` ms. */
export class Retry extends TaskError {
  constructor(message: string, options?: { after?: number });
  readonly after: number | undefined;
}
/** Archive the task now: retrying cannot help. */
export class SkipRetry extends TaskError {
  constructor(message: string);
}
/** Drop the task: it is no longer wanted. */
export class Revoke extends TaskError {
  constructor(message: string);
}

/** Run the task again after `after` ms without using up a retry. */
export class RateLimited extends TaskError {
  constructor(after: number, message?: string);
  readonly after: number;
}

/** Why the host refused an `enqueue`. */
export class EnqueueError extends Error {
  readonly kind: 'denied' | 'invalid' | 'conflict' | 'unavailable';
  /** The host's message. */
  readonly hostMessage: string;
}

/** Options of a follow-up task; durations in milliseconds. */
export interface EnqueueOptions {
  /** Target queue (must be granted to the task type); default: the running task's. */
  queue?: string;
  maxRetry?: number;
  processIn?: number;
  timeout?: number;
  taskId?: string;
  retention?: number;
  headers?: Record<string, string>;
}

/** Enqueues a follow-up task and returns its id; throws `EnqueueError`. */
export function enqueue(
  taskType: string,
  payload: Uint8Array | ArrayBuffer | string | unknown,
  options?: EnqueueOptions,
): string;

/** Reports progress of long work, 0 to 100. */
export function setProgress(percent: number): void;

type Fields = Record<string, unknown>;
/** Structured logging; the host tags each line with the task. */
export const log: {
  trace(message: string, fields?: Fields): void;
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
};

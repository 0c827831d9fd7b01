#!/usr/bin/env node
// BullMQ comparison driver for the wasq benchmark.
//
// Runs against the same Redis Cluster as the Rust benchmark and prints one
// JSON line on stdout; everything else goes to stderr.
//
//   node bench.mjs --nodes 127.0.0.1:7000,127.0.0.1:7001 --jobs 100000 --concurrency 50 \
//                  [--master 127.0.0.1:7001] [--sequential-jobs 10000]
//
// Phases:
//   1. concurrent adds: queue.add() of one job each into queue A, --concurrency
//                       callers, each awaiting its add before its next
//   2. sequential adds: one caller, `await queue.add()` in a loop, into queue S
//                       (--sequential-jobs jobs, default --jobs / 10); S is then
//                       emptied, it takes no part in the drain
//   3. bulk:            queue.addBulk() of 1000 jobs per call, one call at a
//                       time, into queue B
//   4. drain:           Workers with a no-op async processor drain A and B;
//                       the master holding the prefix's slot is sampled with
//                       INFO cpu before and after, and the processor counts
//                       its calls.
//
// BullMQ on a Redis Cluster:
//   * all keys of a queue must hash to one slot (BullMQ's Lua scripts touch
//     many keys of a queue at once), so the key prefix carries a hash tag:
//     BullMQ 6.7 names its keys "<prefix>:<queue>:<type>", and the prefix is
//     "{bench-bullmq}" by default. Every queue therefore lives on one master,
//     the one sampled. --master names the master it must be (the one holding
//     the queues it is compared with); the run fails if it is another.
//   * connections used by Workers (BullMQ duplicates the given client for its
//     main and its blocking BZPOPMIN connection) must have
//     maxRetriesPerRequest: null. For an ioredis Cluster that option belongs in
//     `redisOptions`; BullMQ throws if it is set to anything else there.
//   * ioredis is an optional peer dependency of bullmq 6.x and is not loaded by
//     the ESM code path; we construct the Cluster ourselves and pass the
//     instance as `connection`.

import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { Cluster } from 'ioredis';
import { Queue, Worker } from 'bullmq';

const require = createRequire(import.meta.url);
const BULLMQ_VERSION = require('bullmq/package.json').version;

const log = (...a) => console.error('[bullmq-bench]', ...a);

function usage(msg) {
  if (msg) console.error(`error: ${msg}`);
  console.error(
    'usage: node bench.mjs --nodes HOST:PORT[,HOST:PORT...] [--jobs N] [--concurrency N]\n' +
      '                      [--prefix {tag}] [--master HOST:PORT] [--sequential-jobs N]\n' +
      '                      [--timeout SECONDS] [--drain parallel|sequential]',
  );
  process.exit(2);
}

let args;
try {
  args = parseArgs({
    options: {
      nodes: { type: 'string' },
      jobs: { type: 'string', default: '100000' },
      concurrency: { type: 'string', default: '50' },
      prefix: { type: 'string', default: '{bench-bullmq}' },
      master: { type: 'string' },
      'sequential-jobs': { type: 'string' },
      timeout: { type: 'string', default: '600' },
      drain: { type: 'string', default: 'parallel' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }).values;
} catch (e) {
  usage(e.message);
}
if (args.help) usage();
if (!args.nodes) usage('--nodes is required');

const posInt = (name) => {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer`);
  return n;
};
const JOBS = posInt('jobs');
const SEQUENTIAL_JOBS = args['sequential-jobs'] === undefined ? Math.max(1, Math.floor(JOBS / 10)) : posInt('sequential-jobs');
const CONCURRENCY = posInt('concurrency');
const TIMEOUT_S = posInt('timeout');
const PREFIX = args.prefix;
const DRAIN_MODE = args.drain;
if (!['parallel', 'sequential'].includes(DRAIN_MODE)) usage('--drain must be parallel or sequential');
if (!/\{[^{}]+\}/.test(PREFIX)) usage('--prefix must contain a hash tag such as {bench-bullmq}');

const startupNodes = args.nodes.split(',').map((s) => {
  const m = s.trim().match(/^(.+):(\d+)$/);
  if (!m) usage(`bad node address: ${s}`);
  return { host: m[1], port: Number(m[2]) };
});

const QUEUE_ONE = 'bench-callers';
const QUEUE_SEQ = 'bench-seq';
const QUEUE_BULK = 'bench-bulk';
const BULK_CHUNK = 1000;
// No retention of completed jobs (like a no-retention wasq queue); failed jobs
// are kept so that a failure would be visible.
const JOB_OPTS = { removeOnComplete: true, removeOnFail: false };

// ---------------------------------------------------------------------------

const cluster = new Cluster(startupNodes, {
  redisOptions: { maxRetriesPerRequest: null },
  enableReadyCheck: true,
});
let lastClusterError = '';
cluster.on('error', (e) => {
  // ioredis repeats the same error on every retry; log each distinct one once.
  if (e.message !== lastClusterError) log('cluster error:', e.message);
  lastClusterError = e.message;
});

// Every queue made (for the clean-up), and the two drained.
const queues = [];
const drained = [];
const workers = [];

const timer = setTimeout(() => {
  fail(new Error(`timed out after ${TIMEOUT_S} s`));
}, TIMEOUT_S * 1000);

let failing = false;
async function fail(err) {
  if (failing) return;
  failing = true;
  console.error(`[bullmq-bench] FAILED: ${err && err.stack ? err.stack : err}`);
  // Best effort cleanup, bounded in time. Stop the enqueue loops first and let
  // their in-flight commands settle so nothing is re-created after cleanup.
  const bounded = async () => {
    await Promise.allSettled([...inflight]);
    if (cluster.status === 'ready') await cleanup();
    else cluster.disconnect();
  };
  await Promise.race([bounded().catch((e) => log('cleanup error:', e.message)), sleep(30000)]);
  process.exit(1);
}
process.on('unhandledRejection', (e) => fail(e));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function waitReady(c, ms) {
  if (c.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      c.off('ready', onReady);
      c.off('end', onEnd);
      reject(new Error(`cluster ${args.nodes} not ready after ${ms / 1000} s (last error: ${lastClusterError || 'none'})`));
    }, ms);
    const onReady = () => {
      clearTimeout(t);
      c.off('end', onEnd);
      resolve();
    };
    const onEnd = () => {
      clearTimeout(t);
      c.off('ready', onReady);
      reject(new Error(`cluster connection ended before becoming ready (last error: ${lastClusterError || 'none'})`));
    };
    c.once('ready', onReady);
    c.once('end', onEnd);
  });
}

// The master node that serves the slot of the queues' keys (checked to be
// one slot for every queue's keys, as BullMQ 6.7 names them).
async function findMaster() {
  const slots = new Set();
  for (const name of [QUEUE_ONE, QUEUE_SEQ, QUEUE_BULK]) {
    slots.add(Number(await cluster.cluster('KEYSLOT', `${PREFIX}:${name}:wait`)));
  }
  if (slots.size !== 1) throw new Error(`prefix ${PREFIX} puts the queues in slots ${[...slots].join(', ')}, not one`);
  const [slot] = slots;
  return masterOfSlot(slot);
}

async function masterOfSlot(slot) {
  const ranges = await cluster.cluster('SLOTS');
  for (const [start, end, master] of ranges) {
    if (slot >= start && slot <= end) {
      const host = String(master[0]);
      const port = Number(master[1]);
      const masters = cluster.nodes('master');
      const node =
        masters.find((n) => n.options.host === host && n.options.port === port) ||
        (masters.filter((n) => n.options.port === port).length === 1
          ? masters.find((n) => n.options.port === port)
          : undefined);
      if (!node) throw new Error(`no connection to master ${host}:${port} of slot ${slot}`);
      return { slot, addr: `${host}:${port}`, range: `${start}-${end}`, node };
    }
  }
  throw new Error(`slot ${slot} is not served by any node`);
}

async function masterCpuSeconds(node) {
  const info = await node.info('cpu');
  const field = (k) => {
    const m = info.match(new RegExp(`^${k}:([0-9.]+)`, 'm'));
    if (!m) throw new Error(`INFO cpu has no ${k}`);
    return Number(m[1]);
  };
  return field('used_cpu_sys') + field('used_cpu_user');
}

async function removeQueueKeys(master) {
  // Obliterate each queue, then sweep anything BullMQ may have left under the
  // queues' key space (all on the one master thanks to the hash tag).
  for (const q of queues) {
    await q.obliterate({ force: true });
  }
  let removed = 0;
  for (const name of [QUEUE_ONE, QUEUE_SEQ, QUEUE_BULK]) {
    let cursor = '0';
    do {
      const [next, keys] = await master.node.scan(cursor, 'MATCH', `${PREFIX}:${name}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) removed += await master.node.del(...keys);
    } while (cursor !== '0');
  }
  return removed;
}

let master;
let cleanedUp = false;
async function cleanup() {
  if (cleanedUp) return;
  cleanedUp = true;
  await Promise.all(workers.map((w) => w.close(true).catch((e) => log('worker close:', e.message))));
  if (master) {
    const left = await removeQueueKeys(master);
    if (left) log(`removed ${left} leftover keys after obliterate`);
  }
  await Promise.all(queues.map((q) => q.close().catch((e) => log('queue close:', e.message))));
  await cluster.quit().catch(() => cluster.disconnect());
}

// Commands issued by the enqueue loops that have not settled yet.
const inflight = new Set();
function track(p) {
  inflight.add(p);
  p.then(
    () => inflight.delete(p),
    () => inflight.delete(p),
  );
  return p;
}

// Runs `total` calls of fn(i) with at most `limit` in flight; stops early
// once the run is failing.
async function pooled(total, limit, fn) {
  let next = 0;
  const runner = async () => {
    while (next < total && !failing) {
      const i = next++;
      await track(fn(i));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, total) }, runner));
}

const perSec = (n, ms) => (n * 1000) / ms;
const round1 = (x) => Math.round(x * 10) / 10;

async function main() {
  await waitReady(cluster, 20000);
  master = await findMaster();
  log(`bullmq ${BULLMQ_VERSION}; prefix ${PREFIX} -> slot ${master.slot} on master ${master.addr} (slots ${master.range})`);
  if (args.master && args.master !== master.addr) {
    throw new Error(`prefix ${PREFIX} hashes to slot ${master.slot} on master ${master.addr}, not on ${args.master} as required`);
  }

  const qOne = new Queue(QUEUE_ONE, { connection: cluster, prefix: PREFIX, defaultJobOptions: JOB_OPTS });
  const qSeq = new Queue(QUEUE_SEQ, { connection: cluster, prefix: PREFIX, defaultJobOptions: JOB_OPTS });
  const qBulk = new Queue(QUEUE_BULK, { connection: cluster, prefix: PREFIX, defaultJobOptions: JOB_OPTS });
  queues.push(qOne, qSeq, qBulk);
  drained.push(qOne, qBulk);
  for (const q of queues) q.on('error', (e) => log(`queue ${q.name} error:`, e.message));
  await Promise.all(queues.map((q) => q.waitUntilReady()));

  // Start from empty queues (a previous aborted run may have left jobs).
  const stale = await removeQueueKeys(master);
  if (stale) log(`removed ${stale} stale keys from a previous run`);
  await Promise.all(queues.map((q) => q.resume())); // obliterate pauses the queue

  // Phase 1: CONCURRENCY callers, one add() each at a time.
  log(`phase 1: add ${JOBS} jobs, one per call, ${CONCURRENCY} concurrent callers`);
  let t0 = performance.now();
  await pooled(JOBS, CONCURRENCY, () => qOne.add('noop', {}));
  if (failing) return;
  const enqueueOneMs = performance.now() - t0;
  log(`phase 1: ${Math.round(perSec(JOBS, enqueueOneMs))} jobs/s`);

  // Phase 2: one caller, each add() awaited before the next.
  log(`phase 2: add ${SEQUENTIAL_JOBS} jobs, one caller, one call at a time`);
  t0 = performance.now();
  for (let i = 0; i < SEQUENTIAL_JOBS && !failing; i++) {
    await track(qSeq.add('noop', {}));
  }
  if (failing) return;
  const enqueueSeqMs = performance.now() - t0;
  log(`phase 2: ${Math.round(perSec(SEQUENTIAL_JOBS, enqueueSeqMs))} jobs/s`);
  const seqCounts = await qSeq.getJobCounts('wait', 'prioritized');
  if (seqCounts.wait + seqCounts.prioritized !== SEQUENTIAL_JOBS) {
    throw new Error(`queue ${QUEUE_SEQ} after enqueue: ${JSON.stringify(seqCounts)}, expected ${SEQUENTIAL_JOBS} waiting`);
  }
  // Its jobs take no part in the drain.
  await qSeq.obliterate({ force: true });

  // Phase 3: bulk, sequential chunks of BULK_CHUNK.
  log(`phase 3: addBulk ${JOBS} jobs in chunks of ${BULK_CHUNK}`);
  t0 = performance.now();
  for (let done = 0; done < JOBS && !failing; done += BULK_CHUNK) {
    const n = Math.min(BULK_CHUNK, JOBS - done);
    await track(qBulk.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: {} }))));
  }
  if (failing) return;
  const enqueueBulkMs = performance.now() - t0;
  log(`phase 3: ${Math.round(perSec(JOBS, enqueueBulkMs))} jobs/s`);

  for (const q of drained) {
    const c = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'paused');
    if (c.wait + c.prioritized !== JOBS || c.active || c.delayed || c.paused) {
      throw new Error(`queue ${q.name} after enqueue: ${JSON.stringify(c)}, expected ${JOBS} waiting`);
    }
  }

  // Phase 4: drain.
  //
  // Our benchmark drains with ONE worker process of total concurrency C. A
  // BullMQ Worker serves a single queue, so to keep C jobs in flight in total
  // we use two Workers in this one process:
  //   parallel (default): both Workers run at once with ceil(C/2) and
  //     floor(C/2) concurrency. Both queues are busy for the whole drain, no
  //     hand-over gap, and two independent fetch loops: the most favourable
  //     option for BullMQ that still caps the total at C.
  //   sequential: Worker A drains queue A with concurrency C, then Worker B
  //     drains queue B with concurrency C (B is started when A's last job
  //     completes; both are connected before timing starts).
  // queue-bench uses sequential, as wasq's drain runs one queue at a time.
  // Workers are created with autorun: false and waited for (connections up,
  // scripts loaded) before the clock starts.
  const processed = new Map([[QUEUE_ONE, new Set()], [QUEUE_BULK, new Set()]]);
  let invocations = 0;
  let duplicates = 0;
  const processor = async (job) => {
    invocations++;
    const seen = processed.get(job.queueName);
    if (seen.has(job.id)) duplicates++;
    else seen.add(job.id);
  };

  const total = 2 * JOBS;
  let completed = 0;
  let failed = 0;
  const completedBy = new Map([[QUEUE_ONE, 0], [QUEUE_BULK, 0]]);
  let onProgress = () => {};

  const conc =
    DRAIN_MODE === 'parallel' && CONCURRENCY >= 2
      ? [Math.ceil(CONCURRENCY / 2), Math.floor(CONCURRENCY / 2)]
      : [CONCURRENCY, CONCURRENCY];
  const sequential = !(DRAIN_MODE === 'parallel' && CONCURRENCY >= 2);
  for (const [i, name] of [QUEUE_ONE, QUEUE_BULK].entries()) {
    const w = new Worker(name, processor, {
      connection: cluster,
      prefix: PREFIX,
      concurrency: conc[i],
      autorun: false,
    });
    w.on('error', (e) => log(`worker ${name} error:`, e.message));
    w.on('failed', (job, err) => {
      failed++;
      log(`job ${name}/${job && job.id} failed:`, err && err.message);
    });
    w.on('completed', () => {
      completed++;
      completedBy.set(name, completedBy.get(name) + 1);
      onProgress();
    });
    workers.push(w);
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  log(`phase 4: drain ${total} jobs, ${sequential ? 'sequential' : 'parallel'} workers, concurrency ${conc.join('+')}${sequential ? ' (one at a time)' : ''}`);

  let secondStarted = false;
  let lastLog = performance.now();
  const allDone = new Promise((resolve, reject) => {
    onProgress = () => {
      if (sequential && !secondStarted && completedBy.get(QUEUE_ONE) === JOBS) {
        secondStarted = true;
        workers[1].run().catch(reject);
      }
      const now = performance.now();
      if (now - lastLog > 2000) {
        lastLog = now;
        log(`  drained ${completed}/${total}`);
      }
      if (completed + failed >= total) resolve();
    };
  });

  const cpu0 = await masterCpuSeconds(master.node);
  t0 = performance.now();
  const runs = (sequential ? [workers[0]] : workers).map((w) => w.run());
  for (const r of runs) r.catch((e) => fail(e));
  await allDone;
  const drainMs = performance.now() - t0;
  const cpu1 = await masterCpuSeconds(master.node);
  log(`phase 4: ${Math.round(perSec(total, drainMs))} jobs/s, master cpu ${(cpu1 - cpu0).toFixed(3)} s`);

  // Give any stray re-delivery a moment to show up, then stop the workers.
  await sleep(200);
  await Promise.all(workers.map((w) => w.close()));

  const counts = {};
  for (const q of drained) counts[q.name] = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'failed', 'completed');

  // Exactly-once check.
  const problems = [];
  if (invocations !== total) problems.push(`processor ran ${invocations} times, expected ${total}`);
  if (duplicates) problems.push(`${duplicates} jobs were processed more than once`);
  for (const [name, seen] of processed) {
    if (seen.size !== JOBS) problems.push(`queue ${name}: ${seen.size} distinct jobs processed, expected ${JOBS}`);
  }
  if (failed) problems.push(`${failed} jobs failed`);
  for (const [name, c] of Object.entries(counts)) {
    if (Object.values(c).some((v) => v !== 0)) problems.push(`queue ${name} not empty after drain: ${JSON.stringify(c)}`);
  }
  if (problems.length) throw new Error(`exactly-once check failed:\n  ${problems.join('\n  ')}`);
  log(`exactly-once check ok: ${invocations} invocations, ${total} distinct jobs`);

  await cleanup();
  clearTimeout(timer);

  const result = {
    bullmq: BULLMQ_VERSION,
    prefix: PREFIX,
    slot: master.slot,
    master: master.addr,
    enqueue_concurrent_per_s: round1(perSec(JOBS, enqueueOneMs)),
    enqueue_sequential_per_s: round1(perSec(SEQUENTIAL_JOBS, enqueueSeqMs)),
    enqueue_bulk_per_s: round1(perSec(JOBS, enqueueBulkMs)),
    drain_per_s: round1(perSec(total, drainMs)),
    master_cpu_us_per_job: round1(((cpu1 - cpu0) * 1e6) / total),
    handler_calls: invocations,
    jobs: JOBS,
    sequential_jobs: SEQUENTIAL_JOBS,
    concurrency: CONCURRENCY,
  };
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
}

main().catch((e) => fail(e));

// `compute:primes`: CPU-bound work on an interpreter. Counts the primes below
// `n` with a sieve of Eratosthenes and returns {"n", "count", "largest"}
// as JSON (as examples-wasm/python/primes.py does), reporting progress as it goes.
//
// The JS engine interprets the handler, so every JS operation costs many
// wasm instructions: the task type's `fuel` bounds the work (out_of_fuel),
// and with unlimited fuel its `timeout` does.

import { defineHandler, log, setProgress, SkipRetry } from 'wasq-guest';

export const handle = defineHandler((task) => {
  const { n: limit } = task.json();
  if (!Number.isInteger(limit) || limit < 2 || limit > 100_000_000) {
    throw new SkipRetry('payload of compute:primes needs an integer "n" in 2..=100000000');
  }
  const composite = new Uint8Array(limit);
  let count = 0;
  let largest = 0;
  let reported = 0;
  for (let n = 2; n < limit; n++) {
    if (composite[n]) continue;
    count++;
    largest = n;
    for (let m = n * n; m < limit; m += n) composite[m] = 1;
    const percent = Math.floor((n * 100) / limit);
    if (percent >= reported + 10) {
      reported = percent;
      setProgress(percent);
    }
  }
  setProgress(100);
  log.info(`${count} primes below ${limit}`, { n: limit, count, largest });
  return { n: limit, count, largest };
});

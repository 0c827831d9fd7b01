"""`compute:primes`: a sieve of Eratosthenes up to `n`, in pure Python.

Payload: `{"n": <integer>}`. Returns `{"n": n, "count": <primes <= n>,
"largest": <the largest>}` as JSON and reports progress as it goes. The
interpreter's work is counted in fuel like any guest's: a large `n` runs
out of fuel, or out of time when its task type's fuel is unlimited.
"""

from wasq_guest import SkipRetry, handler, log, set_progress


@handler
def primes(task):
    request = task.json()
    n = request.get("n") if isinstance(request, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise SkipRetry("expected {\"n\": <integer >= 0>}")
    sieve = bytearray([1]) * (n + 1)
    sieve[0:2] = b"\x00\x00"[: n + 1]
    limit = int(n**0.5)
    for i in range(2, limit + 1):
        if sieve[i]:
            # One multiple at a time, as a naive program would: the point is
            # work the interpreter does, not slicing tricks.
            for multiple in range(i * i, n + 1, i):
                sieve[multiple] = 0
        if i % 64 == 0:
            set_progress(100 * i // (limit + 1))
    count = sum(sieve)
    largest = next((i for i in range(n, 1, -1) if sieve[i]), None)
    set_progress(100)
    log.info(f"{count} primes up to {n}", n=n, count=count)
    return {"n": n, "count": count, "largest": largest}

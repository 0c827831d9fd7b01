// Makes the HTTP request its payload describes with `fetch`, for the
// outbound HTTP tests, as the Rust http-client guest does:
// {"method": "POST", "url": "...", "body_bytes": 1000000, "headers": {"x-a": "b"}}.
//
// It returns the response as JSON (status, headers, body length and sum, and
// the body itself when it is short). A failed fetch is a skip-retry whose
// message carries the engine's error, so a test can read it.

import { defineHandler, SkipRetry } from 'wasq-guest';

export const handle = defineHandler(async (task) => {
  const spec = task.json();
  const n = spec.body_bytes ?? 0;
  const body = new Uint8Array(n);
  for (let i = 0; i < n; i++) body[i] = i % 251;
  let response;
  try {
    response = await fetch(spec.url, {
      method: spec.method ?? 'GET',
      headers: spec.headers ?? {},
      body: n > 0 ? body : undefined,
    });
  } catch (error) {
    throw new SkipRetry(`fetch failed: ${error?.message ?? error}`);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  let sum = 0;
  for (const b of bytes) sum += b;
  return {
    status: response.status,
    headers: [...response.headers.entries()],
    body_len: bytes.length,
    body_sum: sum,
    body: bytes.length <= 1024 ? new TextDecoder().decode(bytes) : '',
  };
});

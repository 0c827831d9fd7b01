// `webhooks:sync`: the seed tutorial's webhook handler, in JavaScript.
//
// Payload: {"data": <integer>}, optionally with "url". It delivers the
// payload as JSON with `fetch`, a POST to the payload's `url`, and only logs
// it when there is none, as in the tutorial. The receiver's answer decides:
// 2xx is done; 429 and 5xx are retried, after `Retry-After` when it says;
// any other status archives the task, since sending it again cannot help.
// The host allows only the hosts in the task type's `http` list.

import { defineHandler, log, Retry, SkipRetry } from 'wasq-guest';

export const handle = defineHandler(async (task) => {
  const { data, url } = task.json();
  if (!Number.isInteger(data)) {
    throw new SkipRetry('payload of webhooks:sync needs an integer "data"');
  }
  if (!url) {
    log.info(`processing webhook with data ${data}`, { data });
    return `webhook ${data} processed`;
  }
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-wasq-task-id': task.id },
    body: task.payload,
  });
  const status = response.status;
  if (status >= 200 && status < 300) {
    log.info(`delivered webhook ${data} to ${url}`, { status });
    return `webhook ${data} delivered: ${status}`;
  }
  if (status === 429 || status >= 500) {
    log.warn(`receiver at ${url} answered ${status}`, { status });
    const seconds = Number((response.headers.get('retry-after') ?? '').trim());
    const after = Number.isInteger(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
    throw new Retry(`receiver answered ${status}`, { after });
  }
  const text = (await response.text()).slice(0, 200);
  throw new SkipRetry(`receiver refused the webhook with ${status}: ${text}`);
});

// `webhooks:sync`: the seed tutorial's webhook handler, in JavaScript.
//
// Payload: {"data": <integer>}. Logs that it processes the webhook.

import { defineHandler, log, SkipRetry } from 'wasq-guest';

export const handle = defineHandler((task) => {
  const { data } = task.json();
  if (!Number.isInteger(data)) {
    throw new SkipRetry('payload of webhooks:sync needs an integer "data"');
  }
  log.info(`processing webhook with data ${data}`, { data });
  return `webhook ${data} processed`;
});

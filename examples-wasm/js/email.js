// `notifications:email`: the seed tutorial's email handler, in JavaScript.
//
// Payload: {"to": <user id>, "from": <user id>}. Logs that it sends an email
// from `from` to `to` and returns a one-line receipt.
// Build: wasq build examples-wasm/js/email.js -o examples-wasm/js/target/email.wasm

import { defineHandler, log, SkipRetry } from 'wasq-guest';

export const handle = defineHandler((task) => {
  const { to, from } = task.json();
  if (!Number.isInteger(to) || !Number.isInteger(from)) {
    throw new SkipRetry('payload of notifications:email needs integer "to" and "from"');
  }
  log.info(`sending email from user ${from} to user ${to}`, { from, to });
  return `email sent from ${from} to ${to}`;
});

// The smallest JavaScript handler: does nothing and succeeds.
// `wasq bench` runs it to measure what the sandbox costs per JavaScript task.

import { defineHandler } from 'wasq-guest';

export const handle = defineHandler(() => undefined);

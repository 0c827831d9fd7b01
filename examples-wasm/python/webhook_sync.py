"""`webhooks:sync` in Python: the tutorial's webhook handler.

Payload: `{"data": <integer>}`, optionally with `"url"`. It delivers the
payload as JSON with a POST to the payload's `url`, else to the URL in
`WEBHOOK_URL` (an env var the task type is granted), and only logs it when
neither is set, as in the tutorial. The receiver's answer decides: 2xx is
done; 429 and 5xx are retried, after `Retry-After` when it says; any other
status archives the task, since sending it again cannot help. The host
allows only the hosts in the task type's `http` list.
"""

import os

from wasq_guest import Retry, SkipRetry, handler, http, log


@handler
def sync(task):
    hook = task.json()
    data = hook.get("data") if isinstance(hook, dict) else None
    if not isinstance(data, int) or isinstance(data, bool):
        raise SkipRetry(
            f"payload of {task.task_type} is not the expected JSON: `data` must be an integer")
    url = hook.get("url") or os.environ.get("WEBHOOK_URL")
    if not url:
        log.info(f"processing webhook with data {data}", data=data)
        return f"webhook {data} processed"
    response = http.post(
        url,
        body=task.payload,
        headers={"content-type": "application/json", "x-wasq-task-id": task.id},
        timeout=10,
    )
    if 200 <= response.status < 300:
        log.info(f"delivered webhook {data} to {url}", status=response.status)
        return f"webhook {data} delivered: {response.status}"
    if response.status == 429 or response.status >= 500:
        log.warn(f"receiver at {url} answered {response.status}", status=response.status)
        raise Retry(f"receiver answered {response.status}", after=response.retry_after())
    raise SkipRetry(
        f"receiver refused the webhook with {response.status}: {response.text()[:200]}")

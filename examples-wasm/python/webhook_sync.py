"""`webhooks:sync` in Python: the tutorial's webhook handler.

Payload: `{"data": <integer>}`. Logs that it processes the webhook.
"""

from wasq_guest import SkipRetry, handler, log


@handler
def sync(task):
    hook = task.json()
    data = hook.get("data") if isinstance(hook, dict) else None
    if not isinstance(data, int) or isinstance(data, bool):
        raise SkipRetry(
            f"payload of {task.task_type} is not the expected JSON: `data` must be an integer")
    log.info(f"processing webhook with data {data}", data=data)
    return f"webhook {data} processed"

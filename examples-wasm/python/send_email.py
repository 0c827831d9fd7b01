"""`notifications:email` in Python: the tutorial's email handler.

Payload: `{"to": <user id>, "from": <user id>}`. Logs that it sends an email
from `from` to `to` and returns a one-line receipt.
"""

from wasq_guest import SkipRetry, handler, log


@handler
def send_email(task):
    email = task.json()
    try:
        to, sender = int(email["to"]), int(email["from"])
    except (KeyError, TypeError, ValueError) as error:
        raise SkipRetry(f"payload of {task.task_type} is not the expected JSON: {error!r}")
    log.info(f"sending email from user {sender} to user {to}", **{"from": sender, "to": to})
    return f"email sent from {sender} to {to}"

"""The Python SDK for wasq task handlers.

A handler is one function that takes a :class:`Task` and returns the task's
result; mark it with :func:`handler`::

    from wasq_guest import handler, log

    @handler
    def send_email(task):
        email = task.json()
        log.info(f"sending email from user {email['from']} to user {email['to']}",
                 **{"from": email["from"], "to": email["to"]})
        return f"email sent from {email['from']} to {email['to']}"

Build it into a component with ``wasq build app.py -o email.wasm``.

What the function returns is the result: ``str`` (stored as UTF-8),
``bytes``, ``None`` (empty) or any JSON-serialisable value (``json.dumps``).
Raise :class:`Retry`, :class:`SkipRetry`, :class:`Revoke` or
:class:`RateLimited` (run again later without using up a retry) to tell the
host what to do with a failed task; any other exception is a retry whose message
names the exception and the last frames of its traceback.

The host does the rest: fuel, memory and time limits stop the interpreter
itself, and files, env vars, clocks and queues are only what the task type
is granted in ``wasq.toml``. :mod:`wasq_guest.http` makes HTTP requests to
the hosts the task type's ``http`` list names.
"""

from . import http, log
from ._errors import EnqueueError, RateLimited, Retry, Revoke, SkipRetry, TaskError
from ._handler import handler
from ._task import Member, Task, enqueue, set_progress

__all__ = [
    "EnqueueError",
    "Member",
    "RateLimited",
    "Retry",
    "Revoke",
    "SkipRetry",
    "Task",
    "TaskError",
    "enqueue",
    "handler",
    "http",
    "log",
    "set_progress",
]

"""The exceptions a handler raises to say what the host does with its task."""

from datetime import timedelta
from typing import Optional, Union

from wit_world.imports import types as _types


class TaskError(Exception):
    """A handler's failure, and what the host should do about it."""

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = str(message)

    def _raw(self):
        raise NotImplementedError


class Retry(TaskError):
    """Retry the task with backoff while retries are left, then archive it.

    ``after`` (seconds, or a ``timedelta``) retries after that delay instead
    of the task type's backoff.
    """

    def __init__(self, message: str = "", after: Union[None, int, float, timedelta] = None):
        super().__init__(message)
        if isinstance(after, timedelta):
            after = after.total_seconds()
        self.after: Optional[float] = None if after is None else max(0.0, float(after))

    def _raw(self):
        delay_ms = None if self.after is None else int(round(self.after * 1000))
        return _types.TaskError_Retry(_types.Retry(self.message, delay_ms))

    def __str__(self):
        if self.after is None:
            return f"retry: {self.message}"
        return f"retry in {self.after:g}s: {self.message}"


class SkipRetry(TaskError):
    """Archive the task now: retrying cannot help (bad payload, permanent error)."""

    def _raw(self):
        return _types.TaskError_SkipRetry(self.message)


class Revoke(TaskError):
    """Drop the task: it is no longer wanted, and nothing is archived."""

    def _raw(self):
        return _types.TaskError_Revoke(self.message)


class RateLimited(TaskError):
    """Run the task again after ``after`` (seconds, or a ``timedelta``)
    without using up a retry or counting a failure: what it depends on said
    "not now" (an API's 429, a quota)."""

    def __init__(self, after: Union[int, float, timedelta], message: str = "rate limited"):
        super().__init__(message)
        if isinstance(after, timedelta):
            after = after.total_seconds()
        self.after: float = max(0.0, float(after))

    def _raw(self):
        return _types.TaskError_RateLimited(
            _types.RateLimited(self.message, int(round(self.after * 1000)))
        )

    def __str__(self):
        return f"rate limited for {self.after:g}s: {self.message}"


class EnqueueError(Exception):
    """The host refused an :func:`~wasq_guest.enqueue`.

    ``kind`` is ``"denied"`` (the queue is not granted), ``"invalid"`` (over
    a limit or malformed), ``"conflict"`` (the task id exists) or
    ``"unavailable"`` (the broker is unreachable); ``message`` is the host's.
    """

    _PREFIX = {
        "denied": "enqueue denied",
        "invalid": "invalid enqueue",
        "conflict": "task id conflict",
        "unavailable": "broker unavailable",
    }

    def __init__(self, kind: str, message: str):
        super().__init__(f"{self._PREFIX.get(kind, kind)}: {message}")
        self.kind = kind
        self.message = message

"""The task being handled, and what a running handler may ask of the host."""

import json as _json
from datetime import timedelta
from typing import Dict, List, Mapping, Optional, Union

from componentize_py_types import Err
from wit_world.imports import context as _context
from wit_world.imports import enqueue as _enqueue
from wit_world.imports import types as _types

from ._errors import EnqueueError, SkipRetry

Duration = Union[None, int, float, timedelta]


def _parse_json(payload: bytes, what: str):
    """``payload`` decoded as JSON; raises :class:`SkipRetry` naming ``what``
    it belongs to when it does not decode (the same bytes would fail again)."""
    try:
        return _json.loads(payload)
    except ValueError as error:
        raise SkipRetry(f"payload of {what} is not the expected JSON: {error}") from None


class Member:
    """One task of an aggregated group: ``id``, ``task_type``, ``payload``
    (bytes) and ``headers`` (a dict)."""

    __slots__ = ("id", "task_type", "payload", "headers")

    def __init__(self, task_type: str, payload: bytes = b"", *, id: str = "",
                 headers: Optional[Mapping[str, str]] = None):
        self.id = id
        self.task_type = task_type
        self.payload = bytes(payload)
        self.headers: Dict[str, str] = dict(headers or {})

    def json(self):
        """Decodes the payload as JSON; raises :class:`SkipRetry` if it does not."""
        return _parse_json(self.payload, f"group member {self.id} ({self.task_type})")

    def __repr__(self):
        return f"Member(task_type={self.task_type!r}, id={self.id!r})"


class Task:
    """One task: ``id``, ``task_type``, ``queue``, ``payload`` (bytes),
    ``retried``, ``max_retry``, ``deadline_ms`` and ``headers`` (a dict).
    A task that aggregates a group also has ``group`` (its name; else
    ``None``) and ``members`` (its tasks, oldest first, as :class:`Member`)."""

    __slots__ = ("id", "task_type", "queue", "payload", "retried", "max_retry",
                 "deadline_ms", "headers", "group", "members")

    def __init__(self, task_type: str, payload: bytes = b"", *, id: str = "",
                 queue: str = "default", retried: int = 0, max_retry: int = 0,
                 deadline_ms: Optional[int] = None,
                 headers: Optional[Mapping[str, str]] = None,
                 group: Optional[str] = None,
                 members: Optional[List[Member]] = None):
        self.id = id
        self.task_type = task_type
        self.queue = queue
        self.payload = bytes(payload)
        self.retried = retried
        self.max_retry = max_retry
        self.deadline_ms = deadline_ms
        self.headers: Dict[str, str] = dict(headers or {})
        self.group = group
        self.members: List[Member] = list(members or [])

    @classmethod
    def _from_raw(cls, raw: "_types.Task") -> "Task":
        members = [Member(m.task_type, m.payload, id=m.id, headers=dict(m.headers))
                   for m in raw.members]
        return cls(raw.task_type, raw.payload, id=raw.id, queue=raw.queue,
                   retried=raw.retried, max_retry=raw.max_retry,
                   deadline_ms=raw.deadline_ms, headers=dict(raw.headers),
                   group=raw.group, members=members)

    def json(self):
        """Decodes the payload as JSON.

        A payload that does not decode raises :class:`SkipRetry`: the same
        bytes would fail again, so the task is archived at once.
        """
        return _parse_json(self.payload, self.task_type)

    def __repr__(self):
        return f"Task(task_type={self.task_type!r}, id={self.id!r}, queue={self.queue!r})"


def _millis(value: Duration) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return max(0, int(round(float(value) * 1000)))


def enqueue(task_type: str, payload: Union[bytes, str, dict, list, None] = b"", *,
            queue: Optional[str] = None, max_retry: Optional[int] = None,
            process_in: Duration = None, timeout: Duration = None,
            task_id: Optional[str] = None, retention: Duration = None,
            headers: Optional[Mapping[str, str]] = None) -> str:
    """Enqueues a follow-up task of ``task_type``; returns its id.

    ``payload`` is bytes, a ``str`` (sent as UTF-8) or any other value (sent
    as JSON). ``queue`` must be granted to the running task type (default:
    the running task's queue). Durations are seconds or a ``timedelta``.
    The host sends the task when the handler returns successfully; a refusal
    raises :class:`EnqueueError` with the host's message.
    """
    if isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    elif isinstance(payload, str):
        data = payload.encode()
    elif payload is None:
        data = b""
    else:
        data = _json.dumps(payload).encode()
    opts = _enqueue.Options(
        queue=queue,
        max_retry=max_retry,
        process_in_ms=_millis(process_in),
        timeout_ms=_millis(timeout),
        task_id=task_id,
        retention_ms=_millis(retention),
        headers=[(str(k), str(v)) for k, v in (headers or {}).items()],
    )
    try:
        return _enqueue.enqueue(task_type, data, opts)
    except Err as err:
        kind = type(err.value).__name__.rsplit("_", 1)[-1].lower()
        raise EnqueueError(kind, err.value.value) from None


def set_progress(percent: Union[int, float]) -> None:
    """Reports progress of long work, 0 to 100."""
    _context.set_progress(max(0, min(100, int(percent))))

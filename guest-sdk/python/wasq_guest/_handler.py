"""Marking the handler, and running it on a task from the host."""

import json
import traceback

from componentize_py_types import Err
from wit_world.imports import types as _types

from ._errors import TaskError
from ._task import Task

_handler = None

# How many of the innermost traceback frames an unexpected exception's
# retry message carries.
TRACEBACK_FRAMES = 5


def handler(function):
    """Marks ``function(task)`` as the component's handler (one per component)."""
    global _handler
    if _handler is not None and _handler is not function:
        raise RuntimeError(
            f"wasq_guest.handler: {function.__qualname__} is a second handler "
            f"(the first is {_handler.__qualname__})")
    _handler = function
    return function


def _result_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return json.dumps(value).encode()


def _describe(error: BaseException) -> str:
    frames = traceback.format_tb(error.__traceback__)[-TRACEBACK_FRAMES:]
    text = f"{type(error).__qualname__}: {error}"
    if frames:
        text += "\nTraceback (most recent call last):\n" + "".join(frames).rstrip()
    return text


def _run(raw):
    if _handler is None:
        raise Err(_types.TaskError_SkipRetry(
            "no handler: mark the handler function with @wasq_guest.handler"))
    try:
        return _result_bytes(_handler(Task._from_raw(raw)))
    except TaskError as error:
        raise Err(error._raw()) from None
    except Exception as error:  # noqa: BLE001 - every other failure is a retry
        raise Err(_types.TaskError_Retry(_types.Retry(_describe(error), None))) from None


class WitWorld:
    """The world's export, which ``wasq build`` names as the component's entry."""

    def handle(self, task):
        return _run(task)

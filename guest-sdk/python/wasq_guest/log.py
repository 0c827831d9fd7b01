"""Structured logging to the host, which tags each line with the task.

``log.info("resized", width=128, height=96)``: fields are formatted with
``str``. The host bounds how many bytes a task may log; lines past that are
counted and dropped. ``print`` works too: the host captures stdout and
stderr.
"""

from wit_world.imports import log as _raw

Level = _raw.Level


def log(level: "Level", message, **fields) -> None:
    """Writes one log line at ``level`` with key-value fields."""
    _raw.log(level, str(message), [(str(k), str(v)) for k, v in fields.items()])


def trace(message, **fields) -> None:
    """Logs at ``trace``."""
    log(Level.TRACE, message, **fields)


def debug(message, **fields) -> None:
    """Logs at ``debug``."""
    log(Level.DEBUG, message, **fields)


def info(message, **fields) -> None:
    """Logs at ``info``."""
    log(Level.INFO, message, **fields)


def warn(message, **fields) -> None:
    """Logs at ``warn``."""
    log(Level.WARN, message, **fields)


warning = warn


def error(message, **fields) -> None:
    """Logs at ``error``."""
    log(Level.ERROR, message, **fields)

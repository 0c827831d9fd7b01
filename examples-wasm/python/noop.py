"""The smallest Python handler: does nothing and succeeds.

`wasq bench` runs it to measure what the sandbox costs per Python task.
"""

from wasq_guest import handler


@handler
def noop(task):
    return None

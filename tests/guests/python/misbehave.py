"""A Python guest written to misbehave, one way per payload `do`."""

from wasq_guest import EnqueueError, RateLimited, SkipRetry, enqueue, handler


@handler
def misbehave(task):
    if task.group is not None:
        # A task that aggregates a group answers with its group and members.
        return {"group": task.group,
                "members": [{"id": m.id, "type": m.task_type, "payload": m.payload.decode()}
                            for m in task.members]}
    request = task.json()
    what = request.get("do")
    if what == "ok":
        return "ok"
    if what == "loop":
        n = 0
        while True:
            n += 1
    if what == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if what == "raise":
        return nested(request.get("value", 0))
    if what == "read-file":
        path = request["path"]
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError as error:
            raise SkipRetry(f"read {path} failed: {error}")
    if what == "enqueue":
        try:
            return enqueue(request["type"], request.get("payload", {}), queue=request["queue"])
        except EnqueueError as error:
            raise SkipRetry(f"{error} (kind {error.kind})")
    if what == "rate-limited":
        raise RateLimited(request["ms"] / 1000, "the API said 429")
    raise SkipRetry(f"unknown do: {what!r}")


def nested(value):
    return divide(1, value)


def divide(a, b):
    return a / b

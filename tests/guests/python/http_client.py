"""Makes the HTTP request its payload describes, for the outbound HTTP
tests, as the Rust http-client guest does: ``{"method": "POST", "url":
"...", "body_bytes": 1000000, "headers": {"x-a": "b"}}``.

It returns the response as JSON (status, headers, body length and sum, and
the body itself when it is short). A failed request is a skip-retry whose
message starts with the error's kind (``denied: ...``), so a test can read
it.
"""

from wasq_guest import SkipRetry, handler, http


@handler
def call(task):
    spec = task.json()
    n = spec.get("body_bytes", 0)
    body = (bytes(range(251)) * (n // 251 + 1))[:n]
    try:
        response = http.request(
            spec.get("method", "GET"),
            spec["url"],
            body=body,
            headers=spec.get("headers", {}),
            timeout=spec.get("timeout_ms", 20_000) / 1000,
        )
    except http.HttpError as error:
        raise SkipRetry(str(error)) from None
    return {
        "status": response.status,
        "headers": [list(pair) for pair in response.headers],
        "body_len": len(response.body),
        "body_sum": sum(response.body),
        "body": response.text() if len(response.body) <= 1024 else "",
    }

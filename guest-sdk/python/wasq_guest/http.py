"""A small blocking HTTP client over ``wasi:http``, for handlers whose task
type is granted outbound HTTP (``http = [...]`` in ``wasq.toml``)::

    from wasq_guest import Retry, SkipRetry, handler, http

    @handler
    def deliver(task):
        response = http.post("https://hooks.example.com/events",
                             body=task.payload,
                             headers={"content-type": "application/json"},
                             timeout=10)
        if 200 <= response.status < 300:
            return f"delivered: {response.status}"
        if response.status == 429 or response.status >= 500:
            raise Retry(f"receiver said {response.status}", after=response.retry_after())
        raise SkipRetry(f"receiver refused: {response.status}")

The host checks every request against the task type's list before it
connects, refuses addresses a name should not lead to, caps bodies and times
out with the task; a refused request raises :class:`HttpError` with
``kind == "denied"``. Redirects are not followed: a 3xx is returned as it
is, and a request to its ``Location`` is checked again. An ``HttpError`` a
handler does not catch retries the task, as any other exception does.

The same concepts as the Rust SDK's ``wasq_guest::http``: ``get``, ``post``,
``put``, ``delete`` and ``request``; a :class:`Response` with ``status``,
``headers`` and ``body``; an :class:`HttpError` whose ``kind`` is one of
``denied``, ``invalid``, ``timeout``, ``connection``, ``too_large`` or
``other``.
"""

import json as _json
from datetime import timedelta
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from componentize_py_types import Err, Ok

# Imported here, not when a request is made: componentize-py keeps only the
# modules imported while it builds the component.
try:
    from wit_world.imports import http_types, outgoing_handler, streams

    _missing = None
except ImportError as _error:
    _missing = str(_error)

__all__ = ["HttpError", "Response", "delete", "get", "post", "put", "request"]

# Bytes per write: wasi:io output streams take at most 4096 at once.
_WRITE_CHUNK = 4096
# Bytes per read: each read is one call into the host.
_READ_CHUNK = 64 * 1024


class HttpError(Exception):
    """A request that failed: ``kind`` says how, ``message`` the details.

    ``kind`` is ``"denied"`` (not on the task type's ``http`` list, or a
    name that leads to an address the list does not name), ``"invalid"``
    (the URL, a header or the method), ``"timeout"``, ``"connection"`` (DNS,
    connect, TLS, the connection failing), ``"too_large"`` (a body over the
    host's cap) or ``"other"``.
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Response:
    """A response, read in full."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        #: The status code.
        self.status = status
        #: The headers as (name, value) pairs, names in lower case.
        self.headers = headers
        #: The body.
        self.body = body

    def header(self, name: str) -> Optional[str]:
        """The first header called ``name`` (any case), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def text(self) -> str:
        """The body as text (invalid UTF-8 replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body decoded from JSON."""
        return _json.loads(self.body)

    def retry_after(self) -> Optional[float]:
        """``Retry-After`` in seconds, when the response has one in that form."""
        value = self.header("retry-after")
        if value is None or not value.strip().isdigit():
            return None
        return float(value.strip())

    def __repr__(self):
        return f"<Response {self.status}, {len(self.body)} bytes>"


def get(url: str, **options) -> Response:
    """``GET url``; see :func:`request` for the options."""
    return request("GET", url, **options)


def post(url: str, body: Union[None, bytes, str] = None, **options) -> Response:
    """``POST url`` with ``body`` (or ``json=``); see :func:`request`."""
    return request("POST", url, body=body, **options)


def put(url: str, body: Union[None, bytes, str] = None, **options) -> Response:
    """``PUT url`` with ``body`` (or ``json=``); see :func:`request`."""
    return request("PUT", url, body=body, **options)


def delete(url: str, **options) -> Response:
    """``DELETE url``; see :func:`request` for the options."""
    return request("DELETE", url, **options)


def request(
    method: str,
    url: str,
    *,
    body: Union[None, bytes, str] = None,
    json: Any = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: Union[None, int, float, timedelta] = None,
) -> Response:
    """Sends a request and reads the whole response.

    ``body`` is sent as it is (``str`` as UTF-8); ``json`` is encoded and
    sets ``content-type: application/json``. ``timeout`` (seconds or a
    ``timedelta``) bounds connecting, the wait for the response's head and
    each wait between two pieces of its body; the host also stops at the
    task's own deadline. Raises :class:`HttpError` when no response comes.
    """
    if _missing is not None:
        raise HttpError(
            "other",
            f"this component was built without wasi:http ({_missing}); wasq build needs the "
            "WASI WIT that comes with ComponentizeJS: run scripts/setup",
        )
    t = http_types

    fields: Dict[str, str] = {k.lower(): str(v) for k, v in (headers or {}).items()}
    if json is not None:
        body = _json.dumps(json).encode()
        fields.setdefault("content-type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    body = body or b""
    if body:
        fields.setdefault("content-length", str(len(body)))

    scheme, authority, path = _split(url)
    try:
        request_headers = t.Fields.from_list([(k, v.encode()) for k, v in fields.items()])
    except Err as error:
        raise HttpError("invalid", f"header: {error.value}") from None
    outgoing = t.OutgoingRequest(request_headers)
    for setter, value, what in (
        (outgoing.set_method, _method(t, method), "method"),
        (outgoing.set_scheme, t.Scheme_Https() if scheme == "https" else t.Scheme_Http(), "scheme"),
        (outgoing.set_authority, authority, "host"),
        (outgoing.set_path_with_query, path, "path"),
    ):
        try:
            setter(value)
        except Err:
            raise HttpError("invalid", what) from None
    options = None
    if timeout is not None:
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        nanos = max(0, int(seconds * 1e9))
        options = t.RequestOptions()
        for setter in (
            options.set_connect_timeout,
            options.set_first_byte_timeout,
            options.set_between_bytes_timeout,
        ):
            try:
                setter(nanos)
            except Err:
                pass
    # Without a body the request is sent with none (no chunked framing): the
    # body resource is taken only to write.
    outgoing_body = outgoing.body() if body else None
    try:
        pending = outgoing_handler.handle(outgoing, options)
    except Err as error:
        raise _from_code(t, error.value) from None
    if outgoing_body is not None:
        stream = outgoing_body.write()
        try:
            for start in range(0, len(body), _WRITE_CHUNK):
                stream.blocking_write_and_flush(body[start : start + _WRITE_CHUNK])
        except Err as error:
            # The host stops reading a body it refuses (too large, the
            # connection failed): its reason is in the response.
            stream.__exit__(None, None, None)
            pending.subscribe().block()
            answer = pending.get()
            if isinstance(answer, Ok) and isinstance(answer.value, Err):
                raise _from_code(t, answer.value.value) from None
            raise HttpError("connection", f"sending the body: {error.value}") from None
        stream.__exit__(None, None, None)
        try:
            t.OutgoingBody.finish(outgoing_body, None)
        except Err as error:
            raise _from_code(t, error.value) from None

    pending.subscribe().block()
    # option<result<result<incoming-response, error-code>>>
    answer = pending.get()
    if not isinstance(answer, Ok):
        raise HttpError("other", "the response was lost")
    if isinstance(answer.value, Err):
        raise _from_code(t, answer.value.value) from None
    response = answer.value.value
    status = response.status()
    response_headers = [
        (name.lower(), value.decode("utf-8", errors="replace"))
        for name, value in response.headers().entries()
    ]
    incoming = response.consume()
    stream = incoming.stream()
    chunks = []
    try:
        while True:
            try:
                chunks.append(stream.blocking_read(_READ_CHUNK))
            except Err as error:
                if isinstance(error.value, streams.StreamError_Closed):
                    break
                # The host's body cap and cut connections end the stream
                # with an error the guest sees only as text.
                detail = error.value.value.to_debug_string()
                raise HttpError("connection", f"reading the body: {detail}") from None
    finally:
        stream.__exit__(None, None, None)
    t.IncomingBody.finish(incoming)
    return Response(status, response_headers, b"".join(chunks))


def _split(url: str) -> Tuple[str, str, str]:
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise HttpError("invalid", f"{url}: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise HttpError("invalid", f"{url}: the scheme must be http or https")
    if not parts.netloc or "@" in parts.netloc:
        raise HttpError("invalid", f"{url}: a host is needed, without user info")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, parts.netloc, path


def _method(t, name: str):
    known = {
        "GET": t.Method_Get,
        "HEAD": t.Method_Head,
        "POST": t.Method_Post,
        "PUT": t.Method_Put,
        "DELETE": t.Method_Delete,
        "CONNECT": t.Method_Connect,
        "OPTIONS": t.Method_Options,
        "TRACE": t.Method_Trace,
        "PATCH": t.Method_Patch,
    }
    upper = name.upper()
    return known[upper]() if upper in known else t.Method_Other(name)


_KINDS = {
    "HttpRequestDenied": "denied",
    "DestinationIpProhibited": "denied",
    "ConnectionTimeout": "timeout",
    "ConnectionReadTimeout": "timeout",
    "ConnectionWriteTimeout": "timeout",
    "HttpResponseTimeout": "timeout",
    "DnsTimeout": "timeout",
    "HttpResponseBodySize": "too_large",
    "HttpRequestBodySize": "too_large",
    "HttpRequestUriInvalid": "invalid",
    "HttpRequestMethodInvalid": "invalid",
    "DnsError": "connection",
    "DestinationNotFound": "connection",
    "DestinationUnavailable": "connection",
    "ConnectionRefused": "connection",
    "ConnectionTerminated": "connection",
    "TlsProtocolError": "connection",
    "TlsCertificateError": "connection",
    "TlsAlertReceived": "connection",
}

_MESSAGES = {
    "HttpRequestDenied": "denied by the host: not on this task type's http list",
    "DestinationIpProhibited": (
        "denied by the host: the name resolves to an address this task type's "
        "http list does not name"
    ),
}


def _from_code(t, code) -> HttpError:
    name = type(code).__name__.removeprefix("ErrorCode_")
    kind = _KINDS.get(name, "other")
    message = _MESSAGES.get(name)
    if message is None:
        value = getattr(code, "value", None)
        message = name if value is None else f"{name}: {value}"
    return HttpError(kind, message)

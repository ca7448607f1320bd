"""What the edge refuses before any route runs, for the fast path and the Flask routes alike.

* a request-target over ``MAX_TARGET`` bytes: 414 ``uri_too_long``;
* a header line (name, ``: ``, value) over ``MAX_HEADER_LINE`` bytes: 431 ``header_too_large``;
* a body over ``MAX_BODY`` (declared by ``Content-Length`` or counted while reading a chunked
  one): 413 ``body_too_large``;
* a body the server could not read (a malformed chunk, a client gone mid-body) or shorter than
  its ``Content-Length``: 400 ``invalid_body``, never a 500.

The limits match gunicorn's defaults, so both servers refuse the same requests in the same JSON.
:func:`buffer_body` reads a Flask route's body here, so Flask sees it whole and never truncated.
Imports only errors.
"""

from __future__ import annotations

import io
from typing import Any

from sidecar.errors import BodyTooLarge, HeaderTooLarge, InvalidBody, LengthRequired, UriTooLong

MAX_BODY = 1024 * 1024
MAX_TARGET = 8190
MAX_HEADER_LINE = 8190


def check_head(environ: dict[str, Any]) -> None:
    """Raise for a request-target or a header line over the limits."""
    if len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) > MAX_TARGET:
        raise UriTooLong(f"the request-target is over {MAX_TARGET} bytes")
    for key, value in environ.items():
        # the length first: it rules out nearly every entry, header or not, at once
        if (isinstance(value, str) and len(key) + len(value) > MAX_HEADER_LINE
                and (key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH"))):
            raise HeaderTooLarge(f"a header line is over {MAX_HEADER_LINE} bytes",
                                 header=key.removeprefix("HTTP_").replace("_", "-").title())


def read_body(environ: dict[str, Any]) -> bytes:
    """The whole request body; raises :class:`BodyTooLarge` or :class:`InvalidBody`."""
    raw_length = environ.get("CONTENT_LENGTH") or ""
    declared: int | None = None
    if raw_length:
        if not raw_length.isdigit():
            raise InvalidBody("Content-Length is not a number")
        declared = int(raw_length)
        if declared > MAX_BODY:
            raise BodyTooLarge("bodies are at most 1 MiB")
    stream = environ["wsgi.input"]
    sent_chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    chunked = sent_chunked or environ.get("wsgi.input_terminated")
    if declared is None and not chunked:
        return b""
    try:
        raw = bytes(stream.read(declared if declared is not None else MAX_BODY + 1)) if declared != 0 else b""
    except Exception as error:  # WSGI leaves wsgi.input's errors open: gunicorn's C
        # parser raises OSError, its Python parser ParseException, a client gone mid-body OSError;
        # each means the body could not be read, never a fault of ours
        raise InvalidBody(f"the body could not be read ({type(error).__name__})") from None
    if declared is not None and len(raw) != declared:
        raise InvalidBody(f"the body ended after {len(raw)} of its {declared} bytes")
    if len(raw) > MAX_BODY:
        raise BodyTooLarge("bodies are at most 1 MiB")
    if sent_chunked and not _reports_chunk_errors(stream):
        raise LengthRequired("send Content-Length: under this server a malformed chunk cannot be told "
                             "from the end of a chunked body, so chunked request bodies are refused")
    return raw


def _reports_chunk_errors(stream: object) -> bool:
    """Does this ``wsgi.input`` raise on a malformed chunk? granian's ``WSGIBody`` does not: it
    maps hyper's body error to the end of the stream, so a body cut at a bad chunk would read as
    a whole one (gunicorn's parsers and werkzeug's test input raise or carry the real length)."""
    return not type(stream).__module__.startswith("granian")


def buffer_body(environ: dict[str, Any]) -> None:
    """Read the body now and hand it on with its exact length (Flask routes read it later)."""
    chunked = environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked"
    if not chunked and not environ.get("CONTENT_LENGTH"):
        return
    raw = read_body(environ)
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    environ.pop("HTTP_TRANSFER_ENCODING", None)

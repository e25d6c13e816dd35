"""The exceptions of the DeltaDatabase client: one class per HTTP status."""

from __future__ import annotations

import json
import re
from email.message import Message
from typing import Any, Dict, List, Optional, Type, TypedDict

__all__ = [
    "ValidationError", "DeltaDBError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "Conflict", "PreconditionFailed", "PayloadTooLarge", "UnsupportedMediaType",
    "ValidationFailed", "TooManyRequests", "ServerError", "Unavailable", "ConnectionFailed",
]


class ValidationError(TypedDict):
    """One way a document fails its schema: path is a JSON Pointer ("" for
    the root) into what was sent (for a PUT, the body {key: document}; for
    a PATCH or validate, the document), message says why."""

    path: str
    message: str


class DeltaDBError(Exception):
    """A request the server refused or could not serve.

    status is the HTTP status (0 when no answer came), message the server's
    sentence, request_id its X-Request-ID, body the decoded answer (a dict,
    or None), headers the answer's headers (names case-insensitive).
    """

    def __init__(self, status: int, message: str, request_id: Optional[str] = None,
                 body: Any = None, headers: Optional[Message] = None) -> None:
        super().__init__("%d: %s" % (status, message) if status else message)
        self.status = status
        self.message = message
        self.request_id = request_id
        self.body = body
        self.headers: Message = headers if headers is not None else Message()


class BadRequest(DeltaDBError):
    """400: a malformed request (bad name, bad JSON, a document the schema refuses)."""


class Unauthorized(DeltaDBError):
    """401: no, an unknown or an expired credential."""


class Forbidden(DeltaDBError):
    """403: the credential lacks the permission or the database."""


class NotFound(DeltaDBError):
    """404: no such entity, schema, database or key."""


class MethodNotAllowed(DeltaDBError):
    """405: the route does not take this method."""


class Conflict(DeltaDBError):
    """409: a patch that does not apply, or a schema still bound."""


class PreconditionFailed(DeltaDBError):
    """412: If-Match / If-None-Match did not hold; etag is the current one (None if absent)."""

    @property
    def etag(self) -> Optional[str]:
        return self.headers.get("ETag")


class PayloadTooLarge(DeltaDBError):
    """413: over a budget (body, document, keys per request, nesting, validation time)."""


class UnsupportedMediaType(DeltaDBError):
    """415: a Content-Type the route does not take."""


class ValidationFailed(BadRequest):
    """A document its schema refuses: 400 from put, put_many or patch, 422
    from validate. errors lists each violation as {"path", "message"}.

    A BadRequest, so that code catching BadRequest around writes keeps
    working. The errors come from the answer's "errors" array when the
    server sends one; from a server that sends only the sentence, they are
    read back from the sentence. A patch by a key without read permission
    gets none (the server withholds them): errors is then [].
    """

    @property
    def errors(self) -> List[ValidationError]:
        listed = (self.body or {}).get("errors") if isinstance(self.body, dict) else None
        if isinstance(listed, list):
            return [ValidationError(path=str(e.get("path", "")), message=str(e.get("message", "")))
                    for e in listed if isinstance(e, dict)]
        return errors_from_sentence(self.message)


class Gone(DeltaDBError):
    """410: a change feed cursor older than the server keeps; list the
    database, then follow from the current end."""


class TooManyRequests(DeltaDBError):
    """429: too many failed authentications or sessions; retry_after is in seconds."""

    @property
    def retry_after(self) -> Optional[int]:
        value = self.headers.get("Retry-After")
        return int(value) if value and value.isdigit() else None


class ServerError(DeltaDBError):
    """5xx: the server failed; message names the request ID to report."""


class Unavailable(ServerError):
    """503: storage or workers unavailable, or the server busy; the request may succeed later."""


class ConnectionFailed(DeltaDBError):
    """No answer: the server could not be reached (status 0)."""


_ERRORS: Dict[int, Type[DeltaDBError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 410: Gone, 412: PreconditionFailed, 413: PayloadTooLarge, 415: UnsupportedMediaType,
    422: ValidationFailed, 429: TooManyRequests, 503: Unavailable,
}

# The server's sentence for documents a schema refuses: a PUT's
# 'documents do not match schema "ID": "key": at /p: why; "key2": at ...'
# or a PATCH's 'schema "ID": at /p: why; at /q: why'.
_SCHEMA_SENTENCE = re.compile(r'^(?:documents do not match )?schema "(?:[^"\\]|\\.)*": (?=(?:"(?:[^"\\]|\\.)*": )?at )')
# A PATCH by a credential without read: the server withholds the
# violations (they would show the document), the sentence says no more.
_SCHEMA_SENTENCE_WITHHELD = re.compile(r'^the patched document does not match schema "(?:[^"\\]|\\.)*"$')
# One violation in it: an optional "key": (a PUT), then at <path>: <why>,
# up to the next violation or the end.
_VIOLATION = re.compile(
    r'(?:"((?:[^"\\]|\\.)*)": )?at (\(root\)|/[^:]*): (.*?)(?=; (?:"(?:[^"\\]|\\.)*": )?at (?:\(root\)|/)|; and \d+ more$|$)')


def error_for(status: int, body: Any, headers: Message) -> DeltaDBError:
    """The exception for an error answer."""
    cls = _ERRORS.get(status) or (ServerError if status >= 500 else DeltaDBError)
    message = body.get("error") if isinstance(body, dict) else None
    if not message:
        message = "HTTP %d" % status
    if cls is BadRequest and (isinstance(body, dict) and isinstance(body.get("errors"), list)
                              or _SCHEMA_SENTENCE.match(message) or _SCHEMA_SENTENCE_WITHHELD.match(message)):
        cls = ValidationFailed
    return cls(status, message, headers.get("X-Request-ID"), body, headers)


def errors_from_sentence(sentence: str) -> List[ValidationError]:
    """The violations a schema-failure sentence lists, [] for any other
    sentence. A PUT names the key of each failing document: its paths are
    put under /<key>, as pointers into the body {key: document}.
    """
    head = _SCHEMA_SENTENCE.match(sentence)
    if not head:
        return []
    out: List[ValidationError] = []
    key = None  # a PUT names each failing key once, before its violations
    for m in _VIOLATION.finditer(sentence, head.end()):
        if m.group(1) is not None:
            key = _unquote(m.group(1))
        path = "" if m.group(2) == "(root)" else m.group(2)
        if key is not None:
            path = "/" + _pointer_token(key) + path
        out.append(ValidationError(path=path, message=m.group(3)))
    return out


def _unquote(quoted: str) -> str:
    """The text of a key the server quoted (inside the quotes), which
    escapes only quotes and backslashes in a valid key."""
    try:
        value = json.loads('"%s"' % quoted)
    except ValueError:
        return quoted
    return value if isinstance(value, str) else quoted


def _pointer_token(s: str) -> str:
    """s escaped as one JSON Pointer token (RFC 6901)."""
    return s.replace("~", "~0").replace("/", "~1")

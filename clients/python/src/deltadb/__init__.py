"""DeltaDatabase client for Python: standard library only, typed.

Install it with pip (Python 3.8 or later) from the repository:

    pip install ./clients/python

and:

    import deltadb
    db = deltadb.Client("http://127.0.0.1:8080", token="<admin key, API key or session token>")
    db.put("chatdb", "session_001", {"title": "Hello", "messages": []})
    db.append_message("chatdb", "session_001", {"role": "user", "content": "hi"})
    print(db.get("chatdb", "session_001"))
    for key in db.list_keys("chatdb", prefix="session_"):
        print(key)
    for item in db.find_all("chatdb", {"user": "u1"}, sort=["created"]):
        print(item.key, item.doc)
    for change in db.follow("chatdb"):  # every change from now on, until interrupted
        print(change.key, change.op, change.etag)

Every failed request raises a subclass of DeltaDBError named for its HTTP
status (NotFound, PreconditionFailed, ...), carrying the server's one
sentence in .message and the X-Request-ID in .request_id; a document its
schema refuses raises ValidationFailed, whose .errors lists each violation
as {"path", "message"}. API.md in the repository describes every route this
client calls.
"""

from .client import (
    JSON_PATCH, MAX_KEYS_PER_REQUEST, MERGE_PATCH, Change, ChangesPage, Client, Document, FindPage, GetManyResult, Item,
)
from .errors import (
    BadRequest, Conflict, ConnectionFailed, DeltaDBError, Forbidden, Gone, MethodNotAllowed, NotFound, PayloadTooLarge,
    PreconditionFailed, ServerError, TooManyRequests, Unauthorized, Unavailable, UnsupportedMediaType,
    ValidationError, ValidationFailed,
)

__version__ = "1.0.0"

__all__ = [
    "Client", "Item", "Change", "ChangesPage", "Document", "GetManyResult", "FindPage", "ValidationError", "MERGE_PATCH", "JSON_PATCH",
    "MAX_KEYS_PER_REQUEST", "DeltaDBError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "Conflict", "Gone", "PreconditionFailed", "PayloadTooLarge", "UnsupportedMediaType",
    "ValidationFailed", "TooManyRequests", "ServerError", "Unavailable", "ConnectionFailed",
]

"""DeltaDatabase client for Python: one file, standard library only.

Copy this file next to your code (Python 3.8 or later) and:

    import deltadb
    db = deltadb.Client("http://127.0.0.1:8080", token="<admin key, API key or session token>")
    db.put("chatdb", "session_001", {"title": "Hello", "messages": []})
    db.append_message("chatdb", "session_001", {"role": "user", "content": "hi"})
    print(db.get("chatdb", "session_001"))
    for key in db.list_keys("chatdb", prefix="session_"):
        print(key)

Every failed request raises a subclass of DeltaDBError named for its HTTP
status (NotFound, PreconditionFailed, ...), carrying the server's one
sentence in .message and the X-Request-ID in .request_id. API.md in the
repository describes every route this client calls.
"""

import json
import urllib.error
import urllib.parse
import urllib.request

__all__ = [
    "Client", "Item", "DeltaDBError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "MethodNotAllowed", "Conflict", "PreconditionFailed", "PayloadTooLarge", "UnsupportedMediaType",
    "ValidationFailed", "TooManyRequests", "ServerError", "Unavailable", "ConnectionFailed",
]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# The most keys one get_many request carries (the server's default
# -max-batch-keys); get_many splits longer lists.
MAX_KEYS_PER_REQUEST = 1000


class DeltaDBError(Exception):
    """A request the server refused or could not serve.

    status is the HTTP status (0 when no answer came), message the server's
    sentence, request_id its X-Request-ID, body the decoded answer (a dict,
    or None), headers the answer's headers (names case-insensitive).
    """

    def __init__(self, status, message, request_id=None, body=None, headers=None):
        super().__init__("%d: %s" % (status, message) if status else message)
        self.status = status
        self.message = message
        self.request_id = request_id
        self.body = body
        self.headers = headers or {}


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
    def etag(self):
        return self.headers.get("ETag")


class PayloadTooLarge(DeltaDBError):
    """413: over a budget (body, document, keys per request, nesting, validation time)."""


class UnsupportedMediaType(DeltaDBError):
    """415: a Content-Type the route does not take."""


class ValidationFailed(DeltaDBError):
    """422 from validate: errors is the list of {"path", "message"}."""

    @property
    def errors(self):
        return (self.body or {}).get("errors", [])


class TooManyRequests(DeltaDBError):
    """429: too many failed authentications or sessions; retry_after is in seconds."""

    @property
    def retry_after(self):
        value = self.headers.get("Retry-After")
        return int(value) if value and value.isdigit() else None


class ServerError(DeltaDBError):
    """5xx: the server failed; message names the request ID to report."""


class Unavailable(ServerError):
    """503: storage or workers unavailable; the request may succeed later."""


class ConnectionFailed(DeltaDBError):
    """No answer: the server could not be reached (status 0)."""


_ERRORS = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 412: PreconditionFailed, 413: PayloadTooLarge, 415: UnsupportedMediaType,
    422: ValidationFailed, 429: TooManyRequests, 503: Unavailable,
}


def _error_for(status, body, headers):
    """The exception for an error answer."""
    cls = _ERRORS.get(status) or (ServerError if status >= 500 else DeltaDBError)
    message = body.get("error") if isinstance(body, dict) else None
    if not message:
        message = "HTTP %d" % status
    return cls(status, message, headers.get("X-Request-ID"), body, headers)


class Item:
    """One entity of a listing with include_docs: key, etag and doc."""

    __slots__ = ("key", "etag", "doc")

    def __init__(self, key, etag, doc):
        self.key, self.etag, self.doc = key, etag, doc

    def __repr__(self):
        return "Item(key=%r, etag=%r, doc=%r)" % (self.key, self.etag, self.doc)


class Client:
    """A client of one DeltaDatabase server. Safe to share between threads:
    every call is one or more independent HTTP requests.

    base_url is the server's REST address ("http://127.0.0.1:8080"); token
    the admin key, an API key or a session token; timeout in seconds per
    request.
    """

    def __init__(self, base_url, token=None, timeout=30.0):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- entities ---------------------------------------------------------

    def get(self, db, key):
        """The document stored under key; NotFound if there is none."""
        return self.get_with_etag(db, key)[0]

    def get_with_etag(self, db, key):
        """(document, etag) of key; the etag is what If-Match takes."""
        body, headers = self.request("GET", self._entity(db, key))
        return body, headers.get("ETag")

    def put(self, db, key, doc, if_match=None, if_none_match=None, schema=None):
        """Store doc under key and return its new ETag.

        if_match: write only over this ETag (PreconditionFailed otherwise);
        if_none_match="*": create only. schema: also validate against it.
        """
        headers = _preconditions(if_match, if_none_match)
        _, resp = self.request("PUT", self._path("entity", db, schema=schema), {key: doc}, headers=headers)
        return resp.get("ETag")

    def put_many(self, db, docs, schema=None, if_none_match=None):
        """Store every {key: document} of docs in one request: all are
        validated before any is written. if_none_match="*" creates only.
        """
        self.request("PUT", self._path("entity", db, schema=schema), dict(docs),
                     headers=_preconditions(None, if_none_match))

    def patch(self, db, key, patch, if_match=None, schema=None):
        """Apply a patch atomically and return (document, etag).

        A list is a JSON Patch (RFC 6902), a dict a JSON Merge Patch
        (RFC 7386). A JSON Patch that does not apply raises Conflict.
        """
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        headers = _preconditions(if_match, None)
        body, resp = self.request("PATCH", self._entity(db, key, schema=schema), patch,
                                  content_type=content_type, headers=headers)
        return body, resp.get("ETag")

    def append_message(self, db, key, message, path="/messages", retries=10):
        """Append message to the array at path (JSON Pointer) of key's
        document and return (document, etag).

        The append is a JSON Patch "add" at path + "/-" sent with If-Match:
        the ETag of the document as last seen. When another writer got in
        between, the server answers 412 with the current ETag and the
        append is sent again under it, up to retries times; then
        PreconditionFailed is raised. No message is ever lost or doubled:
        the server applies each accepted patch atomically.
        """
        _, etag = self.get_with_etag(db, key)
        op = [{"op": "add", "path": path + "/-", "value": message}]
        for attempt in range(retries + 1):
            try:
                return self.patch(db, key, op, if_match=etag)
            except PreconditionFailed as err:
                if attempt == retries or err.etag is None:
                    raise
                etag = err.etag

    def delete(self, db, key, if_match=None):
        """Delete key; NotFound if it does not exist."""
        self.request("DELETE", self._entity(db, key), headers=_preconditions(if_match, None))

    def get_many(self, db, keys):
        """Read many entities: a dict {"documents": {key: doc}, "etags":
        {key: etag}, "missing": [keys]}. Lists longer than
        MAX_KEYS_PER_REQUEST are sent in several requests.
        """
        keys = list(keys)
        out = {"documents": {}, "etags": {}, "missing": []}
        for start in range(0, len(keys), MAX_KEYS_PER_REQUEST):
            body, _ = self.request("POST", self._path("api", "databases", db, "get"),
                                   {"keys": keys[start:start + MAX_KEYS_PER_REQUEST]})
            out["documents"].update(body["documents"])
            out["etags"].update(body["etags"])
            out["missing"].extend(k for k in body["missing"] if k not in out["missing"])
        return out

    def list_keys(self, db, prefix=None, page_size=100, include_docs=False):
        """Iterate over the keys of db in key order, fetching a page of
        page_size (1 to 1000) at a time as the iteration needs it. With
        include_docs, iterate over Item(key, etag, doc) instead.
        """
        for page in self.pages(db, prefix, page_size, include_docs):
            for entry in page:
                yield entry

    def pages(self, db, prefix=None, page_size=100, include_docs=False):
        """Iterate over the pages of a listing: lists of keys, or of Item
        with include_docs.
        """
        cursor = None
        while True:
            query = {"limit": page_size}
            if prefix:
                query["prefix"] = prefix
            if cursor:
                query["cursor"] = cursor
            if include_docs:
                query["include_docs"] = "true"
            body, _ = self.request("GET", self._path("api", "databases", db, "keys", **query))
            if include_docs:
                yield [Item(i["key"], i["etag"], i["doc"]) for i in body["items"]]
            else:
                yield body["keys"]
            cursor = body.get("next")
            if not cursor:
                return

    # -- databases and schemas -------------------------------------------

    def delete_database(self, db):
        """Delete every entity of db and its binding (admin); return how
        many entities this call deleted. Safe to repeat.
        """
        body, _ = self.request("DELETE", self._path("api", "databases", db))
        return body["deleted"]

    def bind(self, db, schema_id):
        """Bind db to schema_id (None unbinds); return the database info."""
        body, _ = self.request("PUT", self._path("api", "databases", db), {"schema": schema_id})
        return body

    def put_schema(self, schema_id, schema):
        """Store or replace a JSON Schema."""
        self.request("PUT", self._path("schema", schema_id), schema)

    def validate(self, schema_id, doc):
        """The violations of doc against schema_id, [] when it matches:
        a list of {"path", "message"}. Nothing is stored.
        """
        try:
            self.request("POST", self._path("schema", schema_id, "validate"), doc)
        except ValidationFailed as err:
            return err.errors
        return []

    # -- transport -------------------------------------------------------

    def request(self, method, path, body=None, content_type="application/json", headers=None):
        """Send one request; return (decoded body or None, response headers).

        body is encoded as JSON unless it is bytes. Error answers raise the
        DeltaDBError subclass of their status.
        """
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return _decode(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            raise _error_for(err.code, _decode(err.read()), err.headers) from None
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionFailed(0, "%s %s: %s" % (method, path, getattr(err, "reason", err))) from err

    def _entity(self, db, key, schema=None):
        return self._path("entity", db, key=key, schema=schema)

    @staticmethod
    def _path(*segments, **query):
        path = "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)
        query = {k: v for k, v in query.items() if v is not None}
        return path + ("?" + urllib.parse.urlencode(query) if query else "")


def _preconditions(if_match, if_none_match):
    """The precondition headers; an ETag is sent quoted as the server gave it."""
    headers = {}
    if if_match:
        headers["If-Match"] = if_match
    if if_none_match:
        headers["If-None-Match"] = if_none_match
    return headers


def _decode(raw):
    """The JSON value of an answer body, None when empty or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None

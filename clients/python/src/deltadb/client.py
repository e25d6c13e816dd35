"""The DeltaDatabase client: one Client per server, standard library only."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import Any, Dict, Iterable, Iterator, List, Literal, Mapping, Optional, Tuple, TypedDict, Union, overload

from .errors import ConnectionFailed, ServerError, ValidationError, ValidationFailed, error_for

__all__ = ["Client", "Item", "Change", "ChangesPage", "Document", "GetManyResult", "FindPage", "MERGE_PATCH",
           "JSON_PATCH", "MAX_KEYS_PER_REQUEST"]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# The most keys one get_many request carries (the server's default
# -max-batch-keys); get_many splits longer lists.
MAX_KEYS_PER_REQUEST = 1000

Document = Any
"""A stored document: any JSON value, as json.loads returns it."""


class GetManyResult(TypedDict):
    """What get_many answers: the documents and ETags found, by key, and
    the keys not found."""

    documents: Dict[str, Document]
    etags: Dict[str, str]
    missing: List[str]


class FindPage(TypedDict):
    """One page of find: the documents found, with their keys and ETags in
    the same order. bookmark resumes after this page; more says further
    pages may hold matches (the limit, or a budget the server names in
    warning, ended this one)."""

    docs: List[Document]
    keys: List[str]
    etags: List[str]
    bookmark: str
    more: bool
    warning: str


class Item:
    """One entity of a listing with include_docs: key, etag and doc."""

    __slots__ = ("key", "etag", "doc")

    def __init__(self, key: str, etag: str, doc: Document) -> None:
        self.key, self.etag, self.doc = key, etag, doc

    def __repr__(self) -> str:
        return "Item(key=%r, etag=%r, doc=%r)" % (self.key, self.etag, self.doc)


class Change:
    """One change of a database's feed: seq (the cursor after it), key, op
    ("put" or "delete"), etag (None on a delete), at (RFC 3339 time) and,
    with include_docs, doc (the document as it is now; None once deleted).
    """

    __slots__ = ("seq", "key", "op", "etag", "at", "doc")

    def __init__(self, seq: str, key: str, op: str, etag: Optional[str], at: str, doc: Document = None) -> None:
        self.seq, self.key, self.op, self.etag, self.at, self.doc = seq, key, op, etag, at, doc

    @classmethod
    def from_json(cls, c: Mapping[str, Any]) -> "Change":
        return cls(str(c["seq"]), str(c["key"]), str(c["op"]), c.get("etag"), str(c["at"]), c.get("doc"))

    def __repr__(self) -> str:
        return "Change(seq=%r, key=%r, op=%r, etag=%r)" % (self.seq, self.key, self.op, self.etag)


class ChangesPage(TypedDict):
    """One page of a feed: its changes, last_seq (the since of the next)
    and more: True when changes may follow that the page did not read (it
    may hold none: a page reads at most 20,000 changes of all databases),
    False when it reached the feed's end.
    """

    changes: List[Change]
    last_seq: str
    more: bool


class Client:
    """A client of one DeltaDatabase server. Safe to share between threads:
    every call is one or more independent HTTP requests.

    base_url is the server's REST address ("http://127.0.0.1:8080"); token
    the admin key, an API key or a session token; timeout in seconds per
    request.
    """

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # -- entities ---------------------------------------------------------

    def get(self, db: str, key: str) -> Document:
        """The document stored under key; NotFound if there is none."""
        return self.get_with_etag(db, key)[0]

    def get_with_etag(self, db: str, key: str) -> Tuple[Document, Optional[str]]:
        """(document, etag) of key; the etag is what If-Match takes."""
        body, headers = self.request("GET", self._entity(db, key))
        return body, headers.get("ETag")

    def put(self, db: str, key: str, doc: Document, if_match: Optional[str] = None,
            if_none_match: Optional[str] = None, schema: Optional[str] = None) -> Optional[str]:
        """Store doc under key and return its new ETag.

        if_match: write only over this ETag (PreconditionFailed otherwise);
        if_none_match="*": create only. schema: also validate against it.
        A document the schema refuses raises ValidationFailed, whose errors
        say where ("/<key>/..." in the body sent) and why.
        """
        headers = _preconditions(if_match, if_none_match)
        _, resp = self.request("PUT", self._path("entity", db, schema=schema), {key: doc}, headers=headers)
        return resp.get("ETag")

    def put_many(self, db: str, docs: Mapping[str, Document], schema: Optional[str] = None,
                 if_none_match: Optional[str] = None) -> None:
        """Store every {key: document} of docs in one request: all are
        validated before any is written. if_none_match="*" creates only.
        """
        self.request("PUT", self._path("entity", db, schema=schema), dict(docs),
                     headers=_preconditions(None, if_none_match))

    def patch(self, db: str, key: str, patch: Union[List[Dict[str, Any]], Dict[str, Any]],
              if_match: Optional[str] = None, schema: Optional[str] = None) -> Tuple[Document, Optional[str]]:
        """Apply a patch atomically and return (document, etag).

        A list is a JSON Patch (RFC 6902), a dict a JSON Merge Patch
        (RFC 7386). A JSON Patch that does not apply raises Conflict. A
        credential without read permission gets {"status": "ok"} instead
        of the document.
        """
        content_type = JSON_PATCH if isinstance(patch, list) else MERGE_PATCH
        headers = _preconditions(if_match, None)
        body, resp = self.request("PATCH", self._entity(db, key, schema=schema), patch,
                                  content_type=content_type, headers=headers)
        return body, resp.get("ETag")

    def append_message(self, db: str, key: str, message: Document, path: str = "/messages",
                       if_match: Optional[str] = None) -> Tuple[Optional[Document], Optional[str]]:
        """Append message to the array at path (a JSON Pointer) of key's
        document; return (document, etag), document None for a credential
        that may write but not read.

        One request, a JSON Patch "add" at path + "/-", which reads
        nothing: a write-only key may append. The server applies each
        patch atomically under the entity's lock, so concurrent appends
        all land, each once, none lost. if_match appends only to that
        version (PreconditionFailed, with the current .etag, otherwise).
        """
        op = [{"op": "add", "path": path + "/-", "value": message}]
        doc, etag = self.patch(db, key, op, if_match=if_match)
        # The patched document holds path, so it is never {"status": "ok"}:
        # that is the answer to a credential without read.
        return (None if doc == {"status": "ok"} else doc), etag

    def delete(self, db: str, key: str, if_match: Optional[str] = None) -> None:
        """Delete key; NotFound if it does not exist."""
        self.request("DELETE", self._entity(db, key), headers=_preconditions(if_match, None))

    def get_many(self, db: str, keys: Iterable[str]) -> GetManyResult:
        """Read many entities. Lists longer than MAX_KEYS_PER_REQUEST are
        sent in several requests, and so are the keys an answer leaves in
        "remaining" (its documents reached the server's
        -max-response-bytes): the result holds every key asked for.
        """
        keys = list(keys)
        out = GetManyResult(documents={}, etags={}, missing=[])
        for start in range(0, len(keys), MAX_KEYS_PER_REQUEST):
            pending = keys[start:start + MAX_KEYS_PER_REQUEST]
            while pending:
                body, _ = self.request("POST", self._path("api", "databases", db, "get"), {"keys": pending})
                out["documents"].update(body["documents"])
                out["etags"].update(body["etags"])
                out["missing"].extend(k for k in body["missing"] if k not in out["missing"])
                pending = body.get("remaining") or []
        return out

    @overload
    def list_keys(self, db: str, prefix: Optional[str] = ..., page_size: int = ...,
                  include_docs: Literal[False] = ...) -> Iterator[str]: ...

    @overload
    def list_keys(self, db: str, prefix: Optional[str] = ..., page_size: int = ...,
                  *, include_docs: Literal[True]) -> Iterator[Item]: ...

    def list_keys(self, db: str, prefix: Optional[str] = None, page_size: int = 100,
                  include_docs: bool = False) -> Union[Iterator[str], Iterator[Item]]:
        """Iterate over the keys of db in key order, fetching a page of
        page_size (1 to 1000) at a time as the iteration needs it. With
        include_docs, iterate over Item(key, etag, doc) instead.
        """
        if include_docs:
            return (item for page in self.pages(db, prefix, page_size, include_docs=True) for item in page)
        return (key for page in self.pages(db, prefix, page_size) for key in page)

    @overload
    def pages(self, db: str, prefix: Optional[str] = ..., page_size: int = ...,
              include_docs: Literal[False] = ...) -> Iterator[List[str]]: ...

    @overload
    def pages(self, db: str, prefix: Optional[str] = ..., page_size: int = ...,
              *, include_docs: Literal[True]) -> Iterator[List[Item]]: ...

    def pages(self, db: str, prefix: Optional[str] = None, page_size: int = 100,
              include_docs: bool = False) -> Union[Iterator[List[str]], Iterator[List[Item]]]:
        """Iterate over the pages of a listing: lists of keys, or of Item
        with include_docs.
        """
        if include_docs:
            return ([Item(i["key"], i["etag"], i["doc"]) for i in body["items"]]
                    for body in self._listing(db, prefix, page_size, True))
        return (body["keys"] for body in self._listing(db, prefix, page_size, False))

    def _listing(self, db: str, prefix: Optional[str], page_size: int, include_docs: bool) -> Iterator[Dict[str, Any]]:
        """The answers of a listing, page by page, following next."""
        cursor = None
        while True:
            query: Dict[str, Any] = {"limit": page_size, "prefix": prefix or None, "cursor": cursor,
                                     "include_docs": "true" if include_docs else None}
            body, _ = self.request("GET", self._path("api", "databases", db, "keys", **query))
            yield body
            cursor = body.get("next")
            if not cursor:
                return

    # -- changes ---------------------------------------------------------

    def changes(self, db: str, since: Optional[str] = None, limit: int = 100, prefix: Optional[str] = None,
                include_docs: bool = False) -> ChangesPage:
        """One page of db's changes after the cursor since (None: from the
        oldest kept; "now": none, only the current end as last_seq). Follow
        last_seq while more is True: on a busy server a page of a quiet
        database may be empty and still have more. A cursor older than the
        server's retention raises Gone: list the database, then follow from
        the current end.
        """
        query: Dict[str, Any] = {"since": since, "limit": limit, "prefix": prefix or None,
                                 "include_docs": "true" if include_docs else None}
        body, _ = self.request("GET", self._path("api", "databases", db, "changes", **query))
        return ChangesPage(changes=[Change.from_json(c) for c in body["changes"]], last_seq=str(body["last_seq"]),
                           more=bool(body["more"]))

    def follow(self, db: str, since: Optional[str] = "now", prefix: Optional[str] = None,
               include_docs: bool = False, retry: float = 1.0) -> Iterator[Change]:
        """Iterate over db's changes as they happen (Server-Sent Events),
        after the cursor since ("now": from now on; None: from the oldest
        kept). A dropped connection, or a stream the server ended because
        it fell behind, is resumed after the last change received, after
        retry seconds, so no change is missed or repeated. It ends when the
        database is deleted; Gone (a cursor past the retention), Forbidden
        and TooManyRequests are raised.
        """
        cursor = self.changes(db, since="now")["last_seq"] if since == "now" else since
        while True:
            try:
                for event, data in self._events(db, cursor, prefix, include_docs):
                    if event == "change":
                        change = Change.from_json(data)
                        cursor = change.seq
                        yield change
                    elif event == "deleted":
                        return
                    elif event in ("lagging", "error"):
                        cursor = str(data.get("resume_from", cursor))
                        break
            except (ConnectionFailed, ServerError, OSError, http.client.HTTPException):
                pass
            time.sleep(retry)

    def _events(self, db: str, since: Optional[str], prefix: Optional[str],
                include_docs: bool) -> Iterator[Tuple[str, Dict[str, Any]]]:
        """The events of one event stream of db's feed, as (type, data)."""
        path = self._path("api", "databases", db, "changes", feed="sse", since=since, prefix=prefix or None,
                          include_docs="true" if include_docs else None)
        req = urllib.request.Request(self.base_url + path, method="GET")
        req.add_header("Accept", "text/event-stream")
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            # Idle streams get a comment line every 15 s.
            resp = urllib.request.urlopen(req, timeout=max(self.timeout, 60.0))
        except urllib.error.HTTPError as err:
            raise error_for(err.code, _decode(err.read()), err.headers) from None
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionFailed(0, "GET %s: %s" % (path, getattr(err, "reason", err))) from err
        with resp:
            event, data = "", ""
            for raw in resp:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "":
                    if event:
                        yield event, json.loads(data) if data else {}
                    event, data = "", ""

    # -- queries ---------------------------------------------------------

    def find(self, db: str, selector: Mapping[str, Any], fields: Optional[List[str]] = None,
             sort: Optional[List[Union[str, Dict[str, str]]]] = None, limit: Optional[int] = None,
             skip: Optional[int] = None, bookmark: Optional[str] = None,
             use_index: Optional[str] = None) -> FindPage:
        """One page of the documents of db that selector matches (CouchDB's
        Mango selectors: {"user": "u1", "n": {"$gt": 3}}). fields: the
        dotted paths to return of each (default: the whole document);
        sort: field names, or {"field": "asc"|"desc"}; limit: page size
        (server default 25); bookmark: from the previous page.
        """
        body: Dict[str, Any] = {"selector": selector}
        for name, value in (("fields", fields), ("sort", sort), ("limit", limit), ("skip", skip),
                            ("bookmark", bookmark), ("use_index", use_index)):
            if value is not None:
                body[name] = value
        ans, _ = self.request("POST", self._path("api", "databases", db, "find"), body)
        return FindPage(docs=ans["docs"], keys=ans["keys"], etags=ans["etags"], bookmark=ans["bookmark"],
                        more=ans["more"], warning=ans.get("warning", ""))

    def find_all(self, db: str, selector: Mapping[str, Any], fields: Optional[List[str]] = None,
                 sort: Optional[List[Union[str, Dict[str, str]]]] = None, page_size: int = 100,
                 use_index: Optional[str] = None) -> Iterator[Item]:
        """Iterate over every match as Item(key, etag, doc), a page of
        page_size at a time, following bookmarks while the server says more
        may follow (also when a budget ended a page early)."""
        bookmark = None
        while True:
            page = self.find(db, selector, fields=fields, sort=sort, limit=page_size, bookmark=bookmark,
                             use_index=use_index)
            for key, etag, doc in zip(page["keys"], page["etags"], page["docs"]):
                yield Item(key, etag, doc)
            if not page["more"]:
                return
            bookmark = page["bookmark"]

    def explain(self, db: str, selector: Mapping[str, Any], sort: Optional[List[Union[str, Dict[str, str]]]] = None,
                use_index: Optional[str] = None) -> Dict[str, Any]:
        """How find would run: the index (or "_all_docs", a scan) and how
        many entities it would read ("entities")."""
        body: Dict[str, Any] = {"selector": selector}
        if sort is not None:
            body["sort"] = sort
        if use_index is not None:
            body["use_index"] = use_index
        ans, _ = self.request("POST", self._path("api", "databases", db, "explain"), body)
        return dict(ans)

    def create_index(self, db: str, fields: List[str], name: Optional[str] = None) -> str:
        """Index db by fields (dotted paths); return "created", or "exists"
        when an index of those fields was there."""
        body: Dict[str, Any] = {"index": {"fields": fields}}
        if name is not None:
            body["name"] = name
        ans, _ = self.request("POST", self._path("api", "databases", db, "index"), body)
        return str(ans["result"])

    def indexes(self, db: str) -> List[Dict[str, Any]]:
        """The indexes of db, "_all_docs" (the scan) first."""
        ans, _ = self.request("GET", self._path("api", "databases", db, "index"))
        return list(ans["indexes"])

    def delete_index(self, db: str, name: str) -> None:
        """Delete db's index name; NotFound if there is none."""
        self.request("DELETE", self._path("api", "databases", db, "index", name))

    # -- databases and schemas -------------------------------------------

    def delete_database(self, db: str) -> int:
        """Delete every entity of db and its binding (admin); return how
        many entities this call deleted. Safe to repeat.
        """
        body, _ = self.request("DELETE", self._path("api", "databases", db))
        return int(body["deleted"])

    def bind(self, db: str, schema_id: Optional[str]) -> Dict[str, Any]:
        """Bind db to schema_id (None unbinds); return the database info
        {"name", "schema", "entities"}."""
        body, _ = self.request("PUT", self._path("api", "databases", db), {"schema": schema_id})
        return dict(body)

    def set_max_versions(self, db: str, count: Optional[int]) -> Dict[str, Any]:
        """Keep the last count versions of each entity of db (0: off; None:
        the server's -max-versions default); return the database info."""
        body, _ = self.request("PUT", self._path("api", "databases", db), {"max_versions": count})
        return dict(body)

    # -- entity versions (API.md, Entity versions) ------------------------

    def versions(self, db: str, key: str) -> List[Dict[str, Any]]:
        """The kept versions of key, oldest first: {"version", "etag",
        "time", "principal", "deleted", "destroyed", ...}."""
        body, _ = self.request("GET", self._path("entity", db, "versions", key=key))
        return list(body["versions"])

    def get_version(self, db: str, key: str, version: int) -> Document:
        """The document of one kept version; NotFound if it is not kept."""
        body, _ = self.request("GET", self._path("entity", db, key=key, version=version))
        return body

    def undelete(self, db: str, key: str) -> Optional[str]:
        """Bring back a soft-deleted entity; return its new ETag."""
        _, headers = self.request("POST", self._path("entity", db, "undelete", key=key))
        return headers.get("ETag")

    def destroy_versions(self, db: str, key: str, versions: Iterable[int]) -> None:
        """Remove those versions' documents for good (admin)."""
        listed = ",".join(str(int(v)) for v in versions)
        self.request("POST", self._path("entity", db, "destroy", key=key, versions=listed))

    def put_schema(self, schema_id: str, schema: Any) -> None:
        """Store or replace a JSON Schema."""
        self.request("PUT", self._path("schema", schema_id), schema)

    def validate(self, schema_id: str, doc: Document) -> List[ValidationError]:
        """The violations of doc against schema_id, [] when it matches.
        Nothing is stored.
        """
        try:
            self.request("POST", self._path("schema", schema_id, "validate"), doc)
        except ValidationFailed as err:
            return err.errors
        return []

    # -- transport -------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                headers: Optional[Mapping[str, str]] = None) -> Tuple[Any, Message]:
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
            raise error_for(err.code, _decode(err.read()), err.headers) from None
        except (urllib.error.URLError, OSError) as err:
            raise ConnectionFailed(0, "%s %s: %s" % (method, path, getattr(err, "reason", err))) from err

    def _entity(self, db: str, key: str, schema: Optional[str] = None) -> str:
        return self._path("entity", db, key=key, schema=schema)

    @staticmethod
    def _path(*segments: str, **query: Any) -> str:
        path = "/" + "/".join(urllib.parse.quote(str(s), safe="") for s in segments)
        query = {k: v for k, v in query.items() if v is not None}
        return path + ("?" + urllib.parse.urlencode(query) if query else "")


def _preconditions(if_match: Optional[str], if_none_match: Optional[str]) -> Dict[str, str]:
    """The precondition headers; an ETag is sent quoted as the server gave it."""
    headers = {}
    if if_match:
        headers["If-Match"] = if_match
    if if_none_match:
        headers["If-None-Match"] = if_none_match
    return headers


def _decode(raw: bytes) -> Any:
    """The JSON value of an answer body, None when empty or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None

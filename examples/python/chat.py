#!/usr/bin/env python3
"""A DeltaDatabase chat client using only the Python standard library.

It appends the user's message to a chat session with a JSON Patch (so
concurrent clients never lose each other's messages), then appends a reply
only if the session is still the one the reply answers (If-Match), and
prints the session.

    DDB_URL=http://127.0.0.1:8080 DDB_TOKEN=<key> python3 examples/python/chat.py "hello"

DDB_DB (default chatdb) and DDB_SESSION (default session_001) pick the
session.
"""
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def request(method, url, token, body, content_type="application/json", headers=None):
    """Send one request; return (status, body bytes, ETag)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read(), resp.headers.get("ETag")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("ETag")


def append_op(role, content):
    """A JSON Patch appending one message: "/messages/-" is the end."""
    return [{"op": "add", "path": "/messages/-", "value": {"role": role, "content": content}}]


def main():
    base, token = os.environ.get("DDB_URL"), os.environ.get("DDB_TOKEN")
    if not base or not token:
        sys.exit("chat: set DDB_URL and DDB_TOKEN")
    db = os.environ.get("DDB_DB") or "chatdb"
    session = os.environ.get("DDB_SESSION") or "session_001"
    text = sys.argv[1] if len(sys.argv) > 1 else "hello"
    db_url = base + "/entity/" + urllib.parse.quote(db, safe="")
    entity = db_url + "?key=" + urllib.parse.quote(session, safe="")
    patch_type = "application/json-patch+json"

    # 1. Create the session once: with If-None-Match: * a second client's
    #    create is a 412 instead of wiping the messages.
    status, body, _ = request("PUT", db_url, token, {session: {"title": "Chat " + session, "messages": []}},
                              headers={"If-None-Match": "*"})
    if status not in (200, 412):
        sys.exit("chat: create session: %d %s" % (status, body.decode()))

    # 2. Append the user's message; the server applies it atomically.
    status, body, etag = request("PATCH", entity, token, append_op("user", text), patch_type)
    if status != 200:
        sys.exit("chat: append message: %d %s" % (status, body.decode()))

    # 3. Reply to the session as we saw it: If-Match turns a write by
    #    someone else in between into a 412, which carries the new ETag.
    for _ in range(5):
        status, body, new_etag = request("PATCH", entity, token, append_op("assistant", "You said: " + text),
                                         patch_type, {"If-Match": etag})
        if status != 412:
            break
        etag = new_etag
    if status != 200:
        sys.exit("chat: append reply: %d %s" % (status, body.decode()))

    # A session made elsewhere (README's quick start) may have no title.
    doc = json.loads(body)
    print(doc.get("title") or session)
    for m in doc["messages"]:
        print("  %s: %s" % (m["role"], m["content"]))


if __name__ == "__main__":
    main()

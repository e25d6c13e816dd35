"""Tests of the deltadb package against a live server (standard library
unittest).

`go test ./...` installs the package into a fresh virtual environment,
starts the real binary and runs them there (TestPythonClient in
clients_test.go) with DDB_URL and DDB_TOKEN (the admin key) set; by hand,
with the package installed or on PYTHONPATH:

    DDB_URL=http://127.0.0.1:8080 DDB_TOKEN=<admin key> python3 -m unittest discover -s clients/python/tests -v

Each test uses a database named after itself, emptied first, so tests do
not see each other's entities and may run again on the same server.
"""

import json
import os
import socket
import threading
import unittest
import urllib.parse
import urllib.request
from email.message import Message

import deltadb
import deltadb.errors

CHAT_SCHEMA = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "title": {"type": "string"},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"enum": ["user", "assistant"]}, "content": {"type": "string"}},
            },
        },
    },
}


class CuttingProxy:
    """A TCP proxy to the server that can cut every connection it carries,
    as a lost network or a restarted server does; accepted counts the
    connections it took."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.conns = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self.lock:
                self.conns += [client, upstream]
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        """Close every connection open now."""
        with self.lock:
            conns, self.conns = self.conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        self.cut()


class ClientTest(unittest.TestCase):
    def setUp(self):
        url, token = os.environ.get("DDB_URL"), os.environ.get("DDB_TOKEN")
        if not url or not token:
            self.fail("set DDB_URL and DDB_TOKEN (the admin key) to a running server")
        self.db = deltadb.Client(url, token)
        self.name = "py_" + self._testMethodName[len("test_"):]
        self.db.delete_database(self.name)  # left by an earlier run on the same server

    def key_with(self, permissions, databases=None):
        """A client with a new API key of permissions."""
        body = {"name": self.name, "permissions": permissions}
        if databases:
            body["databases"] = databases
        key, _ = self.db.request("POST", "/api/keys", body)
        return deltadb.Client(self.db.base_url, key["secret"])

    def test_put_get_delete(self):
        etag = self.db.put(self.name, "a", {"n": 1})
        self.assertTrue(etag.startswith('"') and etag.endswith('"'), etag)
        self.assertEqual(self.db.get(self.name, "a"), {"n": 1})
        doc, got = self.db.get_with_etag(self.name, "a")
        self.assertEqual((doc, got), ({"n": 1}, etag))
        self.db.delete(self.name, "a", if_match=etag)
        with self.assertRaises(deltadb.NotFound) as cm:
            self.db.get(self.name, "a")
        self.assertIn('"a"', cm.exception.message)
        self.assertEqual(cm.exception.status, 404)
        self.assertTrue(cm.exception.request_id)
        with self.assertRaises(deltadb.NotFound):
            self.db.delete(self.name, "a")

    def test_keys_are_encoded(self):
        key = "user 1 & ü?x=y#z"
        self.db.put(self.name, key, [1, 2])
        self.assertEqual(self.db.get(self.name, key), [1, 2])
        self.assertEqual(list(self.db.list_keys(self.name)), [key])

    def test_preconditions(self):
        etag = self.db.put(self.name, "a", {"v": 1}, if_none_match="*")
        with self.assertRaises(deltadb.PreconditionFailed) as cm:
            self.db.put(self.name, "a", {"v": 2}, if_none_match="*")
        self.assertEqual(cm.exception.etag, etag)
        newer = self.db.put(self.name, "a", {"v": 2}, if_match=etag)
        self.assertNotEqual(newer, etag)
        with self.assertRaises(deltadb.PreconditionFailed) as cm:
            self.db.put(self.name, "a", {"v": 3}, if_match=etag)
        self.assertEqual(cm.exception.etag, newer)
        with self.assertRaises(deltadb.PreconditionFailed):
            self.db.delete(self.name, "a", if_match=etag)
        self.assertEqual(self.db.get(self.name, "a"), {"v": 2})

    def test_put_many_is_all_or_nothing(self):
        self.db.put_schema("py.chat.v1", CHAT_SCHEMA)
        self.db.put_many(self.name, {"s1": {"messages": []}, "s2": {"messages": []}}, schema="py.chat.v1")
        self.assertEqual(self.db.get(self.name, "s2"), {"messages": []})
        with self.assertRaises(deltadb.BadRequest) as cm:
            self.db.put_many(self.name, {"s3": {"messages": []}, "s4": {"title": "no messages"}}, schema="py.chat.v1")
        self.assertIn("s4", cm.exception.message)
        with self.assertRaises(deltadb.NotFound):
            self.db.get(self.name, "s3")

    def test_patch(self):
        self.db.put(self.name, "p", {"title": "t", "draft": True, "messages": []})
        doc, etag = self.db.patch(self.name, "p", {"title": "renamed", "draft": None})
        self.assertEqual(doc, {"title": "renamed", "messages": []})
        self.assertEqual(self.db.get_with_etag(self.name, "p"), (doc, etag))
        doc, _ = self.db.patch(self.name, "p", [{"op": "add", "path": "/messages/-", "value": 1}])
        self.assertEqual(doc["messages"], [1])
        with self.assertRaises(deltadb.Conflict):
            self.db.patch(self.name, "p", [{"op": "test", "path": "/title", "value": "other"}])
        with self.assertRaises(deltadb.PreconditionFailed):
            self.db.patch(self.name, "p", {"x": 1}, if_match=etag)
        with self.assertRaises(deltadb.NotFound):
            self.db.patch(self.name, "nope", {"x": 1})

    def test_append_message_from_many_threads(self):
        """Concurrent appends all land, each once, in each writer's order:
        the server applies each JSON Patch atomically."""
        self.db.put(self.name, "chat", {"title": "busy", "messages": []})
        threads, per_thread, failures = 4, 8, []

        def run(t):
            mine = deltadb.Client(self.db.base_url, self.db.token)
            try:
                for i in range(per_thread):
                    mine.append_message(self.name, "chat", {"role": "user", "content": "%d-%d" % (t, i)})
            except Exception as err:  # reported below, in the test's thread
                failures.append(err)

        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        self.assertEqual(failures, [])
        contents = [m["content"] for m in self.db.get(self.name, "chat")["messages"]]
        want = sorted("%d-%d" % (t, i) for t in range(threads) for i in range(per_thread))
        self.assertEqual(sorted(contents), want)
        for t in range(threads):  # each writer's messages stay in its order
            mine = [c for c in contents if c.startswith("%d-" % t)]
            self.assertEqual(mine, ["%d-%d" % (t, i) for i in range(per_thread)])

    def test_append_message_answers_the_document(self):
        self.db.put(self.name, "chat", {"messages": [], "log": []})
        doc, etag = self.db.append_message(self.name, "chat", {"role": "user", "content": "hi"})
        self.assertEqual(doc, {"messages": [{"role": "user", "content": "hi"}], "log": []})
        self.assertEqual(self.db.get_with_etag(self.name, "chat"), (doc, etag))
        doc, _ = self.db.append_message(self.name, "chat", "started", path="/log")
        self.assertEqual(doc["log"], ["started"])
        with self.assertRaises(deltadb.Conflict):  # no such array
            self.db.append_message(self.name, "chat", 1, path="/nope")
        with self.assertRaises(deltadb.NotFound):
            self.db.append_message(self.name, "absent", {"role": "user", "content": "x"})

    def test_append_message_with_a_write_only_key(self):
        """A key that may write but not read appends: one JSON Patch that
        reads nothing, and no document comes back to it."""
        self.db.put(self.name, "chat", {"messages": [{"role": "user", "content": "first"}]})
        writer = self.key_with(["write"], databases=[self.name])
        with self.assertRaises(deltadb.Forbidden):
            writer.get(self.name, "chat")
        doc, etag = writer.append_message(self.name, "chat", {"role": "assistant", "content": "second"})
        self.assertIsNone(doc)
        got, now = self.db.get_with_etag(self.name, "chat")
        self.assertEqual(now, etag)
        self.assertEqual([m["content"] for m in got["messages"]], ["first", "second"])

    def test_append_message_if_match(self):
        etag = self.db.put(self.name, "chat", {"messages": []})
        _, newer = self.db.append_message(self.name, "chat", "a", if_match=etag)
        with self.assertRaises(deltadb.PreconditionFailed) as cm:
            self.db.append_message(self.name, "chat", "b", if_match=etag)
        self.assertEqual(cm.exception.etag, newer)
        self.assertEqual(self.db.get(self.name, "chat")["messages"], ["a"])

    def test_list_keys_pages(self):
        keys = ["k%02d" % i for i in range(23)]
        self.db.put_many(self.name, {k: {"k": k} for k in keys})
        self.db.put(self.name, "other", 1)
        self.assertEqual(list(self.db.list_keys(self.name, prefix="k", page_size=5)), keys)
        pages = list(self.db.pages(self.name, prefix="k", page_size=5))
        self.assertEqual([len(p) for p in pages], [5, 5, 5, 5, 3])
        items = list(self.db.list_keys(self.name, prefix="k", page_size=10, include_docs=True))
        self.assertEqual([i.key for i in items], keys)
        self.assertEqual([i.doc["k"] for i in items], keys)
        self.assertEqual(items[3].etag, self.db.get_with_etag(self.name, "k03")[1])
        self.assertEqual(list(self.db.list_keys("py_nothing_here")), [])
        with self.assertRaises(deltadb.BadRequest):
            list(self.db.list_keys(self.name, page_size=0))

    def test_get_many(self):
        self.db.put_many(self.name, {"a": 1, "b": {"x": 2}})
        got = self.db.get_many(self.name, ["b", "nope", "a", "nope"])
        self.assertEqual(got["documents"], {"a": 1, "b": {"x": 2}})
        self.assertEqual(got["missing"], ["nope"])
        self.assertEqual(got["etags"]["a"], self.db.get_with_etag(self.name, "a")[1])
        # More keys than one request takes: split, and merged back.
        many = ["m%04d" % i for i in range(deltadb.MAX_KEYS_PER_REQUEST + 200)] + ["a"]
        got = self.db.get_many(self.name, many)
        self.assertEqual(list(got["documents"]), ["a"])
        self.assertEqual(len(got["missing"]), deltadb.MAX_KEYS_PER_REQUEST + 200)
        with self.assertRaises(deltadb.PayloadTooLarge):
            self.db.request("POST", "/api/databases/%s/get" % self.name, {"keys": many})

    def test_get_many_follows_remaining(self):
        # 17 documents of 1 MB pass the server's default -max-response-bytes
        # (16 MiB): one answer leaves keys in "remaining", which get_many
        # asks for again; a listing's page ends early with next.
        keys = ["big%02d" % i for i in range(17)]
        for k in keys:
            self.db.put(self.name, k, {"k": k, "pad": "x" * 1000000})
        first, _ = self.db.request("POST", "/api/databases/%s/get" % self.name, {"keys": keys})
        self.assertTrue(first["remaining"])
        got = self.db.get_many(self.name, keys)
        self.assertEqual(sorted(got["documents"]), keys)
        self.assertEqual([d["k"] for _, d in sorted(got["documents"].items())], keys)
        self.assertEqual(got["missing"], [])
        items = list(self.db.list_keys(self.name, page_size=100, include_docs=True))
        self.assertEqual([i.key for i in items], keys)

    def test_validate_and_schemas(self):
        self.db.put_schema("py.val.v1", CHAT_SCHEMA)
        self.assertEqual(self.db.validate("py.val.v1", {"messages": []}), [])
        errors = self.db.validate("py.val.v1", {"messages": [{"role": "bot", "content": 1}]})
        self.assertEqual([e["path"] for e in errors], ["/messages/0/content", "/messages/0/role"])
        with self.assertRaises(deltadb.NotFound):
            self.db.validate("py.nope.v1", {})
        self.db.bind(self.name, "py.val.v1")
        with self.assertRaises(deltadb.BadRequest):
            self.db.put(self.name, "bad", {"title": "no messages"})
        with self.assertRaises(deltadb.Conflict) as cm:
            self.db.request("DELETE", "/schema/py.val.v1")
        self.assertIn(self.name, cm.exception.message)
        self.assertEqual(self.db.bind(self.name, None)["schema"], None)
        self.db.request("DELETE", "/schema/py.val.v1")

    def test_failed_put_lists_its_errors(self):
        """A put, put_many or patch the schema refuses raises
        ValidationFailed (a BadRequest) whose errors say where: pointers
        into the body sent ({key: document}) for puts, into the document
        for a patch."""
        self.db.put_schema("py.put.v1", CHAT_SCHEMA)
        self.db.bind(self.name, "py.put.v1")
        with self.assertRaises(deltadb.ValidationFailed) as cm:
            self.db.put(self.name, "s1", {"messages": [{"role": "bot", "content": 1}]})
        self.assertIsInstance(cm.exception, deltadb.BadRequest)
        self.assertEqual(cm.exception.status, 400)
        self.assertEqual([e["path"] for e in cm.exception.errors], ["/s1/messages/0/content", "/s1/messages/0/role"])
        self.assertIn("user", cm.exception.errors[1]["message"])
        with self.assertRaises(deltadb.ValidationFailed) as cm:
            self.db.put_many(self.name, {"a~c": {}, "fine": {"messages": []}, "s2": {"messages": "no"}})
        self.assertEqual([e["path"] for e in cm.exception.errors], ["/a~0c", "/s2/messages"])
        with self.assertRaises(deltadb.NotFound):
            self.db.get(self.name, "fine")
        self.db.put(self.name, "ok", {"messages": []})
        with self.assertRaises(deltadb.ValidationFailed) as cm:
            self.db.append_message(self.name, "ok", {"role": "user"})
        self.assertEqual(cm.exception.errors, [{"path": "/messages/0", "message": cm.exception.errors[0]["message"]}])
        self.assertIn("content", cm.exception.errors[0]["message"])
        # A write-only key's append the schema refuses: still a
        # ValidationFailed, its violations withheld (they would show the
        # document), so errors is empty.
        with self.assertRaises(deltadb.ValidationFailed) as cm:
            self.key_with(["write"]).append_message(self.name, "ok", {"role": "user"})
        self.assertEqual((cm.exception.status, cm.exception.errors), (400, []))
        self.assertIn("py.put.v1", cm.exception.message)
        with self.assertRaises(deltadb.BadRequest) as cm:  # not a schema failure: no errors
            self.db.get(self.name, "a/b")
        self.assertNotIsInstance(cm.exception, deltadb.ValidationFailed)
        self.db.bind(self.name, None)

    def test_changes_and_follow(self):
        e1 = self.db.put(self.name, "a", {"n": 1})
        e2 = self.db.put(self.name, "b", {"n": 2})
        page = self.db.changes(self.name)
        self.assertEqual([(c.key, c.op, c.etag) for c in page["changes"]][-2:], [("a", "put", e1), ("b", "put", e2)])
        self.assertFalse(page["more"])  # it read to the feed's end
        end = self.db.changes(self.name, since=page["last_seq"])
        self.assertEqual((end["changes"], end["more"]), ([], False))
        first = self.db.changes(self.name, since=page["changes"][-2].seq, limit=1)
        self.assertEqual(([c.key for c in first["changes"]], first["more"]), (["b"], False))
        cut = self.db.changes(self.name, limit=1)  # b follows: more
        self.assertEqual((len(cut["changes"]), cut["more"]), (1, True))
        docs = self.db.changes(self.name, since=page["changes"][-2].seq, include_docs=True)["changes"]
        self.assertEqual([(c.key, c.doc) for c in docs], [("b", {"n": 2})])
        follow = self.db.follow(self.name, since=page["changes"][-2].seq, include_docs=True)
        first = next(follow)
        self.assertEqual((first.key, first.op, first.etag, first.doc), ("b", "put", e2, {"n": 2}))
        self.db.delete(self.name, "a")
        second = next(follow)
        self.assertEqual((second.key, second.op, second.etag, second.doc), ("a", "delete", None, None))
        follow.close()
        with self.assertRaises(deltadb.Gone) as cm:
            self.db.changes(self.name, since="999999999999")
        self.assertIn("last_seq", cm.exception.message)
        with self.assertRaises(deltadb.Forbidden):
            next(self.key_with(["write"]).follow(self.name))

    def test_follow_resumes_after_a_dropped_connection(self):
        url = urllib.parse.urlsplit(self.db.base_url)
        proxy = CuttingProxy(url.hostname, url.port)
        self.addCleanup(proxy.close)
        since = self.db.changes(self.name, since="now")["last_seq"]
        follow = deltadb.Client(proxy.url, self.db.token).follow(self.name, since=since, retry=0.1)
        self.addCleanup(follow.close)
        e1 = self.db.put(self.name, "a", {"n": 1})
        first = next(follow)
        self.assertEqual((first.key, first.etag), ("a", e1))
        proxy.cut()
        e2 = self.db.put(self.name, "b", {"n": 2})
        e3 = self.db.put(self.name, "a", {"n": 3})
        rest = [next(follow), next(follow)]
        self.assertEqual([(c.key, c.etag) for c in rest], [("b", e2), ("a", e3)])
        self.assertLess(int(first.seq), int(rest[0].seq))
        self.assertGreaterEqual(proxy.accepted, 2, "the stream was not opened again")

    def test_find(self):
        self.db.put_many(self.name, {"s%02d" % i: {"user": "u%d" % (i % 3), "n": i} for i in range(20)})
        self.assertEqual(self.db.create_index(self.name, ["user", "n"], name="by-user"), "created")
        self.assertEqual(self.db.create_index(self.name, ["user", "n"]), "exists")
        page = self.db.find(self.name, {"user": "u1", "n": {"$gte": 4}}, fields=["n"], sort=["user", "n"], limit=3)
        self.assertEqual(page["keys"], ["s04", "s07", "s10"])
        self.assertEqual(page["docs"], [{"n": 4}, {"n": 7}, {"n": 10}])
        self.assertTrue(page["more"])
        self.assertEqual(len(page["etags"]), 3)
        rest = self.db.find(self.name, {"user": "u1", "n": {"$gte": 4}}, sort=["user", "n"], bookmark=page["bookmark"])
        self.assertEqual(rest["keys"], ["s13", "s16", "s19"])
        self.assertFalse(rest["more"])
        found = [item.key for item in self.db.find_all(self.name, {"n": {"$mod": [2, 0]}}, page_size=4)]
        self.assertEqual(found, ["s%02d" % i for i in range(0, 20, 2)])
        plan = self.db.explain(self.name, {"user": "u2", "n": {"$gt": 0}})
        self.assertEqual((plan["index"]["name"], plan["entities"]), ("by-user", 6))
        self.assertEqual([i["name"] for i in self.db.indexes(self.name)], ["_all_docs", "by-user"])
        self.db.delete_index(self.name, "by-user")
        with self.assertRaises(deltadb.NotFound):
            self.db.delete_index(self.name, "by-user")
        with self.assertRaises(deltadb.BadRequest) as err:
            self.db.find(self.name, {"n": {"$where": "1"}})
        self.assertIn('"$where" is not supported', err.exception.message)
        with self.assertRaises(deltadb.Forbidden):
            self.key_with(["write"]).find(self.name, {})

    def test_versions(self):
        db = self.name + "v"
        self.assertEqual(self.db.set_max_versions(db, 3)["max_versions"], 3)
        etags = [self.db.put(db, "s", {"n": i}) for i in range(4)]
        kept = self.db.versions(db, "s")
        self.assertEqual([v["version"] for v in kept], [2, 3, 4])
        self.assertEqual('"%s"' % kept[-1]["etag"], etags[-1])
        self.assertEqual(self.db.get_version(db, "s", 3), {"n": 2})
        self.db.delete(db, "s")
        self.assertTrue(self.db.versions(db, "s")[-1]["deleted"])
        self.db.undelete(db, "s")
        self.assertEqual(self.db.get(db, "s"), {"n": 3})
        self.db.destroy_versions(db, "s", [3])
        with self.assertRaises(deltadb.NotFound):
            self.db.get_version(db, "s", 3)
        self.db.delete_database(db)

    def test_delete_database(self):
        self.db.put_many(self.name, {"k%d" % i: i for i in range(30)})
        self.assertEqual(self.db.delete_database(self.name), 30)
        self.assertEqual(list(self.db.list_keys(self.name)), [])
        self.assertEqual(self.db.delete_database(self.name), 0)

    def test_typed_errors(self):
        with self.assertRaises(deltadb.Unauthorized):
            deltadb.Client(self.db.base_url, "dk_not-a-key").get(self.name, "a")
        with self.assertRaises(deltadb.Unauthorized):
            deltadb.Client(self.db.base_url).get(self.name, "a")
        reader = self.key_with(["read"])
        self.db.put(self.name, "a", 1)
        self.assertEqual(reader.get(self.name, "a"), 1)
        with self.assertRaises(deltadb.Forbidden):
            reader.put(self.name, "a", 2)
        with self.assertRaises(deltadb.Forbidden):
            self.key_with(["read"], databases=["elsewhere"]).get(self.name, "a")
        with self.assertRaises(deltadb.BadRequest):
            self.db.get(self.name, "a/b")
        with self.assertRaises(deltadb.BadRequest):
            self.db.get("bad..name", "a")
        with self.assertRaises(deltadb.PayloadTooLarge) as cm:
            self.db.put_many(self.name, {"k%04d" % i: i for i in range(1001)})
        self.assertIn("1000", cm.exception.message)
        with self.assertRaises(deltadb.UnsupportedMediaType):
            self.db.request("PATCH", "/entity/%s?key=a" % self.name, {"x": 1}, content_type="text/plain")
        with self.assertRaises(deltadb.MethodNotAllowed):
            self.db.request("POST", "/entity/%s" % self.name, {})
        with self.assertRaises(deltadb.ConnectionFailed):
            deltadb.Client("http://127.0.0.1:1", "x", timeout=5).get(self.name, "a")
        for cls in (deltadb.NotFound, deltadb.Unavailable, deltadb.ConnectionFailed):
            self.assertTrue(issubclass(cls, deltadb.DeltaDBError))

    def test_openapi_document_is_served(self):
        with urllib.request.urlopen(self.db.base_url + "/openapi.json", timeout=10) as resp:
            doc = json.loads(resp.read())
        self.assertTrue(doc["openapi"].startswith("3.1"))
        self.assertIn("/api/databases/{db}/get", doc["paths"])


class ErrorsTest(unittest.TestCase):
    """ValidationFailed.errors from answers as a server sends them: with an
    "errors" array, or with the sentence alone."""

    def error(self, status, body):
        return deltadb.errors.error_for(status, body, Message())

    def test_errors_array_is_used(self):
        err = self.error(400, {"error": "anything", "errors": [{"path": "/k/a", "message": "why"}]})
        self.assertIsInstance(err, deltadb.ValidationFailed)
        self.assertEqual(err.errors, [{"path": "/k/a", "message": "why"}])

    def test_sentence_of_a_put(self):
        err = self.error(400, {"error": 'documents do not match schema "chat.v1": "bad": at (root): missing property \'messages\'; '
                                        '"x\\"y": at /messages/0/role: value must be one of \'user\', \'assistant\'; at /n: got string; want number'})
        self.assertIsInstance(err, deltadb.ValidationFailed)
        self.assertEqual(err.errors, [
            {"path": "/bad", "message": "missing property 'messages'"},
            {"path": '/x"y/messages/0/role', "message": "value must be one of 'user', 'assistant'"},
            {"path": '/x"y/n', "message": "got string; want number"},
        ])

    def test_sentence_of_a_patch(self):
        err = self.error(400, {"error": 'schema "s": at /a: one; at /b: two; and 3 more'})
        self.assertEqual(err.errors, [{"path": "/a", "message": "one"}, {"path": "/b", "message": "two"}])

    def test_sentence_of_a_patch_without_read(self):
        err = self.error(400, {"error": 'the patched document does not match schema "s"'})
        self.assertIsInstance(err, deltadb.ValidationFailed)
        self.assertEqual(err.errors, [])

    def test_other_sentences(self):
        for body in ({"error": 'database name "a..b" must not contain ".."'}, {"error": 'unknown schema "x"'}, None):
            err = self.error(400, body)
            self.assertIs(type(err), deltadb.BadRequest)
        self.assertEqual(deltadb.ValidationFailed(400, "no schema here").errors, [])


if __name__ == "__main__":
    unittest.main()

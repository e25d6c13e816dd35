// Tests of the client against a live server (node's test runner). go test
// ./... compiles them with tsc --strict and runs them against the real
// binary (TestTypeScriptClient in clients_test.go) with DDB_URL and
// DDB_TOKEN (the admin key) set; by hand, after npm run build:
//
//   DDB_URL=http://127.0.0.1:8080 DDB_TOKEN=<admin key> npm test
//
// Each test uses a database named after itself, emptied first.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Client, DeltaDBError, PreconditionFailed, ValidationFailed, errorsFromSentence } from "../src/index.js";

const url = process.env["DDB_URL"];
const token = process.env["DDB_TOKEN"];
if (!url || !token) {
  throw new Error("set DDB_URL and DDB_TOKEN (the admin key) to a running server");
}
const admin = new Client(url, token);

interface Chat {
  title?: string;
  messages: { role: "user" | "assistant"; content: string }[];
}

const chatSchema = {
  type: "object",
  required: ["messages"],
  properties: {
    title: { type: "string" },
    messages: {
      type: "array",
      items: {
        type: "object",
        required: ["role", "content"],
        properties: { role: { enum: ["user", "assistant"] }, content: { type: "string" } },
      },
    },
  },
};

/** A fresh database for one test, and a client typed for chats. */
async function fresh(name: string): Promise<{ db: string; chats: Client<Chat> }> {
  const db = `ts_${name}`;
  await admin.deleteDatabase(db);
  return { db, chats: new Client<Chat>(url!, token) };
}

/** A client with a new API key of permissions. */
async function keyWith(name: string, permissions: string[], databases?: string[]): Promise<Client<Chat>> {
  const { body } = await admin.request("POST", "/api/keys", { body: { name, permissions, databases } });
  return new Client<Chat>(url!, (body as { secret: string }).secret);
}

/** The error fn throws. */
async function thrown(fn: () => Promise<unknown>): Promise<DeltaDBError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof DeltaDBError) {
      return err;
    }
    throw err;
  }
  assert.fail("no error thrown");
}

test("put, get, delete with ETags", async () => {
  const { db, chats } = await fresh("put_get");
  const key = "s 1 & ü?x=y#z";
  const etag = await chats.put(db, key, { title: "t", messages: [] });
  assert.match(etag, /^".+"$/);
  const got = await chats.getWithETag(db, key);
  assert.deepEqual(got, { doc: { title: "t", messages: [] }, etag });
  await chats.delete(db, key, { ifMatch: etag });
  const err = await thrown(() => chats.get(db, key));
  assert.equal(err.status, 404);
  assert.ok(err.requestId);
  assert.match(err.sentence, /not found/);
});

test("preconditions: If-Match, If-None-Match and per key on putMany", async () => {
  const { db, chats } = await fresh("preconditions");
  const a = await chats.put(db, "a", { messages: [] }, { ifNoneMatch: "*" });
  const err = await thrown(() => chats.put(db, "a", { messages: [] }, { ifNoneMatch: "*" }));
  assert.ok(err instanceof PreconditionFailed);
  assert.equal(err.etag, a);
  await chats.putMany(db, { a: { title: "both", messages: [] }, b: { messages: [] } }, { ifMatch: { a }, ifNoneMatch: ["b"] });
  const stale = await thrown(() => chats.putMany(db, { a: { messages: [] }, c: { messages: [] } }, { ifMatch: { a } }));
  assert.equal(stale.status, 412);
  assert.match(stale.sentence, /"a"/);
  assert.equal((await chats.getMany(db, ["c"])).missing[0], "c"); // nothing of the batch written
  assert.equal((await chats.get(db, "a")).title, "both");
});

test("patch: merge patch and JSON Patch", async () => {
  const { db, chats } = await fresh("patch");
  await chats.put(db, "p", { title: "t", messages: [] });
  const merged = await chats.patch(db, "p", { title: "renamed" });
  assert.equal(merged.doc.title, "renamed");
  const err = await thrown(() => chats.patch(db, "p", [{ op: "test", path: "/title", value: "other" }]));
  assert.equal(err.status, 409);
  const stale = await thrown(() => chats.patch(db, "p", { title: "x" }, { ifMatch: '"0"' }));
  assert.ok(stale instanceof PreconditionFailed);
  assert.equal(stale.etag, merged.etag);
});

test("appendMessage: concurrent appends all land; a write-only key appends", async () => {
  const { db, chats } = await fresh("append");
  await chats.put(db, "chat", { messages: [] });
  await Promise.all(
    Array.from({ length: 4 }, async (_, t) => {
      for (let i = 0; i < 5; i++) {
        await chats.appendMessage(db, "chat", { role: "user", content: `${t}-${i}` });
      }
    }),
  );
  const contents = (await chats.get(db, "chat")).messages.map((m) => m.content);
  assert.equal(contents.length, 20);
  assert.equal(new Set(contents).size, 20);

  const writer = await keyWith("ts-writer", ["write"], [db]);
  assert.equal((await thrown(() => writer.get(db, "chat"))).status, 403);
  const appended = await writer.appendMessage(db, "chat", { role: "assistant", content: "from a write-only key" });
  assert.equal(appended.doc, null);
  const after = await chats.getWithETag(db, "chat");
  assert.equal(after.etag, appended.etag);
  assert.equal(after.doc.messages.at(-1)?.content, "from a write-only key");
});

test("listing and reading many", async () => {
  const { db, chats } = await fresh("listing");
  const keys = Array.from({ length: 23 }, (_, i) => `k${String(i).padStart(2, "0")}`);
  await chats.putMany(db, Object.fromEntries(keys.map((k) => [k, { title: k, messages: [] }])));
  const listed: string[] = [];
  for await (const k of chats.listKeys(db, { prefix: "k", pageSize: 5 })) {
    listed.push(k);
  }
  assert.deepEqual(listed, keys);
  const items = [];
  for await (const item of chats.listDocs(db, { pageSize: 10 })) {
    items.push(item);
  }
  assert.deepEqual(items.map((i) => i.doc.title), keys);
  const many = await chats.getMany(db, ["k03", "nope", ...Array.from({ length: 1100 }, (_, i) => `m${i}`)]);
  assert.deepEqual(Object.keys(many.documents), ["k03"]);
  assert.equal(many.etags["k03"], items[3]?.etag);
  assert.equal(many.missing.length, 1101);
});

test("getMany and listDocs follow an answer that ends at the response budget", async () => {
  // 17 documents of 1 MB pass the server's default -max-response-bytes
  // (16 MiB): one answer leaves keys in remaining, which getMany asks for
  // again; a listing's page ends early with next.
  const { db } = await fresh("response_budget");
  const big = new Client<{ k: string; pad: string }>(url!, token);
  const keys = Array.from({ length: 17 }, (_, i) => `big${String(i).padStart(2, "0")}`);
  for (const k of keys) {
    await big.put(db, k, { k, pad: "x".repeat(1000000) });
  }
  const { body } = await admin.request("POST", `/api/databases/${db}/get`, { body: { keys } });
  assert.ok((body as { remaining: string[] }).remaining.length > 0);
  const many = await big.getMany(db, keys);
  assert.deepEqual(Object.keys(many.documents).sort(), keys);
  assert.deepEqual(keys.map((k) => many.documents[k]?.k), keys);
  const listed = [];
  for await (const item of big.listDocs(db, { pageSize: 100 })) {
    listed.push(item.key);
  }
  assert.deepEqual(listed, keys);
});

test("a document its schema refuses: ValidationFailed with errors", async () => {
  const { db, chats } = await fresh("validation");
  await admin.putSchema("ts.chat.v1", chatSchema);
  assert.deepEqual(await admin.validate("ts.chat.v1", { messages: [] }), []);
  const errors = await admin.validate("ts.chat.v1", { messages: [{ role: "bot", content: 1 }] });
  assert.deepEqual(errors.map((e) => e.path), ["/messages/0/content", "/messages/0/role"]);
  assert.equal((await admin.bind(db, "ts.chat.v1")).schema, "ts.chat.v1");
  const err = await thrown(() => chats.put(db, "s1", { messages: [{ role: "bot" as "user", content: "x" }] }));
  assert.ok(err instanceof ValidationFailed);
  assert.equal(err.status, 400);
  assert.deepEqual(err.errors.map((e) => e.path), ["/s1/messages/0/role"]);
  await chats.put(db, "ok", { messages: [] });
  const patched = await thrown(() => chats.appendMessage(db, "ok", { role: "user" }));
  assert.ok(patched instanceof ValidationFailed);
  assert.deepEqual(patched.errors.map((e) => e.path), ["/messages/0"]);
  // A write-only key's append the schema refuses: still ValidationFailed,
  // its violations withheld by the server (they would show the document).
  const writer = await keyWith("ts_validation_writer", ["write"]);
  const withheld = await thrown(() => writer.appendMessage(db, "ok", { role: "user" }));
  assert.ok(withheld instanceof ValidationFailed, `${withheld.constructor.name}: ${withheld.sentence}`);
  assert.equal(withheld.status, 400);
  assert.deepEqual(withheld.errors, []);
  await admin.bind(db, null);
});

test("errors from an errors array or from the sentence", () => {
  assert.deepEqual(
    errorsFromSentence('documents do not match schema "c": "a": at (root): missing property \'m\'; "b\\"c": at /x: one; two; at /y: three; and 2 more'),
    [
      { path: "/a", message: "missing property 'm'" },
      { path: '/b"c/x', message: "one; two" },
      { path: '/b"c/y', message: "three" },
    ],
  );
  assert.deepEqual(errorsFromSentence('schema "c": at /m/0: why'), [{ path: "/m/0", message: "why" }]);
  assert.deepEqual(errorsFromSentence('database name "a..b" must not contain ".."'), []);
  const withArray = new ValidationFailed(400, "x", null, { error: "x", errors: [{ path: "/k", message: "m" }] });
  assert.deepEqual(withArray.errors, [{ path: "/k", message: "m" }]);
});

test("who am I, and a server that cannot be reached", async () => {
  assert.equal((await admin.me()).is_admin, true);
  const err = await thrown(() => new Client("http://127.0.0.1:1", "x", 5000).get("a", "b"));
  assert.equal(err.status, 0);
});

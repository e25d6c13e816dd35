// The DeltaDatabase client for TypeScript: the types of openapi.ts
// (generated from openapi.json by openapi-typescript) and a thin typed
// wrapper over fetch. D is the type of the documents: unknown by default;
// generate types from GET /openapi.json?database=DB and pass
// components["schemas"]["Document"] to type one database's documents.

import type { components } from "./openapi.js";

export type { components, paths } from "./openapi.js";

type Schemas = components["schemas"];
export type DatabaseInfo = Schemas["DatabaseInfo"];
export type JSONPatchOp = Schemas["JSONPatchOp"];
export type Me = Schemas["Me"];

/** One way a document fails its schema: path is a JSON Pointer ("" for the
 * root) into what was sent (a PUT body {key: document}, or the document of
 * a PATCH or validate). */
export type ValidationError = NonNullable<Schemas["ValidateAnswer"]["errors"]>[number];

/** A listed entity with its document. */
export interface Item<D> {
  key: string;
  etag: string;
  doc: D;
}

/** What getMany answers. */
export interface GetManyResult<D> {
  documents: Record<string, D>;
  etags: Record<string, string>;
  missing: string[];
}

/** Preconditions of a write: an ETag to write over, or "*" (ifNoneMatch)
 * to create only. */
export interface WriteOptions {
  ifMatch?: string;
  ifNoneMatch?: "*";
  /** Also validate against this schema. */
  schema?: string;
}

/** Per-key preconditions of putMany: key to the ETag it must have ("*":
 * must exist), and keys that must not exist. */
export interface PutManyOptions {
  ifMatch?: Record<string, string>;
  ifNoneMatch?: string[];
  schema?: string;
}

/** The most keys one getMany request carries (the server's default
 * -max-batch-keys); getMany splits longer lists. */
export const MAX_KEYS_PER_REQUEST = 1000;

/** A request the server refused or could not serve: status is the HTTP
 * status (0 when no answer came), message the server's sentence,
 * requestId its X-Request-ID, body the decoded answer. */
export class DeltaDBError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly requestId: string | null = null,
    readonly body: unknown = null,
    readonly headers: Headers = new Headers(),
  ) {
    super(status ? `${status}: ${message}` : message);
    this.name = new.target.name;
  }

  /** The server's sentence alone. */
  get sentence(): string {
    const b = this.body as Partial<Schemas["Error"]> | null;
    return typeof b?.error === "string" ? b.error : this.message;
  }
}

/** 412: a precondition failed; etag is the entity's current one. */
export class PreconditionFailed extends DeltaDBError {
  get etag(): string | null {
    return this.headers.get("ETag");
  }
}

/** A document its schema refuses: 400 from put, putMany or patch, 422
 * from validate. errors comes from the answer's "errors" array, or from
 * the server's sentence where the answer has none; a patch by a key
 * without read permission gets none (the server withholds them): []. */
export class ValidationFailed extends DeltaDBError {
  get errors(): ValidationError[] {
    const listed = (this.body as { errors?: unknown } | null)?.errors;
    if (Array.isArray(listed)) {
      return listed.map((e: { path?: unknown; message?: unknown }) => ({ path: String(e.path ?? ""), message: String(e.message ?? "") }));
    }
    return errorsFromSentence(this.sentence);
  }
}

// The server's sentence for documents a schema refuses (see errorsFromSentence).
const schemaSentence = /^(?:documents do not match )?schema "(?:[^"\\]|\\.)*": (?=(?:"(?:[^"\\]|\\.)*": )?at )/;
// A PATCH by a credential without read: the server withholds the
// violations (they would show the document), the sentence says no more.
const schemaSentenceWithheld = /^the patched document does not match schema "(?:[^"\\]|\\.)*"$/;
const violation = /(?:"((?:[^"\\]|\\.)*)": )?at (\(root\)|\/[^:]*): (.*?)(?=; (?:"(?:[^"\\]|\\.)*": )?at (?:\(root\)|\/)|; and \d+ more$|$)/g;

/** The violations a schema-failure sentence lists ('documents do not match
 * schema "ID": "key": at /p: why; ...' of a PUT, 'schema "ID": at /p: why'
 * of a PATCH), [] for any other sentence. A PUT's paths are put under
 * /<key>, as pointers into the body {key: document}. */
export function errorsFromSentence(sentence: string): ValidationError[] {
  const head = schemaSentence.exec(sentence);
  if (!head) {
    return [];
  }
  const out: ValidationError[] = [];
  let key: string | null = null;
  for (const m of sentence.slice(head[0].length).matchAll(violation)) {
    if (m[1] !== undefined) {
      key = unquote(m[1]);
    }
    let path = m[2] === "(root)" ? "" : m[2]!;
    if (key !== null) {
      path = "/" + key.replaceAll("~", "~0").replaceAll("/", "~1") + path;
    }
    out.push({ path, message: m[3]! });
  }
  return out;
}

/** The text of a key the server quoted, which escapes only quotes and
 * backslashes in a valid key. */
function unquote(quoted: string): string {
  try {
    const v: unknown = JSON.parse(`"${quoted}"`);
    return typeof v === "string" ? v : quoted;
  } catch {
    return quoted;
  }
}

/** A client of one DeltaDatabase server. baseUrl is its REST address
 * ("http://127.0.0.1:8080"), token the admin key, an API key or a session
 * token. */
export class Client<D = Schemas["Document"]> {
  readonly baseUrl: string;

  constructor(
    baseUrl: string,
    readonly token?: string,
    /** Milliseconds per request. */
    readonly timeoutMs = 30_000,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
  }

  /** The document stored under key; DeltaDBError 404 if there is none. */
  async get(db: string, key: string): Promise<D> {
    return (await this.getWithETag(db, key)).doc;
  }

  /** The document and its ETag (what ifMatch takes). */
  async getWithETag(db: string, key: string): Promise<{ doc: D; etag: string }> {
    const { body, headers } = await this.request("GET", entity(db, key));
    return { doc: body as D, etag: headers.get("ETag") ?? "" };
  }

  /** Store doc under key; answers its new ETag. */
  async put(db: string, key: string, doc: D, opts: WriteOptions = {}): Promise<string> {
    const { headers } = await this.request("PUT", path(["entity", db], { schema: opts.schema }), {
      body: { [key]: doc },
      headers: preconditions(opts),
    });
    return headers.get("ETag") ?? "";
  }

  /** Store every {key: document} of docs in one request: all are checked
   * (schemas, preconditions) before any is written. */
  async putMany(db: string, docs: Record<string, D>, opts: PutManyOptions = {}): Promise<void> {
    const query: Record<string, string | string[] | undefined> = {
      schema: opts.schema,
      if_match: Object.entries(opts.ifMatch ?? {}).map(([k, tag]) => `${k}:${tag}`),
      if_none_match: opts.ifNoneMatch,
    };
    await this.request("PUT", path(["entity", db], query), { body: docs });
  }

  /** Apply a JSON Patch (an array) or a JSON Merge Patch (an object)
   * atomically; answers the patched document and its ETag. A credential
   * without read gets {"status": "ok"} as the document. */
  async patch(db: string, key: string, patch: JSONPatchOp[] | Record<string, unknown>, opts: Omit<WriteOptions, "ifNoneMatch"> = {}): Promise<{ doc: D; etag: string }> {
    const type = Array.isArray(patch) ? "application/json-patch+json" : "application/merge-patch+json";
    const { body, headers } = await this.request("PATCH", entity(db, key, opts.schema), {
      body: patch,
      contentType: type,
      headers: preconditions(opts),
    });
    return { doc: body as D, etag: headers.get("ETag") ?? "" };
  }

  /** Append message to the array at path (a JSON Pointer) with one JSON
   * Patch "add" at path/-: it reads nothing, so a write-only key may
   * append, and concurrent appends all land, each once. Answers the
   * document, null for a credential without read. */
  async appendMessage(db: string, key: string, message: unknown, opts: { path?: string; ifMatch?: string } = {}): Promise<{ doc: D | null; etag: string }> {
    const op: JSONPatchOp = { op: "add", path: `${opts.path ?? "/messages"}/-`, value: message };
    const { doc, etag } = await this.patch(db, key, [op], { ifMatch: opts.ifMatch });
    // A credential without read gets {"status": "ok"}; the document holds
    // the array appended to, so it is never that.
    return { doc: isStatusOK(doc) ? null : doc, etag };
  }

  /** Delete key. */
  async delete(db: string, key: string, opts: { ifMatch?: string } = {}): Promise<void> {
    await this.request("DELETE", entity(db, key), { headers: preconditions(opts) });
  }

  /** Read many entities by key, MAX_KEYS_PER_REQUEST per request, asking
   * again for the keys an answer leaves in remaining (its documents
   * reached the server's -max-response-bytes): the result holds every key
   * asked for. */
  async getMany(db: string, keys: string[]): Promise<GetManyResult<D>> {
    const out: GetManyResult<D> = { documents: {}, etags: {}, missing: [] };
    for (let i = 0; i < keys.length; i += MAX_KEYS_PER_REQUEST) {
      let pending = keys.slice(i, i + MAX_KEYS_PER_REQUEST);
      while (pending.length > 0) {
        const { body } = await this.request("POST", path(["api", "databases", db, "get"]), { body: { keys: pending } });
        const got = body as Schemas["GetManyAnswer"];
        Object.assign(out.documents, got.documents as Record<string, D>);
        Object.assign(out.etags, got.etags);
        out.missing.push(...got.missing.filter((k) => !out.missing.includes(k)));
        pending = got.remaining;
      }
    }
    return out;
  }

  /** The keys of db in key order, a page of pageSize (1 to 1000) fetched
   * as the iteration needs it. */
  async *listKeys(db: string, opts: { prefix?: string; pageSize?: number } = {}): AsyncGenerator<string> {
    for await (const page of this.pages<Schemas["KeyPage"]>(db, opts, false)) {
      yield* page.keys;
    }
  }

  /** The entities of db in key order, with documents and ETags. */
  async *listDocs(db: string, opts: { prefix?: string; pageSize?: number } = {}): AsyncGenerator<Item<D>> {
    for await (const page of this.pages<Schemas["DocPage"]>(db, opts, true)) {
      yield* page.items.map((i) => ({ key: i.key, etag: i.etag, doc: i.doc as D }));
    }
  }

  private async *pages<P extends { next?: string }>(db: string, opts: { prefix?: string; pageSize?: number }, docs: boolean): AsyncGenerator<P> {
    let cursor: string | undefined;
    do {
      const query = { prefix: opts.prefix || undefined, limit: String(opts.pageSize ?? 100), cursor, include_docs: docs ? "true" : undefined };
      const { body } = await this.request("GET", path(["api", "databases", db, "keys"], query));
      const page = body as P;
      yield page;
      cursor = page.next;
    } while (cursor);
  }

  /** Bind db to schemaId (null unbinds). */
  async bind(db: string, schemaId: string | null): Promise<DatabaseInfo> {
    return (await this.request("PUT", path(["api", "databases", db]), { body: { schema: schemaId } })).body as DatabaseInfo;
  }

  /** Delete every entity of db and its binding (admin); answers how many
   * entities this call deleted. */
  async deleteDatabase(db: string): Promise<number> {
    return ((await this.request("DELETE", path(["api", "databases", db]))).body as { deleted: number }).deleted;
  }

  /** Store or replace a JSON Schema. */
  async putSchema(schemaId: string, schema: unknown): Promise<void> {
    await this.request("PUT", path(["schema", schemaId]), { body: schema });
  }

  /** The violations of doc against schemaId, [] when it matches. */
  async validate(schemaId: string, doc: unknown): Promise<ValidationError[]> {
    try {
      await this.request("POST", path(["schema", schemaId, "validate"]), { body: doc });
      return [];
    } catch (err) {
      if (err instanceof ValidationFailed) {
        return err.errors;
      }
      throw err;
    }
  }

  /** Who this client's credential acts for. */
  async me(): Promise<Me> {
    return (await this.request("GET", "/api/me")).body as Me;
  }

  /** Send one request; answers the decoded body (null when empty) and the
   * headers. An error answer throws DeltaDBError or a subclass. */
  async request(
    method: string,
    target: string,
    opts: { body?: unknown; contentType?: string; headers?: Record<string, string> } = {},
  ): Promise<{ body: unknown; headers: Headers }> {
    const headers: Record<string, string> = { Accept: "application/json", ...opts.headers };
    if (this.token) {
      headers["Authorization"] = `Bearer ${this.token}`;
    }
    let data: string | undefined;
    if (opts.body !== undefined) {
      data = JSON.stringify(opts.body);
      headers["Content-Type"] = opts.contentType ?? "application/json";
    }
    let resp: Response;
    try {
      resp = await fetch(this.baseUrl + target, { method, headers, body: data, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new DeltaDBError(0, `${method} ${target}: ${err instanceof Error ? err.message : String(err)}`);
    }
    const text = await resp.text();
    let body: unknown = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!resp.ok) {
      throw errorFor(resp.status, body, resp.headers);
    }
    return { body, headers: resp.headers };
  }
}

/** The error of an answer with status. */
function errorFor(status: number, body: unknown, headers: Headers): DeltaDBError {
  const b = body as { error?: unknown; errors?: unknown } | null;
  const sentence = typeof b?.error === "string" ? b.error : `HTTP ${status}`;
  const id = headers.get("X-Request-ID");
  if (status === 422 || (status === 400 && (Array.isArray(b?.errors) || schemaSentence.test(sentence) || schemaSentenceWithheld.test(sentence)))) {
    return new ValidationFailed(status, sentence, id, body, headers);
  }
  if (status === 412) {
    return new PreconditionFailed(status, sentence, id, body, headers);
  }
  return new DeltaDBError(status, sentence, id, body, headers);
}

/** Whether v is {"status": "ok"}. */
function isStatusOK(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && (v as Partial<Schemas["Status"]>).status === "ok";
}

/** The precondition headers of opts. */
function preconditions(opts: { ifMatch?: string; ifNoneMatch?: string }): Record<string, string> {
  const h: Record<string, string> = {};
  if (opts.ifMatch) {
    h["If-Match"] = opts.ifMatch;
  }
  if (opts.ifNoneMatch) {
    h["If-None-Match"] = opts.ifNoneMatch;
  }
  return h;
}

/** The path of segments (each escaped) with the query parameters that are
 * set; an array repeats its parameter. */
function path(segments: string[], query: Record<string, string | string[] | undefined> = {}): string {
  const p = "/" + segments.map(encodeURIComponent).join("/");
  const q = new URLSearchParams();
  for (const [name, v] of Object.entries(query)) {
    for (const value of Array.isArray(v) ? v : v === undefined ? [] : [v]) {
      q.append(name, value);
    }
  }
  const s = q.toString();
  return s ? `${p}?${s}` : p;
}

/** The path of one entity. */
function entity(db: string, key: string, schema?: string): string {
  return path(["entity", db], { key, schema });
}

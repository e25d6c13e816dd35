// A program typed for one database: chatdb.ts is what openapi-typescript
// generates from GET /openapi.json?database=chatdb (the Document schema
// there is chatdb's bound schema). TestTypeScriptClient generates it from a
// live server, compiles this with tsc --strict (each @ts-expect-error must
// meet an error: the types are the schema's, not unknown) and runs it.

import { Client } from "../src/index.js";
import type { components } from "./chatdb.js";

type Chat = components["schemas"]["Document"];
type Message = components["schemas"]["Document.message"];

const url = process.env["DDB_URL"];
if (!url) {
  throw new Error("set DDB_URL and DDB_TOKEN");
}
const db = new Client<Chat>(url, process.env["DDB_TOKEN"]);

const hello: Message = { role: "user", content: "typed by the bound schema" };
// @ts-expect-error the schema's roles are user, assistant and system
const robot: Message = { role: "robot", content: "x" };
// @ts-expect-error messages is required
const untitled: Chat = { title: "no messages" };
void robot, untitled;

await db.put("chatdb", "typed", { title: "Typed", messages: [hello] });
const { doc } = await db.appendMessage("chatdb", "typed", { role: "assistant", content: "hi" } satisfies Message);
const last = doc?.messages.at(-1);
const role: "user" | "assistant" | "system" | undefined = last?.role;
// @ts-expect-error content is a string
const length: number | undefined = last?.content;
void length;
console.log(JSON.stringify({ title: doc?.title, roles: doc?.messages.map((m) => m.role), role }));

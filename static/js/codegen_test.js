// codegen_test.js holds the unit tests of codegen.js. runCodegenTests()
// returns [{name, pass, got, want}], one per case; the Go browser test
// imports this module in the page and fails on any pass === false. It runs
// under node too:
//   node --input-type=module -e 'import("./static/js/codegen_test.js").then(m => console.log(m.runCodegenTests()))'
// Each case lists lines (trimmed) the output must contain, in order.

import { toPydantic, toTypeScript } from "./codegen.js";

const cases = [
  {
    name: "nested object becomes a nested class / interface",
    schema: {
      type: "object",
      required: ["user"],
      properties: { user: { type: "object", required: ["name"], properties: { name: { type: "string" }, address: { type: "object", properties: { city: { type: "string" } } } } } },
    },
    root: "Order",
    py: [
      "class OrderUserAddress(BaseModel):",
      "city: Optional[str] = None",
      "class OrderUser(BaseModel):",
      "name: str",
      "address: Optional[OrderUserAddress] = None",
      "class Order(BaseModel):",
      "user: OrderUser",
    ],
    ts: [
      "export interface OrderUserAddress {",
      "city?: string;",
      "export interface OrderUser {",
      "name: string;",
      "address?: OrderUserAddress;",
      "export interface Order {",
      "user: OrderUser;",
    ],
  },
  {
    name: "array of objects",
    schema: {
      type: "object",
      required: ["messages"],
      properties: { messages: { type: "array", items: { type: "object", required: ["role"], properties: { role: { type: "string" }, text: { type: "string" } } } }, tags: { type: "array", items: { type: "string" } } },
    },
    root: "Chat",
    py: ["class ChatMessagesItem(BaseModel):", "role: str", "class Chat(BaseModel):", "messages: List[ChatMessagesItem]", "tags: Optional[List[str]] = None"],
    ts: ["export interface ChatMessagesItem {", "role: string;", "text?: string;", "export interface Chat {", "messages: ChatMessagesItem[];", "tags?: string[];"],
  },
  {
    name: "enum and const become literals",
    schema: { type: "object", required: ["status"], properties: { status: { type: "string", enum: ["open", "closed"] }, kind: { const: "chat" }, level: { enum: [1, 2, 3] } } },
    root: "Ticket",
    py: ["from typing import Literal, Optional", 'status: Literal["open", "closed"]', 'kind: Optional[Literal["chat"]] = None', "level: Optional[Literal[1, 2, 3]] = None"],
    ts: ['status: "open" | "closed";', 'kind?: "chat";', "level?: 1 | 2 | 3;"],
  },
  {
    name: "required vs optional",
    schema: { type: "object", required: ["id"], properties: { id: { type: "string" }, note: { type: "string" }, count: { type: "integer", default: 3 } } },
    root: "Item",
    py: ["id: str", "note: Optional[str] = None", "count: Optional[int] = 3"],
    ts: ["id: string;", "note?: string;", "count?: number;"],
  },
  {
    name: "$ref to $defs",
    schema: {
      type: "object",
      required: ["owner"],
      properties: { owner: { $ref: "#/$defs/User" }, friends: { type: "array", items: { $ref: "#/$defs/User" } } },
      $defs: { User: { type: "object", required: ["name"], properties: { name: { type: "string" } } } },
    },
    root: "Group",
    py: ["class User(BaseModel):", "name: str", "class Group(BaseModel):", "owner: User", "friends: Optional[List[User]] = None"],
    ts: ["export interface User {", "name: string;", "export interface Group {", "owner: User;", "friends?: User[];"],
  },
  {
    name: "$ref to definitions, non-object definition and recursion",
    schema: {
      type: "object",
      properties: { color: { $ref: "#/definitions/color" }, children: { type: "array", items: { $ref: "#" } } },
      definitions: { color: { enum: ["red", "green"] } },
    },
    root: "Node",
    py: ['Color = Literal["red", "green"]', "class Node(BaseModel):", "color: Optional[Color] = None", "children: Optional[List[Node]] = None", "Node.model_rebuild()"],
    ts: ['export type Color = "red" | "green";', "export interface Node {", "color?: Color;", "children?: Node[];"],
  },
  {
    name: "integer, number, boolean and null",
    schema: { type: "object", required: ["i", "n", "b", "z"], properties: { i: { type: "integer" }, n: { type: "number" }, b: { type: "boolean" }, z: { type: "null" }, when: { type: "string", format: "date-time" } } },
    root: "Prims",
    py: ["i: int", "n: float", "b: bool", "z: None", "when: Optional[str] = None"],
    ts: ["i: number;", "n: number;", "b: boolean;", "z: null;", "when?: string;"],
  },
  {
    name: "nullable type arrays",
    schema: { type: "object", required: ["name", "age"], properties: { name: { type: ["string", "null"] }, age: { type: ["integer", "string"] }, nick: { type: ["string", "null"] } } },
    root: "Person",
    py: ["name: Optional[str]", "age: Union[int, str]", "nick: Optional[str] = None"],
    ts: ["name: string | null;", "age: number | string;", "nick?: string | null;"],
  },
  {
    name: "awkward property names and maps",
    schema: { type: "object", additionalProperties: false, required: ["first-name"], properties: { "first-name": { type: "string" }, class: { type: "integer" }, labels: { type: "object", additionalProperties: { type: "string" } } } },
    root: "odd.v1",
    py: ["class OddV1(BaseModel):", 'model_config = ConfigDict(populate_by_name=True, extra="forbid")', 'first_name: str = Field(..., alias="first-name")', 'class_: Optional[int] = Field(default=None, alias="class")', "labels: Optional[Dict[str, str]] = None"],
    ts: ["export interface OddV1 {", '"first-name": string;', "class?: number;", "labels?: Record<string, string>;"],
  },
  {
    name: "non-object root",
    schema: { type: "array", items: { type: "object", properties: { a: { type: "string" } } } },
    root: "Rows",
    py: ["class RowsItem(BaseModel):", "class Rows(RootModel[List[RowsItem]]):"],
    ts: ["export interface RowsItem {", "export type Rows = RowsItem[];"],
  },
];

// containsInOrder reports whether every wanted line appears, trimmed, in order.
function containsInOrder(text, want) {
  const lines = text.split("\n").map((l) => l.trim());
  let at = 0;
  for (const w of want) {
    const i = lines.indexOf(w.trim(), at);
    if (i < 0) return false;
    at = i + 1;
  }
  return true;
}

/** runCodegenTests runs every case through both generators; one result per case and language. */
export function runCodegenTests() {
  const results = [];
  for (const c of cases) {
    for (const [lang, gen, want] of [["pydantic", toPydantic, c.py], ["typescript", toTypeScript, c.ts]]) {
      let got;
      let pass;
      try {
        got = gen(c.schema, c.root);
        pass = containsInOrder(got, want);
      } catch (e) {
        got = "threw: " + (e && e.stack ? e.stack : e);
        pass = false;
      }
      results.push({ name: `${c.name} (${lang})`, pass, got, want: want.join("\n") });
    }
  }
  return results;
}

// codegen.js turns a JSON Schema document into source code: a Pydantic v2
// model (toPydantic) or TypeScript interfaces (toTypeScript). Both are pure
// functions of (schema, rootName): no DOM, no network, no globals, so the
// browser test (codegen_test.js) and node can run them directly.
//
// Supported: nested objects (nested classes/interfaces named Parent+Prop),
// arrays (items, tuple items/prefixItems), enum and const (Literal[...] /
// string-literal unions), required vs optional, type arrays such as
// ["string", "null"], anyOf/oneOf (unions), allOf, additionalProperties maps,
// and $ref within the document (#, #/$defs/X, #/definitions/X or any JSON
// pointer). "format" is ignored. External $refs become Any / unknown.

/**
 * toPydantic returns Python source declaring a Pydantic v2 model named
 * rootName (a RootModel when the root is not an object) plus one class or
 * alias per nested object and definition, dependencies first.
 */
export function toPydantic(schema, rootName) {
  return generate(schema, rootName, pythonTarget());
}

/**
 * toTypeScript returns TypeScript source declaring an exported interface
 * named rootName (a type alias when the root is not an object) plus one
 * interface or type per nested object and definition.
 */
export function toTypeScript(schema, rootName) {
  return generate(schema, rootName, typeScriptTarget());
}

/** pascalCase("shipping_address") = "ShippingAddress"; never empty. */
export function pascalCase(s) {
  const words = String(s ?? "").split(/[^A-Za-z0-9]+/).filter(Boolean);
  let out = words.map((w) => w[0].toUpperCase() + w.slice(1)).join("");
  if (out === "") out = "Model";
  if (/^[0-9]/.test(out)) out = "T" + out;
  return out;
}

// ---- the shared walker -----------------------------------------------------

function generate(schema, rootName, target) {
  const ctx = {
    root: schema,
    target,
    taken: new Set(target.reserved),
    refNames: new Map(), // "#/$defs/X" -> declared name
    decls: [], // declarations in dependency order (post-order)
    pending: new Set(), // names whose declaration is being built
    forwardRef: false, // a name was used before its declaration
  };
  const name = claimName(ctx, pascalCase(rootName || (isObj(schema) && schema.title) || "Model"));
  ctx.refNames.set("#", name);
  declareNamed(ctx, isObj(schema) || typeof schema === "boolean" ? schema : {}, name, true);
  for (const key of ["$defs", "definitions"]) {
    const defs = isObj(schema) ? schema[key] : null;
    if (!isObj(defs)) continue;
    for (const def of Object.keys(defs)) refType(ctx, "#/" + key + "/" + escapePointer(def));
  }
  return target.file(ctx);
}

function isObj(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function claimName(ctx, want) {
  let name = want;
  for (let i = 2; ctx.taken.has(name); i++) name = want + i;
  ctx.taken.add(name);
  return name;
}

// declareNamed emits a declaration called name for schema s: a class or
// interface when s describes an object with properties, else an alias.
function declareNamed(ctx, s, name, isRoot) {
  ctx.pending.add(name);
  let decl;
  if (describesObject(s)) {
    decl = objectDecl(ctx, s, name);
  } else {
    decl = ctx.target.aliasDecl(name, typeOf(ctx, s, name), isRoot, s);
  }
  ctx.pending.delete(name);
  ctx.decls.push(decl);
  return name;
}

function describesObject(s) {
  if (!isObj(s)) return false;
  if (s.$ref !== undefined || s.enum !== undefined || s.const !== undefined) return false;
  if (s.anyOf || s.oneOf) return false;
  const t = s.type;
  if (Array.isArray(t)) return false;
  if (t !== undefined && t !== "object") return false;
  return isObj(s.properties) || (s.allOf !== undefined && allOfMergeable(s));
}

function allOfMergeable(s) {
  return Array.isArray(s.allOf) && s.allOf.length > 1;
}

// mergeAllOf folds allOf members (refs resolved) and s's own properties into
// one object schema; the target decides whether to use it.
function mergeAllOf(ctx, s) {
  const merged = { type: "object", properties: {}, required: [] };
  const parts = [...(s.allOf || []), { ...s, allOf: undefined }];
  for (let part of parts) {
    if (isObj(part) && typeof part.$ref === "string") part = resolveRef(ctx, part.$ref) || {};
    if (!isObj(part)) continue;
    Object.assign(merged.properties, part.properties || {});
    merged.required.push(...(Array.isArray(part.required) ? part.required : []));
    if (part.additionalProperties === false) merged.additionalProperties = false;
    if (part.description && !merged.description) merged.description = part.description;
  }
  return merged;
}

function objectDecl(ctx, s, name) {
  const src = allOfMergeable(s) ? mergeAllOf(ctx, s) : s;
  const required = new Set(Array.isArray(src.required) ? src.required : []);
  const fields = Object.keys(src.properties || {}).map((prop) => {
    const ps = src.properties[prop];
    return {
      name: prop,
      type: typeOf(ctx, ps, name + pascalCase(prop)),
      required: required.has(prop),
      description: isObj(ps) && typeof ps.description === "string" ? ps.description : "",
      default: isObj(ps) ? ps.default : undefined,
    };
  });
  return ctx.target.objectDecl(name, fields, src);
}

// typeOf returns the target's type expression for schema s; hint names any
// nested declaration it has to create.
function typeOf(ctx, s, hint) {
  const t = ctx.target;
  if (s === false) return t.never();
  if (!isObj(s)) return t.any();
  if (typeof s.$ref === "string") return refType(ctx, s.$ref);
  if (s.const !== undefined) return t.literal([s.const]);
  if (Array.isArray(s.enum)) return t.literal(s.enum);
  const alts = s.anyOf || s.oneOf;
  if (Array.isArray(alts)) {
    const base = { ...s, anyOf: undefined, oneOf: undefined };
    return t.union(alts.map((a, i) => typeOf(ctx, isObj(a) ? { ...base, ...a } : a, hint + "Option" + (i + 1))));
  }
  if (Array.isArray(s.allOf) && s.allOf.length === 1 && !isObj(s.properties)) {
    return typeOf(ctx, { ...s, ...s.allOf[0], allOf: undefined }, hint);
  }
  if (Array.isArray(s.allOf) && s.allOf.length > 1 && !isObj(s.properties) && t.intersection) {
    return t.intersection(s.allOf.map((a, i) => typeOf(ctx, a, hint + "Part" + (i + 1))));
  }
  if (Array.isArray(s.type)) {
    return t.union(s.type.map((ty) => typeOf(ctx, { ...s, type: ty }, hint)));
  }
  return typeOfSingle(ctx, s, hint);
}

function typeOfSingle(ctx, s, hint) {
  const t = ctx.target;
  let type = s.type;
  if (type === undefined) {
    if (isObj(s.properties) || s.allOf) type = "object";
    else if (s.items !== undefined || s.prefixItems !== undefined) type = "array";
    else if (isObj(s.additionalProperties)) type = "object";
  }
  switch (type) {
    case "string":
    case "integer":
    case "number":
    case "boolean":
    case "null":
      return t.prim(type);
    case "array":
      return arrayType(ctx, s, hint);
    case "object":
      if (describesObject(s)) return declareNamed(ctx, s, claimName(ctx, hint), false);
      if (isObj(s.additionalProperties) || s.additionalProperties === true) {
        return t.map(typeOf(ctx, s.additionalProperties, hint + "Value"));
      }
      return t.map(t.any());
    default:
      return t.any();
  }
}

function arrayType(ctx, s, hint) {
  const t = ctx.target;
  const tuple = Array.isArray(s.prefixItems) ? s.prefixItems : Array.isArray(s.items) ? s.items : null;
  if (tuple) return t.tuple(tuple.map((it, i) => typeOf(ctx, it, hint + "Item" + (i + 1))));
  if (s.items === undefined) return t.array(t.any());
  return t.array(typeOf(ctx, s.items, hint + "Item"));
}

// refType returns the declared name for a local $ref, declaring it on first use.
function refType(ctx, ref) {
  if (ctx.refNames.has(ref)) {
    const name = ctx.refNames.get(ref);
    if (ctx.pending.has(name)) ctx.forwardRef = true;
    return name;
  }
  const target = resolveRef(ctx, ref);
  if (target === undefined) return ctx.target.any();
  const segs = ref.split("/");
  const name = claimName(ctx, pascalCase(unescapePointer(segs[segs.length - 1])));
  ctx.refNames.set(ref, name);
  return declareNamed(ctx, target, name, false);
}

function resolveRef(ctx, ref) {
  if (ref === "#") return ctx.root;
  if (!ref.startsWith("#/")) return undefined; // external refs are not fetched
  let cur = ctx.root;
  for (const raw of ref.slice(2).split("/")) {
    const seg = unescapePointer(raw);
    if (cur === null || typeof cur !== "object" || !(seg in cur)) return undefined;
    cur = cur[seg];
  }
  return cur;
}

function escapePointer(s) {
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

function unescapePointer(s) {
  let out = s;
  try {
    out = decodeURIComponent(s);
  } catch {
    // not percent-encoded; use as is
  }
  return out.replace(/~1/g, "/").replace(/~0/g, "~");
}

// ---- Pydantic v2 -------------------------------------------------------------

const PY_KEYWORDS = new Set(
  ("False None True and as assert async await break class continue def del elif else except " +
    "finally for from global if import in is lambda nonlocal not or pass raise return try while with yield")
    .split(" "),
);
// BaseModel attributes a field must not shadow.
const PY_SHADOWED = new Set(
  ("copy dict json schema schema_json validate construct fields parse_obj parse_raw parse_file " +
    "from_orm update_forward_refs model_config model_fields")
    .split(" "),
);

function pythonTarget() {
  const typing = new Set();
  const pydantic = new Set(["BaseModel"]);
  const use = (n) => (typing.add(n), n);
  const optional = (ty) => (ty === "None" || ty === "Any" || ty.startsWith("Optional[") ? ty : `${use("Optional")}[${ty}]`);
  return {
    reserved: ["Any", "Dict", "List", "Literal", "Optional", "Union", "Tuple", "BaseModel", "ConfigDict", "Field", "RootModel"],
    any: () => use("Any"),
    never: () => use("Any"),
    prim: (t) => ({ string: "str", integer: "int", number: "float", boolean: "bool", null: "None" })[t],
    array: (ty) => `${use("List")}[${ty}]`,
    tuple: (tys) => `${use("Tuple")}[${tys.join(", ") || "()"}]`,
    map: (ty) => `${use("Dict")}[str, ${ty}]`,
    literal(values) {
      const lits = values.filter((v) => v !== null && typeof v !== "object").map(pyLiteral);
      const hasNull = values.includes(null);
      if (lits.length === 0) return hasNull ? "None" : use("Any");
      const ty = `${use("Literal")}[${lits.join(", ")}]`;
      return hasNull ? optional(ty) : ty;
    },
    union(types) {
      const members = [];
      let hasNull = false;
      for (let ty of types) {
        if (ty === "None") {
          hasNull = true;
          continue;
        }
        if (ty.startsWith("Optional[")) {
          hasNull = true;
          ty = ty.slice("Optional[".length, -1);
        }
        if (!members.includes(ty)) members.push(ty);
      }
      if (members.includes("Any")) return "Any";
      if (members.length === 0) return "None";
      const inner = members.length === 1 ? members[0] : `${use("Union")}[${members.join(", ")}]`;
      return hasNull ? optional(inner) : inner;
    },
    objectDecl(name, fields, s) {
      const lines = [`class ${name}(BaseModel):`];
      if (s.description) lines.push(`    ${pyDocstring(s.description)}`);
      const config = [];
      const body = fields.map((f) => pyField(f, optional, pydantic));
      if (fields.some((f) => pyFieldName(f.name) !== f.name)) config.push("populate_by_name=True");
      if (s.additionalProperties === false) config.push('extra="forbid"');
      if (config.length) {
        pydantic.add("ConfigDict");
        lines.push(`    model_config = ConfigDict(${config.join(", ")})`, "");
      }
      lines.push(...body.map((b) => "    " + b));
      if (lines.length === 1 || (lines.length === 2 && s.description)) lines.push("    pass");
      if (lines[lines.length - 1] === "") lines.pop();
      return { name, kind: "class", text: lines.join("\n") };
    },
    aliasDecl(name, ty, isRoot, s) {
      if (isRoot) {
        pydantic.add("RootModel");
        const doc = isObj(s) && s.description ? `    ${pyDocstring(s.description)}\n` : "";
        return { name, kind: "class", text: `class ${name}(RootModel[${ty}]):\n${doc}    pass` };
      }
      return { name, kind: "alias", text: `${name} = ${ty}` };
    },
    file(ctx) {
      const out = ["from __future__ import annotations", ""];
      if (typing.size) out.push(`from typing import ${[...typing].sort().join(", ")}`, "");
      out.push(`from pydantic import ${[...pydantic].sort().join(", ")}`);
      for (const d of ctx.decls) out.push("", "", d.text);
      const classes = ctx.decls.filter((d) => d.kind === "class");
      if (ctx.forwardRef && classes.length) {
        out.push("", "");
        for (const d of classes) out.push(`${d.name}.model_rebuild()`);
      }
      return out.join("\n") + "\n";
    },
  };
}

function pyLiteral(v) {
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return String(v);
  return JSON.stringify(String(v));
}

function pyDocstring(text) {
  return '"""' + String(text).replace(/\\/g, "\\\\").replace(/"""/g, '\\"\\"\\"') + '"""';
}

function pyFieldName(prop) {
  let n = prop.replace(/[^A-Za-z0-9_]/g, "_");
  if (n === "" || /^[0-9_]/.test(n)) n = "field_" + n.replace(/^_+/, "");
  if (PY_KEYWORDS.has(n) || PY_SHADOWED.has(n) || n.startsWith("model_")) n += "_";
  return n;
}

function pyField(f, optional, pydantic) {
  const name = pyFieldName(f.name);
  const ty = f.required ? f.type : optional(f.type);
  const scalarDefault = f.default === null || ["string", "number", "boolean"].includes(typeof f.default);
  let dflt = f.required ? null : scalarDefault ? (f.default === null ? "None" : pyLiteral(f.default)) : "None";
  const args = [];
  if (name !== f.name) args.push(`alias=${JSON.stringify(f.name)}`);
  if (f.description) args.push(`description=${JSON.stringify(f.description)}`);
  if (args.length === 0) return dflt === null ? `${name}: ${ty}` : `${name}: ${ty} = ${dflt}`;
  pydantic.add("Field");
  args.unshift(dflt === null ? "..." : `default=${dflt}`);
  return `${name}: ${ty} = Field(${args.join(", ")})`;
}

// ---- TypeScript --------------------------------------------------------------

function typeScriptTarget() {
  const wrap = (ty) => (/[|&\s]/.test(ty) ? `(${ty})` : ty);
  return {
    reserved: ["Array", "Record", "Partial", "Date", "Object", "String", "Number", "Boolean", "Promise", "Map", "Set"],
    any: () => "unknown",
    never: () => "never",
    prim: (t) => ({ string: "string", integer: "number", number: "number", boolean: "boolean", null: "null" })[t],
    array: (ty) => `${wrap(ty)}[]`,
    tuple: (tys) => `[${tys.join(", ")}]`,
    map: (ty) => `Record<string, ${ty}>`,
    literal(values) {
      const lits = values.map((v) => (v !== null && typeof v === "object" ? "unknown" : JSON.stringify(v)));
      return tsUnion(lits);
    },
    union: (types) => tsUnion(types),
    intersection: (types) => types.map(wrap).join(" & "),
    objectDecl(name, fields, s) {
      const lines = [];
      if (s.description) lines.push(tsDoc(s.description, ""));
      lines.push(`export interface ${name} {`);
      for (const f of fields) {
        if (f.description) lines.push(tsDoc(f.description, "  "));
        lines.push(`  ${tsPropName(f.name)}${f.required ? "" : "?"}: ${f.type};`);
      }
      const ap = s.additionalProperties;
      if (isObj(ap) || ap === true) lines.push("  [key: string]: unknown;");
      lines.push("}");
      return { name, text: lines.join("\n") };
    },
    aliasDecl(name, ty, isRoot, s) {
      const doc = isObj(s) && s.description ? tsDoc(s.description, "") + "\n" : "";
      return { name, text: `${doc}export type ${name} = ${ty};` };
    },
    file: (ctx) => ctx.decls.map((d) => d.text).join("\n\n") + "\n",
  };
}

function tsUnion(types) {
  const members = [];
  for (const ty of types) {
    for (const part of splitTopUnion(ty)) if (!members.includes(part)) members.push(part);
  }
  if (members.includes("unknown")) return "unknown";
  return members.join(" | ") || "never";
}

// splitTopUnion("a | b") = ["a", "b"], leaving unions inside brackets alone.
function splitTopUnion(ty) {
  const parts = [];
  let depth = 0;
  let cur = "";
  for (let i = 0; i < ty.length; i++) {
    const c = ty[i];
    if ("([<{".includes(c)) depth++;
    if (")]>}".includes(c)) depth--;
    if (c === '"') {
      const end = closingQuote(ty, i);
      cur += ty.slice(i, end + 1);
      i = end;
      continue;
    }
    if (depth === 0 && ty.startsWith(" | ", i)) {
      parts.push(cur);
      cur = "";
      i += 2;
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  return parts;
}

function closingQuote(s, start) {
  for (let i = start + 1; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === '"') return i;
  }
  return s.length - 1;
}

function tsPropName(name) {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

function tsDoc(text, indent) {
  const body = String(text).replace(/\*\//g, "*\\/");
  return `${indent}/** ${body.split("\n").join(`\n${indent} * `)} */`;
}

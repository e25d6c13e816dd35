package main

// The OpenAPI 3.1 document of the REST API: openapi.json at the repository
// root, embedded in the binary and served at GET /openapi.json without a
// credential. openapi_test.go keeps it and the route table in step.
//
// GET /openapi.json?database=DB answers the document with its Document
// schema (every stored document body: GET, PUT, PATCH, listings with
// include_docs, reading many) replaced by the JSON Schema bound to DB, so
// that generated clients type that database's documents. The bound schema
// is translated, not trusted to fit: its definitions and $defs become
// components of their own and its $refs are rewritten to reach them.

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// openAPIDocument is openapi.json, byte for byte.
//
//go:embed openapi.json
var openAPIDocument []byte

// handleOpenAPI is GET /openapi.json[?database=DB].
func (s *restServer) handleOpenAPI(w http.ResponseWriter, r *http.Request, _ principal) error {
	doc := openAPIDocument
	if q := r.URL.Query(); q.Has("database") {
		var err error
		if doc, err = s.openAPIFor(r, q["database"]); err != nil {
			return err
		}
		// The answer depends on the credential, and may reveal a binding.
		w.Header().Set("Vary", "Authorization")
		w.Header().Set("Cache-Control", "private")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(doc)
	return nil
}

// openAPIFor is the document for ?database= (values): typed by the
// database's bound schema for a credential that may read it, the generic
// one without a credential, for one that may not read the database, or for
// an unbound database. A credential that does not authenticate is an error.
func (s *restServer) openAPIFor(r *http.Request, values []string) ([]byte, error) {
	if len(values) != 1 {
		return nil, reqErrorf(errInvalid, "?database= is given %d times; give it once", len(values))
	}
	db := values[0]
	if err := validateDBName(db); err != nil {
		return nil, reqPrefixf(err, "?database=")
	}
	cred := bearer(r)
	if cred == "" {
		return openAPIDocument, nil
	}
	p, err := s.auth.authenticateFrom(cred, s.auth.clientOf(r))
	if err != nil {
		return nil, err
	}
	notePrincipal(r.Context(), p)
	if authorize(p, permRead, db) != nil {
		return openAPIDocument, nil
	}
	id, raw, err := s.data.boundSchema(r.Context(), db)
	if err != nil || id == "" {
		return openAPIDocument, err
	}
	return typedOpenAPI(db, id, raw)
}

// typedOpenAPI returns openapi.json with components/schemas/Document
// replaced by schema (the template of schema ID id, bound to db).
func typedOpenAPI(db, id string, schema []byte) ([]byte, error) {
	doc, err := decodeJSON(openAPIDocument)
	if err != nil {
		return nil, fmt.Errorf("decode openapi.json: %w", err)
	}
	root, _ := doc.(map[string]any)
	components, _ := root["components"].(map[string]any)
	schemas, _ := components["schemas"].(map[string]any)
	info, _ := root["info"].(map[string]any)
	if schemas == nil || info == nil {
		return nil, fmt.Errorf("openapi.json has no components/schemas or info")
	}
	sch, err := decodeJSON(schema)
	if err != nil {
		return nil, fmt.Errorf("decode schema %q: %w", id, err)
	}
	for name, s := range documentComponents(sch, fmt.Sprintf("A document of database %q: schema %q.", db, id)) {
		schemas[name] = s
	}
	info["title"] = fmt.Sprintf("%s: database %s", info["title"], db)
	info["x-database"] = map[string]any{"name": db, "schema": id}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode typed openapi.json: %w", err)
	}
	return out.Bytes(), nil
}

// documentComponents translates a stored JSON Schema (any dialect the
// registry compiles) into OpenAPI 3.1 schema components: "Document" for
// the schema itself and "Document.<name>" for each entry of its top-level
// definitions or $defs, every $ref rewritten to match. description goes
// first in Document's description.
func documentComponents(schema any, description string) map[string]any {
	root, ok := schema.(map[string]any)
	if !ok { // a boolean schema
		return map[string]any{"Document": withDescription(convertSchema(schema, nil), description)}
	}
	names := hoistedNames(root)
	out := map[string]any{}
	for _, kw := range []string{"definitions", "$defs"} {
		defs, _ := root[kw].(map[string]any)
		for name, def := range defs {
			out[names[kw+"/"+name]] = convertSchema(def, names)
		}
	}
	doc := convertSchema(root, names).(map[string]any)
	delete(doc, "definitions")
	delete(doc, "$defs")
	out["Document"] = withDescription(doc, description)
	return out
}

// withDescription puts description in front of the schema's own.
func withDescription(schema any, description string) any {
	m, _ := schema.(map[string]any)
	if own, ok := m["description"].(string); ok && own != "" {
		description += " " + own
	}
	m["description"] = description
	return m
}

// hoistedNames maps "definitions/<name>" and "$defs/<name>" of root to a
// component name "Document.<name>", with characters OpenAPI does not allow
// in component names replaced and clashes numbered.
func hoistedNames(root map[string]any) map[string]string {
	names, taken := map[string]string{}, map[string]bool{"Document": true}
	for _, kw := range []string{"definitions", "$defs"} {
		defs, _ := root[kw].(map[string]any)
		for _, name := range slices.Sorted(maps.Keys(defs)) {
			base := "Document." + strings.Map(componentRune, name)
			c := base
			for i := 2; taken[c]; i++ {
				c = fmt.Sprintf("%s_%d", base, i)
			}
			taken[c], names[kw+"/"+name] = true, c
		}
	}
	return names
}

// componentRune keeps the characters of an OpenAPI component name
// (^[a-zA-Z0-9.\-_]+$) and replaces the others with '_'.
func componentRune(r rune) rune {
	if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
		return r
	}
	return '_'
}

// Keywords whose value is one schema, an object of schemas, or an array of
// schemas, in every dialect the registry compiles.
var (
	oneSchemaKeywords = map[string]bool{"not": true, "if": true, "then": true, "else": true, "additionalProperties": true,
		"contains": true, "propertyNames": true, "unevaluatedItems": true, "unevaluatedProperties": true,
		"contentSchema": true, "additionalItems": true}
	schemaMapKeywords = map[string]bool{"properties": true, "patternProperties": true, "definitions": true,
		"$defs": true, "dependentSchemas": true, "dependencies": true}
	schemaListKeywords = map[string]bool{"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true}
)

// convertSchema translates one schema: booleans become objects, $refs are
// rewritten (rewriteRef), $schema and $id dropped (the document's dialect
// and base URI apply), a draft-07 tuple (items as an array, then
// additionalItems) becomes prefixItems and items. Values that are data
// (enum, const, default, examples) are kept as they are.
func convertSchema(s any, names map[string]string) any {
	switch s := s.(type) {
	case bool:
		if s {
			return map[string]any{}
		}
		return map[string]any{"not": map[string]any{}}
	case map[string]any:
		out := make(map[string]any, len(s))
		for k, v := range s {
			switch {
			case k == "$schema" || k == "$id":
			case k == "$ref":
				if ref, ok := v.(string); ok {
					if to, ok := rewriteRef(ref, names); ok {
						out[k] = to
					}
				}
			case k == "items":
				out[k] = convertSchemaOrData(v, names) // a schema, or draft-07's array of them
			case oneSchemaKeywords[k]:
				out[k] = convertSchema(v, names)
			case schemaMapKeywords[k] || schemaListKeywords[k]:
				out[k] = convertEach(v, names)
			default:
				out[k] = v
			}
		}
		if tuple, ok := out["items"].([]any); ok {
			out["prefixItems"] = tuple
			delete(out, "items")
			if rest, ok := out["additionalItems"]; ok {
				out["items"] = rest
			}
		}
		delete(out, "additionalItems")
		return out
	}
	return s // not a schema; the registry compiled it, so it is data
}

// convertEach converts the schemas of an object or array of schemas;
// other values (dependencies' lists of names) stay as they are.
func convertEach(v any, names map[string]string) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, s := range v {
			out[k] = convertSchemaOrData(s, names)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, s := range v {
			out[i] = convertSchemaOrData(s, names)
		}
		return out
	}
	return v
}

// convertSchemaOrData converts s if it is a schema (an object or a
// boolean) or an array of them, and keeps anything else.
func convertSchemaOrData(s any, names map[string]string) any {
	switch s.(type) {
	case map[string]any, bool:
		return convertSchema(s, names)
	case []any:
		return convertEach(s, names)
	}
	return s
}

// rewriteRef maps a $ref of the stored schema to one in the OpenAPI
// document: "#" to Document, "#/definitions/X..." and "#/$defs/X..." to
// the component X was hoisted to, any other "#/..." pointer into
// Document. Other references (to a $id or an anchor) cannot be followed
// there: ok is false and the $ref is dropped, so that subschema accepts
// more than the stored schema does, never less.
func rewriteRef(ref string, names map[string]string) (string, bool) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return "", false
	}
	if frag == "" {
		return "#/components/schemas/Document", true
	}
	if !strings.HasPrefix(frag, "/") {
		return "", false // an anchor
	}
	tokens := strings.SplitN(frag[1:], "/", 3)
	if len(tokens) >= 2 {
		if kw, _ := url.PathUnescape(tokens[0]); kw == "definitions" || kw == "$defs" {
			name, _ := url.PathUnescape(tokens[1])
			name = strings.ReplaceAll(strings.ReplaceAll(name, "~1", "/"), "~0", "~")
			if c, ok := names[kw+"/"+name]; ok {
				rest := ""
				if len(tokens) == 3 {
					rest = "/" + tokens[2]
				}
				return "#/components/schemas/" + c + rest, true
			}
		}
	}
	return "#/components/schemas/Document" + frag, true
}

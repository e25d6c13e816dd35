package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The selector tests check selector.go against refEval, an evaluation of
// the same language written another way: documents decoded into Go
// values (numbers as exact rationals, objects as ordered member lists),
// the selector walked as sent, and negation handled by evaluating in a
// polarity instead of rewriting the selector. Its rules, from CouchDB's
// documentation and behaviour: a condition on a missing field is false
// (negated or not) except $exists: false; a path through a non-object is
// false in both polarities; values collate null < false < true < numbers
// < strings < arrays < objects.

// ref is a decoded JSON value.
type ref struct {
	t    jsonType
	num  *big.Rat
	str  string
	arr  []ref
	obj  []refMember
	intl bool // a number written as an integer
}

type refMember struct {
	name string
	v    ref
}

// decodeRef decodes one JSON text.
func decodeRef(t testing.TB, b []byte) ref {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeRefValue(dec)
	if err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func decodeRefValue(dec *json.Decoder) (ref, error) {
	tok, err := dec.Token()
	if err != nil {
		return ref{}, err
	}
	switch v := tok.(type) {
	case nil:
		return ref{t: jtNull}, nil
	case bool:
		if v {
			return ref{t: jtTrue}, nil
		}
		return ref{t: jtFalse}, nil
	case json.Number:
		r, ok := new(big.Rat).SetString(string(v))
		if !ok {
			return ref{}, fmt.Errorf("number %s", v)
		}
		return ref{t: jtNumber, num: r, intl: !strings.ContainsAny(string(v), ".eE")}, nil
	case string:
		return ref{t: jtString, str: v}, nil
	case json.Delim:
		if v == '[' {
			out := ref{t: jtArray, arr: []ref{}}
			for dec.More() {
				e, err := decodeRefValue(dec)
				if err != nil {
					return ref{}, err
				}
				out.arr = append(out.arr, e)
			}
			_, err := dec.Token()
			return out, err
		}
		out := ref{t: jtObject, obj: []refMember{}}
		for dec.More() {
			nt, err := dec.Token()
			if err != nil {
				return ref{}, err
			}
			e, err := decodeRefValue(dec)
			if err != nil {
				return ref{}, err
			}
			out.obj = append(out.obj, refMember{nt.(string), e})
		}
		_, err := dec.Token()
		return out, err
	}
	return ref{}, io.ErrUnexpectedEOF
}

// refCompare orders two values.
func refCompare(a, b ref) int {
	ra, rb := refRank(a.t), refRank(b.t)
	if ra != rb {
		return ra - rb
	}
	switch a.t {
	case jtNumber:
		return a.num.Cmp(b.num)
	case jtString:
		return strings.Compare(a.str, b.str)
	case jtArray:
		for i := 0; i < len(a.arr) && i < len(b.arr); i++ {
			if c := refCompare(a.arr[i], b.arr[i]); c != 0 {
				return c
			}
		}
		return len(a.arr) - len(b.arr)
	case jtObject:
		for i := 0; i < len(a.obj) && i < len(b.obj); i++ {
			if c := strings.Compare(a.obj[i].name, b.obj[i].name); c != 0 {
				return c
			}
			if c := refCompare(a.obj[i].v, b.obj[i].v); c != 0 {
				return c
			}
		}
		return len(a.obj) - len(b.obj)
	}
	return 0
}

// refRank is the collation rank of a type (false and true differ).
func refRank(t jsonType) int { return int(t) }

// refPath follows a dotted path (no escapes in the test's paths).
// state: 0 found, 1 missing member, 2 bad path.
func refPath(v ref, key string, root bool, path string) (ref, int) {
	if path == "" {
		return v, 0
	}
	for i, name := range refSplitPath(path) {
		if i == 0 && root && name == "_id" {
			if len(refSplitPath(path)) > 1 {
				return ref{}, 2
			}
			return ref{t: jtString, str: key}, 0
		}
		switch v.t {
		case jtObject:
			var next *ref
			for j := range v.obj {
				if v.obj[j].name == name {
					next = &v.obj[j].v
				}
			}
			if next == nil {
				return ref{}, 1
			}
			v = *next
		case jtArray:
			idx, err := strconv.Atoi(name)
			if err != nil || idx < 0 || idx >= len(v.arr) {
				return ref{}, 2
			}
			v = v.arr[idx]
		default:
			return ref{}, 2
		}
	}
	return v, 0
}

// refSplitPath splits a dotted path, "\." standing for a dot in a name.
func refSplitPath(p string) []string {
	parts := strings.Split(strings.ReplaceAll(p, `\.`, "\x00"), ".")
	for i := range parts {
		parts[i] = strings.ReplaceAll(parts[i], "\x00", ".")
	}
	return parts
}

// refEval evaluates selector sel (decoded) on value v in polarity pos.
func refEval(sel ref, v ref, key string, root bool, path string, pos bool) bool {
	if sel.t == jtObject && len(sel.obj) == 0 && root && path == "" {
		return pos // the empty selector matches every document
	}
	if sel.t != jtObject || len(sel.obj) == 0 {
		return refLeaf("$eq", sel, v, key, root, path, pos)
	}
	results := []bool{}
	for _, m := range sel.obj {
		results = append(results, refMemberEval(m, v, key, root, path, pos))
	}
	if pos {
		return !slices.Contains(results, false)
	}
	return slices.Contains(results, true)
}

func refMemberEval(m refMember, v ref, key string, root bool, path string, pos bool) bool {
	switch m.name {
	case "$and", "$or", "$nor":
		rs := []bool{}
		for _, s := range m.v.arr {
			p := pos
			if m.name == "$nor" {
				p = !pos
			}
			rs = append(rs, refEval(s, v, key, root, path, p))
		}
		all, any := !slices.Contains(rs, false), slices.Contains(rs, true)
		switch {
		case m.name == "$and" && pos, m.name == "$or" && !pos, m.name == "$nor" && pos:
			return all
		default:
			return any
		}
	case "$not":
		return refEval(m.v, v, key, root, path, !pos)
	}
	if strings.HasPrefix(m.name, "$") {
		return refLeaf(m.name, m.v, v, key, root, path, pos)
	}
	p := m.name
	if path != "" {
		p = path + "." + m.name
	}
	return refEval(m.v, v, key, root, p, pos)
}

// refLeaf evaluates one operator on the value at path.
func refLeaf(op string, arg, doc ref, key string, root bool, path string, pos bool) bool {
	v, st := refPath(doc, key, root, path)
	if st == 2 {
		return false
	}
	if st == 1 {
		exists := op == "$exists"
		return exists && (arg.t == jtTrue) != pos
	}
	return refHolds(op, arg, v) == pos
}

// refHolds is the operator on a value that exists.
func refHolds(op string, arg, v ref) bool {
	switch op {
	case "$eq":
		return refCompare(v, arg) == 0
	case "$ne":
		return refCompare(v, arg) != 0
	case "$lt":
		return refCompare(v, arg) < 0
	case "$lte":
		return refCompare(v, arg) <= 0
	case "$gt":
		return refCompare(v, arg) > 0
	case "$gte":
		return refCompare(v, arg) >= 0
	case "$in":
		return refIn(arg, v)
	case "$nin":
		return !refIn(arg, v)
	case "$exists":
		return arg.t == jtTrue
	case "$type":
		return v.t.typeName() == arg.str
	case "$size":
		n, _ := arg.num.Float64()
		return v.t == jtArray && float64(len(v.arr)) == n
	case "$regex":
		return v.t == jtString && regexp.MustCompile(arg.str).MatchString(v.str)
	case "$beginsWith":
		return v.t == jtString && strings.HasPrefix(v.str, arg.str)
	case "$mod":
		if v.t != jtNumber || !v.intl {
			return false
		}
		n, d, r := v.num.Num(), arg.arr[0].num.Num(), arg.arr[1].num.Num()
		return new(big.Int).Rem(n, d).Cmp(r) == 0
	case "$all":
		return refAll(arg, v)
	case "$elemMatch", "$allMatch":
		if v.t != jtArray {
			return false
		}
		n := 0
		for _, e := range v.arr {
			if refEval(arg, e, "", false, "", true) {
				n++
			}
		}
		if op == "$elemMatch" {
			return n > 0
		}
		return len(v.arr) > 0 && n == len(v.arr)
	}
	panic("operator " + op)
}

func refIn(arg, v ref) bool {
	vals := []ref{v}
	if v.t == jtArray {
		vals = v.arr
	}
	for _, x := range vals {
		for _, a := range arg.arr {
			if refCompare(x, a) == 0 {
				return true
			}
		}
	}
	return false
}

func refAll(arg, v ref) bool {
	if v.t != jtArray {
		return false
	}
	every := true
	for _, a := range arg.arr {
		has := false
		for _, e := range v.arr {
			has = has || refCompare(e, a) == 0
		}
		every = every && has
	}
	return every || len(arg.arr) == 1 && arg.arr[0].t == jtArray && refCompare(arg.arr[0], v) == 0
}

// selectorDocs are the documents of the tests: missing fields, null,
// mixed types, arrays, nested objects, unicode, numbers written several
// ways, a duplicate member, an escaped name.
var selectorDocs = map[string]string{
	"a01": `{"name":"alice","age":30,"tags":["x","y"],"user":{"id":"u1","score":1.5},"msgs":[{"role":"user","n":1},{"role":"bot","n":2}]}`,
	"a02": `{"name":"bob","age":30.0,"tags":["y"],"user":{"id":"u2","score":-2},"msgs":[]}`,
	"a03": `{"name":"Carol","age":3e1,"tags":[],"user":{"id":"u1"}}`,
	"a04": `{"name":null,"age":"30","tags":"x","user":null}`,
	"a05": `{"age":29.999999999999999999,"tags":["x","y","z"],"user":{"id":"u3","score":1e400}}`,
	"a06": `{"name":"émile","age":9007199254740993,"tags":[["x","y"]],"user":{"id":"ü"}}`,
	"a07": `{"name":"日本","age":-0,"tags":[null,true,false,1,"1",[1],{"a":1}],"user":{"b":1,"a":2}}`,
	"a08": `{"name":"dup","age":1,"age":2,"user":{"a":2,"b":1}}`,
	"a09": `{"name":"a\"q","age":true,"tags":[1,1.0,"x"],"dotted.name":1,"user":{"id":["u1","u2"]}}`,
	"a10": `{"name":"zed","age":false,"tags":[{"k":"x"},{"k":"y","v":[1,2]}],"msgs":[{"role":"user","n":3}]}`,
	"a11": `[1,2,3]`,
	"a12": `"just a string"`,
	"a13": `{"name":"ALICE","age":-30,"tags":["X"],"user":{"id":"U1","score":0},"msgs":[{"role":"user","n":-1}]}`,
	"a14": `{"name":"","age":0.5,"tags":[1,2,3,4,5],"user":{"id":"","score":null},"msgs":{"role":"user"}}`,
}

// selectorCases exercise every operator; want, when not nil, is the
// expected set of keys (the reference evaluation must agree too).
var selectorCases = []struct {
	sel  string
	want []string
}{
	{`{}`, nil},
	{`{"name":"alice"}`, []string{"a01"}},
	{`{"name":{"$eq":"alice"}}`, []string{"a01"}},
	{`{"age":30}`, []string{"a01", "a02", "a03"}},
	{`{"age":{"$eq":30.000}}`, []string{"a01", "a02", "a03"}},
	{`{"age":{"$ne":30}}`, []string{"a04", "a05", "a06", "a07", "a08", "a09", "a10", "a13", "a14"}},
	{`{"age":{"$gt":29}}`, nil},
	{`{"age":{"$gte":30,"$lt":31}}`, []string{"a01", "a02", "a03"}},
	{`{"age":{"$lt":0}}`, []string{"a09", "a10", "a13"}},
	{`{"age":{"$lte":null}}`, nil},
	{`{"age":{"$gt":9007199254740992}}`, []string{"a04", "a06"}},
	{`{"age":{"$lt":30}}`, nil},
	{`{"name":{"$gt":"Z"}}`, nil},
	{`{"name":{"$lt":"a"}}`, nil},
	{`{"name":{"$gte":"é"}}`, nil},
	{`{"name":{"$in":["alice","bob",null]}}`, []string{"a01", "a02", "a04"}},
	{`{"tags":{"$in":["x"]}}`, []string{"a01", "a04", "a05", "a09"}},
	{`{"tags":{"$in":[["x","y"]]}}`, []string{"a06"}},
	{`{"tags":{"$nin":["x","y"]}}`, nil},
	{`{"age":{"$nin":[30,1,2]}}`, nil},
	{`{"name":{"$exists":true}}`, nil},
	{`{"name":{"$exists":false}}`, nil},
	{`{"user.score":{"$exists":false}}`, nil},
	{`{"user.id.0":"u1"}`, []string{"a09"}},
	{`{"user.id.5":{"$exists":false}}`, nil},
	{`{"msgs.0.role":"user"}`, []string{"a01", "a10", "a13"}},
	{`{"msgs.role":"user"}`, []string{"a14"}},
	{`{"age":{"$type":"number"}}`, nil},
	{`{"age":{"$type":"string"}}`, []string{"a04"}},
	{`{"age":{"$type":"boolean"}}`, []string{"a09", "a10"}},
	{`{"name":{"$type":"null"}}`, []string{"a04"}},
	{`{"tags":{"$type":"array"}}`, nil},
	{`{"user":{"$type":"object"}}`, nil},
	{`{"tags":{"$size":2}}`, []string{"a01", "a10"}},
	{`{"tags":{"$size":0}}`, []string{"a03"}},
	{`{"name":{"$regex":"^[a-z]+$"}}`, []string{"a01", "a02", "a08", "a10"}},
	{`{"name":{"$regex":"(?i)^alice$"}}`, []string{"a01", "a13"}},
	{`{"name":{"$regex":"本"}}`, []string{"a07"}},
	{`{"age":{"$regex":"3"}}`, []string{"a04"}},
	{`{"age":{"$mod":[7,2]}}`, []string{"a01", "a08"}},
	{`{"age":{"$mod":[7,-2]}}`, []string{"a13"}},
	{`{"age":{"$mod":[2,1]}}`, []string{"a06"}},
	{`{"name":{"$beginsWith":"a"}}`, []string{"a01", "a09"}},
	{`{"name":{"$beginsWith":""}}`, nil},
	{`{"tags":{"$all":["x","y"]}}`, []string{"a01", "a05"}},
	{`{"tags":{"$all":[["x","y"]]}}`, []string{"a01", "a06"}},
	{`{"tags":{"$all":[1]}}`, []string{"a07", "a09", "a14"}},
	{`{"tags":{"$all":[]}}`, nil},
	{`{"msgs":{"$elemMatch":{"role":"bot"}}}`, []string{"a01"}},
	{`{"msgs":{"$elemMatch":{"role":"user","n":{"$gt":1}}}}`, []string{"a10"}},
	{`{"tags":{"$elemMatch":{"$eq":"x"}}}`, nil},
	{`{"tags":{"$elemMatch":{"k":{"$exists":true},"v":{"$size":2}}}}`, []string{"a10"}},
	{`{"tags":{"$allMatch":{"$type":"string"}}}`, nil},
	{`{"tags":{"$allMatch":{"$gt":0}}}`, nil},
	{`{"$and":[{"age":30},{"name":{"$ne":"bob"}}]}`, []string{"a01", "a03"}},
	{`{"$and":[]}`, nil},
	{`{"$or":[{"name":"bob"},{"age":{"$lt":0}}]}`, nil},
	{`{"$or":[]}`, []string{}},
	{`{"$nor":[{"name":"bob"},{"age":30}]}`, nil},
	{`{"$not":{"name":"bob"}}`, nil},
	{`{"name":{"$not":{"$eq":"bob"}}}`, nil},
	{`{"$not":{"user.score":{"$exists":true}}}`, nil},
	{`{"$not":{"name":{"$regex":"^a"}}}`, nil},
	{`{"$not":{"$or":[{"age":30},{"tags":{"$size":1}}]}}`, nil},
	{`{"$not":{"$not":{"name":{"$exists":false}}}}`, nil},
	{`{"$nor":[{"$not":{"age":{"$gt":1}}}]}`, nil},
	{`{"tags":{"$not":{"$elemMatch":{"$eq":"x"}}}}`, nil},
	{`{"tags":{"$not":{"$all":["x"]}}}`, nil},
	{`{"user":{"id":"u1"}}`, []string{"a01", "a03"}},
	{`{"user":{"$eq":{"id":"u1"}}}`, []string{"a03"}},
	{`{"user":{"$eq":{"a":2,"b":1}}}`, []string{"a08"}},
	{`{"user":{"$gt":{"a":2}}}`, nil},
	{`{"user.id":{"$in":["u1","ü"]},"age":{"$gte":30}}`, []string{"a01", "a03", "a06"}},
	{`{"age":2}`, []string{"a08"}},
	{`{"name":"a\"q"}`, []string{"a09"}},
	{`{"dotted\\.name":1}`, []string{"a09"}},
	{`{"_id":"a07"}`, []string{"a07"}},
	{`{"_id":{"$gt":"a12"}}`, []string{"a13", "a14"}},
	{`{"_id":{"$in":["a01","a11"]}}`, []string{"a01", "a11"}},
	{`{"_id":{"$regex":"1$"}}`, []string{"a01", "a11"}},
	{`{"_id.x":{"$exists":false}}`, []string{}},
	{`{"tags.0":{"$gt":null}}`, nil},
	{`{"user.score":{"$gt":1e300}}`, []string{"a05"}},
	{`{"user.score":{"$lt":-1}}`, []string{"a02", "a14"}},
	{`{"age":{"$gte":0.5,"$lte":0.5}}`, []string{"a14"}},
}

// parseSelectorT parses a selector or fails the test.
func parseSelectorT(t testing.TB, s string) *selector {
	t.Helper()
	sel, err := parseSelector([]byte(s))
	if err != nil {
		t.Fatalf("parseSelector(%s): %v", s, err)
	}
	return sel
}

// matchingKeys returns the sorted keys of docs that sel matches, by the
// implementation and by the reference.
func matchingKeys(t testing.TB, sel *selector, docs map[string]string) (got, ref []string) {
	t.Helper()
	refSel := decodeRef(t, sel.raw)
	got, ref = []string{}, []string{}
	for k, d := range docs {
		if sel.matches(k, []byte(d)) {
			got = append(got, k)
		}
		if refEval(refSel, decodeRef(t, []byte(d)), k, true, "", true) {
			ref = append(ref, k)
		}
	}
	slices.Sort(got)
	slices.Sort(ref)
	return got, ref
}

// TestSelectorOperators runs every operator against documents with edge
// cases, checking the implementation against the reference evaluation and,
// where given, against the expected keys.
func TestSelectorOperators(t *testing.T) {
	for _, c := range selectorCases {
		sel := parseSelectorT(t, c.sel)
		got, ref := matchingKeys(t, sel, selectorDocs)
		if !slices.Equal(got, ref) {
			t.Errorf("selector %s matches %q, reference %q", c.sel, got, ref)
		}
		if c.want != nil && !slices.Equal(got, c.want) {
			t.Errorf("selector %s matches %q, want %q", c.sel, got, c.want)
		}
	}
}

// TestSelectorRandom compares the implementation with the reference on
// seeded random selectors.
func TestSelectorRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 1))
	n := 3000
	if testing.Short() {
		n = 500
	}
	for range n {
		s := randomSelector(rng, 3)
		sel, err := parseSelector([]byte(s))
		if err != nil {
			t.Fatalf("parseSelector(%s): %v", s, err)
		}
		got, ref := matchingKeys(t, sel, selectorDocs)
		if !slices.Equal(got, ref) {
			t.Fatalf("selector %s matches %q, reference %q", s, got, ref)
		}
	}
}

// Random selector material.
var (
	randFields = []string{"name", "age", "tags", "user", "user.id", "user.score", "msgs", "msgs.0.n", "tags.0", "nope", "_id"}
	randValues = []string{`null`, `true`, `false`, `0`, `30`, `30.0`, `-2`, `1.5`, `"x"`, `"alice"`, `"u1"`, `""`,
		`[]`, `["x","y"]`, `[1]`, `{}`, `{"id":"u1"}`, `"a05"`, `9007199254740993`}
)

// randomSelector builds a random selector nested up to depth levels.
func randomSelector(rng *rand.Rand, depth int) string {
	if depth > 0 && rng.IntN(4) == 0 {
		switch rng.IntN(4) {
		case 0:
			return fmt.Sprintf(`{"$not":%s}`, randomSelector(rng, depth-1))
		default:
			op := []string{"$and", "$or", "$nor"}[rng.IntN(3)]
			parts := []string{}
			for range 1 + rng.IntN(3) {
				parts = append(parts, randomSelector(rng, depth-1))
			}
			return fmt.Sprintf(`{%q:[%s]}`, op, strings.Join(parts, ","))
		}
	}
	f := randFields[rng.IntN(len(randFields))]
	return fmt.Sprintf(`{%q:%s}`, f, randomCondition(rng, depth))
}

// randomCondition builds a random condition on one field.
func randomCondition(rng *rand.Rand, depth int) string {
	v := randValues[rng.IntN(len(randValues))]
	switch rng.IntN(14) {
	case 0:
		return v
	case 1:
		return fmt.Sprintf(`{"$in":[%s,%s]}`, v, randValues[rng.IntN(len(randValues))])
	case 2:
		return fmt.Sprintf(`{"$nin":[%s]}`, v)
	case 3:
		return fmt.Sprintf(`{"$exists":%v}`, rng.IntN(2) == 0)
	case 4:
		return fmt.Sprintf(`{"$type":%q}`, []string{"null", "boolean", "number", "string", "array", "object"}[rng.IntN(6)])
	case 5:
		return fmt.Sprintf(`{"$size":%d}`, rng.IntN(3))
	case 6:
		return fmt.Sprintf(`{"$regex":%q}`, []string{"^a", "x", "1$", "(?i)ALICE"}[rng.IntN(4)])
	case 7:
		return fmt.Sprintf(`{"$all":[%s]}`, v)
	case 8:
		if depth > 0 {
			return fmt.Sprintf(`{"$elemMatch":%s}`, randomSelector(rng, depth-1))
		}
		return `{"$elemMatch":{"$gt":0}}`
	case 9:
		c := randomCondition(rng, depth)
		if !strings.HasPrefix(c, "{") {
			c = `{"$eq":` + c + `}`
		}
		return fmt.Sprintf(`{"$not":%s}`, c)
	case 10:
		return fmt.Sprintf(`{"$mod":[%d,%d]}`, 1+rng.IntN(3), rng.IntN(2))
	default:
		op := []string{"$eq", "$ne", "$lt", "$lte", "$gt", "$gte"}[rng.IntN(6)]
		return fmt.Sprintf(`{%q:%s}`, op, v)
	}
}

// TestCollationKeyOrder checks that collation keys order values as the
// reference comparison does, for every pair of a mixed set.
func TestCollationKeyOrder(t *testing.T) {
	vals := []string{`null`, `false`, `true`, `-1e400`, `-10`, `-9.99`, `-1`, `-0.5`, `0`, `-0.0`, `0.5`, `1`, `1.0`,
		`1e0`, `10`, `12`, `100`, `1e2`, `9007199254740992`, `9007199254740993`, `1e400`, `""`, `"\u0000"`, `"a"`,
		`"a\u0000"`, `"aa"`, `"B"`, `"b"`, `"é"`, `"日本"`, `"😀"`, `[]`, `[null]`, `[1]`, `[1,2]`, `[2]`, `["a"]`,
		`[[]]`, `{}`, `{"a":1}`, `{"a":1,"b":2}`, `{"a":2}`, `{"b":1}`, `{"b":1,"a":2}`}
	for _, a := range vals {
		for _, b := range vals {
			ka, err := collationKey([]byte(a))
			if err != nil {
				t.Fatalf("collationKey(%s): %v", a, err)
			}
			kb, _ := collationKey([]byte(b))
			got, want := signOf(bytes.Compare(ka, kb)), signOf(refCompare(decodeRef(t, []byte(a)), decodeRef(t, []byte(b))))
			if got != want {
				t.Errorf("compare(%s, %s) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func signOf(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// TestSelectorRefused: what the language does not take is a 400 (413 for
// a budget) naming it; nothing is silently ignored.
func TestSelectorRefused(t *testing.T) {
	long := `{"$or":[` + strings.Repeat(`{"a":1},`, maxSelectorNodes) + `{"a":1}]}`
	deep := strings.Repeat(`{"a":`, maxSelectorDepth+2) + "1" + strings.Repeat("}", maxSelectorDepth+2)
	bigIn := `{"a":{"$in":[` + strings.Repeat("1,", maxSelectorList) + `1]}}`
	cases := []struct {
		sel, want string
		status    int
	}{
		{`[]`, "selector must be a JSON object", 400},
		{`{"a":{"$where":"x"}}`, `operator "$where" is not supported`, 400},
		{`{"a":{"$text":"x"}}`, `operator "$text" is not supported`, 400},
		{`{"a":{"$keyMapMatch":{}}}`, `operator "$keyMapMatch" is not supported`, 400},
		{`{"$and":{"a":1}}`, "$and takes an array", 400},
		{`{"a":{"$in":3}}`, "$in takes an array", 400},
		{`{"a":{"$exists":1}}`, "$exists takes true or false", 400},
		{`{"a":{"$type":"int"}}`, "$type takes", 400},
		{`{"a":{"$size":-1}}`, "$size takes a non-negative integer", 400},
		{`{"a":{"$regex":"(a"}}`, "is not an RE2 regular expression", 400},
		{`{"a":{"$regex":"(?<=a)b"}}`, "is not an RE2 regular expression", 400},
		{`{"a":{"$regex":"` + strings.Repeat("a", maxRegexLen+1) + `"}}`, "exceeds the limit", 413},
		// Matching costs the string's length times the pattern's
		// instructions: 7002 here, 40 s on one string of 1 MB.
		{`{"a":{"$regex":"(a|aa){1,1000}b"}}`, "is too costly", 413},
		{`{"a":{"$regex":"a{0,1000}b"}}`, "may compile to 256 instructions in all", 413},
		{`{"$or":[` + strings.Repeat(`{"a":{"$regex":"(?i)^[a-z]{1,20}$"}},`, 7) + `{"a":{"$regex":"(?i)^[a-z]{1,20}$"}}]}`, "is too costly", 413},
		{`{"a":{"$mod":[0,1]}}`, "$mod takes", 400},
		{`{"a":{"$mod":[2]}}`, "$mod takes", 400},
		// A divisor of a million digits took 6 s to parse.
		{`{"a":{"$mod":[` + strings.Repeat("7", maxModDigits+1) + `,1]}}`, "$mod takes integers of at most 100 digits, not 101", 413},
		{`{"a":{"$mod":[7,-` + strings.Repeat("7", maxModDigits+1) + `]}}`, "$mod takes integers of at most 100 digits", 413},
		{`{"a":{"$elemMatch":3}}`, "$elemMatch takes an object", 400},
		{`{"$gt":1}`, "has no field name", 400},
		{`{"a..b":1}`, "empty name", 400},
		{long, "more than 256 operators", 413},
		{deep, "nests deeper", 413},
		{bigIn, "more than the limit of 1000", 413},
	}
	for _, c := range cases {
		_, err := parseSelector([]byte(c.sel))
		msg, _ := clientMessage(err)
		if err == nil || !strings.Contains(msg, c.want) || statusOf(err) != c.status {
			t.Errorf("parseSelector(%.60s) = %v (%d), want %d %q", c.sel, err, statusOf(err), c.status, c.want)
		}
	}
	// What people write stays well within it, a plain string of any
	// length included (it is found with strings.Index).
	for _, ok := range []string{
		`{"id":{"$regex":"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}}`,
		`{"log":{"$regex":"(?i)(error|warning|fatal|panic|exception|timeout|refused)"},"at":{"$regex":"^\\d{4}-\\d{2}-\\d{2}"}}`,
		`{"a":{"$regex":"` + strings.Repeat("a", maxRegexLen) + `"}}`,
	} {
		if _, err := parseSelector([]byte(ok)); err != nil {
			t.Errorf("parseSelector(%.60s) = %v, want it accepted", ok, err)
		}
	}
}

// TestModLongNumbers: $mod divides a document's number 18 digits at a
// time rather than parsing it whole (900,000 digits took 1.1 s per
// document matched); its remainders are big.Int's truncated ones, the
// sign the value's, for numbers of up to 200,000 digits and divisors of
// either sign up to maxModDigits.
func TestModLongNumbers(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		b[0] = byte('1' + rng.IntN(9))
		return string(b)
	}
	for i := range 300 {
		n := 1 + rng.IntN(60)
		switch {
		case i%100 == 0:
			n = 200000
		case i%10 == 1:
			n = 18 * (1 + rng.IntN(4))
		}
		v := digits(n)
		if rng.IntN(2) == 0 {
			v = "-" + v
		}
		d := digits(1 + rng.IntN(maxModDigits))
		if rng.IntN(2) == 0 {
			d = "-" + d
		}
		nv, _ := new(big.Int).SetString(v, 10)
		nd, _ := new(big.Int).SetString(d, 10)
		want := new(big.Int).Rem(nv, nd)
		c := modCond{d: nd, r: want}
		if !c.holds([]byte(v)) {
			t.Fatalf("$mod [%.30s, %.30s] does not hold for %.30s (%d digits)", d, want, v, n)
		}
		c.r = new(big.Int).Add(want, big.NewInt(1))
		if c.holds([]byte(v)) {
			t.Fatalf("$mod [%.30s, remainder + 1] holds for %.30s (%d digits)", d, v, n)
		}
	}
}

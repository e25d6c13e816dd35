package main

// The selector language of POST /api/databases/{db}/find: CouchDB's Mango
// selectors (API.md, Finding documents). A selector is parsed once per
// query, within budgets, and normalized the way CouchDB normalizes it, so
// that it means what it means there:
//
//   - implicit forms become explicit: {"a": 1, "b": 2} is an $and, a bare
//     value is $eq, {"a": {"b": 1}} is the path "a.b";
//   - field names are pushed down to the conditions, so that every
//     condition knows its path ("a.b", with \. for a dot in a name);
//   - $not and $nor are pushed down to the conditions by De Morgan's laws
//     ($not $gt is $lte, $not $in is $nin, $not $exists flips).
//
// A condition on a field a document lacks is false, also a negated one;
// only $exists: false matches a missing field. Then each document is
// matched against the normalized tree (match).

import (
	"bytes"
	"math/big"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// Selector budgets: each bounds the work one query can ask for, beside
// the body limit (-rest-max-body-size) and the nesting limit
// (-max-json-depth). API.md lists them.
const (
	maxSelectorNodes  = 256  // operators and field conditions in a selector
	maxSelectorDepth  = 32   // nesting of operators and field objects
	maxSelectorList   = 1000 // values of one $in, $nin or $all, clauses of $and/$or/$nor
	maxRegexLen       = 1024 // bytes of one $regex pattern
	maxFieldPathLen   = 512  // bytes of one field path
	maxFieldPathParts = 32   // components of one field path
	maxModDigits      = 100  // digits of $mod's divisor and remainder
)

// maxRegexProgram bounds the instructions of the compiled $regex
// patterns of a selector, in all: matching a string costs time
// linear in its length times the instructions (RE2 has no DFA in
// Go), and no budget interrupts one match, so (a|aa){1,1000}b, 15
// bytes and 7002 instructions, took 40 s on one string of 1 MB.
// With 256 a string of 1 MB costs at most about a second.
const maxRegexProgram = 256

// selector is a parsed, normalized selector. It is safe for concurrent
// use once built.
type selector struct {
	root sel
	// raw is the selector as the client sent it: what the main worker
	// sends to the workers, which parse it again.
	raw []byte
}

// target is what a selector node is matched against: a JSON value and,
// at the root of a document, the entity key that "_id" names.
type target struct {
	v    []byte
	key  string
	root bool
}

// sel is a node of a normalized selector.
type sel interface {
	match(t target) bool
}

// cond is a condition on one value that exists.
type cond interface {
	holds(v []byte) bool
}

// parseSelector parses and normalizes the selector raw (a JSON object).
func parseSelector(raw []byte) (*selector, error) {
	if typeOf(raw) != jtObject {
		return nil, reqErrorf(errInvalid, "selector must be a JSON object")
	}
	if isEmptyObject(raw) {
		return &selector{root: andSel{}, raw: raw}, nil
	}
	p := &selParser{}
	n, err := p.ops(raw, 0)
	if err != nil {
		return nil, err
	}
	n, err = normFields(n, "")
	if err != nil {
		return nil, err
	}
	root, err := compileNode(normNegations(n), true)
	if err != nil {
		return nil, err
	}
	return &selector{root: root, raw: raw}, nil
}

// matches reports whether the document doc of entity key matches.
func (s *selector) matches(key string, doc []byte) bool {
	return s.root.match(target{v: doc, key: key, root: true})
}

// pnode is a selector node during normalization. kind is an operator
// ("$and", "$gt", ...) or "" for a field condition {name: child}.
type pnode struct {
	kind string
	// name is the field name of a field condition, then (after
	// normFields) the dotted path of a terminal condition.
	name string
	kids []*pnode
	// arg is a terminal operator's argument as sent.
	arg []byte
}

// selParser parses selectors, counting nodes against the budget.
type selParser struct {
	nodes int
	// regexProgram counts the instructions of the $regex patterns read
	// so far, against maxRegexProgram.
	regexProgram int
}

// count charges one node.
func (p *selParser) count() error {
	if p.nodes++; p.nodes > maxSelectorNodes {
		return reqErrorf(errTooLarge, "selector has more than %d operators and field conditions", maxSelectorNodes)
	}
	return nil
}

// ops parses v (CouchDB's norm_ops): an object of one or more members, or
// a bare value, which is $eq.
func (p *selParser) ops(v []byte, depth int) (*pnode, error) {
	if depth > maxSelectorDepth {
		return nil, reqErrorf(errTooLarge, "selector nests deeper than %d levels", maxSelectorDepth)
	}
	if typeOf(v) != jtObject || isEmptyObject(v) {
		return &pnode{kind: "$eq", arg: v}, p.count()
	}
	var kids []*pnode
	var err error
	forMembers(v, func(name, val []byte) bool {
		var n *pnode
		if n, err = p.member(unquote(name), val, depth); err == nil {
			kids = append(kids, n)
		}
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	if len(kids) == 1 {
		return kids[0], nil
	}
	return &pnode{kind: "$and", kids: kids}, p.count()
}

// isEmptyObject reports whether v is {}.
func isEmptyObject(v []byte) bool {
	return typeOf(v) == jtObject && skipSpace(v, 1) < len(v) && v[skipSpace(v, 1)] == '}'
}

// member parses one member name: val of an object in a selector: an
// operator or a field condition.
func (p *selParser) member(name string, val []byte, depth int) (*pnode, error) {
	if err := p.count(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(name, "$") {
		child, err := p.ops(val, depth+1)
		return &pnode{name: name, kids: []*pnode{child}}, err
	}
	switch name {
	case "$and", "$or", "$nor":
		return p.combination(name, val, depth)
	case "$not", "$elemMatch", "$allMatch":
		if typeOf(val) != jtObject {
			return nil, reqErrorf(errInvalid, "selector: %s takes an object", name)
		}
		child, err := p.ops(val, depth+1)
		return &pnode{kind: name, kids: []*pnode{child}}, err
	case "$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$all", "$exists", "$type",
		"$size", "$regex", "$mod", "$beginsWith":
		err := checkArg(name, val)
		if err == nil && name == "$regex" {
			err = p.chargeRegex(unquote(val))
		}
		return &pnode{kind: name, arg: val}, err
	}
	return nil, reqErrorf(errInvalid, "selector: operator %q is not supported", name)
}

// combination parses $and, $or or $nor: an array of selectors.
func (p *selParser) combination(op string, val []byte, depth int) (*pnode, error) {
	if typeOf(val) != jtArray {
		return nil, reqErrorf(errInvalid, "selector: %s takes an array of selectors", op)
	}
	n := &pnode{kind: op}
	var err error
	forElements(val, func(e []byte) bool {
		if len(n.kids) == maxSelectorList {
			err = reqErrorf(errTooLarge, "selector: %s has more than %d clauses", op, maxSelectorList)
			return false
		}
		var kid *pnode
		if kid, err = p.ops(e, depth+1); err == nil {
			n.kids = append(n.kids, kid)
		}
		return err == nil
	})
	return n, err
}

// checkArg checks the argument of a terminal operator.
func checkArg(op string, v []byte) error {
	switch op {
	case "$in", "$nin", "$all":
		if typeOf(v) != jtArray {
			return reqErrorf(errInvalid, "selector: %s takes an array", op)
		}
		if n := countElements(v); n > maxSelectorList {
			return reqErrorf(errTooLarge, "selector: %s has %d values, more than the limit of %d", op, n, maxSelectorList)
		}
	case "$exists":
		if t := typeOf(v); t != jtTrue && t != jtFalse {
			return reqErrorf(errInvalid, "selector: $exists takes true or false")
		}
	case "$type":
		if typeOf(v) != jtString || !validTypeName(unquote(v)) {
			return reqErrorf(errInvalid, `selector: $type takes "null", "boolean", "number", "string", "array" or "object"`)
		}
	case "$size":
		if _, err := smallCount(v); err != nil {
			return reqErrorf(errInvalid, "selector: $size takes a non-negative integer")
		}
	case "$regex":
		return checkRegex(v)
	case "$mod":
		_, _, err := modArgs(v)
		return err
	case "$beginsWith":
		if typeOf(v) != jtString {
			return reqErrorf(errInvalid, "selector: $beginsWith takes a string")
		}
	}
	return nil
}

// countElements returns the number of elements of the array v.
func countElements(v []byte) int {
	n := 0
	forElements(v, func([]byte) bool { n++; return true })
	return n
}

// validTypeName reports whether s is a type $type knows.
func validTypeName(s string) bool {
	switch s {
	case "null", "boolean", "number", "string", "array", "object":
		return true
	}
	return false
}

// smallCount reads a non-negative integer that fits an int.
func smallCount(v []byte) (int, error) {
	if !isInteger(v) {
		return 0, errBadJSON
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 0 {
		return 0, errBadJSON
	}
	return n, nil
}

// checkRegex checks a $regex pattern: a string within maxRegexLen. It
// compiles as RE2 (compileRegex; Go's regexp: no backreferences or
// lookaround, matching time linear in the string).
func checkRegex(v []byte) error {
	if typeOf(v) != jtString {
		return reqErrorf(errInvalid, "selector: $regex takes a string")
	}
	pat := unquote(v)
	if len(pat) > maxRegexLen {
		return reqErrorf(errTooLarge, "selector: $regex pattern of %d bytes exceeds the limit of %d bytes", len(pat), maxRegexLen)
	}
	return nil
}

// chargeRegex counts the instructions of pattern, a checked $regex,
// against maxRegexProgram. One that does not compile is left to
// compileRegex's 400.
func (p *selParser) chargeRegex(pattern string) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil
	}
	if p.regexProgram += regexProgram(re); p.regexProgram > maxRegexProgram {
		return reqErrorf(errTooLarge, "selector: $regex %q is too costly: the patterns of a selector may compile to %d instructions in all, and with it they take %d (a counted repetition such as {1,100} costs each count)",
			pattern, maxRegexProgram, p.regexProgram)
	}
	return nil
}

// regexProgram is the cost of matching re, per byte of a string: the
// instructions of its program, which Go's regexp may all run at each
// byte. A pattern that is a plain string (no metacharacters) costs 1: it
// is found with strings.Index.
func regexProgram(re *regexp.Regexp) int {
	if _, complete := re.LiteralPrefix(); complete {
		return 1
	}
	parsed, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return 1 // not reached: re compiled from the same text
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		return 1
	}
	return len(prog.Inst)
}

// compileRegex compiles a checked $regex pattern, once per query.
func compileRegex(pat string) (*regexp.Regexp, error) {
	re, err := regexp.Compile(pat)
	if err != nil {
		return nil, reqErrorf(errInvalid, "selector: $regex %q is not an RE2 regular expression: %s", pat, regexErrorText(err))
	}
	return re, nil
}

// regexErrorText is the reason of a regexp compile error without the
// package's prefix.
func regexErrorText(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

// modArgs reads $mod's [divisor, remainder], integers, divisor not 0.
func modArgs(v []byte) (d, r *big.Int, err error) {
	var args [][]byte
	if typeOf(v) == jtArray {
		forElements(v, func(e []byte) bool { args = append(args, e); return len(args) <= 2 })
	}
	bad := reqErrorf(errInvalid, "selector: $mod takes [divisor, remainder], two integers, the divisor not 0")
	if len(args) != 2 || !isInteger(args[0]) || !isInteger(args[1]) {
		return nil, nil, bad
	}
	// Each value matched is divided by the divisor: a divisor of a
	// million digits took 6 s to parse, and as long again per value.
	for _, a := range args {
		if n := len(bytes.TrimPrefix(a, []byte("-"))); n > maxModDigits {
			return nil, nil, reqErrorf(errTooLarge, "selector: $mod takes integers of at most %d digits, not %d", maxModDigits, n)
		}
	}
	d, okD := new(big.Int).SetString(string(args[0]), 10)
	r, okR := new(big.Int).SetString(string(args[1]), 10)
	if !okD || !okR || d.Sign() == 0 {
		return nil, nil, bad
	}
	return d, r, nil
}

// normFields pushes field names down to the terminal conditions
// (CouchDB's norm_fields): afterwards every terminal's name is its full
// dotted path, and $and, $or, $nor and $not have no name.
// $elemMatch and $allMatch normalize their argument on its own, relative
// to the element.
func normFields(n *pnode, path string) (*pnode, error) {
	switch n.kind {
	case "$and", "$or", "$nor", "$not":
		out := &pnode{kind: n.kind}
		for _, k := range n.kids {
			nk, err := normFields(k, path)
			if err != nil {
				return nil, err
			}
			out.kids = append(out.kids, nk)
		}
		return out, nil
	case "":
		if path != "" {
			path += "."
		}
		return normFields(n.kids[0], path+n.name)
	case "$elemMatch", "$allMatch":
		sub, err := normFields(n.kids[0], "")
		return &pnode{kind: n.kind, name: path, kids: []*pnode{sub}}, err
	}
	return &pnode{kind: n.kind, name: path, arg: n.arg}, nil
}

// normNegations moves $not and $nor down to the terminals (CouchDB's
// norm_negations).
func normNegations(n *pnode) *pnode {
	switch n.kind {
	case "$not":
		return negate(n.kids[0])
	case "$nor":
		return mapKids("$and", "", n.kids, negate)
	case "$and", "$or", "$elemMatch", "$allMatch":
		return mapKids(n.kind, n.name, n.kids, normNegations)
	}
	return n
}

// mapKids returns a node of kind and name whose children are f of kids,
// in order.
func mapKids(kind, name string, kids []*pnode, f func(*pnode) *pnode) *pnode {
	out := &pnode{kind: kind, name: name}
	for _, k := range kids {
		out.kids = append(out.kids, f(k))
	}
	return out
}

// negations are the terminal operators whose negation is another one.
var negations = map[string]string{
	"$lt": "$gte", "$gte": "$lt", "$lte": "$gt", "$gt": "$lte",
	"$eq": "$ne", "$ne": "$eq", "$in": "$nin", "$nin": "$in",
}

// negate returns the normalized negation of n (CouchDB's negate).
func negate(n *pnode) *pnode {
	switch n.kind {
	case "$not":
		return normNegations(n.kids[0])
	case "$nor":
		return mapKids("$or", "", n.kids, normNegations)
	case "$and":
		return mapKids("$or", "", n.kids, negate)
	case "$or":
		return mapKids("$and", "", n.kids, negate)
	case "$exists":
		flipped := []byte("true")
		if typeOf(n.arg) == jtTrue {
			flipped = []byte("false")
		}
		return &pnode{kind: "$exists", name: n.name, arg: flipped}
	}
	if op, ok := negations[n.kind]; ok {
		return &pnode{kind: op, name: n.name, arg: n.arg}
	}
	// $type, $size, $regex, $mod, $all, $beginsWith, $elemMatch,
	// $allMatch: the field must still exist, and the condition not hold.
	return &pnode{kind: "$not", name: n.name, kids: []*pnode{normNegations(n)}}
}

// compileNode builds the matcher of a normalized node. root says whether
// its paths start at a document (where "_id" is the entity key) rather
// than at an element of $elemMatch.
func compileNode(n *pnode, root bool) (sel, error) {
	switch n.kind {
	case "$and", "$or":
		kids := make([]sel, 0, len(n.kids))
		for _, k := range n.kids {
			c, err := compileNode(k, root)
			if err != nil {
				return nil, err
			}
			kids = append(kids, c)
		}
		if n.kind == "$and" {
			return andSel(kids), nil
		}
		return orSel(kids), nil
	}
	if root && n.name == "" {
		return nil, reqErrorf(errInvalid, "selector: condition %s has no field name", n.kind)
	}
	path, err := parseFieldPath(n.name)
	if err != nil {
		return nil, err
	}
	c, err := compileCond(n)
	if err != nil {
		return nil, err
	}
	return fieldSel{path: path, name: n.name, c: c}, nil
}

// compileCond builds the condition of a terminal node (its name aside).
func compileCond(n *pnode) (cond, error) {
	switch n.kind {
	case "$not":
		inner, err := compileCond(n.kids[0])
		return notCond{inner}, err
	case "$elemMatch", "$allMatch":
		sub, err := compileNode(n.kids[0], false)
		return elemCond{sub: sub, all: n.kind == "$allMatch"}, err
	case "$eq", "$ne", "$lt", "$lte", "$gt", "$gte":
		k, err := collationKey(n.arg)
		return cmpCond{op: n.kind, key: k}, err
	case "$in", "$nin", "$all":
		return compileList(n.kind, n.arg)
	case "$exists":
		return existsCond(typeOf(n.arg) == jtTrue), nil
	case "$type":
		return typeCond(unquote(n.arg)), nil
	case "$size":
		size, err := smallCount(n.arg)
		return sizeCond(size), err
	case "$regex":
		re, err := compileRegex(unquote(n.arg))
		return regexCond{re}, err
	case "$mod":
		d, r, err := modArgs(n.arg)
		return modCond{d: d, r: r}, err
	case "$beginsWith":
		return prefixCond(unquote(n.arg)), nil
	}
	return nil, reqErrorf(errInvalid, "selector: operator %q is not supported", n.kind)
}

// compileList builds $in, $nin or $all: the collation keys of its values.
func compileList(op string, arr []byte) (cond, error) {
	l := listCond{op: op, keys: map[string]bool{}}
	var err error
	forElements(arr, func(e []byte) bool {
		var k []byte
		if k, err = collationKey(e); err == nil {
			l.keys[string(k)] = true
			l.order = append(l.order, string(k))
			if typeOf(e) == jtArray {
				l.arrays++
			}
		}
		return err == nil
	})
	return l, err
}

// parseFieldPath splits a dotted path into its names (CouchDB's
// parse_field): "." separates, "\." is a dot within a name, another
// backslash is dropped (as CouchDB drops it), every name is non-empty. A
// path ending in a backslash, an escape of nothing, is malformed.
// "" is the value itself (inside $elemMatch).
func parseFieldPath(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if len(p) > maxFieldPathLen {
		return nil, reqErrorf(errTooLarge, "field %q is longer than %d bytes", p[:32]+"...", maxFieldPathLen)
	}
	if strings.HasSuffix(p, `\`) {
		return nil, reqErrorf(errInvalid, "field %q ends in a backslash, which escapes nothing", p)
	}
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p) && p[i+1] == '.':
			cur.WriteByte('.')
			i++
		case p[i] == '\\':
		case p[i] == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(p[i])
		}
	}
	parts = append(parts, cur.String())
	for _, part := range parts {
		if part == "" {
			return nil, reqErrorf(errInvalid, "field %q has an empty name in its path", p)
		}
	}
	if len(parts) > maxFieldPathParts {
		return nil, reqErrorf(errTooLarge, "field %q has more than %d names in its path", p, maxFieldPathParts)
	}
	return parts, nil
}

// lookupState says what a path found.
type lookupState uint8

const (
	found lookupState = iota
	// notFound: an object on the way lacks the member.
	notFound
	// badPath: the path goes through a value that is not an object, or
	// through an array by a name that is not an index within it.
	badPath
)

// lookup follows path from t: member names through objects, decimal
// indexes through arrays; at a document's root "_id" is the entity key.
func lookup(t target, path []string) ([]byte, lookupState) {
	v := t.v
	for i, name := range path {
		if i == 0 && t.root && name == "_id" {
			if len(path) > 1 {
				return nil, badPath
			}
			return jsonString(t.key), found
		}
		switch typeOf(v) {
		case jtObject:
			m, ok := member(v, name)
			if !ok {
				return nil, notFound
			}
			v = m
		case jtArray:
			e, ok := element(v, name)
			if !ok {
				return nil, badPath
			}
			v = e
		default:
			return nil, badPath
		}
	}
	return v, found
}

// element returns the element of arr at the decimal index name.
func element(arr []byte, name string) ([]byte, bool) {
	idx, err := strconv.Atoi(name)
	if err != nil || idx < 0 {
		return nil, false
	}
	var out []byte
	n := 0
	forElements(arr, func(e []byte) bool {
		if n == idx {
			out = e
		}
		n++
		return n <= idx
	})
	return out, out != nil
}

// andSel matches when every clause does.
type andSel []sel

func (a andSel) match(t target) bool {
	for _, s := range a {
		if !s.match(t) {
			return false
		}
	}
	return true
}

// orSel matches when a clause does.
type orSel []sel

func (o orSel) match(t target) bool {
	for _, s := range o {
		if s.match(t) {
			return true
		}
	}
	return false
}

// fieldSel is a condition on the value at path.
type fieldSel struct {
	path []string
	name string // the path as written, for the planner
	c    cond
}

func (f fieldSel) match(t target) bool {
	v, st := lookup(t, f.path)
	switch st {
	case notFound:
		return f.c == existsCond(false)
	case badPath:
		return false
	}
	return f.c.holds(v)
}

// cmpCond compares the value with an argument in collation order.
type cmpCond struct {
	op  string
	key []byte
}

func (c cmpCond) holds(v []byte) bool {
	k, err := collationKey(v)
	if err != nil {
		return false
	}
	r := bytes.Compare(k, c.key)
	switch c.op {
	case "$eq":
		return r == 0
	case "$ne":
		return r != 0
	case "$lt":
		return r < 0
	case "$lte":
		return r <= 0
	case "$gt":
		return r > 0
	}
	return r >= 0 // $gte
}

// listCond is $in, $nin or $all over the collation keys of its values.
type listCond struct {
	op    string
	keys  map[string]bool
	order []string // the keys in the order given
	// arrays counts the values that are arrays ($all's special case).
	arrays int
}

func (l listCond) holds(v []byte) bool {
	switch l.op {
	case "$in":
		return l.any(v)
	case "$nin":
		return !l.any(v)
	}
	return l.all(v)
}

// any reports whether v, or for an array one of its elements, equals one
// of the values.
func (l listCond) any(v []byte) bool {
	if typeOf(v) != jtArray {
		k, err := collationKey(v)
		return err == nil && l.keys[string(k)]
	}
	hit := false
	forElements(v, func(e []byte) bool {
		k, err := collationKey(e)
		hit = err == nil && l.keys[string(k)]
		return !hit
	})
	return hit
}

// all is $all: v is an array holding every value, or the one value given
// is an array equal to v.
func (l listCond) all(v []byte) bool {
	if typeOf(v) != jtArray {
		return false
	}
	have := map[string]bool{}
	forElements(v, func(e []byte) bool {
		if k, err := collationKey(e); err == nil {
			have[string(k)] = true
		}
		return true
	})
	holdsAll := true
	for _, k := range l.order {
		holdsAll = holdsAll && have[k]
	}
	if holdsAll {
		return true
	}
	if len(l.order) == 1 && l.arrays == 1 {
		k, err := collationKey(v)
		return err == nil && string(k) == l.order[0]
	}
	return false
}

// existsCond is $exists on a value found: true when $exists is true.
type existsCond bool

func (e existsCond) holds([]byte) bool { return bool(e) }

// typeCond is $type.
type typeCond string

func (c typeCond) holds(v []byte) bool { return typeOf(v).typeName() == string(c) }

// sizeCond is $size: an array of that many elements.
type sizeCond int

func (c sizeCond) holds(v []byte) bool {
	return typeOf(v) == jtArray && countElements(v) == int(c)
}

// regexCond is $regex: a string the pattern matches (anywhere, unless
// anchored).
type regexCond struct{ re *regexp.Regexp }

func (c regexCond) holds(v []byte) bool {
	return typeOf(v) == jtString && c.re.MatchString(unquote(v))
}

// modCond is $mod: an integer whose remainder by d (truncated division,
// the remainder taking the sign of the value) is r.
type modCond struct{ d, r *big.Int }

func (c modCond) holds(v []byte) bool {
	if !isInteger(v) {
		return false
	}
	neg := v[0] == '-'
	rem := remDecimal(v[b2i(neg):], c.d)
	if neg {
		rem.Neg(rem)
	}
	return rem.Cmp(c.r) == 0
}

// remDecimal is the remainder of the decimal digits s by d (its sign
// ignored), 18 digits at a time: time linear in len(s) for a divisor of
// maxModDigits. big.Int's SetString of a document's number of 900,000
// digits took 1.1 s, for each document a find matched.
func remDecimal(s []byte, d *big.Int) *big.Int {
	rem, chunk, scale := new(big.Int), new(big.Int), new(big.Int).SetUint64(1e18)
	abs := new(big.Int).Abs(d)
	n := len(s) % 18 // the first chunk: then the others are 18 digits
	if n == 0 {
		n = 18
	}
	for len(s) > 0 {
		u, _ := strconv.ParseUint(string(s[:n]), 10, 64)
		rem.Mul(rem, scale).Add(rem, chunk.SetUint64(u)).Rem(rem, abs)
		s, n = s[n:], 18
	}
	return rem
}

// prefixCond is $beginsWith: a string starting with the argument.
type prefixCond string

func (c prefixCond) holds(v []byte) bool {
	return typeOf(v) == jtString && strings.HasPrefix(unquote(v), string(c))
}

// elemCond is $elemMatch (an element matches sub) or $allMatch (a
// non-empty array whose every element matches).
type elemCond struct {
	sub sel
	all bool
}

func (c elemCond) holds(v []byte) bool {
	if typeOf(v) != jtArray {
		return false
	}
	n, hit, miss := 0, false, false
	forElements(v, func(e []byte) bool {
		n++
		if c.sub.match(target{v: e}) {
			hit = true
		} else {
			miss = true
		}
		return c.all && !miss || !c.all && !hit
	})
	if c.all {
		return n > 0 && !miss
	}
	return hit
}

// notCond is a condition that must not hold (on a value that exists).
type notCond struct{ c cond }

func (n notCond) holds(v []byte) bool { return !n.c.holds(v) }

package main

// JSON values as queries see them: read in place from a document's bytes
// (no decoding into maps, so member order is kept and nothing is
// allocated for the parts a query does not look at), and ordered as
// CouchDB collates them (API.md, Finding documents: the order of values):
//
//	missing < null < false < true < numbers < strings < arrays < objects
//
// Numbers compare by value, exactly (1, 1.0 and 1e0 are equal; integers
// past 2^53 keep every digit); strings by Unicode code point (CouchDB's
// "raw" collation; its default ICU collation would put "a" before "B");
// arrays element by element, a prefix first; objects member by member in
// document order, name then value, fewer members first.
//
// The order is kept in one place, collationKey: an encoding whose byte
// order is the collation order. Comparisons, index entries and bookmark
// positions are all such keys, so an index range and a comparison can
// never disagree.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// jsonType is the type of a JSON value, in collation order.
type jsonType uint8

const (
	jtInvalid jsonType = iota
	jtNull
	jtFalse
	jtTrue
	jtNumber
	jtString
	jtArray
	jtObject
)

// typeName is the name $type uses for t.
func (t jsonType) typeName() string {
	switch t {
	case jtNull:
		return "null"
	case jtFalse, jtTrue:
		return "boolean"
	case jtNumber:
		return "number"
	case jtString:
		return "string"
	case jtArray:
		return "array"
	case jtObject:
		return "object"
	}
	return ""
}

// typeOf is the type of the JSON value v (no leading whitespace).
func typeOf(v []byte) jsonType {
	if len(v) == 0 {
		return jtInvalid
	}
	switch c := v[0]; {
	case c == 'n':
		return jtNull
	case c == 'f':
		return jtFalse
	case c == 't':
		return jtTrue
	case c == '"':
		return jtString
	case c == '[':
		return jtArray
	case c == '{':
		return jtObject
	case c == '-' || c >= '0' && c <= '9':
		return jtNumber
	}
	return jtInvalid
}

// errBadJSON is a document or argument that is not the JSON it should be.
// Stored documents were checked when written and arguments when parsed,
// so it means damage: an errCorrupt, not a kind of failure of its own.
var errBadJSON = fmt.Errorf("malformed JSON value: %w", errCorrupt)

// skipSpace returns the index of the first non-space byte of b at or
// after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i]
// (no leading space). It checks structure, not every literal.
func valueEnd(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errBadJSON
	}
	switch c := b[i]; {
	case c == '"':
		return stringEnd(b, i)
	case c == '[' || c == '{':
		return containerEnd(b, i)
	default:
		j := i
		for j < len(b) && !isDelimiter(b[j]) {
			j++
		}
		if j == i {
			return 0, errBadJSON
		}
		return j, nil
	}
}

// isDelimiter reports whether c ends a literal.
func isDelimiter(c byte) bool {
	return c == ',' || c == ']' || c == '}' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// stringEnd returns the index just past the string starting at b[i].
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errBadJSON
}

// containerEnd returns the index just past the array or object starting
// at b[i], skipping strings so that brackets in them do not count.
func containerEnd(b []byte, i int) (int, error) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			end, err := stringEnd(b, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, errBadJSON
}

// forElements calls fn with each element of the array arr, in order,
// until fn returns false.
func forElements(arr []byte, fn func(v []byte) bool) error {
	i := skipSpace(arr, 1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for i < len(arr) {
		end, err := valueEnd(arr, i)
		if err != nil {
			return err
		}
		if !fn(arr[i:end]) {
			return nil
		}
		i = skipSpace(arr, end)
		if i >= len(arr) || arr[i] == ']' {
			return nil
		}
		if arr[i] != ',' {
			return errBadJSON
		}
		i = skipSpace(arr, i+1)
	}
	return errBadJSON
}

// forMembers calls fn with the raw (quoted) name and the value of each
// member of the object obj, in order, until fn returns false.
func forMembers(obj []byte, fn func(name, v []byte) bool) error {
	i := skipSpace(obj, 1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for i < len(obj) {
		nameEnd, err := stringEnd(obj, i)
		if err != nil || obj[i] != '"' {
			return errBadJSON
		}
		j := skipSpace(obj, nameEnd)
		if j >= len(obj) || obj[j] != ':' {
			return errBadJSON
		}
		j = skipSpace(obj, j+1)
		end, err := valueEnd(obj, j)
		if err != nil {
			return err
		}
		if !fn(obj[i:nameEnd], obj[j:end]) {
			return nil
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] == '}' {
			return nil
		}
		if obj[i] != ',' {
			return errBadJSON
		}
		i = skipSpace(obj, i+1)
	}
	return errBadJSON
}

// member returns the value of obj's member called name. A name given
// twice counts as its last occurrence, as JSON.parse, Python and Go's
// decoder read it.
func member(obj []byte, name string) (v []byte, ok bool) {
	forMembers(obj, func(raw, val []byte) bool {
		if nameIs(raw, name) {
			v, ok = val, true
		}
		return true
	})
	return v, ok
}

// nameIs reports whether the quoted JSON string raw decodes to name.
func nameIs(raw []byte, name string) bool {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	return unquote(raw) == name
}

// unquote decodes the JSON string raw ("" when it is not one).
func unquote(raw []byte) string {
	if len(raw) >= 2 && bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	json.Unmarshal(raw, &s)
	return s
}

// collationKey returns v's collation key: bytes whose order (bytes.Compare)
// is the collation order of the values. Each key is self-delimiting (no
// key is a prefix of another, and the byte after a whole key is never
// 0xff), so keys can be concatenated into tuples (index entries, sort
// positions) that compare field by field.
func collationKey(v []byte) ([]byte, error) {
	return appendCollation(nil, v)
}

// Type tags of collation keys, in collation order. tagEnd closes an array
// or object and sorts before any element; tagMissing stands for an absent
// field in sort positions.
const (
	tagEnd     = 0x00
	tagMissing = 0x01
	tagNull    = 0x10
	tagFalse   = 0x20
	tagTrue    = 0x21
	tagNumber  = 0x30
	tagString  = 0x40
	tagArray   = 0x50
	tagObject  = 0x60
	// tagAfter is greater than any byte that can follow a whole key: a
	// prefix p followed by it is just past every key that starts with p.
	tagAfter = 0xff
)

// appendCollation appends v's collation key to dst.
func appendCollation(dst, v []byte) ([]byte, error) {
	switch typeOf(v) {
	case jtNull:
		return append(dst, tagNull), nil
	case jtFalse:
		return append(dst, tagFalse), nil
	case jtTrue:
		return append(dst, tagTrue), nil
	case jtNumber:
		d, err := parseDecimal(v)
		if err != nil {
			return nil, err
		}
		return d.appendKey(append(dst, tagNumber)), nil
	case jtString:
		return appendStringKey(dst, unquote(v)), nil
	case jtArray:
		return appendArrayKey(dst, v)
	case jtObject:
		return appendObjectKey(dst, v)
	}
	return nil, errBadJSON
}

// appendStringKey appends the collation key of the string s: its UTF-8
// bytes (code point order) with 0x00 escaped as 0x00 0xff, ended by 0x00
// 0x01, so that a string sorts before every longer one it starts.
func appendStringKey(dst []byte, s string) []byte {
	dst = append(dst, tagString)
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			dst = append(dst, 0, 0xff)
			continue
		}
		dst = append(dst, s[i])
	}
	return append(dst, 0, 1)
}

// appendArrayKey appends the collation key of an array: its elements' keys
// and tagEnd.
func appendArrayKey(dst, arr []byte) ([]byte, error) {
	dst = append(dst, tagArray)
	var ferr error
	err := forElements(arr, func(e []byte) bool {
		dst, ferr = appendCollation(dst, e)
		return ferr == nil
	})
	if err = errors.Join(err, ferr); err != nil {
		return nil, err
	}
	return append(dst, tagEnd), nil
}

// appendObjectKey appends the collation key of an object: each member's
// name (a string key) and value, in document order, and tagEnd.
func appendObjectKey(dst, obj []byte) ([]byte, error) {
	dst = append(dst, tagObject)
	var ferr error
	err := forMembers(obj, func(name, v []byte) bool {
		dst = appendStringKey(dst, unquote(name))
		dst, ferr = appendCollation(dst, v)
		return ferr == nil
	})
	if err = errors.Join(err, ferr); err != nil {
		return nil, err
	}
	return append(dst, tagEnd), nil
}

// decimal is a JSON number read exactly: 0.digits × 10^exp, digits without
// leading or trailing zeros ("" for zero).
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

// maxDecimalExp bounds the exponent of a number as read: larger ones (a
// literal like 1e99999999999999999999) saturate, keeping their order
// against every number a document can sensibly hold.
const maxDecimalExp = 1 << 60

// parseDecimal reads the JSON number literal v exactly.
func parseDecimal(v []byte) (decimal, error) {
	var d decimal
	i := 0
	if i < len(v) && v[i] == '-' {
		d.neg, i = true, 1
	}
	start := i
	var digits []byte
	intDigits := int64(0)
	for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
		digits, intDigits = append(digits, v[i]), intDigits+1
	}
	if i == start {
		return decimal{}, errBadJSON
	}
	if i < len(v) && v[i] == '.' {
		for i++; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
			digits = append(digits, v[i])
		}
	}
	exp, err := parseExponent(v[i:])
	if err != nil {
		return decimal{}, err
	}
	lead := 0
	for lead < len(digits) && digits[lead] == '0' {
		lead++
	}
	digits = bytes.TrimRight(digits[lead:], "0")
	if len(digits) == 0 {
		return decimal{}, nil // zero, whatever its sign
	}
	d.digits, d.exp = string(digits), clampExp(intDigits-int64(lead)+exp)
	return d, nil
}

// parseExponent reads the exponent part of a number literal ("" is 0),
// saturating at ±maxDecimalExp.
func parseExponent(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, nil
	}
	if v[0] != 'e' && v[0] != 'E' {
		return 0, errBadJSON
	}
	v = v[1:]
	neg := len(v) > 0 && v[0] == '-'
	if len(v) > 0 && (v[0] == '-' || v[0] == '+') {
		v = v[1:]
	}
	if len(v) == 0 {
		return 0, errBadJSON
	}
	n := int64(0)
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errBadJSON
		}
		n = min(n*10+int64(c-'0'), maxDecimalExp)
	}
	if neg {
		n = -n
	}
	return n, nil
}

// clampExp keeps an exponent within ±maxDecimalExp.
func clampExp(e int64) int64 { return max(-maxDecimalExp, min(e, maxDecimalExp)) }

// Sign classes of a number's key: negatives first, then zero, positives.
const (
	numNegative = 0x01
	numZero     = 0x02
	numPositive = 0x03
)

// appendKey appends d's collation key (after tagNumber): its sign class;
// for a positive number the exponent (8 bytes, order-preserving) and the
// digits, ended by 0x00 so that 0.12 sorts before 0.123; for a negative
// number the same bytes complemented, which reverses their order.
func (d decimal) appendKey(dst []byte) []byte {
	if d.digits == "" {
		return append(dst, numZero)
	}
	if !d.neg {
		dst = append(dst, numPositive)
		return append(append(binary.BigEndian.AppendUint64(dst, uint64(d.exp)^1<<63), d.digits...), 0)
	}
	dst = append(dst, numNegative)
	start := len(dst)
	dst = append(append(binary.BigEndian.AppendUint64(dst, uint64(d.exp)^1<<63), d.digits...), 0)
	for i := start; i < len(dst); i++ {
		dst[i] = ^dst[i]
	}
	return dst
}

// isInteger reports whether the number literal v is written as an
// integer (no fraction, no exponent), as $mod requires.
func isInteger(v []byte) bool {
	return typeOf(v) == jtNumber && !bytes.ContainsAny(v, ".eE")
}

// jsonString returns s as a JSON string.
func jsonString(s string) []byte {
	if utf8.ValidString(s) {
		b, _ := json.Marshal(s)
		return b
	}
	return []byte(strconv.Quote(s))
}

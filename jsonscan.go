package main

// The write path's JSON in one pass: a document checked and compacted,
// a PUT body split into its members, each by a scanner that reads every
// byte once instead of encoding/json's state machine two to four times
// (decoding into json.RawMessage, then json.Compact). The scanner only
// ever says yes to what encoding/json accepts too; whatever it does not
// take (malformed JSON, escaped or non-ASCII keys, a key twice) goes the
// slow way, which gives the same results and the same error sentences
// as before. jsonscan_test.go compares both ways on random input.

import (
	"bytes"
	"slices"
	"strings"
)

// jsonScanDepth bounds the scanner's recursion; deeper JSON goes the slow
// way (the budgets' depth limit is far below it).
const jsonScanDepth = 1000

// jsonScanner validates JSON text as encoding/json does (RFC 8259, bytes
// of 0x80 and over taken as they are inside strings) and notes whether
// it saw insignificant whitespace.
type jsonScanner struct {
	b     []byte
	ws    bool
	depth int
}

// skipWS returns the index of the first byte at or after i that is not
// insignificant whitespace.
func (s *jsonScanner) skipWS(i int) int {
	for ; i < len(s.b); i++ {
		switch s.b[i] {
		case ' ', '\t', '\n', '\r':
			s.ws = true
		default:
			return i
		}
	}
	return i
}

// value scans the value starting at i and returns the index after it.
func (s *jsonScanner) value(i int) (int, bool) {
	if i >= len(s.b) {
		return i, false
	}
	switch c := s.b[i]; {
	case c == '{':
		return s.object(i)
	case c == '[':
		return s.array(i)
	case c == '"':
		return s.str(i)
	case c == '-' || c >= '0' && c <= '9':
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	return i, false
}

// object scans the object starting at i (its '{').
func (s *jsonScanner) object(i int) (int, bool) { return s.container(i, '}', s.member) }

// array scans the array starting at i (its '[').
func (s *jsonScanner) array(i int) (int, bool) { return s.container(i, ']', s.value) }

// member scans an object's member starting at i: its key, the colon and
// its value.
func (s *jsonScanner) member(i int) (int, bool) {
	if i >= len(s.b) || s.b[i] != '"' {
		return i, false
	}
	i, ok := s.str(i)
	if !ok {
		return i, false
	}
	if i = s.skipWS(i); i >= len(s.b) || s.b[i] != ':' {
		return i, false
	}
	return s.value(s.skipWS(i + 1))
}

// container scans an object or an array starting at i (its opening
// byte) up to closer, each member or element by elem.
func (s *jsonScanner) container(i int, closer byte, elem func(int) (int, bool)) (int, bool) {
	if s.depth++; s.depth > jsonScanDepth {
		return i, false
	}
	i = s.skipWS(i + 1)
	if i < len(s.b) && s.b[i] == closer {
		s.depth--
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = elem(i); !ok {
			return i, false
		}
		if i = s.skipWS(i); i >= len(s.b) {
			return i, false
		}
		switch s.b[i] {
		case ',':
			i = s.skipWS(i + 1)
		case closer:
			s.depth--
			return i + 1, true
		default:
			return i, false
		}
	}
}

// str scans the string starting at i (its '"').
func (s *jsonScanner) str(i int) (int, bool) {
	b := s.b
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			if i+1 >= len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return i, false
				}
				i += 5
			default:
				return i, false
			}
		}
	}
	return i, false
}

// isHex4 reports whether b is four hexadecimal digits.
func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans the number starting at i.
func (s *jsonScanner) number(i int) (int, bool) {
	b := s.b
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return i, false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		if i+1 >= len(b) || !isDigit(b[i+1]) {
			return i, false
		}
		i = skipDigits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return i, false
		}
		i = skipDigits(b, i)
	}
	return i, true
}

// isDigit reports whether c is an ASCII digit.
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipDigits returns the index of the first byte at or after i that is
// not a digit.
func skipDigits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// literal scans lit (true, false, null) at i.
func (s *jsonScanner) literal(i int, lit string) (int, bool) {
	if !bytes.HasPrefix(s.b[i:], []byte(lit)) {
		return i, false
	}
	return i + len(lit), true
}

// compactJSON returns b, one JSON value, without insignificant
// whitespace, in a new slice, as json.Compact writes it; ok is false
// when the scanner does not take b (the caller goes the slow way).
func compactJSON(b []byte) (out []byte, ok bool) {
	s := jsonScanner{b: b}
	start := s.skipWS(0)
	end, ok := s.value(start)
	if !ok || s.skipWS(end) != len(b) {
		return nil, false
	}
	if !s.ws {
		return slices.Clone(b[start:end]), true
	}
	return appendCompacted(make([]byte, 0, end-start), b[start:end]), true
}

// appendCompacted appends valid JSON b to dst without the whitespace
// outside its strings.
func appendCompacted(dst, b []byte) []byte {
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString && c == '\\':
			dst = append(dst, c, b[i+1])
			i++
			continue
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		dst = append(dst, c)
	}
	return dst
}

// splitEntityBody splits a PUT body, a JSON object of plain keys, into
// its members sorted by key, each document as sent (it aliases body) and
// noted as valid JSON, compact or not (entityDoc.scan);
// ok is false when the scanner does not take the body, it has no member,
// a key holds an escape or a byte outside ASCII, or a key comes twice
// (the caller decodes it the slow way).
func splitEntityBody(body []byte) (docs []entityDoc, ok bool) {
	s := jsonScanner{b: body, depth: 1}
	i := s.skipWS(0)
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	for i = s.skipWS(i + 1); ; i = s.skipWS(i + 1) {
		if i >= len(body) || body[i] != '"' {
			return nil, false
		}
		kEnd, ok := s.str(i)
		if !ok || !plainKey(body[i+1:kEnd-1]) {
			return nil, false
		}
		key := string(body[i+1 : kEnd-1])
		if i = s.skipWS(kEnd); i >= len(body) || body[i] != ':' {
			return nil, false
		}
		vStart := s.skipWS(i + 1)
		s.ws = false
		vEnd, ok := s.value(vStart)
		if !ok {
			return nil, false
		}
		scan := docCompact
		if s.ws {
			scan = docSpaced
		}
		docs = append(docs, entityDoc{key: key, doc: body[vStart:vEnd:vEnd], scan: scan})
		if i = s.skipWS(vEnd); i >= len(body) || body[i] != ',' {
			break
		}
	}
	if i >= len(body) || body[i] != '}' || s.skipWS(i+1) != len(body) {
		return nil, false
	}
	slices.SortFunc(docs, func(a, b entityDoc) int { return strings.Compare(a.key, b.key) })
	for j := 1; j < len(docs); j++ {
		if docs[j].key == docs[j-1].key {
			return nil, false
		}
	}
	return docs, true
}

// plainKey reports whether a key's bytes between its quotes are printable
// ASCII without escapes: the same bytes once decoded.
func plainKey(k []byte) bool {
	for _, c := range k {
		if c == '\\' || c >= 0x80 {
			return false
		}
	}
	return true
}

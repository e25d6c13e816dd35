package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// jsonScanSeeds are JSON texts and near misses of every shape the
// scanner reads.
var jsonScanSeeds = []string{
	`{"a":1}`, ` { "a" : [ 1 , 2.5e-3 , -0 , true , false , null ] } `, `{"k1":{"x":"y"},"k0":[]}`,
	`"a\"b\\c\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, `[]`, `{}`, `0`, `-`, `01`, `1.`, `1.e5`, `1e`, `1e+`, `-1E-07`,
	`+1`, `.5`, `tru`, `truex`, `nul`, `[1,]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{,}`, `[,1]`, `{"a":1}}`,
	`{"a":1} x`, `{"a":1}{"b":2}`, "\"\x01\"", `"\x"`, `"\u12G4"`, `"\u12"`, `"abc`, "{\"a\":\t1\r\n}",
	`{"a\u0062":1}`, `{"é":1}`, `{"a":1,"a":2}`, `{"b":1,"a":{"c":[{"d":null}]}}`, "\xff", `"\xff"`,
	`[[[[[[[[[[]]]]]]]]]]`, `{"a":"}"}`, `{"a":"\\"}`, ` `, ``, `[1 2]`, `{"a" 1}`, `{"a":1 "b":2}`,
	`{"a":"\uD800x","b":["\uDC00"]}`, `{"a":[[[1]]],"b":{"c":{"d":[]}}}`, "{\"a\":\"\xc3\"}",
}

// TestCompactJSONMatchesEncodingJSON: whatever compactJSON takes,
// json.Compact takes too and writes the same bytes, and it takes every
// valid seed.
func TestCompactJSONMatchesEncodingJSON(t *testing.T) {
	for _, seed := range jsonScanSeeds {
		checkCompact(t, []byte(seed), true)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		checkCompact(t, mutateJSON(rng, jsonScanSeeds[rng.IntN(len(jsonScanSeeds))]), false)
	}
}

// checkCompact compares compactJSON with json.Compact on b; must says
// the scanner has to take b when encoding/json does.
func checkCompact(t *testing.T, b []byte, must bool) {
	t.Helper()
	var want bytes.Buffer
	werr := json.Compact(&want, b)
	got, ok := compactJSON(b)
	switch {
	case ok && werr != nil:
		t.Fatalf("compactJSON took %q, which json.Compact refuses (%v)", b, werr)
	case ok && !bytes.Equal(got, want.Bytes()):
		t.Fatalf("compactJSON(%q) = %q, json.Compact wrote %q", b, got, want.Bytes())
	case !ok && werr == nil && must:
		t.Fatalf("compactJSON refused valid %q", b)
	case ok && len(b) > 0 && &got[0] == &b[0]:
		t.Fatalf("compactJSON(%q) returned its input, not a copy", b)
	}
}

// TestSplitEntityBodyMatchesDecoder: whatever splitEntityBody takes,
// the slow way (encoding/json into a map) takes too, with the same keys
// and documents; it takes the plain bodies a client sends.
func TestSplitEntityBodyMatchesDecoder(t *testing.T) {
	for _, body := range []string{`{"k1":{"role":"user","content":"hi"}}`, ` {"b" : [1, 2], "a":"x"} `, `{"k":null}`} {
		if _, ok := splitEntityBody([]byte(body)); !ok {
			t.Fatalf("splitEntityBody refused %q", body)
		}
		checkSplit(t, []byte(body))
	}
	for _, refused := range []string{`{}`, `{"a":1,"a":2}`, `{"a\u0062":1}`, `{"é":1}`, `{"a":1,}`, `{"a":1} }`, `[{"a":1}]`} {
		if _, ok := splitEntityBody([]byte(refused)); ok {
			t.Fatalf("splitEntityBody took %q, which goes the slow way", refused)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		checkSplit(t, mutateJSON(rng, jsonScanSeeds[rng.IntN(len(jsonScanSeeds))]))
	}
}

// checkSplit compares splitEntityBody with the slow decoding of body.
func checkSplit(t *testing.T, body []byte) {
	t.Helper()
	got, ok := splitEntityBody(body)
	if !ok {
		return
	}
	var m map[string]json.RawMessage
	if err := decodeJSONBody(body, &m, entityBodyShape); err != nil {
		t.Fatalf("splitEntityBody took %q, which the decoder refuses (%v)", body, err)
	}
	if len(got) != len(m) || !slices.IsSortedFunc(got, func(a, b entityDoc) int { return strings.Compare(a.key, b.key) }) {
		t.Fatalf("splitEntityBody(%q) = %d members, unsorted or not the decoder's %d", body, len(got), len(m))
	}
	for _, d := range got {
		if want, ok := m[d.key]; !ok || !bytes.Equal(want, d.doc) {
			t.Fatalf("splitEntityBody(%q): %q = %q, the decoder read %q", body, d.key, d.doc, want)
		}
	}
	checkScanned(t, body, got)
}

// scanLimits are document budgets small enough for random JSON to reach.
var scanLimits = []budgets{{maxDocument: 16, maxDepth: 2}, {maxDocument: 1 << 20, maxDepth: 1}, {}}

// checkScanned: where a PUT's body passes its whole-text check
// (readEntitiesBody), each document the split noted (docs) is stored,
// or refused with the same sentence, as the document checked from
// scratch (a gRPC payload's path), under each of scanLimits.
func checkScanned(t *testing.T, body []byte, docs []entityDoc) {
	t.Helper()
	for _, lim := range scanLimits {
		if checkJSONText("body", body, lim.depth()+1) != nil {
			continue
		}
		d := &dataPlane{lim: lim}
		for _, doc := range docs {
			if doc.scan == docUnscanned {
				t.Fatalf("splitEntityBody(%q): %q not noted as scanned", body, doc.key)
			}
			got, gotErr := d.document(doc.key, doc.doc, doc.scan)
			want, wantErr := d.document(doc.key, doc.doc, docUnscanned)
			if !bytes.Equal(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Fatalf("body %q, document %q, limits %+v: scanned %q, %v; checked from scratch %q, %v",
					body, doc.key, lim, got, gotErr, want, wantErr)
			}
		}
	}
}

// mutateJSON returns seed with a few random bytes changed, inserted or
// removed, drawn mostly from JSON's own punctuation.
func mutateJSON(rng *rand.Rand, seed string) []byte {
	b := []byte(seed)
	const alphabet = "{}[]:,\" \t\n\\/u0123456789abcdefABCDEFeE+-.tnrlsx\x00\x1f\x7f\xc3\xa9"
	for range 1 + rng.IntN(3) {
		c := alphabet[rng.IntN(len(alphabet))]
		switch i := rng.IntN(len(b) + 1); {
		case len(b) == 0 || rng.IntN(3) == 0:
			b = slices.Insert(b, i, c)
		case rng.IntN(2) == 0 && i < len(b):
			b[i] = c
		case i < len(b):
			b = slices.Delete(b, i, i+1)
		}
	}
	return b
}

// FuzzCompactJSON: compactJSON agrees with json.Compact on any input.
func FuzzCompactJSON(f *testing.F) {
	for _, s := range jsonScanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkCompact(t, b, false)
		checkSplit(t, b)
	})
}

// BenchmarkPutJSON: the JSON work of a one-document PUT body of ~1 KiB:
// the body's text checked, split and its document compacted as a REST
// PUT does it (scanned), the same with the document checked from scratch
// (each document's text check and scan again, the way before the split
// noted what it saw), and encoding/json's way.
func BenchmarkPutJSON(b *testing.B) {
	body := []byte(`{"k000123":{"role":"user","content":"` + strings.Repeat("x", 994) + `"}}`)
	d := &dataPlane{}
	for _, c := range []struct {
		name string
		scan func(entityDoc) docScan
	}{{"scanned", func(e entityDoc) docScan { return e.scan }}, {"checked-again", func(entityDoc) docScan { return docUnscanned }}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = checkJSONText("body", body, d.lim.depth()+1)
				docs, _ := splitEntityBody(body)
				_, _ = d.document(docs[0].key, docs[0].doc, c.scan(docs[0]))
			}
		})
	}
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var m map[string]json.RawMessage
			_ = decodeJSONBody(body, &m, entityBodyShape)
			var buf bytes.Buffer
			_ = json.Compact(&buf, m["k000123"])
		}
	})
}

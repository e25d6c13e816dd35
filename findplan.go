package main

// Planning a query (ARCHITECTURE.md, Finding documents): read one index,
// over a range of its entries, or scan every entity in key order; and
// whether the answer's order is the walk's (the page streams, ending at
// its limit) or must be sorted by the main worker (every match is
// collected, within -find-max-scan). POST /api/databases/{db}/explain
// answers the plan.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	pb "deltadatabase/proto"
)

// findPlan is how a query walks the documents.
type findPlan struct {
	// index is the index read; nil for a scan of every entity in key
	// order (CouchDB's _all_docs).
	index *indexDef
	// start and end bound the index entries read: [start, end), end
	// empty for no bound.
	start, end []byte
	// desc walks the index downwards.
	desc bool
	// sorted says the answer's order is not the walk's: the main worker
	// sorts every match (positions are sort tuples).
	sorted bool
	// keys bounds a scan by the selector's conditions on _id.
	keys keyRange
	// live are the IDs of the database's indexes.
	live []string
	// warnings go to the answer.
	warnings []string
}

// keyRange bounds the entity keys a scan walks.
type keyRange struct {
	from     string
	fromIncl bool
	to       string
	toSet    bool
	toIncl   bool
	// empty: no key can match.
	empty bool
}

// valueRange is what the top-level conditions of a selector say about one
// field's value, as collation keys: lo..hi, each bound inclusive or not,
// nil for none; eq when an $eq fixes it.
type valueRange struct {
	lo, hi         []byte
	loIncl, hiIncl bool
	eq             []byte
}

// canonPath is a parsed path as a map key.
func canonPath(p []string) string { return strings.Join(p, "\x00") }

// topConditions returns the field conditions every match meets: those of
// the selector's top-level $and, nested $and flattened.
func topConditions(s sel) []fieldSel {
	switch v := s.(type) {
	case andSel:
		var out []fieldSel
		for _, k := range v {
			out = append(out, topConditions(k)...)
		}
		return out
	case fieldSel:
		return []fieldSel{v}
	}
	return nil
}

// requiredPaths are the fields every match has (CouchDB's
// has_required_fields): those of the top-level conditions other than
// $exists: false, and those every clause of a top-level $or requires.
func requiredPaths(s sel) map[string]bool {
	out := map[string]bool{}
	switch v := s.(type) {
	case andSel:
		for _, k := range v {
			for p := range requiredPaths(k) {
				out[p] = true
			}
		}
	case orSel:
		for i, k := range v {
			req := requiredPaths(k)
			if i == 0 {
				out = req
				continue
			}
			for p := range out {
				if !req[p] {
					delete(out, p)
				}
			}
		}
	case fieldSel:
		if v.c != existsCond(false) {
			out[canonPath(v.path)] = true
		}
	}
	return out
}

// fieldRanges collects the ranges the top-level comparisons set, by
// field.
func fieldRanges(s sel) map[string]*valueRange {
	out := map[string]*valueRange{}
	for _, f := range topConditions(s) {
		c, ok := f.c.(cmpCond)
		if !ok || c.op == "$ne" {
			continue
		}
		p := canonPath(f.path)
		if out[p] == nil {
			out[p] = &valueRange{}
		}
		out[p].narrow(c.op, c.key)
	}
	return out
}

// narrow applies one comparison to r.
func (r *valueRange) narrow(op string, k []byte) {
	if op == "$eq" {
		r.eq = k
	}
	if op == "$eq" || op == "$gt" || op == "$gte" {
		incl := op != "$gt"
		if c := bytes.Compare(k, r.lo); r.lo == nil || c > 0 || c == 0 && !incl {
			r.lo, r.loIncl = k, incl
		}
	}
	if op == "$eq" || op == "$lt" || op == "$lte" {
		incl := op != "$lt"
		if c := bytes.Compare(k, r.hi); r.hi == nil || c < 0 || c == 0 && !incl {
			r.hi, r.hiIncl = k, incl
		}
	}
}

// loBytes is the first entry of the range of a field whose preceding
// fields' keys are prefix.
func (r *valueRange) loBytes(prefix []byte) []byte {
	out := slices.Clone(prefix)
	if r == nil || r.lo == nil {
		return out
	}
	out = append(out, r.lo...)
	if !r.loIncl {
		out = append(out, tagAfter)
	}
	return out
}

// hiBytes is the end (exclusive) of the range, nil for none.
func (r *valueRange) hiBytes(prefix []byte) []byte {
	if r == nil || r.hi == nil {
		if len(prefix) == 0 {
			return nil
		}
		return append(slices.Clone(prefix), tagAfter)
	}
	out := append(slices.Clone(prefix), r.hi...)
	if r.hiIncl {
		out = append(out, tagAfter)
	}
	return out
}

// indexFit is how well an index serves a query.
type indexFit struct {
	def *indexDef
	// score ranks the narrowing: two per leading field fixed by $eq,
	// one for a range on the next.
	score int
	// sorts says the index's order is the sort's.
	sorts      bool
	start, end []byte
}

// fitIndex says how index def serves q; ok is false when it cannot (a
// match may lack one of its fields, so the index would miss it).
func fitIndex(q *findQuery, def *indexDef, required map[string]bool, ranges map[string]*valueRange) (indexFit, bool) {
	paths, err := parsePaths(def.Fields)
	if err != nil {
		return indexFit{}, false
	}
	for _, p := range paths {
		if !required[canonPath(p)] {
			return indexFit{}, false
		}
	}
	fit := indexFit{def: def}
	var prefix []byte
	eqFields := 0
	for _, p := range paths {
		r := ranges[canonPath(p)]
		if r != nil && r.eq != nil {
			prefix, eqFields = append(prefix, r.eq...), eqFields+1
			continue
		}
		fit.start, fit.end = r.loBytes(prefix), r.hiBytes(prefix)
		if r != nil {
			fit.score = 1
		}
		break
	}
	if eqFields == len(paths) {
		fit.start, fit.end = prefix, append(slices.Clone(prefix), tagAfter)
	}
	fit.score += 2 * eqFields
	fit.sorts = sortsBy(paths, q.sortPaths, eqFields)
	return fit, true
}

// sortsBy reports whether an index on paths, its first eqFields fields
// fixed, orders documents as sort asks: sort is the next fields.
func sortsBy(paths, sort [][]string, eqFields int) bool {
	if len(sort) == 0 {
		return false
	}
	for j := 0; j <= eqFields && j+len(sort) <= len(paths); j++ {
		same := true
		for i, s := range sort {
			same = same && canonPath(s) == canonPath(paths[j+i])
		}
		if same {
			return true
		}
	}
	return false
}

// keyOrderSort reports whether the sort asked is the scan's order: none,
// or _id ascending.
func (q *findQuery) keyOrderSort() bool {
	return len(q.sort) == 0 || len(q.sort) == 1 && q.sort[0] == "_id" && !q.desc
}

// planFind chooses how to run q: the bookmark's plan when it has one,
// else the best index, else a scan.
func (d *dataPlane) planFind(ctx context.Context, q *findQuery) (findPlan, error) {
	defs, err := d.catalog.indexes.list(ctx, q.db)
	if err != nil {
		return findPlan{}, err
	}
	plan := findPlan{desc: q.desc, live: indexIDs(defs)}
	required, ranges := requiredPaths(q.sel.root), fieldRanges(q.sel.root)
	plan.keys = scanRange(ranges[canonPath([]string{"_id"})])
	if q.bookmark != nil {
		return plan.resume(q, defs, required, ranges)
	}
	fit, ok := bestIndex(q, defs, required, ranges, &plan)
	switch {
	case ok:
		plan.index, plan.start, plan.end = fit.def, fit.start, fit.end
		plan.sorted = len(q.sort) > 0 && !fit.sorts
	case !q.fallback:
		return findPlan{}, reqErrorf(errInvalid, "no index of database %q serves this query, and allow_fallback is false", q.db)
	default:
		plan.sorted = !q.keyOrderSort()
		if plan.keys == (keyRange{}) {
			plan.warnings = append(plan.warnings, "no index serves this query: it scanned the database (create one with POST /api/databases/{db}/index)")
		}
	}
	return plan, nil
}

// bestIndex picks the index to read: use_index when it can serve; else,
// for a sort other than key order, the best index whose order is the
// sort's; else the index that narrows most. ok is false for a scan.
func bestIndex(q *findQuery, defs []indexDef, required map[string]bool, ranges map[string]*valueRange, plan *findPlan) (indexFit, bool) {
	var fits []indexFit
	for i := range defs {
		if f, ok := fitIndex(q, &defs[i], required, ranges); ok {
			fits = append(fits, f)
		}
	}
	if q.useIndex != "" {
		for _, f := range fits {
			if f.def.Name == q.useIndex {
				return f, true
			}
		}
		plan.warnings = append(plan.warnings, sentencef("use_index %q is not an index that can serve this query; planned without it", q.useIndex))
	}
	best, ok := indexFit{}, false
	for _, f := range fits {
		better := f.score > best.score
		if !q.keyOrderSort() {
			better = f.sorts && (!best.sorts || f.score > best.score) || !best.sorts && f.score > best.score
		}
		if better && (f.score > 0 || f.sorts) {
			best, ok = f, true
		}
	}
	return best, ok
}

// resume plans a query from its bookmark: the bookmark's index (which
// must still exist) or a scan, in the bookmark's order.
func (plan findPlan) resume(q *findQuery, defs []indexDef, required map[string]bool, ranges map[string]*valueRange) (findPlan, error) {
	bm := q.bookmark
	plan.sorted = bm.Sorted
	if bm.Index == "" {
		return plan, nil
	}
	i := slices.IndexFunc(defs, func(d indexDef) bool { return d.ID == bm.Index })
	if i < 0 {
		return findPlan{}, reqErrorf(errInvalid, `the index this "bookmark" was made with no longer exists; start again without the bookmark`)
	}
	fit, ok := fitIndex(q, &defs[i], required, ranges)
	if !ok {
		return findPlan{}, reqErrorf(errInvalid, `"bookmark" does not fit this query`)
	}
	plan.index, plan.start, plan.end = fit.def, fit.start, fit.end
	return plan, nil
}

// scanRange turns the conditions on _id into the keys a scan walks:
// strings bound it; a bound of another type either bounds nothing
// (numbers sort before every key, arrays after) or leaves no key.
func scanRange(r *valueRange) keyRange {
	var kr keyRange
	if r == nil {
		return kr
	}
	if r.lo != nil {
		switch {
		case r.lo[0] == tagString:
			kr.from, _ = decodeStringKey(r.lo)
			kr.fromIncl = r.loIncl
		case r.lo[0] > tagString:
			kr.empty = true
		}
	}
	if r.hi != nil {
		switch {
		case r.hi[0] == tagString:
			kr.to, _ = decodeStringKey(r.hi)
			kr.toSet, kr.toIncl = true, r.hiIncl
		case r.hi[0] < tagString:
			kr.empty = true
		}
	}
	return kr
}

// within reports whether key is not past the range's end.
func (kr keyRange) within(key string) bool {
	return !kr.toSet || key < kr.to || kr.toIncl && key == kr.to
}

// explainAnswer is the answer of /explain (CouchDB's _explain, with the
// number of entities the query will touch).
type explainAnswer struct {
	DBName   string          `json:"dbname"`
	Index    indexInfo       `json:"index"`
	Selector json.RawMessage `json:"selector"`
	Fields   []string        `json:"fields"`
	Sort     []string        `json:"sort"`
	Limit    int64           `json:"limit"`
	Skip     int64           `json:"skip"`
	// Range is the index entries read, as collation keys in hex; absent
	// for a scan.
	Range *explainRange `json:"range,omitempty"`
	// Entities is how many entities the query will read at most: the
	// index entries in its range, or the entities the scan walks.
	Entities int64 `json:"entities"`
	// SortedInMemory says the main worker sorts every match (the plan's
	// order is not the sort asked).
	SortedInMemory bool   `json:"sorted_in_memory"`
	Warning        string `json:"warning,omitempty"`
}

// explainRange is an index range in hex.
type explainRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// indexInfo describes an index as CouchDB's _index and _explain do.
type indexInfo struct {
	DDoc *string  `json:"ddoc"`
	Name string   `json:"name"`
	Type string   `json:"type"`
	Def  indexDoc `json:"def"`
}

// indexDoc is an index's definition: its fields, each ascending.
type indexDoc struct {
	Fields []map[string]string `json:"fields"`
}

// infoOf describes def (nil: the scan, CouchDB's _all_docs).
func infoOf(def *indexDef) indexInfo {
	if def == nil {
		return indexInfo{Name: "_all_docs", Type: "special", Def: indexDoc{Fields: []map[string]string{{"_id": "asc"}}}}
	}
	info := indexInfo{Name: def.Name, Type: "json", Def: indexDoc{Fields: []map[string]string{}}}
	for _, f := range def.Fields {
		info.Def.Fields = append(info.Def.Fields, map[string]string{f: "asc"})
	}
	return info
}

// explain answers how a query would run and how many entities it would
// touch (for an index, each worker counts its entries in the range,
// building the index first if it must).
func (d *dataPlane) explain(ctx context.Context, db string, req findRequest) (*explainAnswer, error) {
	q, err := compileFind(db, req)
	if err != nil {
		return nil, err
	}
	plan, err := d.planFind(ctx, q)
	if err != nil {
		return nil, err
	}
	ans := &explainAnswer{DBName: db, Index: infoOf(plan.index), Selector: q.sel.raw, Fields: q.fields,
		Sort: q.sort, Limit: q.limit, Skip: q.skip, SortedInMemory: plan.sorted, Warning: joinWarnings(plan.warnings)}
	if ans.Fields == nil {
		ans.Fields = []string{}
	}
	if ans.Sort == nil {
		ans.Sort = []string{}
	}
	if plan.index != nil {
		ans.Range = &explainRange{Start: fmt.Sprintf("%x", plan.start), End: fmt.Sprintf("%x", plan.end)}
		ans.Entities, err = d.countIndex(ctx, q, plan)
	} else {
		ans.Entities, err = d.countScan(ctx, db, plan.keys)
	}
	return ans, err
}

// countIndex sums the entries of the plan's range on every worker.
func (d *dataPlane) countIndex(ctx context.Context, q *findQuery, plan findPlan) (int64, error) {
	fr, ok := d.proc.(findRouter)
	if !ok {
		return 0, fmt.Errorf("explain: the processor cannot fan out: %w", errUnavailable)
	}
	m := fr.findMembers()
	results, err := fanOut(ctx, fr, m, q.db, func(self string) *pb.FindOp {
		return &pb.FindOp{Selector: q.sel.raw, Index: plan.index.spec(), Start: plan.start, End: plan.end,
			CountOnly: true, Members: m.ids, Self: self, LiveIndexes: plan.live}
	})
	n := int64(0)
	for _, r := range results {
		n += r.GetCount()
	}
	return n, err
}

// countScan counts the entities a scan of kr walks.
func (d *dataPlane) countScan(ctx context.Context, db string, kr keyRange) (int64, error) {
	if kr.empty {
		return 0, nil
	}
	if kr == (keyRange{}) {
		n, err := d.catalog.keys.count(ctx, db)
		return int64(n), err
	}
	n := int64(0)
	from, incl := kr.from, kr.fromIncl
	for {
		keys, more, err := d.catalog.keys.keysFrom(ctx, db, from, incl, maxListLimit)
		if err != nil {
			return 0, err
		}
		for _, k := range keys {
			if !kr.within(k) {
				return n, nil
			}
			n++
		}
		if !more {
			return n, nil
		}
		from, incl = keys[len(keys)-1], false
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"
)

// BenchmarkIndexMemory builds the entries of an index on "user" over
// 100,000 chat documents (benchChatDoc, 1 KiB, 5,000 users) in one
// worker's ownedIndex and reports the heap it holds: bytes per entity and
// MiB in all (BENCHMARKS.md, Finding documents).
func BenchmarkIndexMemory(b *testing.B) {
	const n = 100000
	docs := make([][]byte, n)
	for i := range docs {
		docs[i], _ = json.Marshal(benchChatDoc(i, n/benchFindPerUser, 1024))
	}
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ix := &ownedIndex{paths: [][]string{{"user"}}, members: []string{"w"}, self: "w", byKey: map[string]string{}}
		for i, d := range docs {
			ix.set(fmt.Sprintf("session_%06d", i), d)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(held/n, "B/entity")
		b.ReportMetric(held/(1<<20), "MiB")
		runtime.KeepAlive(ix)
	}
}

// BenchmarkSelectorMatch matches a selector of three conditions against
// a 1 KiB chat document read in place.
func BenchmarkSelectorMatch(b *testing.B) {
	doc, _ := json.Marshal(benchChatDoc(37, 5000, 1024))
	sel, err := parseSelector([]byte(`{"user":"user_00037","title":{"$regex":"^session"},"messages":{"$elemMatch":{"role":"assistant"}}}`))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if !sel.matches("session_000037", doc) {
			b.Fatal("no match")
		}
	}
}

package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressStatus: done of total, the share, the rate and the time
// left, as a line and as a bar.
func TestProgressStatus(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	for _, c := range []struct {
		unit              string
		total, done       int64
		elapsed           time.Duration
		wantLine, wantBar string
	}{
		{"objects", 5000, 1234, 2 * time.Second,
			"backup: 1234/5000 objects (24%), 617 objects/s, 6s left",
			"backup [#######.......................] 1234/5000 objects (24%), 617 objects/s, 6s left"},
		{"objects", 10, 0, 0, "backup: 0/10 objects (0%)", "backup [..............................] 0/10 objects (0%)"},
		{"objects", 10, 10, time.Second, "backup: 10/10 objects (100%), 10 objects/s", "backup [##############################] 10/10 objects (100%), 10 objects/s"},
		{"objects", 0, 0, time.Second, "backup: 0/0 objects (100%)", "backup [##############################] 0/0 objects (100%)"},
		{"bytes", 4 << 20, 1 << 20, 2 * time.Second, "backup: 1.0/4.0 MiB (25%), 0.5 MiB/s, 6s left", ""},
	} {
		p := &progress{what: "backup", unit: c.unit, total: c.total, began: t0}
		p.add(c.done)
		if got := p.line(t0.Add(c.elapsed)); got != c.wantLine {
			t.Errorf("line(%d/%d %s after %v) = %q, want %q", c.done, c.total, c.unit, c.elapsed, got, c.wantLine)
		}
		if got := p.barLine(t0.Add(c.elapsed)); c.wantBar != "" && got != c.wantBar {
			t.Errorf("barLine(%d/%d %s after %v) = %q, want %q", c.done, c.total, c.unit, c.elapsed, got, c.wantBar)
		}
	}
}

// TestProgressModes: off draws nothing; auto on something that is not a
// terminal writes lines, ending with the final state; bar redraws in
// place and ends its line.
func TestProgressModes(t *testing.T) {
	var off bytes.Buffer
	p := startProgress(&off, "off", time.Hour, "verify", "entities", 3)
	p.add(3)
	p.finish()
	if off.Len() != 0 {
		t.Errorf("-progress=off wrote %q", off.String())
	}
	var lines bytes.Buffer
	p = startProgress(&lines, "auto", time.Hour, "verify", "entities", 3)
	p.add(3)
	p.finish()
	if got := lines.String(); !strings.HasPrefix(got, "verify: 3/3 entities (100%)") || strings.Contains(got, "\r") || !strings.HasSuffix(got, "\n") {
		t.Errorf("-progress=auto on a buffer wrote %q, want one plain line of the final state", got)
	}
	var bar bytes.Buffer
	p = startProgress(&bar, "bar", time.Hour, "verify", "entities", 3)
	p.add(1)
	p.finish()
	if got := bar.String(); !strings.HasPrefix(got, "\rverify [##########....................] 1/3 entities (33%)") || !strings.HasSuffix(got, "\x1b[K\n") {
		t.Errorf("-progress=bar wrote %q, want the bar redrawn in place", got)
	}
	if isTerminal(&bar) {
		t.Error("isTerminal(buffer) = true")
	}
}

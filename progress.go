package main

// Progress of the long runs of the storage tools (backup.go, verify.go):
// a bar redrawn in place on a terminal, periodic lines otherwise.

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress reports how far a run has come: done of total units, the rate
// and the time left. add is safe for concurrent use; start, finish and
// the drawing run on their own goroutine.
type progress struct {
	// what names the run ("backup"), unit what it counts ("objects";
	// "bytes" is shown in MiB).
	what, unit string
	total      int64
	done       atomic.Int64
	// out is where it draws; nil draws nothing. bar redraws one line in
	// place (a terminal); otherwise a line is written every interval.
	out   io.Writer
	bar   bool
	every time.Duration
	now   func() time.Time
	began time.Time

	stop chan struct{}
	wg   sync.WaitGroup
}

// barEvery is how often a bar is redrawn.
const barEvery = 200 * time.Millisecond

// startProgress starts reporting a run of total units to w: mode off
// draws nothing, bar a bar, lines a line every interval, auto a bar when
// w is a terminal and lines otherwise. Call finish at the end of the run.
func startProgress(w io.Writer, mode string, every time.Duration, what, unit string, total int64) *progress {
	p := &progress{what: what, unit: unit, total: total, now: time.Now, stop: make(chan struct{})}
	p.began = p.now()
	switch {
	case mode == "off":
		return p
	case mode == "bar" || (mode == "auto" && isTerminal(w)):
		p.bar, p.every = true, barEvery
	default:
		p.every = every
	}
	p.out = w
	p.wg.Go(func() {
		tick := time.NewTicker(p.every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case now := <-tick.C:
				p.draw(now)
			}
		}
	})
	return p
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// add counts n more units done.
func (p *progress) add(n int64) { p.done.Add(n) }

// finish stops the drawing and draws the final state once (a bar ends its
// line).
func (p *progress) finish() {
	if p.out == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.draw(p.now())
	if p.bar {
		fmt.Fprintln(p.out)
	}
}

// draw writes the state at now: the bar over the previous one, or a line.
func (p *progress) draw(now time.Time) {
	if p.bar {
		fmt.Fprintf(p.out, "\r%s\x1b[K", p.barLine(now))
		return
	}
	fmt.Fprintln(p.out, p.line(now))
}

// barWidth is the number of cells of the bar.
const barWidth = 30

// barLine is the bar: "backup [#####.....] 1234/5000 objects (24%), 812
// objects/s, 5s left".
func (p *progress) barLine(now time.Time) string {
	filled := barWidth
	if p.total > 0 {
		filled = int(min(p.done.Load(), p.total) * barWidth / p.total)
	}
	return fmt.Sprintf("%s [%s%s] %s", p.what, strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), p.status(now))
}

// line is one progress line: "backup: 1234/5000 objects (24%), 812
// objects/s, 5s left".
func (p *progress) line(now time.Time) string {
	return p.what + ": " + p.status(now)
}

// status is done/total, the rate and the time left.
func (p *progress) status(now time.Time) string {
	done := p.done.Load()
	elapsed := now.Sub(p.began)
	pct := int64(100)
	if p.total > 0 {
		pct = min(done, p.total) * 100 / p.total
	}
	s := fmt.Sprintf("%s/%s %s (%d%%)", p.amount(done), p.amount(p.total), p.unitName(), pct)
	if elapsed <= 0 || done == 0 {
		return s
	}
	rate := float64(done) / elapsed.Seconds()
	s += fmt.Sprintf(", %s %s/s", p.amount(int64(rate)), p.unitName())
	if left := p.total - done; left > 0 {
		s += fmt.Sprintf(", %v left", (time.Duration(float64(left) / rate * float64(time.Second))).Round(time.Second))
	}
	return s
}

// amount formats n units; bytes in MiB.
func (p *progress) amount(n int64) string {
	if p.unit == "bytes" {
		return fmt.Sprintf("%.1f", float64(n)/(1<<20))
	}
	return fmt.Sprint(n)
}

// unitName is the unit as shown.
func (p *progress) unitName() string {
	if p.unit == "bytes" {
		return "MiB"
	}
	return p.unit
}

package main

import (
	"context"
	"time"
)

// backoff is bounded exponential backoff with jitter, for retries of the S3
// client and the worker's subscription: the delay before retry n (1-based)
// is base*2^(n-1), capped at max, minus a random part of its half.
type backoff struct {
	base, max time.Duration
	// jitter returns a random int64 in [0, n); math/rand/v2.Int64N outside
	// tests.
	jitter func(n int64) int64
}

// delay is the jittered delay before retry n (1-based).
func (b backoff) delay(n int) time.Duration {
	d := b.base << (n - 1)
	if d > b.max || d <= 0 || n > 62 {
		d = b.max
	}
	half := int64(d / 2)
	return time.Duration(half + b.jitter(half+1))
}

// sleep waits for the delay before retry n, or until ctx is done, when it
// returns ctx's error.
func (b backoff) sleep(ctx context.Context, n int) error {
	t := time.NewTimer(b.delay(n))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

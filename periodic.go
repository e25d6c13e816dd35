package main

import (
	"context"
	"time"
)

// runEvery calls f every interval until ctx ends: the one loop of the
// background tasks that repeat (worker liveness, session revocations, the
// dashboard's samples, the API keys' last use). It returns when ctx ends;
// its caller runs it in a goroutine it waits for.
func runEvery(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

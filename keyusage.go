package main

// The last use of each API key: noted in memory on every
// authentication, to the minute, without a storage write, and written to
// the key store at most once per usageFlushEvery.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// usageFlushEvery is how often the noted uses are written to the key
// store (when any changed): at most one write a minute, whatever the
// traffic.
const usageFlushEvery = time.Minute

// keyUsage is when each API key was last used, in whole minutes since the
// epoch. The zero value is ready; it is safe for concurrent use. Noting a
// use in a minute already noted is one atomic load.
type keyUsage struct {
	// last maps a key ID to its *atomic.Int64 minute. Only keys that
	// authenticated are noted, and flushes drop deleted ones, so it holds
	// at most the key store's keys.
	last sync.Map
	// dirty is set when a minute changed since the last flush.
	dirty atomic.Bool
}

// note records a use of key id at now.
func (u *keyUsage) note(id string, now time.Time) {
	m := now.Unix() / 60
	v, ok := u.last.Load(id)
	if !ok {
		v, _ = u.last.LoadOrStore(id, new(atomic.Int64))
	}
	c := v.(*atomic.Int64)
	for {
		old := c.Load()
		if old >= m {
			return
		}
		if c.CompareAndSwap(old, m) {
			u.dirty.Store(true)
			return
		}
	}
}

// get returns the last use noted for key id.
func (u *keyUsage) get(id string) (time.Time, bool) {
	v, ok := u.last.Load(id)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(v.(*atomic.Int64).Load()*60, 0).UTC(), true
}

// withUsage returns k with its last use as this process knows it: the
// later of the stored one and the one noted since.
func (a *authenticator) withUsage(k apiKey) apiKey {
	if t, ok := a.usage.get(k.ID); ok && (k.LastUsedAt == nil || t.After(*k.LastUsedAt)) {
		k.LastUsedAt = &t
	}
	return k
}

// flushUsage writes the uses noted since the last flush to the key store.
// It reads the stored keys first and changes only their last use, so a
// flush never undoes a key created or deleted by another main worker
// sharing the store; the result becomes this process's key set.
func (a *authenticator) flushUsage(ctx context.Context) error {
	if !a.usage.dirty.Swap(false) {
		return nil
	}
	a.saveMu.Lock()
	defer a.saveMu.Unlock()
	stored, err := a.store.load(ctx)
	if err != nil {
		a.usage.dirty.Store(true)
		return fmt.Errorf("flush key usage: %w", err)
	}
	keys := stored.list()
	live := make(map[string]bool, len(keys))
	for i := range keys {
		live[keys[i].ID] = true
		keys[i] = a.withUsage(keys[i])
	}
	a.usage.last.Range(func(id, _ any) bool {
		if !live[id.(string)] {
			a.usage.last.Delete(id)
		}
		return true
	})
	set, err := newKeySet(keys)
	if err == nil {
		err = a.store.save(ctx, keys)
	}
	if err != nil {
		a.usage.dirty.Store(true)
		return fmt.Errorf("flush key usage: %w", err)
	}
	a.keys.Store(set)
	return nil
}

// runUsageFlush flushes the noted uses every usageFlushEvery until ctx
// ends, then once more, so that a clean shutdown loses no use.
func (a *authenticator) runUsageFlush(ctx context.Context, log *slog.Logger) {
	flush := func(ctx context.Context) {
		if err := a.flushUsage(ctx); err != nil {
			log.Warn("write the API keys' last use", attrErr, err)
		}
	}
	runEvery(ctx, usageFlushEvery, func() { flush(ctx) })
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	flush(fctx)
}

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// keyLocks is the one per-key lock of this process: a set of mutexes, one
// per key in use, whose waiters give up as soon as their request's context
// ends. The router serialises the writes of each entity with one, every
// worker its storage access and cache fills with another. The zero value
// is ready to use; an entry lives only while its key is held or awaited.
// It is safe for concurrent use.
type keyLocks struct {
	mu sync.Mutex // guards m and every keyLock.refs
	m  map[string]*keyLock
	// taken counts locks granted, for tests and profiles.
	taken atomic.Uint64
}

// keyLock is one key's mutex: a token in ch means held.
type keyLock struct {
	ch   chan struct{}
	refs int // holders and waiters
}

// lock waits for key's mutex or the end of ctx. The returned function
// releases it and may be called more than once.
func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	select {
	case kl.ch <- struct{}{}:
		l.taken.Add(1)
		var once sync.Once
		return func() { once.Do(func() { <-kl.ch; l.release(key, kl) }) }, nil
	case <-ctx.Done():
		l.release(key, kl)
		return nil, fmt.Errorf("lock %q: %w", key, ctx.Err())
	}
}

// release drops one reference to kl and forgets it when unused.
func (l *keyLocks) release(key string, kl *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl.refs--; kl.refs == 0 {
		delete(l.m, key)
	}
}

// len is the number of keys held or awaited.
func (l *keyLocks) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// lockObject takes the lock of a storage object for read-modify-write:
// key's in-process lock from locks, then the store's cross-process lock
// (flock on the filesystem; nothing on S3). The returned function releases
// both.
func lockObject(ctx context.Context, locks *keyLocks, st store, key string) (func(), error) {
	unlock, err := locks.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	unlockStore, err := st.Lock(ctx, key)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { unlockStore(); unlock() }, nil
}

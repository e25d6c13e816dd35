package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// check verifies the invariants of s against model, the sorted keys it
// must hold: chunks non-empty and at most chunkMax long, keys strictly
// increasing across chunk boundaries, the count right.
func (s *sortedKeys) check(t *testing.T, model []string) {
	t.Helper()
	var all []string
	for i, c := range s.chunks {
		if len(c) == 0 || len(c) > chunkMax {
			t.Fatalf("chunk %d of %d has %d keys, want 1 to %d", i, len(s.chunks), len(c), chunkMax)
		}
		all = append(all, c...)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("keys %d and %d out of order: %q, %q", i-1, i, all[i-1], all[i])
		}
	}
	if s.len() != len(all) || !slices.Equal(all, model) {
		t.Fatalf("set holds %d keys (len() = %d), want the %d of the model", len(all), s.len(), len(model))
	}
}

// modelPage is sortedKeys.page computed the obvious way over sorted keys.
func modelPage(keys []string, prefix, after string, limit int) ([]string, bool) {
	page := []string{}
	for _, k := range keys {
		if k <= after || !strings.HasPrefix(k, prefix) {
			continue
		}
		if len(page) == limit {
			return page, true
		}
		page = append(page, k)
	}
	return page, false
}

// TestSortedKeysRandom: seeded random adds and removes over a key space
// with shared prefixes, compared after every operation with a sorted
// model, and random pages compared with the model's.
func TestSortedKeysRandom(t *testing.T) {
	for seed := range uint64(3) {
		rnd := rand.New(rand.NewPCG(seed, 99))
		key := func() string {
			// Keys like "ab:0417", with a few short ones that are
			// prefixes of others.
			if rnd.IntN(20) == 0 {
				return string(rune('a' + rnd.IntN(3)))
			}
			return fmt.Sprintf("%c%c:%04d", 'a'+rnd.IntN(3), 'a'+rnd.IntN(3), rnd.IntN(150))
		}
		var s sortedKeys
		if seed == 1 {
			// Start from a scan's result rather than empty.
			var initial []string
			for i := range 3000 {
				initial = append(initial, fmt.Sprintf("b%c:%04d", 'a'+i%3, i))
			}
			slices.Sort(initial)
			s = sortedKeysOf(initial)
		}
		model := slices.Clone(s.pageAll())
		for op := range 6000 {
			k := key()
			present := rnd.IntN(100) < 55+int(seed)*10 // grow, then hold, then shrink
			if op > 4500 {
				present = rnd.IntN(100) < 20
			}
			s.set(k, present)
			i, found := slices.BinarySearch(model, k)
			switch {
			case present && !found:
				model = slices.Insert(model, i, k)
			case !present && found:
				model = slices.Delete(model, i, i+1)
			}
			s.check(t, model)
			if op%50 == 0 {
				prefix := []string{"", "a", "ab", "ab:01", "c", "zz"}[rnd.IntN(6)]
				after := []string{"", key()}[rnd.IntN(2)]
				if len(model) > 0 && rnd.IntN(3) == 0 {
					after = model[rnd.IntN(len(model))]
				}
				limit := 1 + rnd.IntN(300)
				got, more := s.page(prefix, after, limit)
				want, wantMore := modelPage(model, prefix, after, limit)
				if !slices.Equal(got, want) || more != wantMore {
					t.Fatalf("seed %d op %d: page(%q, %q, %d) = %d keys, more %v; want %d keys, more %v",
						seed, op, prefix, after, limit, len(got), more, len(want), wantMore)
				}
			}
		}
		t.Logf("seed %d: %d keys in %d chunks at the end", seed, s.len(), len(s.chunks))
	}
}

// pageAll returns every key, in order.
func (s *sortedKeys) pageAll() []string {
	keys, _ := s.page("", "", s.len())
	return keys
}

// gatedStore is a store whose List of entities waits, after signalling
// started, until release is closed: a scan caught in the middle.
type gatedStore struct {
	store
	started chan struct{}
	release chan struct{}
}

func (g *gatedStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	keys, err := g.store.List(ctx, prefix, startAfter, limit)
	close(g.started)
	<-g.release
	return keys, err
}

// TestKeyIndexWritesDuringScan: writes acknowledged while the first scan
// runs are in the index when it is ready, whether the scan saw them or not.
func TestKeyIndexWritesDuringScan(t *testing.T) {
	ctx := t.Context()
	mem := newMemStore()
	for _, k := range []string{"a", "b", "c"} {
		if err := mem.Put(ctx, entityObjectKey("db", k), nil); err != nil {
			t.Fatal(err)
		}
	}
	g := &gatedStore{store: mem, started: make(chan struct{}), release: make(chan struct{})}
	cat := newCatalog(g)
	var got []string
	var wg sync.WaitGroup
	wg.Go(func() {
		keys, _, err := cat.keys.page(ctx, "db", "", "", 100)
		if err != nil {
			t.Errorf("page() = %v", err)
			return
		}
		got = keys
	})
	<-g.started
	// The scan has read a, b, c. Now: b deleted, d created, c deleted
	// and created again, e created and deleted.
	mem.Delete(ctx, entityObjectKey("db", "b"))
	cat.wrote("db", "b", true, nil)
	mem.Put(ctx, entityObjectKey("db", "d"), nil)
	cat.wrote("db", "d", false, nil)
	cat.wrote("db", "c", true, nil)
	cat.wrote("db", "c", false, nil)
	cat.wrote("db", "e", false, nil)
	cat.wrote("db", "e", true, nil)
	close(g.release)
	wg.Wait()
	if want := []string{"a", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("keys after writes during the scan = %q, want %q", got, want)
	}
	if n, err := cat.keys.count(ctx, "db"); err != nil || n != 3 {
		t.Errorf("count() = %d, %v, want 3", n, err)
	}
	if n := cat.keys.scans.Load(); n != 1 {
		t.Errorf("%d scans, want 1", n)
	}
}

// TestCatalogWrote: acknowledged writes update the index without a scan;
// refused writes change nothing; a write of unknown outcome makes the next
// listing scan storage again.
func TestCatalogWrote(t *testing.T) {
	ctx := t.Context()
	mem := newMemStore()
	cat := newCatalog(mem)
	keys := func() []string {
		t.Helper()
		got, more, err := cat.keys.page(ctx, "db", "", "", maxListLimit)
		if err != nil || more {
			t.Fatalf("page() = %q, more %v, %v", got, more, err)
		}
		return got
	}
	if err := mem.Put(ctx, entityObjectKey("db", "k0"), nil); err != nil {
		t.Fatal(err)
	}
	if got := keys(); !slices.Equal(got, []string{"k0"}) {
		t.Fatalf("database of k0 lists %q", got)
	}
	// From here on, the writes reach only the index: what it holds
	// comes from wrote, not from a scan.
	for _, tc := range []struct {
		key     string
		deleted bool
		err     error
		want    []string
	}{
		{"k1", false, nil, []string{"k0", "k1"}},
		{"k2", false, nil, []string{"k0", "k1", "k2"}},
		{"k3", false, fmt.Errorf("entity: %w", errPrecondition), []string{"k0", "k1", "k2"}},
		{"k3", false, fmt.Errorf("document: %w", errInvalid), []string{"k0", "k1", "k2"}},
		{"k3", false, fmt.Errorf("patch: %w", errNotFound), []string{"k0", "k1", "k2"}},
		{"k1", true, fmt.Errorf("entity: %w", errPrecondition), []string{"k0", "k1", "k2"}},
		{"k2", true, nil, []string{"k0", "k1"}},
		{"k1", true, fmt.Errorf("gone already: %w", errNotFound), []string{"k0"}},
	} {
		cat.wrote("db", tc.key, tc.deleted, tc.err)
		if got := keys(); !slices.Equal(got, tc.want) {
			t.Errorf("after wrote(%q, deleted %v, %v): keys = %q, want %q", tc.key, tc.deleted, tc.err, got, tc.want)
		}
	}
	if n := cat.keys.scans.Load(); n != 1 {
		t.Errorf("%d scans after acknowledged writes, want 1", n)
	}
	// The worker may or may not have written k9 before the connection
	// dropped; it did.
	mem.Put(ctx, entityObjectKey("db", "k9"), nil)
	cat.wrote("db", "k9", false, fmt.Errorf("call worker: %w", errTransport))
	if got, want := keys(), []string{"k0", "k9"}; !slices.Equal(got, want) {
		t.Errorf("after a write of unknown outcome: keys = %q, want %q (from storage)", got, want)
	}
	if n := cat.keys.scans.Load(); n != 2 {
		t.Errorf("%d scans, want 2: one more after the unknown outcome", n)
	}
	// A database not indexed yet is scanned when first used, so a
	// write reported before (here one that never reached storage) does
	// not matter.
	cat.wrote("other", "x", false, nil)
	if n, err := cat.keys.count(ctx, "other"); err != nil || n != 0 {
		t.Errorf("count(other) = %d, %v, want 0 (what storage holds)", n, err)
	}
	// An empty database costs no memory: listing any number of names
	// that hold nothing keeps nothing.
	cat.keys.mu.Lock()
	_, kept := cat.keys.dbs["other"]
	cat.keys.mu.Unlock()
	if kept {
		t.Error("the index keeps an entry for a database without entities")
	}
}

// TestKeyIndexScanError: a failed scan is reported and not kept: the next
// use scans again.
func TestKeyIndexScanError(t *testing.T) {
	ctx := t.Context()
	fail := &failingListStore{store: newMemStore(), err: fmt.Errorf("disk on fire: %w", errUnavailable)}
	ix := newKeyIndex(fail)
	if _, err := ix.count(ctx, "db"); !errors.Is(err, errUnavailable) {
		t.Fatalf("count() with a failing store = %v, want errUnavailable", err)
	}
	fail.err = nil
	if n, err := ix.count(ctx, "db"); err != nil || n != 0 {
		t.Errorf("count() after the store recovered = %d, %v, want 0, nil", n, err)
	}
	if n := ix.scans.Load(); n != 2 {
		t.Errorf("%d scans, want 2", n)
	}
}

// failingListStore fails every List with err, if set.
type failingListStore struct {
	store
	err error
}

func (f *failingListStore) List(ctx context.Context, prefix, startAfter string, limit int) ([]string, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.store.List(ctx, prefix, startAfter, limit)
}

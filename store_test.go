package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testStore is the one conformance test of the store interface, run
// against every backend. newStore returns an empty store; the test closes
// it.
func testStore(t *testing.T, newStore func(t *testing.T) store) {
	open := func(t *testing.T) store {
		t.Helper()
		st := newStore(t)
		t.Cleanup(func() {
			if err := st.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
		return st
	}
	t.Run("GetMissing", func(t *testing.T) { testStoreGetMissing(t, open(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testStoreRoundTrip(t, open(t)) })
	t.Run("Overwrite", func(t *testing.T) { testStoreOverwrite(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testStoreDelete(t, open(t)) })
	t.Run("PutIf", func(t *testing.T) { testStorePutIf(t, open(t)) })
	t.Run("PutIfRace", func(t *testing.T) { testStorePutIfRace(t, open(t)) })
	t.Run("ListPrefixes", func(t *testing.T) { testStoreListPrefixes(t, open(t)) })
	t.Run("ListEntities", func(t *testing.T) { testStoreListEntities(t, open(t)) })
	t.Run("ListDirs", func(t *testing.T) { testStoreListDirs(t, open(t)) })
	t.Run("ConcurrentDistinct", func(t *testing.T) { testStoreConcurrentDistinct(t, open(t)) })
	t.Run("ConcurrentSameKey", func(t *testing.T) { testStoreConcurrentSameKey(t, open(t)) })
	t.Run("LockExcludes", func(t *testing.T) { testStoreLockExcludes(t, open(t)) })
	t.Run("LockCancel", func(t *testing.T) { testStoreLockCancel(t, open(t)) })
}

func testStoreGetMissing(t *testing.T, st store) {
	ctx := t.Context()
	for _, key := range []string{"templates/none.json", entityObjectKey("db", "none"), "_meta/none"} {
		if got, err := st.Get(ctx, key); !errors.Is(err, errNotFound) {
			t.Errorf("Get(%q) = %q, %v, want errNotFound", key, got, err)
		}
	}
}

func testStoreRoundTrip(t *testing.T, st store) {
	ctx := t.Context()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		key  string
		data []byte
	}{
		{"templates/chat.v1.json", []byte(`{"type":"object"}`)},
		{"_auth/keys.json", []byte{}},
		{"_meta/keycheck", []byte{0, 1, 2, 0xff}},
		{entityObjectKey("chatdb", "user:1"), big},
		{entityObjectKey("chatdb", strings.Repeat("k", maxEntityKeyLen)), []byte("long key")},
		{entityObjectKey("chatdb", "ключ ✓"), []byte("non-ASCII key")},
	} {
		if err := st.Put(ctx, tc.key, tc.data); err != nil {
			t.Fatalf("Put(%q) = %v", tc.key, err)
		}
		got, err := st.Get(ctx, tc.key)
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Errorf("Get(%q) = %d bytes, %v, want %d bytes", tc.key, len(got), err, len(tc.data))
		}
	}
}

func testStoreOverwrite(t *testing.T, st store) {
	ctx := t.Context()
	key := entityObjectKey("db", "k")
	for _, v := range []string{"first, longer value", "second", ""} {
		if err := st.Put(ctx, key, []byte(v)); err != nil {
			t.Fatalf("Put(%q, %q) = %v", key, v, err)
		}
		if got, err := st.Get(ctx, key); err != nil || string(got) != v {
			t.Errorf("Get(%q) = %q, %v, want %q", key, got, err, v)
		}
	}
}

func testStoreDelete(t *testing.T, st store) {
	ctx := t.Context()
	key := entityObjectKey("db", "gone")
	if err := st.Delete(ctx, key); !errors.Is(err, errNotFound) {
		t.Errorf("Delete(%q) of missing key = %v, want errNotFound", key, err)
	}
	if err := st.Put(ctx, key, []byte("x")); err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
	if err := st.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q) = %v", key, err)
	}
	if got, err := st.Get(ctx, key); !errors.Is(err, errNotFound) {
		t.Errorf("Get(%q) after delete = %q, %v, want errNotFound", key, got, err)
	}
	if err := st.Delete(ctx, key); !errors.Is(err, errNotFound) {
		t.Errorf("Delete(%q) twice = %v, want errNotFound", key, err)
	}
	if keys, err := st.List(ctx, entityKeyPrefix("db", ""), "", 0); err != nil || len(keys) != 0 {
		t.Errorf("List after delete = %q, %v, want none", keys, err)
	}
}

func testStoreListPrefixes(t *testing.T, st store) {
	ctx := t.Context()
	all := []string{
		"_auth/keys.json",
		"_meta/format",
		"_meta/keycheck",
		entityObjectKey("a", "x"),
		entityObjectKey("ab", "y"),
		entityObjectKey("b", "z"),
		"templates/a.v1.json",
		"templates/b.json",
	}
	for _, k := range all {
		if err := st.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
	}
	for _, tc := range []struct {
		prefix, startAfter string
		limit              int
		want               []string
	}{
		{"", "", 0, all},
		{"", "", 3, all[:3]},
		{"", all[2], 2, all[3:5]},
		{"", "_meta/f", 1, all[1:2]}, // startAfter need not be a key
		{"_meta/", "", 0, all[1:3]},
		{"_meta/k", "", 0, all[2:3]},
		{"_meta", "", 0, all[1:3]},
		{"files/", "", 0, all[3:6]},
		{"files/a", "", 0, all[3:5]},
		{"files/a/", "", 0, all[3:4]},
		{entityKeyPrefix("a", "x"), "", 0, all[3:4]},
		{entityKeyPrefix("a", "xx"), "", 0, nil},
		{"templates/", all[6], 0, all[7:]},
		{"templates/", all[7], 0, nil},
		{"nothing/", "", 0, nil},
		{"nothing", "", 0, nil},
		{"files/nodb/", "", 0, nil},
		{"templates/a.v1.json/", "", 0, nil},
	} {
		got, err := st.List(ctx, tc.prefix, tc.startAfter, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("List(%q, %q, %d) = %q, %v, want %q", tc.prefix, tc.startAfter, tc.limit, got, err, tc.want)
		}
	}
}

// testStoreListDirs: the databases are the directories under "files/"
// that hold an entity; an emptied database is not one, and entity names,
// long ones included, are never directories.
func testStoreListDirs(t *testing.T, st store) {
	ctx := t.Context()
	if got, err := st.ListDirs(ctx, entitiesPrefix); err != nil || len(got) != 0 {
		t.Errorf("ListDirs(%q) of an empty store = %q, %v, want none", entitiesPrefix, got, err)
	}
	long := strings.Repeat("L", maxEntityKeyLen)
	for _, k := range []string{
		entityObjectKey("a", "x"), entityObjectKey("a", long), entityObjectKey("ab", "y"),
		entityObjectKey("b", "z"), entityObjectKey("c.1", long),
		"templates/t.json", "_meta/m/n", "_meta/keycheck",
	} {
		if err := st.Put(ctx, k, []byte(k)); err != nil {
			t.Fatalf("Put(%q) = %v", k, err)
		}
	}
	if err := st.Delete(ctx, entityObjectKey("b", "z")); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"_meta", "files", "templates"}},
		{entitiesPrefix, []string{"a", "ab", "c.1"}},
		{entityKeyPrefix("a", ""), nil},
		{entityKeyPrefix("c.1", ""), nil},
		{entityKeyPrefix("c.1", "") + "x/", nil},
		{"_meta/", []string{"m"}},
		{"templates/", nil},
		{"nothing/", nil},
	} {
		got, err := st.ListDirs(ctx, tc.prefix)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ListDirs(%q) = %q, %v, want %q", tc.prefix, got, err, tc.want)
		}
	}
	if got, err := st.ListDirs(ctx, "files"); !errors.Is(err, errInvalid) {
		t.Errorf("ListDirs(%q) = %q, %v, want errInvalid", "files", got, err)
	}
}

// entityTestKeys returns n distinct entity keys: short, 256-byte and
// non-ASCII ones, some prefixes of others.
func entityTestKeys(n int) []string {
	rnd := rand.New(rand.NewPCG(1, 2))
	runes := []rune("abcxyz09:-_é✓ключ")
	seen := map[string]bool{}
	var keys []string
	for len(keys) < n {
		var k string
		switch len(keys) % 5 {
		case 0:
			k = fmt.Sprintf("user:%d", len(keys))
		case 1:
			k = strings.Repeat("p", 250) + fmt.Sprintf("%06d", len(keys)) // 256 bytes
		case 2:
			k = keys[len(keys)-2] + "x" // a key with another key as prefix
		default:
			var b strings.Builder
			for range 1 + rnd.IntN(20) {
				b.WriteRune(runes[rnd.IntN(len(runes))])
			}
			k = b.String()
		}
		if len(k) > maxEntityKeyLen {
			k = k[:maxEntityKeyLen-1] + "q"
		}
		if validateEntityKey(k) == nil && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	return keys
}

func testStoreListEntities(t *testing.T, st store) {
	ctx := t.Context()
	var want []string
	for _, k := range entityTestKeys(300) {
		want = append(want, entityObjectKey("db", k))
	}
	var wg sync.WaitGroup
	for w := range 8 { // durable puts are slow one at a time
		wg.Go(func() {
			for i := w; i < len(want); i += 8 {
				if err := st.Put(ctx, want[i], []byte(want[i])); err != nil {
					t.Errorf("Put(%q) = %v", want[i], err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// A neighbouring database must not show.
	if err := st.Put(ctx, entityObjectKey("db2", "user:1"), nil); err != nil {
		t.Fatalf("Put = %v", err)
	}
	slices.Sort(want)
	prefix := entityKeyPrefix("db", "")
	got, err := st.List(ctx, prefix, "", 0)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List(%q) = %d keys, %v, want %d keys\n got %q\nwant %q", prefix, len(got), err, len(want), got, want)
	}
	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := st.List(ctx, prefix, after, 7)
		if err != nil || len(page) > 7 || pages > len(want) {
			t.Fatalf("List(%q, %q, 7) = %d keys, %v", prefix, after, len(page), err)
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	if !slices.Equal(paged, want) {
		t.Errorf("paging by 7 = %d keys, want %d\n got %q\nwant %q", len(paged), len(want), paged, want)
	}
	for _, kp := range []string{"user:1", "ppp", strings.Repeat("p", 250) + "0000", "é", "ключ"} {
		var wantP []string
		for _, k := range want {
			if strings.HasPrefix(k, entityKeyPrefix("db", kp)) {
				wantP = append(wantP, k)
			}
		}
		got, err := st.List(ctx, entityKeyPrefix("db", kp), "", 0)
		if err != nil || !slices.Equal(got, wantP) {
			t.Errorf("List(prefix of %q) = %q, %v, want %q", kp, got, err, wantP)
		}
	}
}

func testStoreConcurrentDistinct(t *testing.T, st store) {
	ctx := t.Context()
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			key := entityObjectKey("db", fmt.Sprint("k", i))
			if err := st.Put(ctx, key, []byte(key)); err != nil {
				t.Errorf("Put(%q) = %v", key, err)
			}
		})
	}
	wg.Wait()
	for i := range n {
		key := entityObjectKey("db", fmt.Sprint("k", i))
		if got, err := st.Get(ctx, key); err != nil || string(got) != key {
			t.Errorf("Get(%q) = %q, %v, want %q", key, got, err, key)
		}
	}
	if keys, err := st.List(ctx, entityKeyPrefix("db", ""), "", 0); err != nil || len(keys) != n {
		t.Errorf("List = %d keys, %v, want %d", len(keys), err, n)
	}
}

func testStoreConcurrentSameKey(t *testing.T, st store) {
	ctx := t.Context()
	key := entityObjectKey("db", "hot")
	const writers = 16
	value := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 64<<10) }
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for range 4 {
				if err := st.Put(ctx, key, value(i)); err != nil {
					t.Errorf("Put(%q) = %v", key, err)
				}
				got, err := st.Get(ctx, key)
				if err != nil || len(got) != 64<<10 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
					t.Errorf("Get(%q) during writes = %d bytes, %v: torn or missing", key, len(got), err)
				}
			}
		})
	}
	wg.Wait()
	got, err := st.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get(%q) = %v", key, err)
	}
	if i := int(got[0]) - 'a'; i < 0 || i >= writers || !bytes.Equal(got, value(i)) {
		t.Errorf("Get(%q) = %d bytes starting %q: not one written value", key, len(got), got[:1])
	}
	if keys, err := st.List(ctx, "files/", "", 0); err != nil || !slices.Equal(keys, []string{key}) {
		t.Errorf("List = %q, %v, want only %q", keys, err, key)
	}
}

// testStoreLockExcludes: the lock a writer takes (lockObject: keyLocks,
// then the store's cross-process part) excludes other holders of the key.
func testStoreLockExcludes(t *testing.T, st store) {
	var locks keyLocks
	ctx := t.Context()
	key := entityObjectKey("db", "locked")
	unlock, err := lockObject(ctx, &locks, st, key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v", key, err)
	}
	// Another key is independent.
	unlockOther, err := lockObject(ctx, &locks, st, entityObjectKey("db", "other"))
	if err != nil {
		t.Fatalf("Lock(other) = %v", err)
	}
	unlockOther()
	acquired := make(chan func())
	go func() {
		u, err := lockObject(ctx, &locks, st, key)
		if err != nil {
			t.Errorf("second Lock(%q) = %v", key, err)
			close(acquired)
			return
		}
		acquired <- u
	}()
	// A Lock of the held key waits: this one, in the test's goroutine, is
	// bounded by its deadline and must end with it, not with the lock.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if u, err := lockObject(short, &locks, st, key); !errors.Is(err, context.DeadlineExceeded) {
		if u != nil {
			u()
		}
		t.Errorf("Lock(%q) while held = %v, want context.DeadlineExceeded", key, err)
	}
	cancel()
	select {
	case <-acquired:
		t.Fatalf("second Lock(%q) succeeded while held", key)
	default:
	}
	unlock()
	unlock() // idempotent
	select {
	case u := <-acquired:
		if u != nil {
			u()
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("second Lock(%q) not granted after unlock", key)
	}
	// The lock is reusable afterwards.
	u, err := lockObject(ctx, &locks, st, key)
	if err != nil {
		t.Fatalf("Lock(%q) after release = %v", key, err)
	}
	u()
}

func testStoreLockCancel(t *testing.T, st store) {
	var locks keyLocks
	key := entityObjectKey("db", "locked")
	unlock, err := lockObject(t.Context(), &locks, st, key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v", key, err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if u, err := lockObject(ctx, &locks, st, key); !errors.Is(err, context.DeadlineExceeded) {
		if u != nil {
			u()
		}
		t.Errorf("Lock(%q) while held = %v, want context.DeadlineExceeded", key, err)
	}
	if d := time.Since(start); d > scaled(2*time.Second) {
		t.Errorf("Lock(%q) returned after %v, want soon after the deadline", key, d)
	}
	cancelled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if u, err := lockObject(cancelled, &locks, st, entityObjectKey("db", "free")); err == nil {
		// Taking a free lock with a done context may succeed or fail;
		// either is fine, but a granted lock must be releasable.
		u()
	}
}

func testStorePutIf(t *testing.T, st store) {
	ctx := t.Context()
	key := entityObjectKey("db", "cas")
	if _, _, err := st.GetRev(ctx, key); !errors.Is(err, errNotFound) {
		t.Errorf("GetRev(missing) = %v, want errNotFound", err)
	}
	if _, err := st.PutIf(ctx, key, []byte("x"), "some-rev"); !errors.Is(err, errPrecondition) {
		t.Errorf("PutIf(missing, some-rev) = %v, want errPrecondition", err)
	}
	rev1, err := st.PutIf(ctx, key, []byte("v1"), "")
	if err != nil || rev1 == "" {
		t.Fatalf("PutIf(absent) = %q, %v, want a revision", rev1, err)
	}
	if _, err := st.PutIf(ctx, key, []byte("again"), ""); !errors.Is(err, errPrecondition) {
		t.Errorf("PutIf(absent) on an existing object = %v, want errPrecondition", err)
	}
	data, rev, err := st.GetRev(ctx, key)
	if err != nil || string(data) != "v1" || rev != rev1 {
		t.Errorf("GetRev = %q, %q, %v, want \"v1\", %q", data, rev, err, rev1)
	}
	rev2, err := st.PutIf(ctx, key, []byte("v2"), rev1)
	if err != nil || rev2 == "" || rev2 == rev1 {
		t.Fatalf("PutIf(rev1) = %q, %v, want a new revision", rev2, err)
	}
	if _, err := st.PutIf(ctx, key, []byte("v3"), rev1); !errors.Is(err, errPrecondition) {
		t.Errorf("PutIf(stale rev) = %v, want errPrecondition", err)
	}
	// A plain Put changes the revision too.
	if err := st.Put(ctx, key, []byte("v4")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutIf(ctx, key, []byte("v5"), rev2); !errors.Is(err, errPrecondition) {
		t.Errorf("PutIf(rev before a Put) = %v, want errPrecondition", err)
	}
	if got, err := st.Get(ctx, key); err != nil || string(got) != "v4" {
		t.Errorf("Get = %q, %v, want \"v4\" (failed PutIf writes nothing)", got, err)
	}
}

// testStorePutIfRace: writers that hold the object's lock, read the
// revision and PutIf a counter increment never lose an increment.
func testStorePutIfRace(t *testing.T, st store) {
	ctx := t.Context()
	var locks keyLocks
	key := entityObjectKey("db", "counter")
	const writers, each = 8, 5
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				unlock, err := lockObject(ctx, &locks, st, key)
				if err != nil {
					t.Errorf("Lock = %v", err)
					return
				}
				n, rev := 0, ""
				if data, r, err := st.GetRev(ctx, key); err == nil {
					fmt.Sscan(string(data), &n)
					rev = r
				} else if !errors.Is(err, errNotFound) {
					t.Errorf("GetRev = %v", err)
				}
				if _, err := st.PutIf(ctx, key, []byte(fmt.Sprint(n+1)), rev); err != nil {
					t.Errorf("PutIf under Lock = %v", err)
				}
				unlock()
			}
		})
	}
	wg.Wait()
	if got, err := st.Get(ctx, key); err != nil || string(got) != fmt.Sprint(writers*each) {
		t.Errorf("counter = %q, %v, want %d", got, err, writers*each)
	}
}

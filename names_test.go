package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateDBName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"chatdb", true},
		{"a", true},
		{"Users_2024.v1:eu-west", true},
		{strings.Repeat("d", 64), true},
		{strings.Repeat("d", 65), false},
		{"", false},
		{"_leading", false},
		{".hidden", false},
		{"-x", false},
		{"a..b", false},
		{"..", false},
		{"a/b", false},
		{"a\\b", false},
		{"a b", false},
		{"a%2e", false},
		{"ключ", false},
		{"a\x00", false},
	} {
		err := validateDBName(c.name)
		if (err == nil) != c.ok {
			t.Errorf("validateDBName(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && !errors.Is(err, errInvalid) {
			t.Errorf("validateDBName(%q) = %v, want errInvalid", c.name, err)
		}
	}
}

// TestValidateIdentNamesTheCharacter: the refusal of a database name
// names the character at fault as the client wrote it, not the first byte
// of its UTF-8 read as Latin-1 ('ü' was reported as 'Ã'), also in a name
// whose UTF-8 is longer than the limit in bytes.
func TestValidateIdentNamesTheCharacter(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"über", `character 'ü' is not allowed`},
		{"chat_ключ", `character 'к' is not allowed`},
		{strings.Repeat("я", 40), `character 'я' is not allowed`},
		{"a\xffb", `is not valid UTF-8`},
		{"a b", `character ' ' is not allowed`},
		// '.', '_', ':' and '-' are allowed but as the first character.
		{"_x", `"_x" must start with a letter or digit`},
		{"..x", `"..x" must start with a letter or digit`},
	} {
		err := validateDBName(c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("validateDBName(%q) = %v, want it to say %s", c.name, err, c.want)
		}
	}
}

func TestValidateSchemaID(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"chat.v1", true},
		{strings.Repeat("s", 128), true},
		{strings.Repeat("s", 129), false},
		{"chat..v1", false},
		{"chat/v1", false},
		{"", false},
	} {
		if err := validateSchemaID(c.id); (err == nil) != c.ok {
			t.Errorf("validateSchemaID(%q) = %v, want ok=%v", c.id, err, c.ok)
		}
	}
}

func TestValidateEntityKey(t *testing.T) {
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"session_001", true},
		{"user@example.com", true},
		{"with space", true},
		{".", true},
		{"ключ ü 日本 🙂", true},
		{strings.Repeat("k", 256), true},
		{strings.Repeat("k", 257), false},
		{strings.Repeat("é", 128), true}, // 256 bytes
		{strings.Repeat("é", 129), false},
		{"", false},
		{"..", false},
		{"a..b", false},
		{"a/b", false},
		{"a\\b", false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"\xff", false},
	} {
		err := validateEntityKey(c.key)
		if (err == nil) != c.ok {
			t.Errorf("validateEntityKey(%q) = %v, want ok=%v", c.key, err, c.ok)
		}
	}
}

// TestEntityObjectKeyOrder: the hex encoding keeps byte order and prefixes,
// which listing relies on.
func TestEntityObjectKeyOrder(t *testing.T) {
	keys := []string{"a", "a b", "a!", "ab", "b", "é", "~"}
	for i := range keys {
		for j := range keys {
			ki, kj := entityObjectKey("db", keys[i]), entityObjectKey("db", keys[j])
			if (keys[i] < keys[j]) != (ki < kj) {
				t.Errorf("order of %q, %q not kept: %q vs %q", keys[i], keys[j], ki, kj)
			}
		}
		if !strings.HasPrefix(entityObjectKey("db", keys[i]+"x"), entityKeyPrefix("db", keys[i])) {
			t.Errorf("prefix %q not kept", keys[i])
		}
	}
}

// FuzzNames: validation never panics; an accepted name never reaches a
// path with a separator, a dot-dot or a control byte; an accepted key
// round-trips through its object name.
func FuzzNames(f *testing.F) {
	for _, s := range []string{"chatdb", "..", "a/b", "%2e%2e", "a\x00", "ключ", strings.Repeat("k", 300), "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validateDBName(s) == nil || validateSchemaID(s) == nil {
			if strings.ContainsAny(s, "/\\\x00") || strings.Contains(s, "..") || len(s) > 128 {
				t.Fatalf("accepted name %q", s)
			}
		}
		if validateEntityKey(s) != nil {
			return
		}
		if !utf8.ValidString(s) || strings.ContainsAny(s, "/\\") || strings.Contains(s, "..") || len(s) > 256 {
			t.Fatalf("accepted key %q", s)
		}
		obj := entityObjectKey("db", s)
		name := strings.TrimPrefix(obj, "files/db/")
		if strings.ContainsAny(name, "/.\\") {
			t.Fatalf("object name %q of key %q has a path character", name, s)
		}
		back, err := hex.DecodeString(name)
		if err != nil || !bytes.Equal(back, []byte(s)) {
			t.Fatalf("object name %q does not decode to %q", name, s)
		}
	})
}

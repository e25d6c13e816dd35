package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxEntityKeyLen is the longest entity key in bytes (SPEC §3 Names).
const maxEntityKeyLen = 256

// validateDBName reports whether name is a database name:
// [A-Za-z0-9][A-Za-z0-9_.:-]{0,63} and no "..".
func validateDBName(name string) error {
	return validateIdent("database name", name, 64)
}

// validateSchemaID reports whether id is a schema ID: the database-name
// pattern up to 128 characters.
func validateSchemaID(id string) error {
	return validateIdent("schema id", id, 128)
}

// validateIdent checks the shared pattern of database names and schema IDs.
func validateIdent(what, s string, max int) error {
	if s == "" {
		return fmt.Errorf("%s is empty: %w", what, errInvalid)
	}
	if len(s) > max {
		return fmt.Errorf("%s longer than %d characters: %w", what, max, errInvalid)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("_.:-", rune(c))) {
			return fmt.Errorf("%s %q: character %q not allowed: %w", what, s, c, errInvalid)
		}
	}
	if strings.Contains(s, "..") {
		return fmt.Errorf("%s %q contains \"..\": %w", what, s, errInvalid)
	}
	return nil
}

// validateEntityKey reports whether key is an entity key: 1 to 256 bytes of
// valid UTF-8 without control characters, '/', '\' or "..".
func validateEntityKey(key string) error {
	if key == "" {
		return fmt.Errorf("entity key is empty: %w", errInvalid)
	}
	if len(key) > maxEntityKeyLen {
		return fmt.Errorf("entity key longer than %d bytes: %w", maxEntityKeyLen, errInvalid)
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("entity key is not valid UTF-8: %w", errInvalid)
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == '\\' {
			return fmt.Errorf("entity key %q: character %q not allowed: %w", key, r, errInvalid)
		}
	}
	if strings.Contains(key, "..") {
		return fmt.Errorf("entity key %q contains \"..\": %w", key, errInvalid)
	}
	return nil
}

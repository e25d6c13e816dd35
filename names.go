package main

import (
	"strings"
	"unicode/utf8"
)

// maxEntityKeyLen is the longest entity key in bytes (API.md "Names").
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

// validateWorkerID reports whether id can name a processing worker: the
// database-name pattern, as it names the worker's directories.
func validateWorkerID(id string) error {
	return validateIdent("worker ID", id, 64)
}

// validateIdent checks the shared pattern of database names and schema IDs.
func validateIdent(what, s string, max int) error {
	if s == "" {
		return reqErrorf(errInvalid, "%s is empty", what)
	}
	// The characters first: a name of other letters is refused for them,
	// whatever its length in bytes.
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if c == utf8.RuneError && !utf8.ValidString(s[i:]) {
			return reqErrorf(errInvalid, "%s %q is not valid UTF-8", what, s)
		}
		if !alnum && i == 0 && strings.ContainsRune("_.:-", c) {
			return reqErrorf(errInvalid, "%s %q must start with a letter or digit", what, s)
		}
		if !alnum && (i == 0 || !strings.ContainsRune("_.:-", c)) {
			return reqErrorf(errInvalid, "%s %q: character %q is not allowed", what, s, c)
		}
	}
	if len(s) > max {
		return reqErrorf(errInvalid, "%s is longer than %d characters", what, max)
	}
	if strings.Contains(s, "..") {
		return reqErrorf(errInvalid, "%s %q contains \"..\"", what, s)
	}
	return nil
}

// validateEntityKey reports whether key is an entity key: 1 to 256 bytes of
// valid UTF-8 without control characters, '/', '\' or "..".
func validateEntityKey(key string) error {
	if key == "" {
		return reqErrorf(errInvalid, "entity key is empty")
	}
	if len(key) > maxEntityKeyLen {
		return reqErrorf(errInvalid, "entity key is longer than %d bytes", maxEntityKeyLen)
	}
	if !utf8.ValidString(key) {
		return reqErrorf(errInvalid, "entity key is not valid UTF-8")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '/' || r == '\\' {
			return reqErrorf(errInvalid, "entity key %q: character %q is not allowed", key, r)
		}
	}
	if strings.Contains(key, "..") {
		return reqErrorf(errInvalid, "entity key %q contains \"..\"", key)
	}
	return nil
}

package main

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// staticFiles is the web management UI (ARCHITECTURE.md "Roles"), embedded so
// the binary serves it with no network access and no build step.
//
//go:embed static
var staticFiles embed.FS

// uiCSP forbids inline script, foreign origins and framing: the UI is plain
// files from this server and nothing else.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// handleUI serves the embedded UI at / with its security headers. Paths
// that name no file answer a JSON 404 like the rest of the API.
func handleUI(w http.ResponseWriter, r *http.Request, _ principal) error {
	name, ok := uiFile(r.URL.Path)
	if !ok {
		return reqErrorf(errNotFound, "no file or route %q", r.URL.Path)
	}
	h := w.Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, staticFiles, name)
	return nil
}

// uiFile is the embedded file that URL path p names ("/" is index.html),
// and whether there is one.
func uiFile(p string) (string, bool) {
	name := strings.TrimPrefix(p, "/")
	if name == "" {
		name = "index.html"
	}
	name = "static/" + name
	st, err := fs.Stat(staticFiles, name)
	return name, err == nil && !st.IsDir()
}

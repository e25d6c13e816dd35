package main

// The OpenAPI 3.1 document of the REST API: openapi.json at the repository
// root, embedded in the binary and served at GET /openapi.json without a
// credential. openapi_test.go keeps it and the route table in step.

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is openapi.json, byte for byte.
//
//go:embed openapi.json
var openAPIDocument []byte

// handleOpenAPI is GET /openapi.json.
func (s *restServer) handleOpenAPI(w http.ResponseWriter, r *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
	return nil
}

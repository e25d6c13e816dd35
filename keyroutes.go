package main

// The REST handlers of API key rotation and editing, beside
// the key routes of handlers.go. Both are for an admin that may use every
// database, like the rest of key management.

import (
	"log/slog"
	"net/http"
)

// handleRotateKey is POST /api/keys/{id}/rotate [{"grace": "24h"}]: a new
// secret, shown only in this answer; the old one works until the grace
// ends.
func (s *restServer) handleRotateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	var req struct {
		Grace string `json:"grace"`
	}
	if err := s.decodeOptionalBody(w, r, &req, `{"grace"?: "<duration, 0s to 168h>"} or nothing`); err != nil {
		return err
	}
	grace, err := parseGrace(req.Grace)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	k, err := s.auth.rotateKey(r.Context(), id, grace)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key rotated", attrKeyID, id, attrClient, p.clientID, slog.Duration("grace", grace))
	writeJSON(w, http.StatusOK, k)
	return nil
}

// handleEditKey is PATCH /api/keys/{id}: name, permissions, databases
// or expiry.
func (s *restServer) handleEditKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	var edit keyEdit
	if err := s.decodeBody(w, r, &edit, keyEditShape); err != nil {
		return err
	}
	id := r.PathValue("id")
	k, err := s.auth.editKey(r.Context(), id, edit)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key changed", attrKeyID, id, attrClient, p.clientID, slog.Any("permissions", k.Permissions))
	writeJSON(w, http.StatusOK, k)
	return nil
}

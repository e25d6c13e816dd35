package main

// The REST handlers of health, sessions, API keys, schemas and the admin
// routes; those of entities and databases are in entities.go and
// databases.go. Each returns an error instead of writing it (the route
// wrapper in rest.go does), and every error about the client's request
// carries its sentence (reqErrorf).

import (
	"errors"
	"log/slog"
	"net/http"
	"slices"
)

func (s *restServer) handleHealth(w http.ResponseWriter, r *http.Request, _ principal) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleLogin is POST /api/login {"key": K}.
func (s *restServer) handleLogin(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req struct {
		Key string `json:"key"`
	}
	if err := s.decodeBody(w, r, &req, `{"key": "<admin key or API key>"}`); err != nil {
		return err
	}
	if req.Key == "" {
		return reqErrorf(errInvalid, `body must be {"key": "<admin key or API key>"}`)
	}
	g, err := s.auth.login(req.Key, s.auth.clientOf(r))
	if err != nil {
		return err
	}
	notePrincipal(r.Context(), principal{clientID: g.ClientID})
	s.log.InfoContext(r.Context(), "session created", attrClient, g.ClientID)
	writeJSON(w, http.StatusOK, g)
	return nil
}

// handleLogout is POST /api/logout: it revokes the session token it is
// sent with, durably, before answering.
func (s *restServer) handleLogout(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.auth.logout(r.Context(), bearer(r)); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "session ended", attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleMe is GET /api/me: who the credential acts for. databases is
// absent for all databases and [] for none (an OIDC token whose databases
// claim is empty); subject is an OIDC token's sub.
func (s *restServer) handleMe(w http.ResponseWriter, r *http.Request, p principal) error {
	var dbs *[]string
	if p.databases != nil {
		dbs = &p.databases
	}
	writeJSON(w, http.StatusOK, struct {
		ClientID    string    `json:"client_id"`
		Name        string    `json:"name"`
		Permissions []string  `json:"permissions"`
		IsAdmin     bool      `json:"is_admin"`
		Databases   *[]string `json:"databases,omitempty"`
		Subject     string    `json:"subject,omitempty"`
	}{p.clientID, p.name, permNames(p.perms), p.has(permAdmin), dbs, p.subject})
	return nil
}

// requireAllDatabases refuses key management to a principal limited to
// some databases: keys are global, and such a principal could otherwise
// create a key without its limit.
func requireAllDatabases(p principal) error {
	if p.databases != nil {
		return reqErrorf(errForbidden, "a key limited to some databases cannot manage API keys")
	}
	return nil
}

// handleListKeys is GET /api/keys.
func (s *restServer) handleListKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.auth.listKeys())
	return nil
}

// handleCreateKey is POST /api/keys.
func (s *restServer) handleCreateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	var req keyRequest
	if err := s.decodeBody(w, r, &req, `{"name", "permissions", "expires_in"?, "databases"?}`); err != nil {
		return err
	}
	k, err := s.auth.createKey(r.Context(), req)
	if err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key created", attrKeyID, k.ID, attrClient, p.clientID, slog.Any("permissions", k.Permissions))
	w.Header().Set("Location", "/api/keys/"+k.ID)
	writeJSON(w, http.StatusCreated, k)
	return nil
}

// handleDeleteKey is DELETE /api/keys/{id}.
func (s *restServer) handleDeleteKey(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := requireAllDatabases(p); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.auth.deleteKey(r.Context(), id); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "api key deleted", attrKeyID, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *restServer) handleWorkers(w http.ResponseWriter, r *http.Request, p principal) error {
	writeJSON(w, http.StatusOK, s.workers())
	return nil
}

// jobsAvailable refuses the key-job routes on a server without key jobs
// (one built without them; the binary always runs them): 404 with its
// sentence, as a server without the OIDC sign-in answers its route.
func (s *restServer) jobsAvailable() error {
	if s.jobs == nil {
		return reqErrorf(errNotFound, "this server runs no key jobs")
	}
	return nil
}

// handleListJobs lists the key jobs of the databases p may use: a key
// limited to some databases sees none of the others' jobs, nor those of
// no database (a master-key rotation concerns them all).
func (s *restServer) handleListJobs(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	jobs, err := s.jobs.list(r.Context())
	if err != nil {
		return err
	}
	jobs = withCheckJobs(jobs, s.checks)
	jobs = slices.DeleteFunc(jobs, func(j jobView) bool { return !p.allowsDB(j.Database) })
	writeJSON(w, http.StatusOK, jobs)
	return nil
}

// handleRekey starts a rekey of the database; either way the answer is
// 202 with the job (the one already running, if any).
func (s *restServer) handleRekey(w http.ResponseWriter, r *http.Request, _ principal) error {
	db := r.PathValue("db")
	if err := validateDBName(db); err != nil {
		return err
	}
	if err := s.jobsAvailable(); err != nil {
		return err
	}
	job, _, err := s.jobs.startRekey(r.Context(), db)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, job)
	return nil
}

// handleListSchemas lists the stored schema IDs.
func (s *restServer) handleListSchemas(w http.ResponseWriter, r *http.Request, _ principal) error {
	ids, err := s.data.schemaIDs(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ids)
	return nil
}

// handleGetSchema answers a schema as stored.
func (s *restServer) handleGetSchema(w http.ResponseWriter, r *http.Request, _ principal) error {
	raw, err := s.data.schema(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(raw)
	return nil
}

// handlePutSchema stores the body as schema {id}.
func (s *restServer) handlePutSchema(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	if err := s.data.putSchema(r.Context(), p, id, body); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "schema stored", attrSchema, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleDeleteSchema is DELETE /schema/{id}: it removes the template,
// unless a database is still bound to it (409 naming them).
func (s *restServer) handleDeleteSchema(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := s.data.deleteSchema(r.Context(), p, id); err != nil {
		return err
	}
	s.log.InfoContext(r.Context(), "schema deleted", attrSchema, id, attrClient, p.clientID)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// validateAnswer is the answer of POST /schema/{id}/validate.
type validateAnswer struct {
	Valid bool `json:"valid"`
	// Error is the sentence of a 422, as every error answer has one;
	// empty (left out) when the document is valid.
	Error  string            `json:"error,omitempty"`
	Errors []validationIssue `json:"errors,omitempty"`
	// Omitted counts the violations left out of Errors (beyond
	// maxValidationMessages).
	Omitted int `json:"omitted,omitempty"`
}

// handleValidate is POST /schema/{id}/validate: it checks the body, a
// document, against schema id without storing anything: 200 {"valid":
// true}, or 422 with a sentence and the violations.
func (s *restServer) handleValidate(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if err := validateSchemaID(id); err != nil {
		return err
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	err = s.data.checkAgainst(r.Context(), id, body)
	var ve *validationError
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, validateAnswer{Valid: true})
		return nil
	case errors.As(err, &ve):
		writeJSON(w, http.StatusUnprocessableEntity, validateAnswer{Error: sentencef("the document does not match schema %q", id),
			Errors: ve.Issues, Omitted: ve.Omitted})
		return nil
	default:
		return err
	}
}

// pathDB returns the validated {db} of a route.
func pathDB(r *http.Request) (string, error) {
	db := r.PathValue("db")
	return db, validateDBName(db)
}

// decodeBody reads the request body and decodes it into v with
// decodeJSONBody.
func (s *restServer) decodeBody(w http.ResponseWriter, r *http.Request, v any, shape string) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSONBody(body, v, shape)
}

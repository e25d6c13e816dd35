// Command chat is a DeltaDatabase chat client using only the standard
// library. It appends the user's message to a chat session with a JSON
// Patch (so concurrent clients never lose each other's messages), then
// appends a reply only if the session is still the one the reply answers
// (If-Match), and prints the session.
//
//	DDB_URL=http://127.0.0.1:8080 DDB_TOKEN=<key> go run ./examples/go "hello"
//
// DDB_DB (default chatdb) and DDB_SESSION (default session_001) pick the
// session.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// client talks to one DeltaDatabase server.
type client struct {
	base, token string
}

// message is one entry of a session's "messages".
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func run() error {
	c := client{base: os.Getenv("DDB_URL"), token: os.Getenv("DDB_TOKEN")}
	if c.base == "" || c.token == "" {
		return fmt.Errorf("set DDB_URL and DDB_TOKEN")
	}
	db, session := envOr("DDB_DB", "chatdb"), envOr("DDB_SESSION", "session_001")
	text := "hello"
	if len(os.Args) > 1 {
		text = os.Args[1]
	}
	entity := "/entity/" + url.PathEscape(db) + "?key=" + url.QueryEscape(session)

	// 1. Create the session once: with If-None-Match: * a second client's
	//    create is a 412 instead of wiping the messages.
	doc := map[string]any{session: map[string]any{"title": "Chat " + session, "messages": []message{}}}
	if code, body, _, err := c.do("PUT", "/entity/"+url.PathEscape(db), "application/json", doc, "If-None-Match", "*"); err != nil {
		return err
	} else if code != 200 && code != 412 {
		return fmt.Errorf("create session: %d %s", code, body)
	}

	// 2. Append the user's message: "/messages/-" is the end of the array,
	//    and the server applies the patch atomically.
	code, body, etag, err := c.do("PATCH", entity, "application/json-patch+json", appendOp(message{"user", text}))
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("append message: %d %s", code, body)
	}

	// 3. Reply, but only to the session as we saw it: If-Match makes the
	//    write fail with 412 if someone wrote in between; then read again.
	reply := message{"assistant", "You said: " + text}
	for attempt := 0; ; attempt++ {
		code, body, newTag, err := c.do("PATCH", entity, "application/json-patch+json", appendOp(reply), "If-Match", etag)
		if err != nil {
			return err
		}
		if code == 200 {
			return printSession(session, body)
		}
		if code != 412 || attempt == 4 {
			return fmt.Errorf("append reply: %d %s", code, body)
		}
		etag = newTag // a 412 carries the current ETag
	}
}

// appendOp is a JSON Patch that appends m to the messages.
func appendOp(m message) []map[string]any {
	return []map[string]any{{"op": "add", "path": "/messages/-", "value": m}}
}

// printSession prints a session's title (its key when it has none) and
// messages.
func printSession(session string, body []byte) error {
	var s struct {
		Title    string    `json:"title"`
		Messages []message `json:"messages"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return fmt.Errorf("decode session: %w", err)
	}
	if s.Title == "" {
		s.Title = session // made elsewhere (README's quick start), untitled
	}
	fmt.Println(s.Title)
	for _, m := range s.Messages {
		fmt.Printf("  %s: %s\n", m.Role, m.Content)
	}
	return nil
}

// do sends one request with a JSON body and extra headers (name, value
// pairs) and returns the status, body and ETag.
func (c client) do(method, path, contentType string, body any, headers ...string) (int, []byte, string, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, "", err
	}
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header.Get("ETag"), err
}

// envOr is the environment variable name, or def if it is empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

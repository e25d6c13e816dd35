package main

// Browser tests of the web UI (ARCHITECTURE.md "Roles"): the real
// binary serves the embedded UI and Debian's Chromium drives it through
// chromedp. One browser per test function, one tab per flow; every flow saves
// a screenshot under its artifact dir (go test -artifacts keeps them) and
// fails on any console error or uncaught exception.

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// flowTimeout bounds one flow; a stuck wait fails the flow instead of the
// whole test binary.
const flowTimeout = 90 * time.Second

// consoleBarrier is logged by a flow at its end; once the console watcher
// has seen it, every earlier message has been seen too.
const consoleBarrier = "ddb-ui-test: console barrier"

// expected4xx matches Chrome's network log line for an HTTP error answer,
// e.g. "Failed to load resource: the server responded with a status of 401
// (Unauthorized)". The UI shows those answers to the user on purpose (a bad
// key, a refused write, the key listing a server may lack), so a 4xx logged
// by the network source is not a console error of the UI. 5xx answers and
// every message from the page's own scripts still fail the flow.
var expected4xx = regexp.MustCompile(`the server responded with a status of 4\d\d`)

// chromiumPath returns the browser to drive. Without one the test skips,
// except under CI=true where a missing browser is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found; CI=true needs it (apt-get install -y chromium)")
	}
	t.Skip("chromium not found; skipping browser tests")
	return ""
}

// newBrowser starts one headless Chromium for the calling test function
// and returns its context; tabs are child contexts of it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(bctx, scaled(10*time.Second))
		defer cancel()
		chromedp.Cancel(cctx)
		bcancel()
		acancel()
	})
	// The first Do starts the browser and binds it to bctx (no timeout).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// uiTab is one browser tab running one flow against one server. Its
// methods fail the flow's test on any error; it is used by one goroutine.
type uiTab struct {
	t    *testing.T
	ctx  context.Context // the tab, bounded by flowTimeout
	tab  context.Context // the tab without the flow's deadline
	base string          // http://127.0.0.1:port of the server

	mu       sync.Mutex
	errs     []chromedp.ConsoleMessage // console errors and exceptions
	barrier  chan struct{}             // closed when consoleBarrier is seen
	dialogs  []string                  // messages of the dialogs accepted
	shotName string
	// width and height are the tab's viewport in CSS pixels.
	width, height int64
	// foreign are URL prefixes of pages that are not the UI's (an OpenID
	// provider's sign-in pages and what they load): their console errors
	// are not the UI's errors.
	foreign []string
}

// openTab opens a tab of width x height CSS pixels on browser, watching its
// console and accepting its dialogs. At the end of the flow it saves a
// screenshot and fails the test on any console error.
func openTab(t *testing.T, browser context.Context, base string, width, height int64) *uiTab {
	t.Helper()
	tabCtx, cancelTab := chromedp.NewContext(browser)
	t.Cleanup(cancelTab)
	tb := &uiTab{t: t, tab: tabCtx, base: base, barrier: make(chan struct{}),
		shotName: strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".png", width: width, height: height}
	// Console and Events open the tab and subscribe before any navigation.
	go tb.watchConsole(chromedp.Console(tabCtx))
	go tb.acceptDialogs(chromedp.Events(tabCtx, page.JavascriptDialogOpening))
	if err := chromedp.Do(tabCtx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	ctx, cancel := context.WithTimeout(tabCtx, scaled(flowTimeout))
	t.Cleanup(cancel)
	tb.ctx = ctx
	// Without -artifacts the dir is removed by a cleanup of its own; ask
	// for it first so that removal runs after finish.
	t.ArtifactDir()
	t.Cleanup(tb.finish) // runs before the cancels above
	return tb
}

// watchConsole collects the console errors of the tab until it closes.
func (tb *uiTab) watchConsole(msgs iter.Seq2[chromedp.ConsoleMessage, error]) {
	for m, err := range msgs {
		if err != nil {
			return
		}
		tb.mu.Lock()
		switch {
		case m.Text == consoleBarrier:
			select {
			case <-tb.barrier:
			default:
				close(tb.barrier)
			}
		case m.Type == chromedp.ConsoleError && m.Source == "network" && expected4xx.MatchString(m.Text):
			// an HTTP error answer the UI handles; see expected4xx
		case slices.ContainsFunc(tb.foreign, func(p string) bool { return strings.HasPrefix(m.URL, p) }):
			// a message of a page that is not the UI's
		case m.Type == chromedp.ConsoleError || m.IsException():
			tb.errs = append(tb.errs, m)
		}
		tb.mu.Unlock()
	}
}

// acceptDialogs accepts every JavaScript dialog (the UI's confirm() before
// a delete) and records its message for the flow to check.
func (tb *uiTab) acceptDialogs(events iter.Seq2[page.EventJavascriptDialogOpening, error]) {
	for ev, err := range events {
		if err != nil {
			return
		}
		tb.mu.Lock()
		tb.dialogs = append(tb.dialogs, ev.Message)
		tb.mu.Unlock()
		// The page, and the click that opened the dialog, wait until it
		// closes; answer from another goroutine than the event reader.
		go func() {
			err := chromedp.Do(tb.tab, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				_, err := cdp.Call(ctx, t, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
				return err
			}))
			if err != nil && tb.tab.Err() == nil {
				tb.t.Errorf("accept dialog %q: %v", ev.Message, err)
			}
		}()
	}
}

// finish saves the flow's screenshot and fails on console errors.
func (tb *uiTab) finish() {
	t := tb.t
	ctx, cancel := context.WithTimeout(tb.tab, scaled(15*time.Second))
	defer cancel()
	tb.screenshot(ctx, tb.shotName, chromedp.FullScreenshot(100))
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fmt.Sprintf("console.debug(%q)", consoleBarrier))); err != nil {
		t.Errorf("console barrier: %v", err)
	}
	select {
	case <-tb.barrier:
	case <-ctx.Done():
		t.Errorf("console barrier not seen: %v", ctx.Err())
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, m := range tb.errs {
		t.Errorf("console %s at %s:%d: %s", m.Type, m.URL, m.Line, m.Text)
	}
}

// screenshot saves a PNG taken by shot (CaptureScreenshot for the
// viewport, FullScreenshot(100) for the whole page) under the test's
// artifact dir.
func (tb *uiTab) screenshot(ctx context.Context, name string, shot chromedp.Action[[]byte]) {
	t := tb.t
	png, err := chromedp.Run(ctx, shot)
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
	// DDB_UI_SHOTS=dir also keeps them under readable names in dir, for
	// a person to look at (the artifact dirs are numbered).
	if dir := os.Getenv("DDB_UI_SHOTS"); dir != "" {
		flat := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
		if !strings.HasPrefix(name, flat) {
			name = flat + "_" + name
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Errorf("save screenshot: %v", err)
		}
	}
}

// The two viewports: a laptop and a phone.
var (
	deskView  = [2]int64{1366, 900}
	phoneView = [2]int64{390, 844}
)

// shots saves a viewport screenshot of the page at the laptop and at the
// phone size, each scrolled so that the element matched by sel (if any) is
// in view, then restores the tab's own size.
func (tb *uiTab) shots(name, sel string) {
	tb.t.Helper()
	for _, v := range [][2]int64{deskView, phoneView} {
		tb.resize(v[0], v[1])
		tb.menuAtRest()
		if sel != "" {
			tb.eval(fmt.Sprintf(`document.querySelector(%q)?.scrollIntoView({block: "start"}); 1`, sel), nil)
		}
		tb.settle()
		tb.screenshot(tb.ctx, fmt.Sprintf("%s-%dx%d.png", name, v[0], v[1]), chromedp.CaptureScreenshot())
	}
	tb.resize(tb.width, tb.height)
}

// resize sets the tab's viewport and waits until the page has laid out
// at that size.
func (tb *uiTab) resize(w, h int64) {
	tb.t.Helper()
	tb.do("resize", chromedp.EmulateViewport(w, h))
	tb.waitFor(fmt.Sprintf("a %dx%d layout", w, h), fmt.Sprintf(`innerWidth === %d && innerHeight === %d`, w, h))
	tb.settle()
}

// settle waits for two animation frames, so that what the page changed
// has been painted.
func (tb *uiTab) settle() {
	tb.t.Helper()
	tb.eval(`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(1))))`, nil)
}

// do runs actions on the tab and fails the flow on the first error.
func (tb *uiTab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression and decodes its value into v.
func (tb *uiTab) eval(expr string, v any) {
	tb.t.Helper()
	raw, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			tb.t.Fatalf("evaluate %s: decode %s: %v", expr, raw, err)
		}
	}
}

// waitFor polls the JavaScript expression until it is truthy. It is done
// in Go: chromedp.Poll compiles its predicate with new Function, which the
// UI's CSP (no 'unsafe-eval') rightly refuses.
func (tb *uiTab) waitFor(what, expr string) {
	tb.t.Helper()
	for {
		ok, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && ok {
			return
		}
		select {
		case <-tb.ctx.Done():
			tb.t.Fatalf("waiting for %s (%s): %v (last error: %v)", what, expr, tb.ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// text returns the textContent of the element with id.
func (tb *uiTab) text(id string) string {
	tb.t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.TextContent(chromedp.ID(id)))
	if err != nil {
		tb.t.Fatalf("text of #%s: %v", id, err)
	}
	return s
}

// waitText waits until the element with id is shown and its text
// contains want, and returns the text.
func (tb *uiTab) waitText(id, want string) string {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("#%s to show %q", id, want), fmt.Sprintf(
		`(e => e && !e.hidden && e.offsetParent !== null && e.textContent.includes(%q))(document.getElementById(%q))`, want, id))
	return tb.text(id)
}

// typeInto replaces the value of the input with id by s, typed as keys
// so the page sees real input events. (chromedp.Clear resets only the
// value attribute, not what was typed before, and SetValue refuses "".)
func (tb *uiTab) typeInto(id, s string) {
	tb.t.Helper()
	tb.do("type into #"+id,
		chromedp.WaitVisible(chromedp.ID(id)),
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById(%q).value = ""`, id)),
		chromedp.SendKeys(chromedp.ID(id), s))
}

// click clicks the visible element matched by the CSS selector.
func (tb *uiTab) click(sel string) {
	tb.t.Helper()
	tb.do("click "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// dialogSeen returns the messages of the dialogs accepted so far.
func (tb *uiTab) dialogSeen() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.dialogs...)
}

// login opens the UI and logs in with key through the login form.
func (tb *uiTab) login(key string) {
	tb.t.Helper()
	tb.do("open UI", chromedp.Navigate(tb.base+"/#/login"))
	tb.waitFor("login form", `!document.getElementById("login-view").hidden`)
	tb.typeInto("login-key", key)
	tb.click("#login-submit")
	tb.waitFor("the dashboard after login",
		`!document.getElementById("app-view").hidden && location.hash === "#/dashboard" && document.getElementById("page-title")?.textContent === "Dashboard"`)
}

// drawnMarks numbers the marks of redrawn, so that no wait sees another's.
var drawnMarks atomic.Int64

// redrawn runs action, which makes the page draw anew what the CSS
// selector sel matches now, and returns once it has: every element sel
// matches before the action is marked, and the wait is for none of them
// left in the page. Without it a wait for what the new drawing shows can
// be met by the old one still in place (a page title that reads the same,
// a count updated before its list), and the next click finds a node that
// the new drawing then removes ("Could not find node with given id").
// Something must match sel: a mark on nothing would wait for nothing.
func (tb *uiTab) redrawn(what, sel string, action func()) {
	tb.t.Helper()
	mark := strconv.FormatInt(drawnMarks.Add(1), 10)
	var n int
	tb.eval(fmt.Sprintf(`(l => { for (const e of l) e.dataset.drawnBefore = %q; return l.length })(document.querySelectorAll(%q))`, mark, sel), &n)
	if n == 0 {
		tb.t.Fatalf("%s: nothing on the page matches %s to see it drawn anew", what, sel)
	}
	action()
	tb.waitFor(what+" drawn anew", fmt.Sprintf(`!document.querySelector('[data-drawn-before=%q]')`, mark))
}

// goTo follows the sidebar link to page name and waits for the page
// drawn anew with its title. A link to the hash shown does nothing (no
// hashchange); any other draws the page anew, also when its title is
// the one shown (the Databases page with a database open).
func (tb *uiTab) goTo(name, title string) {
	tb.t.Helper()
	link := "#nav-" + name
	var redraws bool
	tb.eval(fmt.Sprintf(`!!document.getElementById("page-title") && document.querySelector(%q)?.getAttribute("href") !== location.hash`, link), &redraws)
	if redraws {
		tb.redrawn("page "+title, "#page-title", func() { tb.click(link) })
	} else {
		tb.click(link)
	}
	tb.waitFor("page "+title, fmt.Sprintf(`document.getElementById("page-title")?.textContent === %q`, title))
	tb.menuAtRest()
}

// menuAtRest waits until the narrow-screen menu has slid out after a
// navigation: until then it covers the page and takes the clicks meant
// for what lies under it.
func (tb *uiTab) menuAtRest() {
	tb.t.Helper()
	tb.waitFor("the menu at rest", `(s => innerWidth > 800 || s.classList.contains("open") || getComputedStyle(s).visibility === "hidden")(document.getElementById("sidebar"))`)
}

// restError returns the {"error"} text of a JSON error body.
func restError(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("error body %s: want {\"error\": ...}", body)
	}
	return e.Error
}

// TestUIHeaders checks the security headers of the UI responses with a
// plain HTTP client: a CSP without inline script, nosniff, no framing.
func TestUIHeaders(t *testing.T) {
	n, _ := startDefault(t)
	for _, tc := range []struct{ path, ctype string }{
		{"/", "text/html"},
		{"/js/app.js", "text/javascript"},
		{"/app.css", "text/css"},
		{"/favicon.svg", "image/svg+xml"},
	} {
		code, _, h := httpCall(t, "GET", n.base+tc.path, "", nil)
		if code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", tc.path, code)
			continue
		}
		if got := h.Get("Content-Type"); !strings.HasPrefix(got, tc.ctype) {
			t.Errorf("GET %s: Content-Type = %q, want %s", tc.path, got, tc.ctype)
		}
		if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q, want nosniff", tc.path, got)
		}
		csp := cspDirectives(h.Get("Content-Security-Policy"))
		script, ok := csp["script-src"]
		if !ok {
			script = csp["default-src"]
		}
		if len(script) == 0 {
			t.Errorf("GET %s: CSP %q has no script-src or default-src", tc.path, h.Get("Content-Security-Policy"))
		}
		for _, src := range script {
			if src == "'unsafe-inline'" || src == "'unsafe-eval'" || src == "*" || strings.HasPrefix(src, "http") {
				t.Errorf("GET %s: CSP script sources %q allow %s", tc.path, script, src)
			}
		}
		if got := strings.Join(csp["frame-ancestors"], " "); got != "'none'" {
			t.Errorf("GET %s: CSP frame-ancestors = %q, want 'none'", tc.path, got)
		}
	}
}

// cspDirectives splits a Content-Security-Policy into directive -> sources.
func cspDirectives(policy string) map[string][]string {
	out := map[string][]string{}
	for _, d := range strings.Split(policy, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			out[strings.ToLower(f[0])] = f[1:]
		}
	}
	return out
}

// TestUI runs the flows in one Chromium against one server.
func TestUI(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	wide := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, 1280, 900) }

	t.Run("BadKey", func(t *testing.T) {
		tb := wide(t)
		const bad = "not-a-valid-key"
		code, body, _ := httpCall(t, "POST", n.base+"/api/login", "", map[string]string{"key": bad})
		if code != http.StatusUnauthorized {
			t.Errorf("POST /api/login with a bad key = %d, want 401", code)
		}
		want := restError(t, body)
		tb.do("open UI", chromedp.Navigate(n.base+"/"))
		tb.waitFor("login form", `!document.getElementById("login-view").hidden`)
		tb.typeInto("login-key", bad)
		tb.click("#login-submit")
		if got := tb.waitText("login-error", want); got != want {
			t.Errorf("#login-error = %q, want the server's %q", got, want)
		}
		var state struct {
			AppHidden bool `json:"appHidden"`
			Stored    int  `json:"stored"`
		}
		tb.eval(`({appHidden: document.getElementById("app-view").hidden, stored: sessionStorage.length + localStorage.length})`, &state)
		if !state.AppHidden || state.Stored != 0 {
			t.Errorf("after a bad key: app hidden %v, %d items in storage; want hidden and none", state.AppHidden, state.Stored)
		}
	})

	t.Run("AdminDashboard", func(t *testing.T) {
		tb := wide(t)
		tb.login(testAdminKey)
		tb.waitText("dash-health", "ok")
		tb.waitFor("one worker", `document.getElementById("dash-workers-total").textContent === "1"`)
		tb.waitFor("worker status list", `document.querySelectorAll("#dash-workers-by-status li").length === 1`)
		for _, id := range []string{"dash-databases", "dash-cache-hits", "dash-cache-misses", "dash-cache-evictions"} {
			tb.waitFor("#"+id+" to be a number", fmt.Sprintf(`/^\d+$/.test(document.getElementById(%q).textContent)`, id))
		}
		var st struct {
			NavKeys  bool   `json:"navKeys"`
			Menu     bool   `json:"menu"`
			Storage  string `json:"storage"`
			Whoami   string `json:"whoami"`
			Favicon  bool   `json:"favicon"`
			SkipLink bool   `json:"skipLink"`
		}
		tb.eval(`({
			navKeys: document.getElementById("nav-keys").offsetParent !== null,
			menu: document.getElementById("menu-button").offsetParent !== null,
			storage: JSON.stringify({...sessionStorage}) + JSON.stringify({...localStorage}),
			whoami: document.getElementById("whoami").textContent,
			favicon: !!document.querySelector('link[rel="icon"]'),
			skipLink: !!document.getElementById("skip-link"),
		})`, &st)
		if !st.NavKeys {
			t.Error("API Keys link hidden for the admin")
		}
		if st.Menu {
			t.Error("menu button shown on a wide screen")
		}
		if strings.Contains(st.Storage, testAdminKey) {
			t.Errorf("the raw admin key is in browser storage: %s", st.Storage)
		}
		if !strings.Contains(st.Whoami, "admin") {
			t.Errorf("#whoami = %q, want it to name the admin", st.Whoami)
		}
		if !st.Favicon || !st.SkipLink {
			t.Errorf("favicon link %v, skip link %v; want both", st.Favicon, st.SkipLink)
		}
	})

	t.Run("SessionExpired", func(t *testing.T) {
		tb := wide(t)
		tb.login(testAdminKey)
		// A token the server no longer knows: the next call gets 401.
		tb.eval(`sessionStorage.setItem("deltadb.session", "expired-token"); 1`, nil)
		tb.goTo("databases", "Databases")
		tb.waitText("login-notice", "Session expired")
		var st struct {
			AppHidden bool `json:"appHidden"`
			Stored    int  `json:"stored"`
		}
		tb.eval(`({appHidden: document.getElementById("app-view").hidden, stored: sessionStorage.length})`, &st)
		if !st.AppHidden || st.Stored != 0 {
			t.Errorf("after a 401: app hidden %v, %d items in sessionStorage; want hidden and none", st.AppHidden, st.Stored)
		}
		// Logging in again returns to the page the 401 interrupted.
		tb.typeInto("login-key", testAdminKey)
		tb.click("#login-submit")
		tb.waitFor("back on Databases", `location.hash === "#/databases" && document.getElementById("page-title")?.textContent === "Databases"`)
	})

	t.Run("WorkersAndExplorer", func(t *testing.T) {
		tb := wide(t)
		tb.login(testAdminKey)
		tb.goTo("workers", "Workers")
		tb.waitFor("one worker row", `document.querySelectorAll("#workers-table tr[data-worker]").length === 1`)
		tb.goTo("explorer", "Explorer")
		tb.click(`button[data-testid="ex-quick"][data-path="/api/me"]`)
		tb.waitText("ex-status", "200 OK")
		var me struct {
			IsAdmin bool `json:"is_admin"`
		}
		if err := json.Unmarshal([]byte(tb.text("ex-response")), &me); err != nil || !me.IsAdmin {
			t.Errorf("explorer GET /api/me body = %q (%v), want is_admin true", tb.text("ex-response"), err)
		}
		if h := tb.text("ex-headers"); !strings.Contains(h, "content-type: application/json") {
			t.Errorf("explorer headers = %q, want content-type: application/json", h)
		}
	})

	t.Run("SchemaExport", func(t *testing.T) {
		tb := wide(t)
		tb.login(testAdminKey)
		tb.goTo("schemas", "Schemas")
		const id = "ui.order.v1"
		tb.click("#schema-new")

		// A document the server refuses is reported inline with its message.
		tb.typeInto("schema-id", "ui.bad.v1")
		tb.do("set schema text", chromedp.SetValue(chromedp.ID("schema-text"), `{"type": 5}`))
		code, body, _ := httpCall(t, "PUT", n.base+"/schema/ui.bad.v1", testAdminKey, `{"type": 5}`)
		if code != http.StatusBadRequest {
			t.Fatalf("PUT /schema/ui.bad.v1 {\"type\": 5} = %d, want 400", code)
		}
		tb.click("#schema-save")
		tb.waitText("schema-message", restError(t, body))

		schema := `{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "required": ["id", "customer"],
  "properties": {
    "id": {"type": "string"},
    "status": {"enum": ["open", "paid"]},
    "customer": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "email": {"type": "string"}}},
    "lines": {"type": "array", "items": {"$ref": "#/definitions/line"}}
  },
  "definitions": {"line": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}
}`
		tb.typeInto("schema-id", id)
		tb.do("set schema text", chromedp.SetValue(chromedp.ID("schema-text"), schema))
		tb.click("#schema-save")
		tb.waitText("schema-message", "Saved "+id)
		tb.waitFor("schema in the list", fmt.Sprintf(`document.querySelector('#schema-list button[data-schema=%q]')`, id))
		code, got, _ := httpCall(t, "GET", n.base+"/schema/"+id, "", nil)
		if code != http.StatusOK || !jsonEqual(got, []byte(schema)) {
			t.Errorf("GET /schema/%s = %d %s, want the schema saved", id, code, got)
		}

		tb.click("#schema-export-ts")
		tb.waitFor("TypeScript export", `document.getElementById("schema-export").dataset.lang === "TypeScript"`)
		checkLines(t, "TypeScript", tb.text("schema-export"),
			"export interface UiOrderV1Customer {", "name: string;", "email?: string;",
			"export interface Line {", "sku: string;", "qty?: number;",
			"export interface UiOrderV1 {", "id: string;", `status?: "open" | "paid";`,
			"customer: UiOrderV1Customer;", "lines?: Line[];")

		tb.click("#schema-export-pydantic")
		tb.waitFor("Pydantic export", `document.getElementById("schema-export").dataset.lang === "Pydantic"`)
		checkLines(t, "Pydantic", tb.text("schema-export"),
			"from pydantic import BaseModel",
			"class UiOrderV1Customer(BaseModel):", "name: str", "email: Optional[str] = None",
			"class Line(BaseModel):", "sku: str", "qty: Optional[int] = None",
			"class UiOrderV1(BaseModel):", "id: str", `status: Optional[Literal["open", "paid"]] = None`,
			"customer: UiOrderV1Customer", "lines: Optional[List[Line]] = None")
	})

	t.Run("EntityBrowseEditDelete", func(t *testing.T) {
		tb := wide(t)
		const db, key = "uibrowse", "doc_1"
		if code, body, _ := httpCall(t, "PUT", n.base+"/entity/"+db, testAdminKey, map[string]any{key: map[string]any{"n": 1}}); code != http.StatusOK {
			t.Fatalf("PUT /entity/%s = %d %s", db, code, body)
		}
		tb.login(testAdminKey)
		tb.goTo("databases", "Databases")
		tb.click(fmt.Sprintf(`#db-cards button[data-db=%q]`, db))
		// This server lists keys, so the key list must show the entity (the
		// key box is the UI's fallback for servers without a listing).
		item := fmt.Sprintf(`#db-keys button[data-key=%q]`, key)
		tb.waitFor("key list or key box", fmt.Sprintf(
			`document.querySelector('%s') || document.getElementById("db-keys").hidden`, item))
		var listed bool
		tb.eval(fmt.Sprintf(`!!document.querySelector('%s')`, item), &listed)
		if listed {
			tb.click(item)
		} else {
			t.Errorf("the Databases page shows no key list for %s (GET /api/databases/%s/keys works): fell back to the key box", db, db)
			tb.typeInto("db-key-input", key)
			tb.click("#db-key-open")
		}
		tb.waitFor("entity in the editor", `(e => !e.disabled && JSON.parse(e.value || "null")?.n === 1)(document.getElementById("entity-editor"))`)
		tb.waitText("entity-title", db+" / "+key)

		// Invalid JSON never leaves the browser.
		tb.do("edit", chromedp.SetValue(chromedp.ID("entity-editor"), `{"n": 2,`))
		tb.click("#entity-save")
		tb.waitText("entity-message", "Invalid JSON")

		tb.do("edit", chromedp.SetValue(chromedp.ID("entity-editor"), `{"n": 2, "tags": ["x"]}`))
		tb.click("#entity-save")
		tb.waitText("entity-message", "Saved.")
		code, got, _ := httpCall(t, "GET", n.base+"/entity/"+db+"?key="+key, testAdminKey, nil)
		if want := `{"n": 2, "tags": ["x"]}`; code != http.StatusOK || !jsonEqual(got, []byte(want)) {
			t.Errorf("GET after save = %d %s, want 200 %s", code, got, want)
		}

		tb.click("#entity-delete")
		tb.waitText("entity-message", "Deleted "+key)
		// The database keeps no versions: the delete is for good, and the
		// confirmation says so.
		if d := tb.dialogSeen(); len(d) != 1 || !strings.Contains(d[0], key) || !strings.HasSuffix(d[0], "This cannot be undone.") {
			t.Errorf("confirm dialogs = %q, want one naming %s that says it cannot be undone", d, key)
		}
		if code, body, _ := httpCall(t, "GET", n.base+"/entity/"+db+"?key="+key, testAdminKey, nil); code != http.StatusNotFound {
			t.Errorf("GET after delete = %d %s, want 404", code, body)
		}
	})

	t.Run("ReadOnlyKey", func(t *testing.T) {
		tb := wide(t)
		tb.login(testAdminKey)
		tb.goTo("keys", "API Keys")
		tb.click("#key-new")
		tb.typeInto("key-name", "ui-readonly")
		var perms []bool
		tb.eval(`["read", "write", "admin"].map(p => document.getElementById("key-perm-" + p).checked)`, &perms)
		if fmt.Sprint(perms) != "[true false false]" {
			t.Fatalf("default permissions read/write/admin = %v, want only read", perms)
		}
		tb.click("#key-create")
		tb.waitFor("the new secret", `!document.getElementById("key-secret-box").hidden && document.getElementById("key-secret").textContent !== ""`)
		secret := tb.text("key-secret")
		if !strings.HasPrefix(secret, "dk_") {
			t.Fatalf("secret shown = %q, want dk_...", secret)
		}
		tb.waitFor("the key in the table", `[...document.querySelectorAll("#keys-table tr[data-key-name]")].some(r => r.dataset.keyName === "ui-readonly")`)
		tb.screenshot(tb.ctx, "secret-shown.png", chromedp.CaptureScreenshot())
		tb.click("#key-secret-done")
		tb.waitFor("the dialog closed", `!document.getElementById("key-dialog").open`)

		var token string
		tb.eval(`(v => v ? JSON.parse(v).token : "")(sessionStorage.getItem("deltadb.session"))`, &token)
		tb.click("#logout")
		tb.waitFor("login page after logout", `!document.getElementById("login-view").hidden && document.getElementById("app-view").hidden && sessionStorage.length === 0`)
		// Logout ends the session at the server, not only in the tab.
		if code, body, _ := httpCall(t, "GET", n.base+"/api/me", token, nil); token == "" || code != http.StatusUnauthorized {
			t.Errorf("GET /api/me with the token %q after UI logout = %d %s, want 401", token, code, body)
		}

		tb.login(secret)
		var navKeysHidden bool
		tb.eval(`document.getElementById("nav-keys-item").hidden && document.getElementById("nav-keys").offsetParent === null`, &navKeysHidden)
		if !navKeysHidden {
			t.Error("API Keys link shown to a read-only key")
		}
		tb.do("open the keys page by URL", chromedp.Navigate(n.base+"/#/keys"))
		tb.waitText("page-denied", "Managing API keys is for administrators")

		const db = "uireadonly"
		code, body, _ := httpCall(t, "PUT", n.base+"/entity/"+db, secret, map[string]any{"k": map[string]any{"a": 1}})
		if code != http.StatusForbidden {
			t.Fatalf("PUT with a read-only key = %d %s, want 403", code, body)
		}
		// The UI does not offer the write the server would refuse (issue
		// 14): Put and Delete are disabled and the page says why.
		tb.goTo("entities", "Entities")
		var put struct {
			Put, Del bool
			Note     string
		}
		tb.eval(`({Put: document.getElementById("ent-put").disabled, Del: document.getElementById("ent-delete").disabled,
			Note: document.getElementById("ent-write-denied").textContent})`, &put)
		if !put.Put || !put.Del || !strings.Contains(put.Note, "write permission") {
			t.Errorf("read-only key on Entities: Put disabled %v, Delete disabled %v, note %q; want both disabled and the reason", put.Put, put.Del, put.Note)
		}

		// A refusal the UI cannot foresee still shows the server's
		// sentence: a write key limited to other databases.
		code, body, _ = httpCall(t, "POST", n.base+"/api/keys", testAdminKey,
			map[string]any{"name": "ui-limited", "permissions": []string{"read", "write"}, "databases": []string{"other"}})
		var limited struct{ Secret string }
		if err := json.Unmarshal(body, &limited); code/100 != 2 || err != nil || limited.Secret == "" {
			t.Fatalf("POST /api/keys (limited) = %d %s", code, body)
		}
		code, body, _ = httpCall(t, "PUT", n.base+"/entity/"+db, limited.Secret, map[string]any{"k": map[string]any{"a": 1}})
		if code != http.StatusForbidden {
			t.Fatalf("PUT outside the key's databases = %d %s, want 403", code, body)
		}
		want := restError(t, body)
		tb.click("#logout")
		tb.waitFor("login page after logout", `!document.getElementById("login-view").hidden`)
		tb.login(limited.Secret)
		tb.goTo("entities", "Entities")
		tb.typeInto("ent-db-new", db)
		tb.typeInto("ent-key", "k")
		tb.do("document", chromedp.SetValue(chromedp.ID("ent-doc"), `{"a": 1}`))
		tb.click("#ent-put")
		if got := tb.waitText("ent-message", want); got != want {
			t.Errorf("#ent-message = %q, want the server's %q", got, want)
		}
	})

	t.Run("NarrowMenu", func(t *testing.T) {
		tb := openTab(t, browser, n.base, 600, 800)
		tb.login(testAdminKey)
		var closed struct {
			Menu    bool `json:"menu"`
			Sidebar bool `json:"sidebar"`
		}
		tb.eval(`({menu: document.getElementById("menu-button").offsetParent !== null,
			sidebar: getComputedStyle(document.getElementById("sidebar")).visibility === "visible"})`, &closed)
		if !closed.Menu || closed.Sidebar {
			t.Fatalf("narrow screen: menu button shown %v, sidebar visible %v; want shown, hidden", closed.Menu, closed.Sidebar)
		}
		tb.click("#menu-button")
		tb.waitFor("sidebar overlay open", `(s => s.classList.contains("open") && getComputedStyle(s).visibility === "visible" &&
			s.getBoundingClientRect().left === 0 && getComputedStyle(s).position === "fixed")(document.getElementById("sidebar"))`)
		var open struct {
			Expanded string `json:"expanded"`
			Backdrop bool   `json:"backdrop"`
			Focus    string `json:"focus"`
		}
		tb.eval(`({expanded: document.getElementById("menu-button").getAttribute("aria-expanded"),
			backdrop: !document.getElementById("backdrop").hidden,
			focus: document.activeElement.id})`, &open)
		if open.Expanded != "true" || !open.Backdrop || open.Focus != "nav-dashboard" {
			t.Errorf("menu open: aria-expanded %q, backdrop %v, focus #%s; want true, shown, #nav-dashboard", open.Expanded, open.Backdrop, open.Focus)
		}
		tb.screenshot(tb.ctx, "menu-open.png", chromedp.CaptureScreenshot())
		tb.goTo("workers", "Workers")
		tb.waitFor("menu closed after navigating", `!document.getElementById("sidebar").classList.contains("open") && document.getElementById("backdrop").hidden`)
	})

	t.Run("CodegenUnitTests", func(t *testing.T) {
		tb := wide(t)
		results := tb.runJSTests("/js/codegen_test.js", "runCodegenTests")
		if len(results) == 0 {
			t.Fatal("runCodegenTests() returned no cases")
		}
		for _, r := range results {
			if !r.Pass {
				t.Errorf("%s: got\n%s\nwant lines in order\n%s", r.Name, r.Got, r.Want)
			}
		}
		t.Logf("%d codegen cases passed", len(results))
	})
}

// jsCase is one case of an in-browser JS unit suite.
type jsCase struct {
	Name string `json:"name"`
	Pass bool   `json:"pass"`
	Got  string `json:"got"`
	Want string `json:"want"`
}

// runJSTests opens the UI and runs the exported function fn of the
// static module at path, which resolves to its cases.
func (tb *uiTab) runJSTests(path, fn string) []jsCase {
	tb.t.Helper()
	tb.do("open UI", chromedp.Navigate(tb.base+"/"))
	var results []jsCase
	tb.eval(fmt.Sprintf(`import(%q).then(m => m.%s())`, path, fn), &results)
	return results
}

// requireJSSuite runs the JS unit suite fn of the module at path and
// fails on every case that does not pass, or when it ran fewer than min
// cases.
func (tb *uiTab) requireJSSuite(path, fn string, min int) {
	tb.t.Helper()
	results := tb.runJSTests(path, fn)
	if len(results) < min {
		tb.t.Fatalf("%s() returned %d cases, want at least %d", fn, len(results), min)
	}
	for _, r := range results {
		if !r.Pass {
			tb.t.Errorf("%s: got %s, want %s", r.Name, r.Got, r.Want)
		}
	}
}

// checkLines fails unless every wanted line appears, trimmed, in text in
// order.
func checkLines(t *testing.T, what, text string, want ...string) {
	t.Helper()
	lines := strings.Split(text, "\n")
	at := 0
	for _, w := range want {
		found := false
		for ; at < len(lines); at++ {
			if strings.TrimSpace(lines[at]) == w {
				found = true
				at++
				break
			}
		}
		if !found {
			t.Errorf("%s export lacks %q (in order); got:\n%s", what, w, text)
			return
		}
	}
}

// uiSeed is a server the data-page flows prepare through the REST API.
type uiSeed struct {
	t    *testing.T
	base string
}

// call sends one admin request and fails unless it answers wantCode (any
// 2xx when wantCode is 0).
func (s uiSeed) call(method, path string, body any, wantCode int) []byte {
	s.t.Helper()
	code, out, _ := httpCall(s.t, method, s.base+path, testAdminKey, body)
	if code != wantCode && (wantCode != 0 || code/100 != 2) {
		s.t.Fatalf("%s %s = %d %s, want %d", method, path, code, out, wantCode)
	}
	return out
}

// entity returns the stored document of db/key, or nil when there is none.
func (s uiSeed) entity(db, key string) []byte {
	s.t.Helper()
	code, out, _ := httpCall(s.t, "GET", s.base+"/entity/"+db+"?key="+key, testAdminKey, nil)
	switch code {
	case http.StatusOK:
		return out
	case http.StatusNotFound:
		return nil
	}
	s.t.Fatalf("GET /entity/%s?key=%s = %d %s", db, key, code, out)
	return nil
}

// openMenu opens the narrow-screen menu and waits until it has slid in
// (a click during the slide would miss its links).
func (tb *uiTab) openMenu() {
	tb.t.Helper()
	tb.click("#menu-button")
	tb.waitFor("menu open", `(s => s.classList.contains("open") && s.getBoundingClientRect().left === 0)(document.getElementById("sidebar"))`)
}

// openDB opens the Databases page and the card of db.
func (tb *uiTab) openDB(db string) {
	tb.t.Helper()
	tb.goTo("databases", "Databases")
	tb.openCard(db)
}

// openCard opens the card of db on the Databases page once every card has
// its count: the page's requests are done, and with them its reopening of
// the database last open in this tab, which would otherwise draw the
// detail again after the click. The detail the click draws is waited for
// as drawn anew, since the one shown may already be db's. A tap the page
// did not act on within 15 s (scaled: a loaded machine has been seen to
// lose one while the menu slid away) is repeated once.
func (tb *uiTab) openCard(db string) {
	tb.t.Helper()
	card := fmt.Sprintf(`#db-cards button[data-db=%q]`, db)
	tb.waitFor("the cards with their counts", fmt.Sprintf(`document.querySelector('%s') && [...document.querySelectorAll("#db-cards button[data-db]")].every(b => b.dataset.entities)`, card))
	opened := fmt.Sprintf(`document.getElementById("db-detail-title")?.textContent === %q && !document.querySelector("#db-detail-title[data-drawn-before]")`, db)
	tap := func() {
		tb.click(card)
		w := newWait(tb.t, "the detail of "+db, 15*time.Second)
		for !w.over() {
			var ok bool
			tb.eval("!!("+opened+")", &ok)
			if ok {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		tb.t.Logf("%v; tapping the card again", w)
		tb.click(card)
	}
	var shown bool
	tb.eval(`!!document.getElementById("db-detail-title")`, &shown)
	if shown {
		tb.redrawn("the detail of "+db, "#db-detail-title", tap)
	} else {
		tap()
	}
	tb.waitFor("the detail of "+db, opened)
}

// listedKeys returns the keys the Databases page lists, in order.
func (tb *uiTab) listedKeys() []string {
	tb.t.Helper()
	var keys []string
	tb.eval(`[...document.querySelectorAll("#db-keys button[data-key]")].map(b => b.dataset.key)`, &keys)
	return keys
}

// openEntity clicks key in the list and waits until the editor holds it.
func (tb *uiTab) openEntity(key string) {
	tb.t.Helper()
	tb.click(fmt.Sprintf(`#db-keys button[data-key=%q]`, key))
	tb.waitFor("entity "+key+" loaded", fmt.Sprintf(`(e => !e.disabled && e.value !== "" &&
		document.getElementById("entity-title").textContent.endsWith(" / " + %q))(document.getElementById("entity-editor"))`, key))
}

// setEditor replaces the editor's text as typing would (an input event),
// then lets the editor draw it: it redraws its marks, line numbers and
// tree on the next animation frame, which moves what lies below it (on a
// phone, Save moved 45 px), and a click aimed before that frame lands
// where the button was.
func (tb *uiTab) setEditor(id, text string) {
	tb.t.Helper()
	tb.eval(fmt.Sprintf(`(e => { e.value = %q; e.dispatchEvent(new Event("input")); return 1 })(document.getElementById(%q))`, text, id), nil)
	tb.settle()
}

// TestUIDataPages runs the flows in one Chromium
// against one server: each checks what the user sees and what the server
// then holds, and saves screenshots at 1366x900 and 390x844.
func TestUIDataPages(t *testing.T) {
	browser := newBrowser(t)
	n, _ := startDefault(t)
	seed := uiSeed{t, n.base}
	desk := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, deskView[0], deskView[1]) }
	phone := func(t *testing.T) *uiTab { return openTab(t, browser, n.base, phoneView[0], phoneView[1]) }
	const chatSchema = `{"type": "object", "required": ["messages"], "properties": {"messages": {"type": "array",
		"items": {"type": "object", "required": ["role"], "properties": {"role": {"enum": ["user", "assistant"]}, "text": {"type": "string"}}}}}}`
	seed.call("PUT", "/schema/ui14.chat.v1", chatSchema, http.StatusOK)

	t.Run("CardsCountAndSchema", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		seed.call("PUT", "/entity/ui14cards", map[string]any{"a": 1, "b": 2, "c": 3}, http.StatusOK)
		seed.call("PUT", "/entity/ui14cards1", map[string]any{"only": map[string]any{"messages": []any{}}}, http.StatusOK)
		seed.call("PUT", "/api/databases/ui14cards1", map[string]any{"schema": "ui14.chat.v1"}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("databases", "Databases")
		card := func(db string) (count, schema string) {
			t.Helper()
			sel := fmt.Sprintf(`#db-cards button[data-db=%q]`, db)
			tb.waitFor("the card of "+db, fmt.Sprintf(`document.querySelector('%s')?.dataset.entities`, sel))
			var c struct{ Count, Schema string }
			tb.eval(fmt.Sprintf(`(b => ({Count: b.querySelector('[data-testid="db-card-count"]').textContent,
				Schema: b.querySelector('[data-testid="db-card-schema"]').textContent}))(document.querySelector('%s'))`, sel), &c)
			return c.Count, c.Schema
		}
		if c, s := card("ui14cards"); c != "3 entities" || s != "No schema" {
			t.Errorf("card ui14cards shows %q, %q; want \"3 entities\", \"No schema\"", c, s)
		}
		if c, s := card("ui14cards1"); c != "1 entity" || s != "Schema: ui14.chat.v1" {
			t.Errorf("card ui14cards1 shows %q, %q; want \"1 entity\", \"Schema: ui14.chat.v1\"", c, s)
		}
		tb.shots("cards", "#db-cards")
	})

	t.Run("BindAndUnbind", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14bind"
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"messages": []any{}}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.waitFor("the schema choices", `[...document.getElementById("db-schema-select").options].some(o => o.value === "ui14.chat.v1")`)
		tb.do("choose the schema", chromedp.SetValue(chromedp.ID("db-schema-select"), "ui14.chat.v1"))
		tb.click("#db-bind")
		tb.waitText("db-detail-message", "Bound "+db+" to schema ui14.chat.v1")
		tb.waitText("db-info", "bound to schema ui14.chat.v1")
		tb.waitFor("the card to show the schema", fmt.Sprintf(`document.querySelector('#db-cards button[data-db=%q]').dataset.schema === "ui14.chat.v1"`, db))
		var info struct{ Schema *string }
		if err := json.Unmarshal(seed.call("GET", "/api/databases/"+db, nil, http.StatusOK), &info); err != nil || info.Schema == nil || *info.Schema != "ui14.chat.v1" {
			t.Errorf("after Bind, GET /api/databases/%s schema = %v (%v), want ui14.chat.v1", db, info.Schema, err)
		}
		tb.shots("bound", "#db-detail")

		tb.click("#db-unbind")
		tb.waitText("db-detail-message", "Unbound "+db+" from schema ui14.chat.v1")
		tb.waitText("db-info", "no schema bound")
		if err := json.Unmarshal(seed.call("GET", "/api/databases/"+db, nil, http.StatusOK), &info); err != nil || info.Schema != nil {
			t.Errorf("after Unbind, GET /api/databases/%s schema = %v (%v), want null", db, info.Schema, err)
		}
		d := tb.dialogSeen()
		if len(d) != 2 || !strings.Contains(d[0], `"`+db+`"`) || !strings.Contains(d[0], `"ui14.chat.v1"`) ||
			!strings.Contains(d[1], "Remove the binding") || !strings.Contains(d[1], `"ui14.chat.v1"`) {
			t.Errorf("confirmations = %q; want one naming the database and schema to bind, one naming the binding removed", d)
		}
	})

	t.Run("KeySearchPagingPlace", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14keys"
		docs := map[string]any{"admin_0": map[string]any{"n": -1}}
		for i := range 23 {
			docs[fmt.Sprintf("user_%02d", i)] = map[string]any{"n": i, "name": fmt.Sprintf("User %d", i)}
		}
		seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.waitText("db-keys-count", "Keys 1–24 of 24")
		tb.do("10 per page", chromedp.SetValue(chromedp.ID("db-page-size"), "10"),
			chromedp.Evaluate[chromedp.Void](`document.getElementById("db-page-size").dispatchEvent(new Event("change"))`))
		tb.waitText("db-keys-count", "Keys 1–10 of 24")
		if got := tb.listedKeys(); len(got) != 10 || got[0] != "admin_0" || got[9] != "user_08" {
			t.Errorf("page 1 = %q, want admin_0 .. user_08", got)
		}
		tb.redrawn("the keys of page 2", "#db-keys > li", func() { tb.click("#db-keys-next") })
		tb.waitText("db-keys-count", "Keys 11–20 of 24")
		if got := tb.listedKeys(); len(got) != 10 || got[0] != "user_09" || got[9] != "user_18" {
			t.Errorf("page 2 = %q, want user_09 .. user_18", got)
		}
		tb.waitText("db-keys-page", "Page 2")

		// Saving an entity on page 2 keeps page 2.
		tb.openEntity("user_12")
		tb.setEditor("entity-editor", `{"n": 12, "name": "Twelve"}`)
		tb.click("#entity-save")
		tb.waitText("entity-message", "Saved.")
		if !jsonEqual(seed.entity(db, "user_12"), []byte(`{"n": 12, "name": "Twelve"}`)) {
			t.Errorf("after Save, user_12 = %s", seed.entity(db, "user_12"))
		}
		tb.waitText("db-keys-page", "Page 2")
		// Deleting one keeps the page too, and the count follows. The
		// count can read 11–20 of 23 before the list is read again (the
		// database's new total comes first): wait for the list drawn anew.
		tb.openEntity("user_13")
		tb.redrawn("the keys after the delete", "#db-keys > li", func() {
			tb.click("#entity-delete")
			tb.waitText("entity-message", "Deleted user_13")
		})
		tb.waitText("db-keys-count", "Keys 11–20 of 23")
		if got := tb.listedKeys(); len(got) != 10 || got[0] != "user_09" || slices.Contains(got, "user_13") {
			t.Errorf("page 2 after deleting user_13 = %q, want user_09 .. user_19 without user_13", got)
		}

		// Another page and back: the same database, page and entity.
		tb.openEntity("user_14")
		tb.goTo("workers", "Workers")
		tb.goTo("databases", "Databases")
		tb.waitFor("the same place", `document.getElementById("db-detail-title")?.textContent === "ui14keys" &&
			document.getElementById("db-keys-page")?.textContent === "Page 2" &&
			document.querySelector('#db-keys button[data-key="user_14"][aria-current="true"]') &&
			document.getElementById("entity-title").textContent === "ui14keys / user_14"`)
		// A reload of the tab too (the place is in the URL).
		tb.do("reload", chromedp.Reload())
		tb.waitFor("the same place after a reload", `document.getElementById("db-keys-page")?.textContent === "Page 2" &&
			document.getElementById("db-keys-count").textContent === "Keys 11–20 of 23"`)

		// Prefix search starts at its first page.
		tb.typeInto("db-prefix", "user_1")
		tb.redrawn("the keys starting with user_1", "#db-keys > li", func() { tb.click("#db-prefix-go") })
		tb.waitText("db-keys-count", `Keys starting with "user_1": 1–`)
		if got := tb.listedKeys(); len(got) != 9 || got[0] != "user_10" || got[8] != "user_19" {
			t.Errorf("prefix user_1 lists %q, want user_10 .. user_19 without user_13", got)
		}
		tb.waitText("db-keys-count", `Keys starting with "user_1": 1–9 of 9`)
		// Each key shows the start of its document.
		var previews map[string]string
		tb.eval(`Object.fromEntries([...document.querySelectorAll("#db-keys button[data-key]")].map(b =>
			[b.dataset.key, b.querySelector('[data-testid="db-key-preview"]')?.textContent ?? "(none)"]))`, &previews)
		if got := previews["user_10"]; got != `{"n":10,"name":"User 10"}` {
			t.Errorf("preview of user_10 = %q, want its document on one line", got)
		}
		if got := previews["user_12"]; got != `{"n":12,"name":"Twelve"}` {
			t.Errorf("preview of user_12 = %q, want the document saved", got)
		}
		tb.shots("keys", "#db-detail")
	})

	t.Run("SaveConflict", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db, key = "ui14conflict", "doc"
		seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"v": 1}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity(key)
		// Someone else saves after the UI read version 1. My edit comes
		// first: an unedited document follows the change feed and would
		// reload their version instead of meeting a 412.
		tb.setEditor("entity-editor", `{"v": 1, "by": "me"}`)
		seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"v": 2, "by": "other"}}, http.StatusOK)
		tb.click("#entity-save")
		// Only a Save with If-Match can fail here: without it the server
		// takes the write.
		tb.waitFor("the conflict panel", `!document.getElementById("entity-conflict").hidden`)
		tb.waitText("entity-message", "Not saved")
		if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"v": 2, "by": "other"}`)) {
			t.Errorf("after a conflicting Save the server holds %s, want the other writer's document", got)
		}
		var sides struct{ Stored, Edited string }
		tb.eval(`({Stored: document.getElementById("entity-conflict-stored").textContent,
			Edited: document.getElementById("entity-conflict-edited").textContent})`, &sides)
		if !jsonEqual([]byte(sides.Stored), []byte(`{"v": 2, "by": "other"}`)) || !jsonEqual([]byte(sides.Edited), []byte(`{"v": 1, "by": "me"}`)) {
			t.Errorf("conflict panel: stored %q, edited %q; want the server's and mine", sides.Stored, sides.Edited)
		}
		tb.shots("conflict", "#entity-conflict")

		// Overwrite writes mine, conditional on the version it showed.
		tb.click("#entity-conflict-overwrite")
		tb.waitText("entity-message", "Saved.")
		if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"v": 1, "by": "me"}`)) {
			t.Errorf("after Overwrite the server holds %s, want my edit", got)
		}

		// Reload takes theirs.
		tb.setEditor("entity-editor", `{"v": 4}`)
		seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"v": 3}}, http.StatusOK)
		tb.click("#entity-save")
		tb.waitFor("the conflict panel", `!document.getElementById("entity-conflict").hidden`)
		tb.click("#entity-conflict-reload")
		tb.waitFor("the stored version in the editor", `document.getElementById("entity-conflict").hidden &&
			JSON.parse(document.getElementById("entity-editor").value).v === 3`)
		// ...and a Save after the reload goes through (the new ETag).
		tb.setEditor("entity-editor", `{"v": 5}`)
		tb.click("#entity-save")
		tb.waitText("entity-message", "Saved.")
		if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"v": 5}`)) {
			t.Errorf("after Reload and Save the server holds %s, want {\"v\": 5}", got)
		}

		// The Entities page's Put is conditional on its Get too.
		tb.goTo("entities", "Entities")
		tb.typeInto("ent-db-new", db)
		tb.typeInto("ent-key", key)
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded")
		seed.call("PUT", "/entity/"+db, map[string]any{key: map[string]any{"v": 6}}, http.StatusOK)
		tb.setEditor("ent-doc", `{"v": 7}`)
		tb.click("#ent-put")
		tb.waitFor("the conflict panel", `!document.getElementById("ent-conflict").hidden`)
		if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"v": 6}`)) {
			t.Errorf("after a conflicting Put the server holds %s, want {\"v\": 6}", got)
		}
		tb.click("#ent-conflict-overwrite")
		tb.waitText("ent-message", "Saved")
		if got := seed.entity(db, key); !jsonEqual(got, []byte(`{"v": 7}`)) {
			t.Errorf("after Overwrite the server holds %s, want {\"v\": 7}", got)
		}
	})

	t.Run("ReadOnlySeesWhy", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14readonly"
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{"a": 1}}, http.StatusOK)
		var key struct{ ID, Secret string }
		if err := json.Unmarshal(seed.call("POST", "/api/keys", map[string]any{"name": "Ada's reader", "permissions": []string{"read"}}, 0), &key); err != nil {
			t.Fatal(err)
		}
		tb := desk(t)
		tb.login(key.Secret)
		if who := tb.text("whoami"); !strings.Contains(who, "Ada's reader") || strings.Contains(who, key.ID) {
			t.Errorf("top bar = %q, want the key's name, not its ID %s", who, key.ID)
		}
		tb.openDB(db)
		tb.openEntity("k")
		var st struct {
			Save, Delete, Bind, DeleteDB bool
			Why, AdminWhy, SaveTitle     string
		}
		tb.eval(`(id => ({Save: id("entity-save").disabled, Delete: id("entity-delete").disabled,
			Bind: id("db-bind").disabled, DeleteDB: id("db-delete").disabled,
			Why: id("entity-write-denied").offsetParent !== null ? id("entity-write-denied").textContent : "",
			AdminWhy: id("db-admin-denied").offsetParent !== null ? id("db-admin-denied").textContent : "",
			SaveTitle: id("entity-save").title}))(id => document.getElementById(id))`, &st)
		if !st.Save || !st.Delete || !st.Bind || !st.DeleteDB {
			t.Errorf("read-only key: Save, Delete, Bind, Delete database disabled = %v %v %v %v; want all disabled", st.Save, st.Delete, st.Bind, st.DeleteDB)
		}
		if !strings.Contains(st.Why, "Needs write permission") || !strings.Contains(st.Why, "Ada's reader has read") || st.SaveTitle != st.Why {
			t.Errorf("shown reason = %q (Save's title %q), want it to name the missing write permission", st.Why, st.SaveTitle)
		}
		if !strings.Contains(st.AdminWhy, "Needs admin permission") {
			t.Errorf("Delete database reason = %q, want the missing admin permission", st.AdminWhy)
		}
		// Reading still works: the document is in the editor.
		var doc string
		tb.eval(`document.getElementById("entity-editor").value`, &doc)
		if !jsonEqual([]byte(doc), []byte(`{"a": 1}`)) {
			t.Errorf("editor = %q, want the stored document", doc)
		}
		tb.shots("readonly", "#db-detail")
		tb.goTo("schemas", "Schemas")
		var sch struct{ Save, Delete bool }
		tb.eval(`({Save: document.getElementById("schema-save").disabled, Delete: document.getElementById("schema-delete").disabled})`, &sch)
		if !sch.Save || !sch.Delete {
			t.Errorf("read-only key on Schemas: Save, Delete disabled = %v %v; want both", sch.Save, sch.Delete)
		}
		tb.waitText("schema-write-denied", "Needs write permission")
	})

	t.Run("FailedGetClearsEditor", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14clear"
		seed.call("PUT", "/entity/"+db, map[string]any{"good": map[string]any{"secret": "s1"}}, http.StatusOK)
		badKey := "bad..key" // a name the server refuses with 400
		code, body, _ := httpCall(t, "GET", n.base+"/entity/"+db+"?key="+badKey, testAdminKey, nil)
		if code != http.StatusBadRequest {
			t.Fatalf("GET %s = %d %s, want 400", badKey, code, body)
		}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("good")
		tb.typeInto("db-key-input", badKey)
		tb.click("#db-key-open")
		tb.waitText("entity-message", restError(t, body))
		var ed struct {
			Value          string
			Disabled, Save bool
			Title, Meta    string
		}
		tb.eval(`({Value: document.getElementById("entity-editor").value, Disabled: document.getElementById("entity-editor").disabled,
			Save: document.getElementById("entity-save").disabled, Title: document.getElementById("entity-title").textContent,
			Meta: document.getElementById("entity-meta").textContent})`, &ed)
		if ed.Value != "" || !ed.Disabled || !ed.Save || !strings.Contains(ed.Title, "not loaded") || ed.Meta != "" {
			t.Errorf("after a failed Get: editor %q (disabled %v), Save disabled %v, title %q, meta %q; want empty, disabled, disabled, not loaded, empty",
				ed.Value, ed.Disabled, ed.Save, ed.Title, ed.Meta)
		}
		tb.shots("failed-get", "#entity-pane")

		// The Entities page likewise.
		tb.goTo("entities", "Entities")
		tb.typeInto("ent-db-new", db)
		tb.typeInto("ent-key", "good")
		tb.click("#ent-get")
		tb.waitText("ent-message", "Loaded")
		tb.typeInto("ent-key", badKey)
		tb.click("#ent-get")
		tb.waitText("ent-message", restError(t, body))
		var v string
		tb.eval(`document.getElementById("ent-doc").value`, &v)
		if v != "" {
			t.Errorf("Entities page after a failed Get: document %q, want empty", v)
		}
	})

	t.Run("EditorLinesAndHighlight", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14editor"
		seed.call("PUT", "/entity/"+db, map[string]any{"chat": map[string]any{"messages": []any{
			map[string]any{"role": "user", "text": "hi"}, map[string]any{"role": "assistant", "text": "hello", "n": 2, "ok": true}}}}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity("chat")
		var ed struct {
			Lines, Gutter int
			Kinds         map[string]int
			Same          bool
		}
		check := func() {
			t.Helper()
			tb.settle()
			tb.eval(`(() => {
				const ta = document.getElementById("entity-editor");
				const hl = document.querySelector('[data-testid="entity-editor-highlight"]');
				const kinds = {};
				for (const s of hl.querySelectorAll("span")) kinds[s.className] = (kinds[s.className] || 0) + 1;
				return {Lines: ta.value.split("\n").length,
					Gutter: document.querySelectorAll('[data-testid="entity-editor-gutter"] span[data-line]').length,
					Kinds: kinds, Same: hl.textContent === ta.value + "\n"};
			})()`, &ed)
		}
		check()
		if ed.Gutter != ed.Lines || ed.Lines < 10 {
			t.Errorf("gutter has %d line numbers for %d lines", ed.Gutter, ed.Lines)
		}
		if !ed.Same {
			t.Error("the highlighted copy differs from the editor's text")
		}
		for kind, want := range map[string]int{"tok-key": 7, "tok-str": 4, "tok-num": 1, "tok-lit": 1} {
			if ed.Kinds[kind] != want {
				t.Errorf("highlight has %d %s spans, want %d (all: %v)", ed.Kinds[kind], kind, want, ed.Kinds)
			}
		}
		// Typing re-highlights and renumbers.
		tb.setEditor("entity-editor", "{\n  \"a\": [1,\n    2],\n  \"b\": nul\n}")
		check()
		if ed.Gutter != 5 || ed.Lines != 5 || !ed.Same || ed.Kinds["tok-bad"] != 1 || ed.Kinds["tok-num"] != 2 {
			t.Errorf("after typing: %d gutter lines for %d, same text %v, spans %v; want 5, 5, true, one tok-bad, two tok-num", ed.Gutter, ed.Lines, ed.Same, ed.Kinds)
		}
		tb.shots("editor", "#entity-pane")
	})

	t.Run("ValidateBeforeSave", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db, key = "ui14valid", "chat"
		const stored = `{"messages": [{"role": "user", "text": "hi"}]}`
		seed.call("PUT", "/entity/"+db, map[string]any{key: json.RawMessage(stored)}, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": "ui14.chat.v1"}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.openEntity(key)
		// Lines 4 and 5 hold the two violations.
		bad := "{\n  \"messages\": [\n    {\"role\": \"user\"},\n    {\"role\": \"robot\",\n     \"text\": 5}\n  ]\n}"
		tb.setEditor("entity-editor", bad)
		tb.click("#entity-save")
		tb.waitText("entity-message", "2 problems against schema ui14.chat.v1; not saved")
		var marks struct {
			Errors  map[string]int
			Gutter  []int
			Invalid []string
		}
		tb.eval(`({
			Errors: Object.fromEntries([...document.querySelectorAll("#entity-editor-errors li")].map(li => [li.dataset.path, Number(li.dataset.line)])),
			Gutter: [...document.querySelectorAll('[data-testid="entity-editor-gutter"] .line-invalid')].map(s => Number(s.dataset.line)),
			Invalid: [...document.querySelectorAll('[data-testid="entity-editor-highlight"] .tok-invalid')].map(s => s.textContent),
		})`, &marks)
		if fmt.Sprint(marks.Errors) != "map[/messages/1/role:4 /messages/1/text:5]" || fmt.Sprint(marks.Gutter) != "[4 5]" ||
			fmt.Sprint(marks.Invalid) != `["role" "text"]` {
			t.Errorf("marks: listed %v, gutter lines %v, underlined %q; want /messages/1/role on line 4 and /messages/1/text on line 5",
				marks.Errors, marks.Gutter, marks.Invalid)
		}
		if got := seed.entity(db, key); !jsonEqual(got, []byte(stored)) {
			t.Errorf("after a Save that failed the check the server holds %s, want %s", got, stored)
		}
		tb.shots("invalid", "#entity-pane")

		good := `{"messages": [{"role": "user"}, {"role": "assistant", "text": "5"}]}`
		tb.setEditor("entity-editor", good)
		tb.click("#entity-check")
		tb.waitText("entity-message", "Valid against schema ui14.chat.v1")
		tb.waitFor("marks cleared", `document.getElementById("entity-editor-errors").hidden && !document.querySelector(".line-invalid")`)
		tb.click("#entity-save")
		tb.waitText("entity-message", "Saved.")
		if got := seed.entity(db, key); !jsonEqual(got, []byte(good)) {
			t.Errorf("after a valid Save the server holds %s, want %s", got, good)
		}
	})

	t.Run("DeleteDatabase", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14deldb"
		seed.call("PUT", "/entity/"+db, map[string]any{"a": map[string]any{"messages": []any{}}, "b": map[string]any{"messages": []any{}}, "c": map[string]any{"messages": []any{}}}, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": "ui14.chat.v1"}, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.openDB(db)
		tb.waitText("db-info", "3 entities")
		tb.shots("before-delete", "#db-detail")
		tb.click("#db-delete")
		if text := tb.confirmTyped(db); !strings.Contains(text, "3 entities") || !strings.Contains(text, `"ui14.chat.v1"`) {
			t.Errorf("the confirmation says %q, want it to name the 3 entities and the schema binding", text)
		}
		tb.waitText("db-message", "Deleted database "+db+" (3 entities)")
		if d := tb.dialogSeen(); len(d) != 0 {
			t.Errorf("browser dialogs %q, want none (the name is typed in the page)", d)
		}
		tb.waitFor("the card gone", fmt.Sprintf(`!document.querySelector('#db-cards button[data-db=%q]') && document.getElementById("db-detail").hidden`, db))
		var names []any
		if err := json.Unmarshal(seed.call("GET", "/api/databases", nil, http.StatusOK), &names); err != nil || strings.Contains(fmt.Sprint(names), db) {
			t.Errorf("GET /api/databases after the delete = %v (%v), want no %s", names, err, db)
		}
		seed.call("GET", "/api/databases/"+db, nil, http.StatusNotFound)
		tb.shots("deleted", "#db-message")
	})

	// KeyJobsRekey: the admin starts a rekey from the Key jobs page and
	// follows it to the end on its progress bar; the server's job record
	// agrees and the entities still read.
	t.Run("KeyJobsRekey", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui16rekey"
		docs := map[string]any{}
		for i := range 20 {
			docs[fmt.Sprintf("k%02d", i)] = map[string]any{"n": i}
		}
		seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("jobs", "Key jobs")
		tb.typeInto("jobs-db", db)
		tb.click("#jobs-rekey")
		tb.waitText("jobs-message", "Rekey of "+db+" started")
		row := fmt.Sprintf(`document.querySelector('#jobs-table tr[data-state="done"] td:nth-child(2)')?.textContent === %q`, db)
		tb.waitFor("the job done in the table", row)
		var bar struct{ Value, Max float64 }
		tb.eval(`(p => ({Value: p.value, Max: p.max}))(document.querySelector('#jobs-table tr[data-state="done"] progress'))`, &bar)
		if bar.Max != 20 || bar.Value != 20 {
			t.Errorf("progress bar of the done job = %v of %v, want 20 of 20", bar.Value, bar.Max)
		}
		var jobs []struct {
			Database, State string
			Done, Total     int
		}
		if err := json.Unmarshal(seed.call("GET", "/admin/jobs", nil, http.StatusOK), &jobs); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, j := range jobs {
			found = found || j.Database == db && j.State == "done" && j.Done == 20 && j.Total == 20
		}
		if !found {
			t.Errorf("GET /admin/jobs = %+v, want a done job of %s with 20 of 20", jobs, db)
		}
		if got := seed.entity(db, "k07"); !strings.Contains(string(got), `"n":7`) {
			t.Errorf("k07 after the rekey = %s, want {\"n\":7}", got)
		}
		tb.shots("jobs", "#jobs-table")
		ph := phone(t)
		ph.login(testAdminKey)
		ph.openMenu()
		ph.goTo("jobs", "Key jobs")
		ph.waitFor("the job on a phone", row)
		ph.shots("jobs", "#jobs-table")
	})

	t.Run("DeleteSchema", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const id, db = "ui14.del.v1", "ui14delschema"
		seed.call("PUT", "/schema/"+id, `{"type": "object"}`, http.StatusOK)
		seed.call("PUT", "/entity/"+db, map[string]any{"k": map[string]any{}}, http.StatusOK)
		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": id}, http.StatusOK)
		code, body, _ := httpCall(t, "DELETE", n.base+"/schema/"+id, testAdminKey, nil)
		if code != http.StatusConflict || !strings.Contains(restError(t, body), db) {
			t.Fatalf("DELETE /schema/%s while bound = %d %s, want 409 naming %s", id, code, body, db)
		}
		tb := desk(t)
		tb.login(testAdminKey)
		tb.goTo("schemas", "Schemas")
		tb.click(fmt.Sprintf(`#schema-list button[data-schema=%q]`, id))
		tb.waitText("schema-message", "Loaded "+id)
		tb.click("#schema-delete")
		tb.confirmTyped(id)
		tb.waitText("schema-message", restError(t, body))
		seed.call("GET", "/schema/"+id, nil, http.StatusOK)
		tb.shots("bound", "#schema-message")

		seed.call("PUT", "/api/databases/"+db, map[string]any{"schema": nil}, http.StatusOK)
		tb.click("#schema-delete")
		tb.confirmTyped(id)
		tb.waitText("schema-message", "Deleted schema "+id)
		seed.call("GET", "/schema/"+id, nil, http.StatusNotFound)
		tb.waitFor("gone from the list", fmt.Sprintf(`!document.querySelector('#schema-list button[data-schema=%q]')`, id))
		if d := tb.dialogSeen(); len(d) != 0 {
			t.Errorf("browser dialogs %q, want none (the name is typed in the page)", d)
		}
	})

	t.Run("EditorScannerUnitTests", func(t *testing.T) {
		desk(t).requireJSSuite("/js/jsonedit_test.js", "runJSONEditTests", 400)
	})

	t.Run("HumanTimes", func(t *testing.T) {
		tb := desk(t)
		tb.login(testAdminKey)
		seed := uiSeed{t, n.base}
		seed.call("POST", "/api/keys", map[string]any{"name": "ui14-times", "permissions": []string{"read"}, "expires_in": "30d"}, 0)
		tb.goTo("keys", "API Keys")
		tb.waitFor("the key", `document.querySelector('#keys-table tr[data-key-name="ui14-times"]')`)
		var cells struct{ Created, Expires, CreatedAt string }
		tb.eval(`(r => ({Created: r.querySelector('[data-testid="key-created"]').textContent,
			Expires: r.querySelector('[data-testid="key-expires-at"]').textContent,
			CreatedAt: r.querySelector('[data-testid="key-created"] time').dateTime}))(document.querySelector('#keys-table tr[data-key-name="ui14-times"]'))`, &cells)
		raw := regexp.MustCompile(`\d{4}-\d\d-\d\dT|\.\d{4,}|Z\b`)
		if raw.MatchString(cells.Created) || !regexp.MustCompile(`just now|seconds? ago|minutes? ago`).MatchString(cells.Created) {
			t.Errorf("key created = %q, want a local date and how long ago, not RFC 3339", cells.Created)
		}
		if raw.MatchString(cells.Expires) || !strings.Contains(cells.Expires, "in 4 weeks") && !strings.Contains(cells.Expires, "in 30 days") && !strings.Contains(cells.Expires, "next month") {
			t.Errorf("key expires = %q, want a local date and \"in 4 weeks\"", cells.Expires)
		}
		if at, err := time.Parse(time.RFC3339, cells.CreatedAt); err != nil || time.Since(at) > time.Minute {
			t.Errorf("<time datetime=%q> (%v), want the creation instant", cells.CreatedAt, err)
		}
		tb.goTo("workers", "Workers")
		tb.waitFor("a worker row", `document.querySelector('#workers-table [data-testid="worker-last-seen"]')`)
		seen := tb.text("workers-table")
		if raw.MatchString(seen) {
			t.Errorf("workers table shows a raw time: %q", seen)
		}
	})

	t.Run("PhoneKeyTapAndCards", func(t *testing.T) {
		seed := uiSeed{t, n.base}
		const db = "ui14phone"
		docs := map[string]any{}
		for i := range 12 {
			docs[fmt.Sprintf("session_%02d", i)] = map[string]any{"n": i}
		}
		seed.call("PUT", "/entity/"+db, docs, http.StatusOK)
		seed.call("POST", "/api/keys", map[string]any{"name": "ui14-phone", "permissions": []string{"read"}}, 0)
		tb := phone(t)
		tb.login(testAdminKey)
		tb.openMenu()
		tb.openDB(db)
		tb.click(`#db-keys button[data-key="session_05"]`)
		tb.waitFor("entity loaded", `!document.getElementById("entity-editor").disabled`)
		tb.settle()
		// In view: the editor starts on screen and either its Save button
		// is on screen too or the editor starts at the top.
		var pane struct{ Top, Save, Height float64 }
		tb.eval(`({Top: document.getElementById("entity-pane").getBoundingClientRect().top,
			Save: document.getElementById("entity-save").getBoundingClientRect().bottom, Height: innerHeight})`, &pane)
		if pane.Top < -1 || pane.Save > pane.Height && pane.Top > 4 {
			t.Errorf("after tapping a key the editor spans %.0f..%.0fpx (Save) of a %.0fpx screen, want it scrolled into view", pane.Top, pane.Save, pane.Height)
		}
		tb.screenshot(tb.ctx, "tap-key-390x844.png", chromedp.CaptureScreenshot())

		for _, tc := range []struct{ nav, title, table, button string }{
			{"keys", "API Keys", "keys-table", `[data-testid="key-delete"]`},
			{"workers", "Workers", "workers-table", ""},
		} {
			tb.openMenu()
			tb.goTo(tc.nav, tc.title)
			tb.waitFor("rows", fmt.Sprintf(`document.querySelector("#%s tbody tr td[data-label]")`, tc.table))
			var cards struct {
				Display, Label string
				Right, Width   float64
			}
			tb.eval(fmt.Sprintf(`(() => {
				const tr = document.querySelector("#%s tbody tr");
				const b = %q ? tr.querySelector(%q) : tr.lastElementChild;
				return {Display: getComputedStyle(tr).display, Label: getComputedStyle(tr.querySelector("td"), "::before").content,
					Right: b.getBoundingClientRect().right, Width: document.documentElement.clientWidth};
			})()`, tc.table, tc.button, tc.button), &cards)
			if cards.Display != "block" || !strings.Contains(cards.Label, `"`) || cards.Right > cards.Width {
				t.Errorf("%s on a phone: row display %q, cell label %s, last control ends at %.0f of %.0fpx; want cards, labelled, on screen",
					tc.table, cards.Display, cards.Label, cards.Right, cards.Width)
			}
			tb.shots(tc.nav, "#"+tc.table)
		}
	})
}

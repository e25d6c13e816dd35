package check

import (
	"bufio"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// composeDir holds the Compose files: every *.yaml there, and env.example,
// which lists every variable a file needs from the user's .env.
const composeDir = "../compose"

// ddbImage marks a service that runs DeltaDatabase.
const ddbImage = "${DDB_IMAGE:-localhost/deltadatabase:dev}"

// interpolation is a Compose ${NAME}, ${NAME:-default} or ${NAME:?error}.
var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)([^}]*))?\}`)

// TestComposeFiles decodes every Compose file strictly and checks its
// DeltaDatabase services against the binary: command arguments are flags
// it accepts (and parse), environment variables are ones it reads, every
// variable without a default is in env.example, published ports bind to
// 127.0.0.1, named volumes and dependencies exist.
func TestComposeFiles(t *testing.T) {
	example := envExample(t)
	entries, err := os.ReadDir(composeDir)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".yml"):
			t.Errorf("%s: name Compose files *.yaml, so that this check finds them", e.Name())
		case strings.HasSuffix(e.Name(), ".yaml"):
			files++
			t.Run(e.Name(), func(t *testing.T) { checkComposeFile(t, filepath.Join(composeDir, e.Name()), example) })
		}
	}
	if files < 3 {
		t.Errorf("%s has %d Compose files, want all-in-one, cluster and cluster-s3", composeDir, files)
	}
}

// envExample is the variables env.example lists, with its placeholders.
func envExample(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(composeDir, "env.example"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			vars[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vars
}

// checkComposeFile checks one Compose file.
func checkComposeFile(t *testing.T, path string, example map[string]string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.UnmarshalStrict(raw, &cf); err != nil {
		t.Fatalf("decode strictly: %v", err)
	}
	for _, m := range interpolation.FindAllStringSubmatch(stripComments(string(raw)), -1) {
		if m[2] == "" && example[m[1]] == "" {
			t.Errorf("${%s} has no default and is not in env.example", m[1])
		}
	}
	ddb := 0
	for name, svc := range cf.Services {
		for _, d := range svc.DependsOn {
			if _, ok := cf.Services[d]; !ok {
				t.Errorf("service %s: depends_on %s, which is no service", name, d)
			}
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, ok := cf.Volumes[src]; !ok && !strings.ContainsAny(src, "/.$") {
				t.Errorf("service %s: volume %s is not declared under volumes", name, src)
			}
		}
		for _, p := range svc.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("service %s: port %s is published beyond 127.0.0.1", name, p)
			}
		}
		if svc.Image != ddbImage {
			continue
		}
		ddb++
		args := interpolateSample(svc.Command, example)
		for _, p := range bin.checkArgs(args) {
			t.Errorf("service %s: %s", name, p)
		}
		// The binary checks this at start, after the flags parse (-h
		// stops before): its keys would come without TLS.
		if issuer, ok := flagValue(args, "oidc-issuer"); ok && plainHTTPBeyondLoopback(issuer) && !slices.Contains(args, "-oidc-allow-http") {
			t.Errorf("service %s: -oidc-issuer %s is plain http beyond loopback: the binary refuses it without -oidc-allow-http", name, issuer)
		}
		for k := range svc.Environment {
			if !bin.env[k] {
				t.Errorf("service %s: environment %s is not a variable the binary reads", name, k)
			}
		}
	}
	if ddb == 0 {
		t.Errorf("no service runs image %s", ddbImage)
	}
}

// plainHTTPBeyondLoopback reports whether u is an http:// URL of a host
// other than localhost or a loopback address.
func plainHTTPBeyondLoopback(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme != "http" {
		return false
	}
	host := parsed.Hostname()
	ip, err := netip.ParseAddr(host)
	return host != "localhost" && (err != nil || !ip.IsLoopback())
}

// interpolateSample replaces ${NAME...} in args with its default, or with
// env.example's placeholder.
func interpolateSample(args []string, example map[string]string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = interpolation.ReplaceAllStringFunc(a, func(ref string) string {
			m := interpolation.FindStringSubmatch(ref)
			if m[2] != "" {
				return m[3]
			}
			return example[m[1]]
		})
	}
	return out
}

// Package check tests the deployment files under deploy/ against the real
// DeltaDatabase binary: the Kubernetes manifests (decoded strictly into the
// Kubernetes API types) and the Compose files (decoded strictly into the
// subset of the Compose specification in compose.go). It lives in its own
// module so that the product's dependencies stay as they are.
package check

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// binary is the DeltaDatabase binary built from the repository, with what
// its -h says it accepts.
type binary struct {
	// path is the built executable.
	path string
	// flags are the flag names -h lists, without the dash.
	flags map[string]bool
	// env are the environment variables -h names ("(env NAME)").
	env map[string]bool
}

// flagLine and envRef match PrintDefaults output: "  -name type" and the
// "(env NAME" of a usage text.
var (
	flagLine = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9-]*)`)
	envRef   = regexp.MustCompile(`\benv ([A-Z][A-Z0-9_]*)`)
)

// buildBinary builds the binary of the repository at src into dir and reads
// its -h.
func buildBinary(src, dir string) (*binary, error) {
	path := filepath.Join(dir, "deltadatabase")
	build := exec.Command("go", "build", "-o", path, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build %s: %w\n%s", src, err, out)
	}
	var stderr bytes.Buffer
	help := exec.Command(path, "-h")
	help.Stderr = &stderr
	if err := help.Run(); err != nil {
		return nil, fmt.Errorf("%s -h: %w\n%s", path, err, stderr.Bytes())
	}
	b := &binary{path: path, flags: map[string]bool{}, env: map[string]bool{}}
	for _, m := range flagLine.FindAllStringSubmatch(stderr.String(), -1) {
		b.flags[m[1]] = true
	}
	for _, m := range envRef.FindAllStringSubmatch(stderr.String(), -1) {
		b.env[m[1]] = true
	}
	if len(b.flags) < 10 || len(b.env) == 0 {
		return nil, fmt.Errorf("%s -h: found %d flags and %d environment variables, want the flag list", path, len(b.flags), len(b.env))
	}
	return b, nil
}

// checkArgs reports every argument that is not a -flag=value of the
// binary, then lets the binary's own flag parser judge the whole list
// (value syntax too): args followed by -h must parse and exit 0.
func (b *binary) checkArgs(args []string) []string {
	var problems []string
	for _, a := range args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || !b.flags[name] {
			problems = append(problems, fmt.Sprintf("argument %q is not a flag the binary accepts", a))
		}
	}
	if len(problems) > 0 {
		return problems
	}
	cmd := exec.Command(b.path, append(slices.Clip(args), "-h")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(string(out), "\n")
		problems = append(problems, fmt.Sprintf("the binary refuses the arguments %q: %v: %s", args, err, first))
	}
	return problems
}

// flagValue is the value of -name=value in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "-"+name+"="); ok {
			return v, true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

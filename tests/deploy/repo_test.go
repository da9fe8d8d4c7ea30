package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hookline/hookline/tests/harness"
)

// repoRoot is the folder holding go.work.
func repoRoot(t *testing.T) string { t.Helper(); return harness.RepoRoot(t) }

// workspaceModules are the folders go.work uses, e.g. "services/producer".
func workspaceModules(t *testing.T, root string) []string {
	t.Helper()
	return harness.WorkspaceModules(t, root)
}

var (
	// envTag is a caarlos0/env tag naming a Hookline variable.
	envTag = regexp.MustCompile(`env:"(HOOKLINE_[A-Z0-9_]+)"`)
	// pkgImport is an import of a shared package.
	pkgImport = regexp.MustCompile(`"github\.com/hookline/hookline/pkg/([a-z0-9_/]+)"`)
)

// knownEnv returns the HOOKLINE_* variables a service reads: the env tags in
// the non-test Go files of services/<name> and of every pkg/ package it
// imports, transitively. It scans source text (no import), so a deployment
// file cannot name a variable that no binary reads.
func knownEnv(t *testing.T, root, service string) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	seen := map[string]bool{}
	var scan func(dir string, recursive bool)
	scan = func(dir string, recursive bool) {
		if seen[dir] {
			return
		}
		seen[dir] = true
		walk := func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != dir && (!recursive || d.Name() == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range envTag.FindAllSubmatch(src, -1) {
				names[string(m[1])] = true
			}
			for _, m := range pkgImport.FindAllSubmatch(src, -1) {
				scan(filepath.Join(root, "pkg", string(m[1])), false)
			}
			return nil
		}
		if err := filepath.WalkDir(dir, walk); err != nil {
			t.Fatalf("scan %s: %v", dir, err)
		}
	}
	scan(filepath.Join(root, "services", service), true)
	// A service whose configuration has not been written yet would make
	// every name "unknown": say so instead.
	for _, must := range []string{"HOOKLINE_NATS_URL", "HOOKLINE_REDIS_URL", "HOOKLINE_HTTP_ADDR", "HOOKLINE_SHUTDOWN_TIMEOUT"} {
		if !names[must] {
			t.Fatalf("services/%s reads no %s (found %v): is its config package there?", service, must, sorted(names))
		}
	}
	return names
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// secretVars hold a secret's value: they may come only from a Secret
// (secretKeyRef, or a *_FILE variable naming a mounted Secret), never a
// ConfigMap or a literal.
var secretVars = map[string]bool{
	"HOOKLINE_SECRET_KEY":          true,
	"HOOKLINE_SECRET_KEY_PREVIOUS": true,
	"HOOKLINE_API_TOKENS":          true,
	"HOOKLINE_NATS_PASSWORD":       true,
	"HOOKLINE_REDIS_PASSWORD":      true,
}

// fileVars name a file holding a secret (or TLS material): it must be
// mounted from a Secret.
var fileVars = map[string]bool{
	"HOOKLINE_SECRET_KEY_FILE":     true,
	"HOOKLINE_API_TOKENS_FILE":     true,
	"HOOKLINE_NATS_CREDS":          true,
	"HOOKLINE_NATS_NKEY_SEED_FILE": true,
	"HOOKLINE_NATS_TLS_CA":         true,
	"HOOKLINE_NATS_TLS_CERT":       true,
	"HOOKLINE_NATS_TLS_KEY":        true,
}

func TestKnownEnvFollowsImports(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	known := knownEnv(t, root, "deliverer")
	// From pkg/natsconn, which the deliverer imports, not from its own tree.
	for _, name := range []string{"HOOKLINE_NATS_CREDS", "HOOKLINE_REDIS_PASSWORD"} {
		if !known[name] {
			t.Errorf("%s not found through the deliverer's imports", name)
		}
	}
	if known["HOOKLINE_DEV_NATS_PORT"] {
		t.Error("devstack's variable leaked into the deliverer's")
	}
}

// trackedFiles lists the files git tracks in the repository.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	return strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
}

// No compiled program is committed (a 1.8 MB deliverer binary once was):
// binaries are built, never tracked.
func TestNoTrackedExecutables(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	magics := [][]byte{{0x7f, 'E', 'L', 'F'}, {0xcf, 0xfa, 0xed, 0xfe}, {0xfe, 0xed, 0xfa, 0xcf}}
	for _, name := range trackedFiles(t, root) {
		f, err := os.Open(filepath.Join(root, name))
		if err != nil {
			continue // deleted in the work tree
		}
		head := make([]byte, 4)
		n, _ := f.Read(head)
		f.Close()
		for _, m := range magics {
			if n == 4 && string(head) == string(m) {
				t.Errorf("%s is a compiled executable: remove it and let .gitignore keep it out", name)
			}
		}
	}
}

// The project stands on its own files: nothing but Markdown names a design
// page that is not in the repository.
func TestNoCitationsOfFilesOutsideTheRepository(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	cite := regexp.MustCompile(`DESIGN\.md|\.\./shared/`)
	for _, name := range trackedFiles(t, root) {
		if strings.HasSuffix(name, ".md") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			continue
		}
		if loc := cite.FindIndex(b); loc != nil {
			line := 1 + strings.Count(string(b[:loc[0]]), "\n")
			t.Errorf("%s:%d cites a file outside the repository; point at the README or docs/", name, line)
		}
	}
}

package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RepoRoot is the folder holding go.work, found upward from the test's
// working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			tb.Fatalf("no go.work above %s", wd)
		}
	}
}

// WorkspaceModules are the folders go.work under root uses, e.g.
// "services/producer".
func WorkspaceModules(tb testing.TB, root string) []string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		tb.Fatal(err)
	}
	var mods []string
	inUse := false
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "use ("):
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "":
			mods = append(mods, strings.TrimPrefix(line, "./"))
		case strings.HasPrefix(line, "use "):
			mods = append(mods, strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "use")), "./"))
		}
	}
	if len(mods) == 0 {
		tb.Fatal("go.work uses no module")
	}
	return mods
}

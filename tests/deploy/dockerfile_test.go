package deploy_test

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string   // upper case: FROM, COPY, RUN, USER…
	args []string // whitespace-separated
	line string
}

// stage is one FROM … [AS name] and what follows it.
type stage struct {
	from, name string
	body       []instruction
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		stages []stage
		buf    strings.Builder
	)
	sc := bufio.NewScanner(f)
	flush := func() {
		line := strings.TrimSpace(buf.String())
		buf.Reset()
		if line == "" {
			return
		}
		fields := strings.Fields(line)
		in := instruction{cmd: strings.ToUpper(fields[0]), args: fields[1:], line: line}
		switch {
		case in.cmd == "FROM":
			s := stage{from: in.args[0]}
			if len(in.args) == 3 && strings.EqualFold(in.args[1], "AS") {
				s.name = in.args[2]
			}
			stages = append(stages, s)
		case len(stages) > 0:
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
		}
	}
	for sc.Scan() {
		line := sc.Text()
		if trimmed := strings.TrimSpace(line); strings.HasPrefix(trimmed, "#") && buf.Len() == 0 {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			buf.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		buf.WriteString(line)
		flush()
	}
	flush()
	return stages
}

// copies are the build context paths a stage's COPY instructions name (not
// COPY --from), as (sources, destination).
func copies(s stage) [][2][]string {
	var out [][2][]string
	for _, in := range s.body {
		if in.cmd != "COPY" {
			continue
		}
		var args []string
		from := false
		for _, a := range in.args {
			if strings.HasPrefix(a, "--from") {
				from = true
			}
			if !strings.HasPrefix(a, "--") {
				args = append(args, a)
			}
		}
		if from || len(args) < 2 {
			continue
		}
		out = append(out, [2][]string{args[:len(args)-1], {args[len(args)-1]}})
	}
	return out
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	modules := workspaceModules(t, root)
	ignore := dockerignore(t, root)
	for _, svc := range []string{"producer", "deliverer"} {
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			stages := parseDockerfile(t, filepath.Join(root, "services", svc, "Dockerfile"))
			if len(stages) < 2 {
				t.Fatalf("%d stages: want a build stage and a runtime stage", len(stages))
			}
			build, final := stages[0], stages[len(stages)-1]
			if !strings.HasPrefix(build.from, "golang:") {
				t.Errorf("build stage from %s", build.from)
			}
			if strings.HasPrefix(final.from, "golang:") {
				t.Error("the runtime image is the Go toolchain image")
			}

			// Non-root, numerically (runAsNonRoot cannot check a name).
			var user string
			for _, in := range final.body {
				if in.cmd == "USER" {
					user = in.args[0]
				}
			}
			uid, _, _ := strings.Cut(user, ":")
			if uid == "" || uid == "0" || strings.Trim(uid, "0123456789") != "" {
				t.Errorf("runtime USER %q: want a numeric non-root uid", user)
			}

			// The build stage copies the go.mod of every module go.work uses.
			cps := copies(build)
			for _, m := range modules {
				if !copiesPath(cps, m+"/go.mod") {
					t.Errorf("the build stage lacks %s/go.mod, which go.work needs", m)
				}
			}

			// Reproduce the build stage's context and its go build without
			// Docker: only what the COPY lines bring (less .dockerignore).
			ctx := t.TempDir()
			for _, c := range cps {
				for _, src := range c[0] {
					matches, err := filepath.Glob(filepath.Join(root, src))
					if err != nil {
						t.Fatal(err)
					}
					dst := filepath.Join(ctx, c[1][0])
					if strings.HasSuffix(c[1][0], "/") {
						dst += "/" // a folder, even before anything is in it
					}
					for _, m := range matches {
						copyInto(t, root, m, dst, ignore)
					}
				}
			}
			var goBuild string
			for _, in := range build.body {
				if in.cmd == "RUN" && strings.Contains(in.line, "go build") {
					goBuild = in.line
				}
			}
			if !strings.Contains(goBuild, "./services/"+svc) {
				t.Fatalf("no `go build ./services/%s` in the build stage", svc)
			}
			// go list -deps resolves the workspace, every module and every
			// imported package (and embed pattern) as go build would, without
			// compiling: a file the COPY lines miss fails here.
			cmd := exec.Command("go", "list", "-deps", "./services/"+svc)
			cmd.Dir = ctx
			cmd.Env = append(os.Environ(), "GOWORK=", "GOFLAGS=-mod=readonly")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go list -deps ./services/%s in the Dockerfile's context: %v\n%s", svc, err, out)
			}
		})
	}
}

func copiesPath(cps [][2][]string, path string) bool {
	for _, c := range cps {
		for _, src := range c[0] {
			src = strings.TrimSuffix(src, "/")
			if ok, _ := filepath.Match(src, path); ok || strings.HasPrefix(path, src+"/") {
				return true
			}
		}
	}
	return false
}

// dockerignore reads the patterns of .dockerignore.
func dockerignore(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatalf(".dockerignore: %v (without it the whole .data folder is sent as context)", err)
	}
	var pats []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			pats = append(pats, l)
		}
	}
	return pats
}

func ignored(rel string, pats []string) bool {
	for _, p := range pats {
		if suffix, ok := strings.CutPrefix(p, "**/"); ok {
			if m, _ := filepath.Match(suffix, filepath.Base(rel)); m {
				return true
			}
			continue
		}
		if m, _ := filepath.Match(p, rel); m || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// copyInto copies src (a file or a folder's contents) to dst as COPY does.
func copyInto(t *testing.T, root, src, dst string, ignore []string) {
	t.Helper()
	info, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if !info.IsDir() {
		if strings.HasSuffix(dst, "/") || isDir(dst) {
			dst = filepath.Join(dst, filepath.Base(src))
		}
		rel, _ := filepath.Rel(root, src)
		if !ignored(rel, ignore) {
			copyFile(t, src, dst)
		}
		return
	}
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if ignored(rel, ignore) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		inner, _ := filepath.Rel(src, path)
		copyFile(t, path, filepath.Join(dst, inner))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isDir(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.IsDir()
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

package docs_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	envTag = regexp.MustCompile(`env:"(HOOKLINE_[A-Z0-9_]+)[,"]`)
	// getenv is a direct read: os.Getenv, os.LookupEnv or a getenv func.
	getenv = regexp.MustCompile(`(?i:getenv|lookupenv)\("(HOOKLINE_[A-Z0-9_]+)"\)`)
	// varName is a whole variable name in documentation.
	varName = regexp.MustCompile(`HOOKLINE_[A-Z0-9_]*[A-Z0-9]`)
)

// readVariables returns each HOOKLINE_* variable the non-test Go code of
// every workspace module reads, with the first file that reads it.
func readVariables(t *testing.T, root string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, mod := range workspaceModules(t, root) {
		err := filepath.WalkDir(filepath.Join(root, mod), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if n := d.Name(); n == "testdata" || n == "gen" || strings.HasPrefix(n, ".") {
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
			rel, _ := filepath.Rel(root, path)
			for _, re := range []*regexp.Regexp{envTag, getenv} {
				for _, m := range re.FindAllSubmatch(src, -1) {
					if _, ok := vars[string(m[1])]; !ok {
						vars[string(m[1])] = rel
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scan %s: %v", mod, err)
		}
	}
	return vars
}

// documentedVariables counts, per variable, the table rows of
// docs/configuration.md whose first cell names it.
func documentedVariables(t *testing.T, root string) map[string][]int {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string][]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, v := range varName.FindAllString(cells[1], -1) {
			rows[v] = append(rows[v], n)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestConfigurationDocumentsEveryVariable: each variable the code reads is
// the first cell of exactly one table row of docs/configuration.md, and no
// row names a variable that nothing reads.
func TestConfigurationDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	read := readVariables(t, root)
	documented := documentedVariables(t, root)
	// The scan must find the services' configuration, or every check
	// below passes on nothing.
	for _, must := range []string{"HOOKLINE_NATS_URL", "HOOKLINE_RETRY_SCHEDULE", "HOOKLINE_API_TOKENS", "HOOKLINE_API_URL", "HOOKLINE_DEV_NATS_PORT"} {
		if _, ok := read[must]; !ok {
			t.Fatalf("the scan found no read of %s (found %d variables): is the pattern still right?", must, len(read))
		}
	}
	for _, v := range sortedKeys(read) {
		switch rows := documented[v]; len(rows) {
		case 0:
			t.Errorf("%s (read in %s) is not in a table of docs/configuration.md", v, read[v])
		case 1:
		default:
			t.Errorf("%s is documented on %d rows of docs/configuration.md (lines %v): keep one", v, len(rows), rows)
		}
	}
	for _, v := range sortedKeys(documented) {
		if _, ok := read[v]; !ok {
			t.Errorf("docs/configuration.md:%d documents %s, which no code reads", documented[v][0], v)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// markdownFiles are README.md, docs/*.md and the Markdown under deploy/.
func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	files := []string{"README.md"}
	for _, pattern := range []string{"docs/*.md", "deploy/*/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range m {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
	}
	if len(files) < 5 {
		t.Fatalf("only %v: where are the docs?", files)
	}
	return files
}

// withoutCode blanks fenced code blocks and inline code spans, which hold
// examples, not links.
func withoutCode(md string) string {
	var b strings.Builder
	inFence := false
	for line := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			b.WriteString("\n")
			continue
		}
		if inFence {
			b.WriteString("\n")
			continue
		}
		b.WriteString(inlineCode.ReplaceAllString(line, "``"))
		b.WriteString("\n")
	}
	return b.String()
}

var (
	inlineCode = regexp.MustCompile("`[^`]*`")
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchorDrop = regexp.MustCompile(`[^\p{L}\p{N} _-]`)
)

// anchors are the ids GitHub gives the headings of a Markdown document:
// lower case, punctuation dropped, spaces to hyphens, "-1", "-2" for
// repeats.
func anchors(md string) map[string]bool {
	out, seen := map[string]bool{}, map[string]int{}
	inFence := false
	for line := range strings.SplitSeq(md, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		a := strings.ReplaceAll(anchorDrop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestMarkdownLinksResolve: every relative link of the documentation names
// a file of the repository and, when it carries an anchor into a Markdown
// file, a heading of that file.
func TestMarkdownLinksResolve(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files := markdownFiles(t, root)
	texts := map[string]string{}
	read := func(rel string) (string, bool) {
		if s, ok := texts[rel]; ok {
			return s, true
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return "", false
		}
		texts[rel] = string(b)
		return string(b), true
	}
	links := 0
	for _, file := range files {
		src, ok := read(file)
		if !ok {
			t.Fatalf("read %s", file)
		}
		for _, m := range mdLink.FindAllStringSubmatch(withoutCode(src), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			links++
			path, anchor, _ := strings.Cut(target, "#")
			rel := file
			if path != "" {
				rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), path)))
				if strings.HasPrefix(rel, "../") || filepath.IsAbs(path) {
					t.Errorf("%s: link %q leaves the repository", file, target)
					continue
				}
				if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
					t.Errorf("%s: link %q: %s does not exist", file, target, rel)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(rel, ".md") {
				continue
			}
			text, _ := read(rel)
			if !anchors(text)[anchor] {
				t.Errorf("%s: link %q: %s has no heading with the anchor #%s", file, target, rel, anchor)
			}
		}
	}
	if links < 20 {
		t.Errorf("only %d relative links found in %v: is the link pattern still right?", links, files)
	}
}

// TestEveryDocIsLinkedFromTheREADME: a page under docs/ that the README
// does not link is a page nobody finds.
func TestEveryDocIsLinkedFromTheREADME(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var linked []string
	for _, m := range mdLink.FindAllStringSubmatch(withoutCode(string(readme)), -1) {
		path, _, _ := strings.Cut(m[1], "#")
		linked = append(linked, path)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md")
	}
	for _, d := range docs {
		if rel := "docs/" + filepath.Base(d); !slices.Contains(linked, rel) {
			t.Errorf("README.md does not link %s", rel)
		}
	}
}

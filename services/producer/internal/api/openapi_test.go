package api

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/producer/internal/metrics"
)

// TestOpenAPICoversEveryRoute: the document's operations and the routes
// New registers are the same set, so a route cannot ship undocumented or a
// documented one be missing.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	a := New(Deps{Metrics: metrics.New(), Log: zap.NewNop()})
	routes := a.Routes()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, upper(method)+" "+path)
		}
	}
	slices.Sort(routes)
	slices.Sort(documented)
	if !slices.Equal(routes, documented) {
		t.Fatalf("routes and the OpenAPI document differ:\nroutes     %v\ndocumented %v", routes, documented)
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// TestDocsListEveryOperation: the operations table of docs/api.md names
// every operation of the document, as `METHOD /path`.
func TestDocsListEveryOperation(t *testing.T) {
	readme, err := os.ReadFile("../../../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if op := "`" + upper(method) + " " + path + "`"; !strings.Contains(string(readme), op) {
				t.Errorf("docs/api.md does not list %s (the delivery API's operations table)", op)
			}
		}
	}
}

// TestNamedEnums: every enum of the document has values (an enum:"@name"
// tag naming no list would leave it null), and the dead-letter reasons are
// pkg/wire's, not a copy.
func TestNamedEnums(t *testing.T) {
	var doc any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(wire.DeadLetterReasons())
	found := false
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if k == "enum" {
					list, ok := c.([]any)
					if !ok || len(list) == 0 {
						t.Errorf("%s: enum %v has no values", path, c)
					}
					if got, _ := json.Marshal(c); string(got) == string(want) {
						found = true
					}
				}
				walk(path+"/"+k, c)
			}
		case []any:
			for i, c := range v {
				walk(fmt.Sprintf("%s/%d", path, i), c)
			}
		}
	}
	walk("", doc)
	if !found {
		t.Errorf("no enum of the document is the dead-letter reasons %s", want)
	}
}

package api

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"

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

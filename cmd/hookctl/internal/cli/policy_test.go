package cli

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// The update body sends a schedule and metadata as the API takes them (a
// plain list and object, empty to clear), not wrapped as in the proto.
func TestUpdateBodyFlattensScheduleAndMetadata(t *testing.T) {
	t.Parallel()
	timeout := "2s"
	tests := []struct {
		name string
		req  *hooklinev1.UpdateSubscriptionRequest
		want map[string]any
	}{
		{"set", &hooklinev1.UpdateSubscriptionRequest{RetrySchedule: &hooklinev1.Schedule{Delays: []string{"0s", "5s"}},
			Metadata: &hooklinev1.Metadata{Values: map[string]string{"k": "v"}}, AttemptTimeout: &timeout},
			map[string]any{"retry_schedule": []any{"0s", "5s"}, "metadata": map[string]any{"k": "v"}, "attempt_timeout": "2s"}},
		{"cleared", &hooklinev1.UpdateSubscriptionRequest{RetrySchedule: &hooklinev1.Schedule{}, Metadata: &hooklinev1.Metadata{}},
			map[string]any{"retry_schedule": []any{}, "metadata": map[string]any{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := protoJSON.Marshal(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := updateBody(raw, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("body %s, want %v", b, tt.want)
			}
		})
	}
}

func TestPrintSubShowsPolicyUIDAndMetadata(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	a := &App{}
	err := a.printSub(&out, []byte(`{"id":"sub_1","tenant":"acme","url":"https://x.example/h","event_types":["a"],`+
		`"headers":{"X-Api-Key":"REDACTED"},"retry_schedule":["0s","1m0s"],"attempt_timeout":"2s","auto_disable_after":"0s","uid":"shop/42","metadata":{"b":"2","a":"1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"retry schedule:", "0s, 1m0s", "attempt timeout:", "2s", "auto-disable after:", "uid:", "shop/42", "metadata:", "a=1, b=2", "X-Api-Key"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

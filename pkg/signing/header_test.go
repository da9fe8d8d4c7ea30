package signing_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/signing"
)

func TestParseSignatureHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		header   string
		versions []string
		wantErr  bool
	}{
		{name: "one entry", header: "v1,AAEC", versions: []string{"v1"}},
		{name: "rotation", header: "v1,AAEC v1,AwQF", versions: []string{"v1", "v1"}},
		{name: "mixed schemes", header: "v1a,AAEC v1,AwQF", versions: []string{"v1a", "v1"}},
		{name: "extra whitespace", header: "  v1,AAEC \t v1,AwQF  ", versions: []string{"v1", "v1"}},
		{name: "future version kept", header: "v2,AAEC", versions: []string{"v2"}},
		{name: "garbage entry skipped", header: "garbage v1,AAEC ,, v1, ,AAEC", versions: []string{"v1"}},
		{name: "bad base64 skipped", header: "v1,!!!! v1,AAEC", versions: []string{"v1"}},
		{name: "bad version skipped", header: "V1,AAEC x1,AAEC v,AAEC v1A,AAEC v1,AAEC", versions: []string{"v1"}},
		{name: "empty", header: "", wantErr: true},
		{name: "only spaces", header: "   ", wantErr: true},
		{name: "only garbage", header: "v1 v1, ,AAEC v1,@@@", wantErr: true},
		{name: "too many entries", header: strings.Repeat("v1,AAEC ", signing.MaxSignatureEntries+1), wantErr: true},
		{name: "too long", header: "v1," + strings.Repeat("A", signing.MaxSignatureHeaderLen), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sigs, err := signing.ParseSignatureHeader(tt.header)
			if tt.wantErr {
				if !errors.Is(err, signing.ErrMalformedHeader) {
					t.Fatalf("ParseSignatureHeader = %v, %v; want ErrMalformedHeader", sigs, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sigs {
				got = append(got, s.Version)
			}
			if strings.Join(got, " ") != strings.Join(tt.versions, " ") {
				t.Fatalf("versions %v, want %v", got, tt.versions)
			}
		})
	}
	sigs, err := signing.ParseSignatureHeader("v1,AAEC")
	if err != nil || !bytes.Equal(sigs[0].Value, []byte{0, 1, 2}) {
		t.Fatalf("value %v, %v; want decoded bytes 0 1 2", sigs, err)
	}
}

// FuzzParseSignatureHeader: never panics, never returns an empty list
// without an error, and every entry it returns is well formed. The seed
// corpus lives in testdata/fuzz/FuzzParseSignatureHeader; plain `go test`
// runs it.
func FuzzParseSignatureHeader(f *testing.F) {
	for _, s := range []string{"v1,AAEC", "v1,AAEC v1a,AwQF", "", " ", "v1,", ",AAEC", "v1,AAEC,AAEC", "v1a,!!!"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sigs, err := signing.ParseSignatureHeader(h)
		if err != nil {
			if !errors.Is(err, signing.ErrMalformedHeader) || sigs != nil {
				t.Fatalf("error %v with %d entries", err, len(sigs))
			}
			return
		}
		if len(sigs) == 0 || len(sigs) > signing.MaxSignatureEntries {
			t.Fatalf("%d entries without an error", len(sigs))
		}
		for _, s := range sigs {
			if !strings.HasPrefix(s.Version, "v") || len(s.Value) == 0 || strings.ContainsAny(s.Version, " ,") {
				t.Fatalf("malformed entry returned: %+v", s)
			}
		}
		// Verify must not panic on the same input either.
		_ = signing.Verify("id", fixedTime, []byte("body"), h, fuzzHMAC, fuzzPublic)
	})
}

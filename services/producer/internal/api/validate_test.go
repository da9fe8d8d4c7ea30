package api

import (
	"strings"
	"testing"
)

// TestValidateURL is the contract of validateURL, whichever policy
// replaces it.
func TestValidateURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, wantErr string // wantErr "" = valid
	}{
		{name: "https", url: "https://example.com/hooks"},
		{name: "http with port and query", url: "http://example.com:8080/h?x=1"},
		{name: "ipv6", url: "https://[2001:db8::1]/h"},
		{name: "empty", url: "", wantErr: "required"},
		{name: "ftp", url: "ftp://example.com/", wantErr: "http"},
		{name: "no scheme", url: "example.com/h", wantErr: "http"},
		{name: "relative", url: "/h", wantErr: "http"},
		{name: "opaque", url: "https:example.com", wantErr: "http"},
		{name: "no host", url: "https:///h", wantErr: "host"},
		{name: "port only", url: "https://:443/h", wantErr: "host"},
		{name: "userinfo", url: "https://u:p@example.com/", wantErr: "credentials"},
		{name: "user only", url: "https://u@example.com/", wantErr: "credentials"},
		{name: "port zero", url: "https://example.com:0/", wantErr: "port"},
		{name: "port too big", url: "https://example.com:65536/", wantErr: "port"},
		{name: "space", url: "https://exa mple.com/", wantErr: "valid URL"},
		{name: "control char", url: "https://example.com/\n", wantErr: "valid URL"},
		{name: "too long", url: "https://example.com/" + strings.Repeat("a", 2030), wantErr: "2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validateURL(tt.url)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%q: %v", tt.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("%q: error %v, want one containing %q", tt.url, err, tt.wantErr)
			}
		})
	}
}

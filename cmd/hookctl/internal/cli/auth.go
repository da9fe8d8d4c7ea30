package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strings"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// readAuth reads --auth-file: the endpoint authentication as the API
// takes it (a JSON object), from a file or "-" for stdin, so that its
// secret never sits on a command line. Errors never quote the file.
func readAuth(path string, stdin io.Reader) (*hooklinev1.EndpointAuth, error) {
	b, err := readInput("--auth-file", path, stdin)
	if err != nil {
		return nil, err
	}
	var a hooklinev1.EndpointAuth
	if err := (protojson.UnmarshalOptions{}).Unmarshal(b, &a); err != nil {
		return nil, usageErr(fmt.Errorf("--auth-file: want a JSON object like {\"type\":\"oauth2_client_credentials\",\"token_url\":…,\"client_id\":…,\"client_secret\":…} (%d bytes that are not one)", len(b)))
	}
	return &a, nil
}

// authSummary is one line on an endpoint authentication, secrets hidden.
func authSummary(a *hooklinev1.EndpointAuth) string {
	switch a.GetType() {
	case subscription.AuthOAuth2ClientCredentials:
		parts := []string{a.GetType(), "token_url " + redactURL(a.GetTokenUrl()), "client_id " + a.GetClientId(),
			"client_secret " + subscription.Redacted}
		if a.GetScope() != "" {
			parts = append(parts, "scope "+a.GetScope())
		}
		if a.GetAudience() != "" {
			parts = append(parts, "audience "+a.GetAudience())
		}
		if a.GetTokenAuthMethod() != "" {
			parts = append(parts, a.GetTokenAuthMethod())
		}
		return strings.Join(parts, ", ")
	case subscription.AuthMTLS:
		parts := []string{a.GetType()}
		if block, _ := pem.Decode([]byte(a.GetCertificate())); block != nil {
			if c, err := x509.ParseCertificate(block.Bytes); err == nil {
				parts = append(parts, "certificate "+c.Subject.String(), "expires "+when(c.NotAfter))
			}
		}
		return strings.Join(append(parts, "private_key "+subscription.Redacted), ", ")
	}
	return a.GetType()
}

// maskAuthJSON hides the secrets of an "auth" object, whatever the API
// answered (it masks them; an older producer may not).
func maskAuthJSON(m map[string]json.RawMessage) bool {
	var a map[string]any
	if json.Unmarshal(m["auth"], &a) != nil || len(a) == 0 {
		return false
	}
	changed := false
	for _, k := range []string{"client_secret", "private_key"} {
		if v, _ := a[k].(string); v != "" && v != subscription.Redacted {
			a[k], changed = subscription.Redacted, true
		}
	}
	if changed {
		b, _ := json.Marshal(a)
		m["auth"] = b
	}
	return changed
}

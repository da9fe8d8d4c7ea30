package api

import (
	"maps"
	"slices"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// authRequest is hooklinev1.EndpointAuth in JSON: a subscription's
// endpoint authentication (see docs/api.md, "Endpoint authentication").
type authRequest struct {
	Type            string `json:"type" enum:"oauth2_client_credentials,mtls" doc:"the kind of authentication ({} or an absent type removes it in a PATCH)"`
	TokenURL        string `json:"token_url,omitempty" doc:"oauth2_client_credentials: the token endpoint (http(s); the same destination rules as url)"`
	ClientID        string `json:"client_id,omitempty" doc:"oauth2_client_credentials: the client id"`
	ClientSecret    string `json:"client_secret,omitempty" doc:"oauth2_client_credentials: the client secret (write-only: answers show REDACTED; REDACTED keeps the stored one while token_url and client_id stay the same)"`
	Scope           string `json:"scope,omitempty" doc:"oauth2_client_credentials: the scope requested (optional)"`
	Audience        string `json:"audience,omitempty" doc:"oauth2_client_credentials: the audience parameter sent to the token endpoint (optional)"`
	TokenAuthMethod string `json:"token_auth_method,omitempty" enum:"client_secret_basic,client_secret_post" doc:"oauth2_client_credentials: how the client authenticates to the token endpoint (default client_secret_basic)"`
	Certificate     string `json:"certificate,omitempty" doc:"mtls: the client certificate chain, PEM, the client certificate first"`
	PrivateKey      string `json:"private_key,omitempty" doc:"mtls: the certificate's private key, PEM (write-only: answers show REDACTED; REDACTED keeps the stored one while the certificate stays the same)"`
}

func (r *authRequest) proto() *hooklinev1.EndpointAuth {
	if r == nil {
		return nil
	}
	return &hooklinev1.EndpointAuth{
		Type: r.Type, TokenUrl: r.TokenURL, ClientId: r.ClientID, ClientSecret: r.ClientSecret,
		Scope: r.Scope, Audience: r.Audience, TokenAuthMethod: r.TokenAuthMethod,
		Certificate: r.Certificate, PrivateKey: r.PrivateKey,
	}
}

// auth checks an endpoint authentication (subscription.ValidateAuth)
// against the stored one (nil on create); errors are filed under
// auth.<field> and never quote a secret. The token endpoint is judged as
// a subscription URL is: a literal address the SSRF policy blocks is
// refused here, a host name at every connection.
func (f *fields) auth(a *API, req *authRequest, old *hooklinev1.EndpointAuth) {
	p := req.proto()
	errs := subscription.ValidateAuth(p, old, time.Now())
	if p.GetType() == subscription.AuthOAuth2ClientCredentials && p.GetTokenUrl() != "" && errs["token_url"] == nil {
		if err := a.checkURL(p.GetTokenUrl()); err != nil {
			errs = setErr(errs, "token_url", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(errs)) {
		f.add("auth."+name, errs[name])
	}
}

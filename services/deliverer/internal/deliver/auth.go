package deliver

import (
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// Auth opens a subscription's endpoint authentication (its secrets sealed
// at rest by the registry: subscription.SealAuth); nil for none. This is
// the one place they are opened (Options.Auth); they go to the sender only
// and are never logged. Errors name a field, never its value.
type Auth func(sub *hooklinev1.Subscription) (*hooklinev1.EndpointAuth, error)

// OpenedAuth opens endpoint authentication with box (HOOKLINE_SECRET_KEY
// and its previous keys). A nil box takes secrets stored in clear and
// refuses sealed ones, so the task is dead-lettered rather than sent
// without the receiver's credential.
func OpenedAuth(box *secretbox.Box) Auth {
	return func(sub *hooklinev1.Subscription) (*hooklinev1.EndpointAuth, error) {
		return subscription.OpenAuth(box, sub)
	}
}

// senderAuth is what the sender needs of an opened endpoint
// authentication.
func senderAuth(sub *hooklinev1.Subscription) sender.Auth {
	a := sub.GetAuth()
	switch a.GetType() {
	case subscription.AuthOAuth2ClientCredentials:
		return sender.Auth{Key: sub.GetId(), OAuth: &sender.OAuthClient{
			TokenURL: a.GetTokenUrl(), ClientID: a.GetClientId(), ClientSecret: a.GetClientSecret(),
			Scope: a.GetScope(), Audience: a.GetAudience(),
			PostSecret: a.GetTokenAuthMethod() == subscription.TokenAuthPost,
		}}
	case subscription.AuthMTLS:
		return sender.Auth{Key: sub.GetId(), Cert: &sender.ClientCert{
			CertificatePEM: a.GetCertificate(), PrivateKeyPEM: a.GetPrivateKey(),
		}}
	}
	return sender.Auth{}
}

package subscription

import (
	"fmt"

	"github.com/hookline/hookline/pkg/secretbox"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Sealed values are bound to their subscription and field: each is sealed
// with additional data naming "<tenant>.<id>/<field>" (secretbox.SealFor),
// so a sealed signing key, URL, header value or auth secret copied into
// another record — or into another field of the same record — does not
// open (secretbox.ErrBound): the attempt is dead-lettered rather than sent
// with a credential that was never this subscription's. Values sealed
// before binding existed (secretbox.Seal) still open, and the registry
// binds them on the record's next write (Bind).

// Bound field names.
const (
	FieldSigningKey = "signing-key"
	FieldURL        = "url"
	FieldAuthSecret = "auth/client_secret"
	FieldAuthKey    = "auth/private_key"
)

// HeaderField is the bound field name of a custom header's value.
func HeaderField(name string) string { return "header/" + name }

// Binding is the place a sealed value of sub's field is bound to.
func Binding(sub *hooklinev1.Subscription, field string) string {
	return sub.GetTenant() + "." + sub.GetId() + "/" + field
}

// Bind seals every secret of sub for its place: values in clear are
// sealed, values sealed unbound are sealed again bound, values bound here
// stay. A value it cannot bind — bound elsewhere (copied from another
// record), or that no configured key opens — is left as it is: the
// deliverer refuses it (the attempt is dead-lettered), and the write goes
// on, so that such a subscription can still be fixed, disabled or rotated.
// It returns the first such problem, naming the field, never the value,
// for the caller to log. A nil box leaves sub as it is.
func Bind(box *secretbox.Box, sub *hooklinev1.Subscription) error {
	if box == nil {
		return nil
	}
	var first error
	bind := func(field string, v *string) {
		if *v == "" {
			return
		}
		s, err := box.Rebind(Binding(sub, field), *v)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("subscription %s: %s: %w", sub.GetId(), field, err)
			}
			return
		}
		*v = s
	}
	for _, k := range sub.GetKeys() {
		bind(FieldSigningKey, &k.Secret)
	}
	bind(FieldURL, &sub.SealedUrl)
	for name, v := range sub.GetHeaders() {
		bind(HeaderField(name), &v)
		sub.Headers[name] = v
	}
	if a := sub.GetAuth(); a != nil {
		bind(FieldAuthSecret, &a.ClientSecret)
		bind(FieldAuthKey, &a.PrivateKey)
	}
	return first
}

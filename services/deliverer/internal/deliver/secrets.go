package deliver

import (
	"errors"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Secrets returns the signing secrets of a subscription, one signature
// entry each: the one place that turns stored keys into secrets
// (Options.Secrets; OpenedSecrets opens keys sealed at rest).
type Secrets func(sub *hooklinev1.Subscription) ([]string, error)

// Errors of OpenedSecrets.
var (
	// ErrNoSigningKey: every key of the subscription has expired, or it
	// has none.
	ErrNoSigningKey = errors.New("subscription has no active signing key")
	// ErrEncryptedKey: a key is stored encrypted and this deliverer has no
	// way to decrypt it.
	ErrEncryptedKey = errors.New("signing key is stored encrypted and no decryption key is configured")
)

package deliver

import (
	"errors"
	"strings"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Secrets returns the signing secrets of a subscription, one signature
// entry each. It is the one place that turns stored keys into secrets, so
// that decrypting keys stored encrypted ("enc:…") plugs in here
// (Options.Secrets).
type Secrets func(sub *hooklinev1.Subscription) ([]string, error)

// Errors of ActiveSecrets.
var (
	// ErrNoSigningKey: every key of the subscription has expired, or it
	// has none.
	ErrNoSigningKey = errors.New("subscription has no active signing key")
	// ErrEncryptedKey: a key is stored encrypted and this deliverer has no
	// way to decrypt it.
	ErrEncryptedKey = errors.New("signing key is stored encrypted and no decryption key is configured")
)

// ActiveSecrets is the default Secrets: every key not yet expired, newest
// first (the order they are stored in). It never returns a secret in an
// error.
func ActiveSecrets(sub *hooklinev1.Subscription) ([]string, error) {
	return activeSecrets(sub, time.Now())
}

func activeSecrets(sub *hooklinev1.Subscription, now time.Time) ([]string, error) {
	keys := sub.GetKeys()
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if exp := k.GetExpiresAt(); exp != nil && !exp.AsTime().After(now) {
			continue
		}
		if strings.HasPrefix(k.GetSecret(), "enc:") {
			return nil, ErrEncryptedKey
		}
		out = append(out, k.GetSecret())
	}
	if len(out) == 0 {
		return nil, ErrNoSigningKey
	}
	return out, nil
}

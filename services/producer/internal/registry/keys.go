package registry

import (
	"fmt"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// SchemeEd25519 is the optional asymmetric scheme: whsk_ secrets, whpk_
// public keys readable through the API.
const SchemeEd25519 = signing.SchemeEd25519

// SealWith makes the registry seal signing secrets, and the credentials of
// subscription URLs, with box before they are stored (nil: stored in
// clear). Call it before serving.
func (r *Registry) SealWith(box *secretbox.Box) { r.box = box }

// newKey is a fresh signing key of a scheme ("" means v1).
type newKey struct {
	scheme string
	secret string // revealed once, to the caller
	public string // whpk_ for v1a
	stored string // what the registry keeps: secret, sealed when a key is configured
}

func (r *Registry) newKey(scheme string) (newKey, error) {
	k := newKey{scheme: scheme}
	var err error
	switch scheme {
	case "", SchemeHMAC:
		k.scheme = SchemeHMAC
		k.secret, err = signing.NewHMACSecret()
	case SchemeEd25519:
		k.secret, k.public, err = signing.NewEd25519Key()
	default:
		return newKey{}, fmt.Errorf("unknown signature scheme %q", scheme)
	}
	if err != nil {
		return newKey{}, err
	}
	if k.stored, err = r.box.Seal(k.secret); err != nil {
		return newKey{}, err
	}
	return k, nil
}

// rotationKeys holds a fresh key of each scheme: a rotation learns the
// subscription's scheme only inside its compare-and-set loop.
type rotationKeys map[string]newKey

func (r *Registry) newRotationKeys() (rotationKeys, error) {
	keys := rotationKeys{}
	for _, s := range []string{SchemeHMAC, SchemeEd25519} {
		k, err := r.newKey(s)
		if err != nil {
			return nil, err
		}
		keys[s] = k
	}
	return keys, nil
}

func (k rotationKeys) of(sub *hooklinev1.Subscription) newKey {
	if sub.GetSignatureScheme() == SchemeEd25519 {
		return k[SchemeEd25519]
	}
	return k[SchemeHMAC]
}

// sealKeys seals the keys still stored in clear (records written before a
// key was configured): encryption at rest migrates on each write.
func (r *Registry) sealKeys(sub *hooklinev1.Subscription) {
	for _, k := range sub.GetKeys() {
		if s, err := r.box.Seal(k.GetSecret()); err == nil {
			k.Secret = s
		}
	}
}

// sealURL keeps a subscription's URL credentials out of its clear fields:
// a URL with credentials is stored masked, the full URL sealed in
// sealed_url. Records written before (credentials in url, or sealed_url in
// clear before a key was configured) are sealed on their next write.
func (r *Registry) sealURL(sub *hooklinev1.Subscription) error {
	if sub.GetSealedUrl() != "" {
		sealed, err := r.box.Seal(sub.GetSealedUrl())
		if err != nil {
			return err
		}
		sub.SealedUrl = sealed
		return nil
	}
	masked, sealed, err := subscription.SealURL(r.box, sub.GetUrl())
	if err != nil {
		return err
	}
	sub.Url, sub.SealedUrl = masked, sealed
	return nil
}

// sealHeaders seals custom header values still stored in clear (written
// before a key was configured), as sealKeys does for signing secrets.
func (r *Registry) sealHeaders(sub *hooklinev1.Subscription) {
	for name, v := range sub.GetHeaders() {
		if s, err := r.box.Seal(v); err == nil {
			sub.Headers[name] = s
		}
	}
}

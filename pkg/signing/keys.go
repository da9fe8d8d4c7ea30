package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"
)

// NewHMACSecret returns a fresh whsec_ secret of 32 random bytes.
func NewHMACSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return HMACSecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

// NewEd25519Key returns a fresh v1a key pair: the whsk_ secret (base64 of
// the 64-byte private key, seed then public key, as libsodium writes it)
// that signs, and the whpk_ public key that receivers verify with.
func NewEd25519Key() (secret, public string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate ed25519 key: %w", err)
	}
	return Ed25519SecretPrefix + base64.StdEncoding.EncodeToString(priv),
		Ed25519PublicPrefix + base64.StdEncoding.EncodeToString(pub), nil
}

// PublicKey returns the whpk_ public key of a whsk_ secret (a whpk_ key is
// returned as is). It returns ErrBadSecret for anything else, including a
// whsec_ secret, which has no public half.
func PublicKey(secret string) (string, error) {
	k, err := ParseKey(secret)
	if err != nil {
		return "", err
	}
	if k.scheme != SchemeEd25519 {
		return "", fmt.Errorf("%w: only whsk_ keys have a public key", ErrBadSecret)
	}
	return Ed25519PublicPrefix + base64.StdEncoding.EncodeToString(k.pub), nil
}

// Key is one parsed secret or public key. Its zero value is not usable;
// make one with ParseKey. A Key is safe for concurrent use.
type Key struct {
	scheme string // SchemeHMAC or SchemeEd25519

	hmacKey []byte
	macs    sync.Pool // of hash.Hash keyed with hmacKey, reset after use

	priv ed25519.PrivateKey // nil for a whpk_ key
	pub  ed25519.PublicKey
}

// ParseKey parses a whsec_, whsk_ or whpk_ string. It returns ErrBadSecret
// (never the value) when the prefix is unknown, the base64 is invalid or
// the key has the wrong size. An HMAC secret must decode to at least one
// byte; a whsk_ secret to a 32-byte seed or a 64-byte private key whose
// public half matches the seed; a whpk_ key to 32 bytes.
func ParseKey(s string) (*Key, error) {
	switch {
	case strings.HasPrefix(s, HMACSecretPrefix):
		raw, err := base64.StdEncoding.DecodeString(s[len(HMACSecretPrefix):])
		if err != nil || len(raw) == 0 {
			return nil, ErrBadSecret
		}
		k := &Key{scheme: SchemeHMAC, hmacKey: raw}
		k.macs.New = func() any { return hmac.New(sha256.New, k.hmacKey) }
		return k, nil
	case strings.HasPrefix(s, Ed25519SecretPrefix):
		raw, err := base64.StdEncoding.DecodeString(s[len(Ed25519SecretPrefix):])
		if err != nil {
			return nil, ErrBadSecret
		}
		var priv ed25519.PrivateKey
		switch len(raw) {
		case ed25519.SeedSize:
			priv = ed25519.NewKeyFromSeed(raw)
		case ed25519.PrivateKeySize:
			priv = ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
			if !hmac.Equal(priv[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
				return nil, ErrBadSecret // public half does not belong to the seed
			}
		default:
			return nil, ErrBadSecret
		}
		return &Key{scheme: SchemeEd25519, priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
	case strings.HasPrefix(s, Ed25519PublicPrefix):
		raw, err := base64.StdEncoding.DecodeString(s[len(Ed25519PublicPrefix):])
		if err != nil || len(raw) != ed25519.PublicKeySize {
			return nil, ErrBadSecret
		}
		return &Key{scheme: SchemeEd25519, pub: ed25519.PublicKey(raw)}, nil
	default:
		return nil, ErrBadSecret
	}
}

// Scheme is the signature version the key produces or checks: "v1" or "v1a".
func (k *Key) Scheme() string { return k.scheme }

// String never shows key material.
func (k *Key) String() string { return "signing.Key(" + k.scheme + ")" }

// GoString keeps %#v from printing key material.
func (k *Key) GoString() string { return k.String() }

// mac returns the HMAC-SHA256 of "<id>.<ts>.<body>" without copying the body.
func (k *Key) mac(dst []byte, id string, ts, body []byte) []byte {
	h := k.macs.Get().(hash.Hash)
	h.Write([]byte(id))
	h.Write(dot)
	h.Write(ts)
	h.Write(dot)
	h.Write(body)
	dst = h.Sum(dst)
	h.Reset()
	k.macs.Put(h)
	return dst
}

var dot = []byte{'.'}

func (k *Key) appendHMAC(b *strings.Builder, id string, ts, body []byte) {
	var sum [sha256.Size]byte
	var enc [44]byte // base64 of 32 bytes
	mac := k.mac(sum[:0], id, ts, body)
	base64.StdEncoding.Encode(enc[:], mac)
	b.Write(enc[:])
}

func (k *Key) appendEd25519(b *strings.Builder, content []byte) {
	var enc [88]byte // base64 of 64 bytes
	base64.StdEncoding.Encode(enc[:], ed25519.Sign(k.priv, content))
	b.Write(enc[:])
}

// The cache behind Sign: parsed keys by their string, so that callers that
// hold secrets as strings do not decode them on every message. It is
// bounded: when it reaches keyCacheMax entries it starts over.
const keyCacheMax = 4096

var (
	keyCache     sync.Map // string → *Key
	keyCacheSize atomic.Int64
)

func cachedKey(s string) (*Key, error) {
	if k, ok := keyCache.Load(s); ok {
		return k.(*Key), nil
	}
	k, err := ParseKey(s)
	if err != nil {
		return nil, err
	}
	if keyCacheSize.Add(1) > keyCacheMax {
		keyCache.Clear()
		keyCacheSize.Store(1)
	}
	keyCache.Store(s, k)
	return k, nil
}

// Package secretbox encrypts signing secrets at rest (in the KV registry
// and the Redis cache) with AES-256-GCM under an operator key, so that a
// dump of either does not reveal them.
//
// A sealed value is "enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>". Open lets a
// value without the "enc:" prefix through unchanged, so turning encryption
// on later needs no migration: records are sealed as they are next written.
// Keys rotate by moving the current key to the previous list: Open tries
// the current key, then each previous one; Seal always uses the current.
//
// A nil *Box means encryption is off: Seal returns its input, Open passes
// plain values through and refuses sealed ones with ErrNoKey.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/hookline/hookline/pkg/envconfig"
)

// KeySize is the size of an operator key: AES-256.
const KeySize = 32

// Prefix marks a sealed value; Version the format after it.
const (
	Prefix  = "enc:"
	Version = "v1:"
	// BoundVersion marks a value sealed for one place (SealFor): its
	// additional data names that place, so the value opens nowhere else.
	BoundVersion = "v2:"
)

// Errors. None carries a key, a plaintext or a ciphertext.
var (
	// ErrBadKey: a key is not 32 bytes (or not base64 of 32 bytes).
	ErrBadKey = errors.New("secret key must be 32 bytes, base64-encoded")
	// ErrDecrypt: no configured key opens the value, or it is corrupted.
	ErrDecrypt = errors.New("cannot decrypt secret: wrong key or corrupted value")
	// ErrFormat: the value starts with "enc:" but is not "enc:v1:<base64>".
	ErrFormat = errors.New("encrypted secret has an unknown format")
	// ErrNoKey: a sealed value met a nil Box (encryption is not configured).
	ErrNoKey = errors.New("secret is encrypted but no HOOKLINE_SECRET_KEY is configured")
	// ErrBound: a value sealed for one place (a subscription's field) was
	// opened for another, or without naming its place: copied from
	// another record.
	ErrBound = errors.New("secret is sealed for another record or field")
)

// Box seals with its current key and opens with any of its keys. It is safe
// for concurrent use.
type Box struct {
	current  cipher.AEAD
	previous []cipher.AEAD
	// macKeys authenticate records stored where the key never goes
	// (Redis): derived from each key, the current one first.
	macKeys [][]byte
}

// New returns a Box sealing with key and also opening with previous keys.
// Every key must be KeySize bytes (ErrBadKey, wrapped with its position).
func New(key []byte, previous ...[]byte) (*Box, error) {
	cur, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	b := &Box{current: cur, macKeys: [][]byte{macKey(key)}}
	for i, k := range previous {
		a, err := newAEAD(k)
		if err != nil {
			return nil, fmt.Errorf("previous key #%d: %w", i+1, err)
		}
		b.previous = append(b.previous, a)
		b.macKeys = append(b.macKeys, macKey(k))
	}
	return b, nil
}

// macKey derives the record-authentication key of a sealing key: never
// the sealing key itself.
func macKey(key []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("hookline record authentication v1"))
	return m.Sum(nil)
}

// Sign returns the tag that authenticates data (base64url, 22 characters)
// under the current key.
func (b *Box) Sign(data []byte) string { return tag(b.macKeys[0], data) }

// Verify reports whether tag authenticates data under the current key or
// a previous one.
func (b *Box) Verify(data []byte, t string) bool {
	for _, k := range b.macKeys {
		if hmac.Equal([]byte(tag(k, data)), []byte(t)) {
			return true
		}
	}
	return false
}

func tag(key, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, ErrBadKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ErrBadKey
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plain with a fresh random nonce. A nil Box returns plain
// unchanged (encryption off). Sealing an already sealed value returns it
// as is, so Seal is idempotent.
func (b *Box) Seal(plain string) (string, error) {
	return b.seal(Version, additionalData, plain)
}

// seal encrypts plain under version with a fresh random nonce and the
// additional data ad; nil Box or a value already sealed: returned as is.
func (b *Box) seal(version string, ad []byte, plain string) (string, error) {
	if b == nil || IsSealed(plain) {
		return plain, nil
	}
	nonce := make([]byte, b.current.NonceSize(), b.current.NonceSize()+len(plain)+b.current.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal secret: %w", err)
	}
	sealed := b.current.Seal(nonce, nonce, []byte(plain), ad)
	return Prefix + version + base64.StdEncoding.EncodeToString(sealed), nil
}

// additionalData binds ciphertexts to this format version.
var additionalData = []byte("hookline secretbox v1")

// Open decrypts a sealed value with the current key, then each previous
// one. A value without the "enc:" prefix is returned unchanged (not yet
// encrypted). It returns ErrFormat, ErrDecrypt, or ErrNoKey for a sealed
// value when the Box is nil.
func (b *Box) Open(s string) (string, error) {
	if !IsSealed(s) {
		return s, nil
	}
	if b == nil {
		return "", ErrNoKey
	}
	rest, ok := strings.CutPrefix(s[len(Prefix):], Version)
	if !ok {
		if strings.HasPrefix(s[len(Prefix):], BoundVersion) {
			return "", ErrBound // opened without its place: OpenFor
		}
		return "", ErrFormat
	}
	return b.open(rest, additionalData, ErrDecrypt)
}

// open decrypts the base64 after a sealed value's version with the
// current key, then each previous one; none opening it is failed.
func (b *Box) open(rest string, ad []byte, failed error) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.current.NonceSize()+b.current.Overhead() {
		return "", ErrFormat
	}
	nonce, ct := raw[:b.current.NonceSize()], raw[b.current.NonceSize():]
	for _, a := range append([]cipher.AEAD{b.current}, b.previous...) {
		if plain, err := a.Open(nil, nonce, ct, ad); err == nil {
			return string(plain), nil
		}
	}
	return "", failed
}

// SealFor seals plain for one place, binding (e.g. a subscription's
// tenant, id and field): the value opens only through OpenFor with the
// same binding, so a sealed value copied into another record, or into
// another field of the same record, does not open. A value already sealed
// is bound by Rebind; SealFor returns it unchanged, like Seal. A nil Box
// returns plain unchanged.
func (b *Box) SealFor(binding, plain string) (string, error) {
	return b.seal(BoundVersion, boundData(binding), plain)
}

// boundData binds a v2 ciphertext to its place.
func boundData(binding string) []byte {
	return append([]byte("hookline secretbox v2\x00"), binding...)
}

// OpenFor opens a value sealed for binding (SealFor), or an unbound one
// (Seal, written before values were bound), or passes a clear value
// through. A value bound to another place fails with ErrBound.
func (b *Box) OpenFor(binding, s string) (string, error) {
	rest, ok := strings.CutPrefix(s, Prefix+BoundVersion)
	if !ok {
		return b.Open(s)
	}
	if b == nil {
		return "", ErrNoKey
	}
	return b.open(rest, boundData(binding), ErrBound)
}

// Rebind returns s sealed for binding: a clear value is sealed, an unbound
// sealed one (Seal) opened and sealed again, a value already bound there
// returned as it is. A value bound elsewhere fails with ErrBound, and one
// no key opens with ErrDecrypt: neither is ever bound here. A nil Box
// returns s unchanged.
func (b *Box) Rebind(binding, s string) (string, error) {
	if b == nil {
		return s, nil
	}
	if strings.HasPrefix(s, Prefix+BoundVersion) {
		if _, err := b.OpenFor(binding, s); err != nil {
			return "", err
		}
		return s, nil
	}
	plain, err := b.Open(s)
	if err != nil {
		return "", err
	}
	return b.SealFor(binding, plain)
}

// IsSealed reports whether s is an encrypted value (starts with "enc:").
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// NewKey returns a fresh random key, base64-encoded, for HOOKLINE_SECRET_KEY
// (the same as `openssl rand -base64 32`).
func NewKey() (string, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// Config is embedded in the config of each binary that reads or writes
// signing secrets (the producer seals, the deliverer opens). All unset
// means encryption is off.
type Config struct {
	// Key is base64 of 32 bytes (`openssl rand -base64 32`).
	Key string `env:"HOOKLINE_SECRET_KEY"`
	// KeyFile holds the key instead (a mounted Kubernetes secret);
	// surrounding whitespace is ignored.
	KeyFile string `env:"HOOKLINE_SECRET_KEY_FILE"`
	// Previous keys, comma-separated, still accepted by Open while records
	// sealed with them are rewritten.
	Previous string `env:"HOOKLINE_SECRET_KEY_PREVIOUS"`
}

// Validate names the variable at fault; it never prints a key.
func (c Config) Validate() error {
	_, err := c.Box()
	return err
}

// Enabled reports whether a key is configured.
func (c Config) Enabled() bool { return c.Key != "" || c.KeyFile != "" }

// CurrentKey is the current key (HOOKLINE_SECRET_KEY or _FILE), decoded,
// or nil when none is configured. An error names the variable, never the
// key.
func (c Config) CurrentKey() ([]byte, error) {
	encoded, name, err := envconfig.ValueOrFile("HOOKLINE_SECRET_KEY", c.Key, c.KeyFile)
	if err != nil || !c.Enabled() {
		return nil, err
	}
	key, err := decodeKey(encoded)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return key, nil
}

// Box returns the Box the configuration describes, or nil (and no error)
// when no key is configured.
func (c Config) Box() (*Box, error) {
	key, err := c.CurrentKey()
	if err != nil {
		return nil, err
	}
	if key == nil {
		if strings.TrimSpace(c.Previous) != "" {
			return nil, errors.New("HOOKLINE_SECRET_KEY_PREVIOUS is set without HOOKLINE_SECRET_KEY")
		}
		return nil, nil
	}
	var previous [][]byte
	for i, p := range strings.Split(c.Previous, ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		k, err := decodeKey(p)
		if err != nil {
			return nil, fmt.Errorf("HOOKLINE_SECRET_KEY_PREVIOUS entry #%d: %w", i+1, err)
		}
		previous = append(previous, k)
	}
	return New(key, previous...)
}

func decodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != KeySize {
		return nil, ErrBadKey
	}
	return k, nil
}

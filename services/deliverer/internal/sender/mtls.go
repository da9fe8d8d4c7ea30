package sender

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
)

// ClientCert is a subscription's TLS client certificate (mTLS): the PEM
// chain, client certificate first, and its PEM private key.
type ClientCert struct {
	CertificatePEM string
	PrivateKeyPEM  string
}

func (c *ClientCert) hash() [32]byte {
	return sha256.Sum256([]byte(c.CertificatePEM + "\x00" + c.PrivateKeyPEM))
}

// maxCertClients bounds the transports kept for client certificates: one
// per subscription with mTLS, each with its own idle connections.
const maxCertClients = 256

// certClients holds an http.Client per subscription with a client
// certificate: connections made with one subscription's certificate are
// never reused for another's.
type certClients struct {
	mu sync.Mutex
	m  map[string]*certClient
	// order is the keys, least recently used first.
	order []string
}

type certClient struct {
	hash   [32]byte
	client *http.Client
}

// errClientCert: the stored certificate and key do not load (the API
// checks them; a record changed behind its back, or a key rotated
// wrongly). Never the key's bytes.
var errClientCert = errors.New("client certificate: the certificate and private key do not load as a PEM pair")

// certClient returns the client of a subscription's certificate, built
// on the shared transport's settings (the same dial guard, timeouts, no
// proxy, no redirects).
func (s *Sender) certClient(key string, c *ClientCert) (*http.Client, error) {
	h := c.hash()
	cc := s.certs
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if e := cc.m[key]; e != nil && e.hash == h {
		cc.touch(key)
		return e.client, nil
	}
	pair, err := tls.X509KeyPair([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM))
	if err != nil {
		return nil, errClientCert
	}
	tr := s.transport.Clone()
	tr.TLSClientConfig = s.transport.TLSClientConfig.Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
	client := &http.Client{Transport: tr, CheckRedirect: s.client.CheckRedirect}
	if old := cc.m[key]; old != nil {
		old.client.CloseIdleConnections()
	} else if len(cc.m) >= maxCertClients {
		lru := cc.order[0]
		cc.m[lru].client.CloseIdleConnections()
		delete(cc.m, lru)
		cc.order = cc.order[1:]
	}
	cc.m[key] = &certClient{hash: h, client: client}
	cc.touch(key)
	return client, nil
}

// touch makes key the most recently used.
func (cc *certClients) touch(key string) {
	for i, k := range cc.order {
		if k == key {
			cc.order = append(cc.order[:i], cc.order[i+1:]...)
			break
		}
	}
	cc.order = append(cc.order, key)
}

func (cc *certClients) closeIdle() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, e := range cc.m {
		e.client.CloseIdleConnections()
	}
}

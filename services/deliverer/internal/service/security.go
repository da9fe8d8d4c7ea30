package service

import (
	"errors"
	"syscall"

	"github.com/hookline/hookline/pkg/ssrf"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/prometheus/client_golang/prometheus"
)

// countBlocked counts the connections the SSRF policy refuses, in
// hookline_blocked_destinations_total (one per address dialled; the
// attempts themselves are hookline_attempt_errors_total{error_class="blocked"}
// and end in a dead letter with reason blocked_destination).
func countBlocked(reg prometheus.Registerer, guard sender.DialControl) sender.DialControl {
	blocked := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_blocked_destinations_total",
		Help: "Connections refused by the SSRF policy (loopback, private, link-local, metadata… not in HOOKLINE_ALLOW_PRIVATE_CIDRS).",
	})
	reg.MustRegister(blocked)
	return func(network, address string, c syscall.RawConn) error {
		err := guard(network, address, c)
		if errors.Is(err, ssrf.ErrBlocked) {
			blocked.Inc()
		}
		return err
	}
}

// openedSecrets opens signing secrets sealed at rest with HOOKLINE_SECRET_KEY
// (and its previous keys); without a key, sealed secrets are refused and
// clear ones used.
func openedSecrets(cfg config.Config) (deliver.Secrets, error) {
	box, err := cfg.Secrets.Box()
	if err != nil {
		return nil, err
	}
	return deliver.OpenedSecrets(box), nil
}

// openedURLs opens the sealed URLs of subscriptions whose URL has
// credentials, with the same keys as the signing secrets.
func openedURLs(cfg config.Config) (deliver.URLs, error) {
	box, err := cfg.Secrets.Box()
	if err != nil {
		return nil, err
	}
	return deliver.OpenedURLs(box), nil
}

// openedHeaders opens the sealed custom headers of subscriptions with the
// same keys (a key that does not load was already refused by openedURLs).
func openedHeaders(cfg config.Config) deliver.Headers {
	box, err := cfg.Secrets.Box()
	if err != nil {
		return func(*hooklinev1.Subscription) (map[string]string, error) { return nil, err }
	}
	return deliver.OpenedHeaders(box)
}

// openedAuth opens endpoint authentication secrets with the
// HOOKLINE_SECRET_KEY keys (config validation has checked them).
func openedAuth(cfg config.Config) deliver.Auth {
	box, err := cfg.Secrets.Box()
	if err != nil {
		return func(*hooklinev1.Subscription) (*hooklinev1.EndpointAuth, error) { return nil, err }
	}
	return deliver.OpenedAuth(box)
}

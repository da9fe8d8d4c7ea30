package deliver

import (
	"fmt"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/proto"
)

// URLs returns the URL to POST a subscription's webhooks to. A record
// whose URL has credentials (userinfo, ?api_key=…) stores it masked in url
// and sealed in sealed_url (subscription.SealURL); this is the one place
// that opens it (Options.URLs). Its errors never hold the URL.
type URLs func(sub *hooklinev1.Subscription) (string, error)

// OpenedURLs opens sealed URLs with box (HOOKLINE_SECRET_KEY and its
// previous keys). A nil box takes a sealed_url stored in clear (no key
// configured when it was written) and refuses a sealed one.
func OpenedURLs(box *secretbox.Box) URLs {
	return func(sub *hooklinev1.Subscription) (string, error) {
		return subscription.OpenURL(box, sub)
	}
}

// open turns a looked-up subscription into what an attempt needs: its
// signing secrets (Options.Secrets) and the subscription with the URL to
// POST to (Options.URLs), its custom headers (Options.Headers) and its
// endpoint authentication (Options.Auth) opened —
// a copy when either differs from the stored record, so the cached record
// is never changed. A failure is permanent for
// the task: no attempt can succeed until the record or the key changes.
func (o *Options) open(sub *hooklinev1.Subscription) ([]string, *hooklinev1.Subscription, error) {
	secrets, err := o.Secrets(sub)
	if err != nil {
		return nil, sub, err
	}
	urls := o.URLs
	if urls == nil {
		urls = OpenedURLs(nil)
	}
	u, err := urls(sub)
	if err != nil {
		return nil, sub, fmt.Errorf("endpoint URL credentials: %w", err)
	}
	opener := o.Headers
	if opener == nil {
		opener = OpenedHeaders(nil)
	}
	h, err := opener(sub)
	if err != nil {
		return nil, sub, fmt.Errorf("custom headers: %w", err)
	}
	authOpener := o.Auth
	if authOpener == nil {
		authOpener = OpenedAuth(nil)
	}
	a, err := authOpener(sub)
	if err != nil {
		return nil, sub, fmt.Errorf("endpoint authentication: %w", err)
	}
	if u != sub.GetUrl() || len(h) > 0 || a != nil {
		sub = proto.CloneOf(sub)
		sub.Url, sub.SealedUrl, sub.Headers, sub.Auth = u, "", h, a
	}
	return secrets, sub, nil
}

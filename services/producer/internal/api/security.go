package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/ssrf"
)

// TypeForbidden is a 403: the token may not act on that tenant (or lacks
// the scope, answered by the auth middleware with the same type).
const TypeForbidden = auth.TypeForbidden

// checkURL is validateURL's syntax check, then the SSRF policy: a literal
// address (any spelling) in a blocked range, or http:// under
// HOOKLINE_HTTPS_ONLY, is refused with the reason. Host names are checked
// again at every connection by the deliverer (DNS can change).
func (a *API) checkURL(raw string) error {
	if err := validateURL(raw); err != nil {
		return err
	}
	if err := a.urlPolicy.ValidateURL(raw); err != nil {
		var ue *ssrf.URLError
		if errors.As(err, &ue) {
			return errors.New(strings.TrimPrefix(ue.Reason, "url "))
		}
		return err
	}
	return nil
}

// forbidTenant answers 403 and returns true when the caller's token is
// bound to another tenant than the one the request touches.
func forbidTenant(w http.ResponseWriter, r *http.Request, tenant string) bool {
	if !errors.Is(auth.CheckTenant(r.Context(), tenant), auth.ErrTenantForbidden) {
		return false
	}
	writeProblem(w, problem(http.StatusForbidden, TypeForbidden,
		fmt.Sprintf("this token may not act on tenant %q", tenant)))
	return true
}

// hiddenTenant reports whether a stored record of tenant must look absent
// to the caller (a token bound to another tenant): 404, not 403, so that
// ids of other tenants cannot be probed.
func hiddenTenant(r *http.Request, tenant string) bool {
	return errors.Is(auth.CheckTenant(r.Context(), tenant), auth.ErrTenantForbidden)
}

// hiddenSubscription reports whether a subscription must look absent to
// the caller: another tenant's, or one outside a portal session's
// subscriptions (404, so that ids cannot be probed).
func hiddenSubscription(r *http.Request, tenant, id string) bool {
	return hiddenTenant(r, tenant) || auth.CheckSubscription(r.Context(), id) != nil
}

// forbidLimited answers 403 and returns true when the caller is limited to
// some subscriptions (a portal session) and so may not do what: reach
// tenant-wide data or create a subscription.
func forbidLimited(w http.ResponseWriter, r *http.Request, what string) bool {
	if !auth.SubscriptionLimited(r.Context()) {
		return false
	}
	writeProblem(w, problem(http.StatusForbidden, TypeForbidden, "this session is limited to some subscriptions: it may not "+what))
	return true
}

// forbidSubscription answers 403 and returns true when a listing or a job
// names a subscription outside the caller's, or none while the caller is
// limited to some.
func forbidSubscription(w http.ResponseWriter, r *http.Request, id string) bool {
	if !auth.SubscriptionLimited(r.Context()) {
		return false
	}
	if id == "" {
		writeProblem(w, problem(http.StatusForbidden, TypeForbidden, "this session is limited to some subscriptions: name one (subscription_id)"))
		return true
	}
	if auth.CheckSubscription(r.Context(), id) != nil {
		writeProblem(w, problem(http.StatusForbidden, TypeForbidden, fmt.Sprintf("this session may not act on subscription %q", id)))
		return true
	}
	return false
}

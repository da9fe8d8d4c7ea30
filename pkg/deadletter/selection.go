package deadletter

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
)

// Selection is which dead letters a command acts on: explicit sequences, or
// filters that all must match. The zero Selection is every dead letter.
type Selection struct {
	// Seqs are explicit DEADLETTER sequences; they exclude the filters.
	Seqs []uint64

	Tenant       string
	Subscription string
	// Types are NATS-token filters over the event type ("order.*").
	Types []string
	// Reasons are Hookline-Reason values (pkg/wire's dead-letter reasons).
	Reasons []string
	// Statuses match the last HTTP status.
	Statuses []StatusMatch
	// Since and Until bound the dead-letter time (inclusive, exclusive).
	Since, Until time.Time
	// MaxSeq, when set, excludes entries stored after it: a resumed replay
	// pins the selection it started with.
	MaxSeq uint64
	// Limit caps how many entries are taken (0: all).
	Limit int
}

// Validate reports a selection that cannot match as the operator meant.
func (s Selection) Validate() error {
	if len(s.Seqs) > 0 && s.HasFilters() {
		return errors.New("give SEQ arguments or filters (--tenant, --subscription, --type, --reason, --status, --since, --until, --max-seq), not both")
	}
	for _, tok := range []struct{ name, v string }{{"--tenant", s.Tenant}, {"--subscription", s.Subscription}} {
		if strings.ContainsAny(tok.v, ".*> \t") {
			return fmt.Errorf("%s %q: must be a single NATS subject token (no '.', '*', '>' or spaces)", tok.name, tok.v)
		}
	}
	for _, t := range s.Types {
		if err := validTypeFilter(t); err != nil {
			return err
		}
	}
	for _, r := range s.Reasons {
		if !wire.IsDeadLetterReason(r) {
			return fmt.Errorf("--reason %q is not a dead-letter reason; known reasons: %s", r, strings.Join(wire.DeadLetterReasons(), ", "))
		}
	}
	if !s.Since.IsZero() && !s.Until.IsZero() && !s.Since.Before(s.Until) {
		return fmt.Errorf("--since (%s) must be before --until (%s)", s.Since.UTC().Format(time.RFC3339), s.Until.UTC().Format(time.RFC3339))
	}
	if s.Limit < 0 {
		return fmt.Errorf("--limit %d: must be 0 (no limit) or more", s.Limit)
	}
	return nil
}

// HasFilters reports whether any filter is set.
func (s Selection) HasFilters() bool {
	return s.Tenant != "" || s.Subscription != "" || len(s.Types) > 0 || len(s.Reasons) > 0 ||
		len(s.Statuses) > 0 || !s.Since.IsZero() || !s.Until.IsZero() || s.MaxSeq > 0
}

// Subject is the server-side filter: deadletter.<tenant|*>.<sub|*>.
func (s Selection) Subject() string {
	if s.Tenant == "" && s.Subscription == "" {
		return stream.DeadLetterPrefix + ".>"
	}
	t, sub := s.Tenant, s.Subscription
	if t == "" {
		t = "*"
	}
	if sub == "" {
		sub = "*"
	}
	return stream.DeadLetterSubject(t, sub)
}

// Match applies every filter to an entry.
func (s Selection) Match(e Entry) bool {
	r := e.Record
	if s.Tenant != "" && r.GetTenant() != s.Tenant {
		return false
	}
	if s.Subscription != "" && r.GetSubscriptionId() != s.Subscription {
		return false
	}
	if s.MaxSeq > 0 && r.GetSeq() > s.MaxSeq {
		return false
	}
	if len(s.Types) > 0 && !slices.ContainsFunc(s.Types, func(f string) bool { return TypeMatches(f, r.GetEventType()) }) {
		return false
	}
	if len(s.Reasons) > 0 && !slices.Contains(s.Reasons, r.GetReason()) {
		return false
	}
	if len(s.Statuses) > 0 && !slices.ContainsFunc(s.Statuses, func(m StatusMatch) bool { return m.Match(r.GetLastStatus()) }) {
		return false
	}
	t := e.Time()
	if !s.Since.IsZero() && t.Before(s.Since) {
		return false
	}
	if !s.Until.IsZero() && !t.Before(s.Until) {
		return false
	}
	return true
}

// TypeMatches applies a NATS-token filter to a dot-separated event type:
// "*" matches one token, ">" (last) one or more.
func TypeMatches(filter, eventType string) bool {
	f := strings.Split(filter, ".")
	t := strings.Split(eventType, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(t) > i
		}
		if i >= len(t) || (tok != "*" && tok != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

func validTypeFilter(f string) error {
	toks := strings.Split(f, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("--type %q: empty token (want e.g. order.created, order.*, invoice.>)", f)
		case tok == ">" && i != len(toks)-1:
			return fmt.Errorf("--type %q: '>' must be the last token", f)
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*> \t"):
			return fmt.Errorf("--type %q: '*' and '>' must be whole tokens", f)
		}
	}
	return nil
}

// StatusMatch matches a last HTTP status: one code (503), a class (5xx), or
// 0 for "no answer" (timeout, connection refused…).
type StatusMatch struct {
	Code  int32
	Class int32 // 1–5 for 1xx–5xx; 0 when Code is meant
}

// Match reports whether status matches.
func (m StatusMatch) Match(status int32) bool {
	if m.Class != 0 {
		return status/100 == m.Class
	}
	return status == m.Code
}

// ParseStatuses parses a comma-separated list: "500", "5xx", "429,503", "0".
func ParseStatuses(s string) ([]StatusMatch, error) {
	var out []StatusMatch
	for _, p := range strings.Split(s, ",") {
		p = strings.ToLower(strings.TrimSpace(p))
		if c, ok := strings.CutSuffix(p, "xx"); ok && len(c) == 1 && c[0] >= '1' && c[0] <= '5' {
			out = append(out, StatusMatch{Class: int32(c[0] - '0')})
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || (n != 0 && (n < 100 || n > 599)) {
			return nil, fmt.Errorf("--status %q: want HTTP statuses like 503 or 429,503, a class like 5xx, or 0 for \"no answer\"", p)
		}
		out = append(out, StatusMatch{Code: int32(n)})
	}
	return out, nil
}

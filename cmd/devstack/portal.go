package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// portalTTL is how long the demo portal session lasts: a working day.
const portalTTL = 24 * time.Hour

// openPortal asks the producer for a portal session of the demo tenant, as
// a platform's backend would, and returns the URL that opens it. With API
// tokens configured it needs token (HOOKLINE_API_TOKEN, admin scope).
func openPortal(ctx context.Context, api, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"ttl_seconds":%d}`, int(portalTTL.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/tenants/"+demoTenant+"/portal-sessions", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("portal session: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("portal session: %s", resp.Status)
	}
	var s struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(b, &s); err != nil || s.URL == "" {
		return "", fmt.Errorf("portal session: an answer without url")
	}
	return s.URL, nil
}

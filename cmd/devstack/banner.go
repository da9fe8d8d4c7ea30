package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Demo values of the copy-paste commands.
const (
	demoTenant    = "acme"
	demoEventType = "order.created"
	demoFilter    = "order.*"
	demoData      = `{"order_id":1}`
)

// banner is what devstack prints once the services are ready: where things
// are, and commands to paste into another terminal.
// syncNote says in the banner how NATS fsyncs.
func syncNote(s natsSync) string {
	if s == syncAlways {
		return "fsync on every write: production's durability"
	}
	return "fsync every 2 min, the NATS default: faster, loses acked writes on a power cut; --nats-sync always for production's"
}

func banner(cfg config, r *localRedis, tokens bool, portalURL string) string {
	api := "http://" + cfg.ProducerAddr
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(cfg.NATSPort)
	receiverURL := "http://" + cfg.ReceiverAddr + receiverPath
	// hookctl's defaults are nats://127.0.0.1:4222 and http://localhost:8080.
	hookctl := "go run ./cmd/hookctl"
	if cfg.ProducerAddr != "127.0.0.1:8080" {
		hookctl = "HOOKLINE_API_URL=" + api + " " + hookctl
	}
	if cfg.NATSPort != 4222 {
		hookctl = "HOOKLINE_NATS_URL=" + natsURL + " " + hookctl
	}
	dataDir := cfg.DataDir
	if rel, err := filepath.Rel(cfg.Root, dataDir); err == nil && !strings.HasPrefix(rel, "..") {
		dataDir = "./" + rel
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("  Hookline is running. Ctrl-C stops everything.")
	p("")
	p("    API (producer)  %s", api)
	p("    deliverer       http://%s  (/readyz, /metrics)", cfg.DelivererAddr)
	p("    NATS            %s  (JetStream, files in %s/nats, %s)", natsURL, dataDir, syncNote(cfg.NATSSync))
	p("    Redis           %s  (%s)", redactURL(r.URL), r.Kind)
	p("    demo receiver   %s  (verifies signatures, prints each webhook)", receiverURL)
	p("")
	p("  In another terminal:")
	p("")
	auth := ""
	if tokens {
		// The developer configured API tokens: the commands need one.
		p("  (HOOKLINE_API_TOKENS is set: export HOOKLINE_API_TOKEN=<a token with the admin scope> first.)")
		p("")
		auth = ` -H "Authorization: Bearer $HOOKLINE_API_TOKEN"`
	}
	p("  1. Subscribe the demo receiver to %s's %s events (the answer shows its whsec_ secret once):", demoTenant, demoFilter)
	p("")
	p("     curl -sS -X POST %s/v1/subscriptions -H 'Content-Type: application/json'%s \\", api, auth)
	p(`       -d '{"tenant":"%s","url":"%s","event_types":["%s"]}'`, demoTenant, receiverURL, demoFilter)
	p("")
	p("  2. Publish an event over HTTP:")
	p("")
	p("     curl -sS -X POST %s/v1/events -H 'Content-Type: application/json'%s \\", api, auth)
	p(`       -d '{"tenant":"%s","type":"%s","data":%s}'`, demoTenant, demoEventType, demoData)
	p("")
	p("     or straight to NATS, as a platform service would (nats CLI):")
	p("")
	p("     nats pub -s %s events.%s.%s '%s'", natsURL, demoTenant, demoEventType, demoData)
	p("")
	p("     or through the producer's NATS ingest (group commit, answered with a PubAck):")
	p("")
	p("     nats req -s %s ingest.%s.%s '%s'", natsURL, demoTenant, demoEventType, demoData)
	p("")
	p("  3. The receiver prints webhook-id, type, verified=yes and the body here.")
	p("")
	p("  4. See it as %s's developers do, in the portal (a %s session; open the link in a browser):", demoTenant, "24-hour")
	p("")
	if portalURL != "" {
		p("     %s", portalURL)
	} else {
		p("     curl -sS -X POST %s/v1/tenants/%s/portal-sessions -H 'Content-Type: application/json'%s -d '{}'", api, demoTenant, auth)
		p("     (then open the \"url\" of the answer)")
	}
	p("")
	p("  Dead letters and the rest with hookctl:")
	p("")
	p("     %s dlq ls", hookctl)
	p("     %s --help", hookctl)
	p("")
	return b.String()
}

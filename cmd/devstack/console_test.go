package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestConsoleWriterPrefixesWholeLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	con := newConsole(&out)
	w := con.Writer("producer")
	for _, chunk := range []string{"first li", "ne\nsecond line\r\nthi", "rd without newline"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "producer  | first line\n" +
		"producer  | second line\n" +
		"producer  | third without newline\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestConsoleLinesNeverInterleave(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	con := newConsole(&out)
	const lines = 200
	var wg sync.WaitGroup
	for _, name := range []string{"producer", "deliverer"} {
		w := con.Writer(name)
		wg.Go(func() {
			defer w.Close()
			for range lines {
				// Two writes per line: a racing writer must not get in between.
				_, _ = w.Write([]byte(name + " says "))
				_, _ = w.Write([]byte("hello\n"))
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != 2*lines {
		t.Fatalf("got %d lines, want %d", len(got), 2*lines)
	}
	for _, l := range got {
		if l != "producer  | producer says hello" && l != "deliverer | deliverer says hello" {
			t.Fatalf("mangled line %q", l)
		}
	}
}

func TestBannerNamesTheChosenAddresses(t *testing.T) {
	t.Parallel()
	cfg := config{
		Root: "/repo", DataDir: "/repo/.data", NATSPort: 14222,
		ProducerAddr: "127.0.0.1:18080", DelivererAddr: "127.0.0.1:18081", ReceiverAddr: "127.0.0.1:19000",
	}
	r := &localRedis{Kind: kindMiniredis, URL: "redis://127.0.0.1:6379/0"}
	b := banner(cfg, r, false, "http://127.0.0.1:18080/portal/#session=hlps_x.y")
	for _, want := range []string{
		"curl -sS -X POST http://127.0.0.1:18080/v1/subscriptions -H 'Content-Type: application/json' \\",
		`-d '{"tenant":"acme","url":"http://127.0.0.1:19000/webhook","event_types":["order.*"]}'`,
		`-d '{"tenant":"acme","type":"order.created","data":{"order_id":1}}'`,
		`nats pub -s nats://127.0.0.1:14222 events.acme.order.created '{"order_id":1}'`,
		`nats req -s nats://127.0.0.1:14222 ingest.acme.order.created '{"order_id":1}'`,
		"HOOKLINE_NATS_URL=nats://127.0.0.1:14222 HOOKLINE_API_URL=http://127.0.0.1:18080 go run ./cmd/hookctl dlq ls",
		"files in ./.data/nats",
		"(embedded miniredis)",
		"     http://127.0.0.1:18080/portal/#session=hlps_x.y",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("banner lacks %q:\n%s", want, b)
		}
	}
	if strings.Contains(b, "Authorization") {
		t.Error("asks for a token although none is configured")
	}
	withTokens := banner(cfg, r, true, "")
	if !strings.Contains(withTokens, "curl -sS -X POST http://127.0.0.1:18080/v1/tenants/acme/portal-sessions") {
		t.Errorf("without a portal link the banner does not say how to make one:\n%s", withTokens)
	}
	if !strings.Contains(withTokens, `-H "Authorization: Bearer $HOOKLINE_API_TOKEN"`) {
		t.Errorf("API tokens configured, but the commands send none:\n%s", withTokens)
	}
}

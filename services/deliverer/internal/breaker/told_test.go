package breaker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
)

// A told circuit records, with its first opening, when it opened, what the
// failure was and who was told; a refusal names the spell (the streak's
// start); each other who is recorded once per spell, on either replica;
// a forgotten tell is not handed over; the close hands over every told,
// once; a closed circuit records nobody; a new spell starts with nobody
// told.
func TestToldOncePerSpellAndHandedOverByTheClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk, a, b := pair(t, redistest.Start(t), breaker.Config{Failures: 2, Cooldown: 10 * time.Second})
	const host = "dest:shared.example:443"
	opening := breaker.Opening{Who: "acme", What: "shared.example sub_a", Status: 503, ErrorClass: "http_status"}

	if tl, err := a.Tell(ctx, host, "globex", "x"); err != nil || tl.Open || tl.First {
		t.Fatalf("tell while closed: %+v, %v; want nothing recorded", tl, err)
	}
	first := mustFail(t, a, host, 0)
	if s, err := b.FailureTell(ctx, host, opening); err != nil || !s.Opened || !s.Told {
		t.Fatalf("the opening failure: %+v, %v; want opened and told", s, err)
	}
	opened := clk.Now().Truncate(time.Millisecond)
	d := mustAllow(t, a, host)
	if d.Allow || !d.Since.Equal(first.Since) {
		t.Fatalf("refusal %+v; want the spell's streak start %s", d, first.Since)
	}
	for i, r := range []*breaker.Breaker{a, b, a} {
		tl, err := r.Tell(ctx, host, "globex", "shared.example sub_g")
		if err != nil || !tl.Open || tl.First != (i == 0) || !tl.OpenedAt.Equal(opened) || !tl.Since.Equal(first.Since) ||
			tl.Status != 503 || tl.ErrorClass != "http_status" || !tl.OpenUntil.Equal(opened.Add(10*time.Second)) {
			t.Fatalf("tell %d of globex: %+v, %v; want first only once, with the opening's time, status and class", i, tl, err)
		}
	}
	if tl, _ := b.Tell(ctx, host, "acme", "shared.example sub_a2"); tl.First {
		t.Fatal("acme, told with the opening, told again")
	}
	if tl, _ := b.Tell(ctx, host, "umbrella", "shared.example sub_u"); !tl.First {
		t.Fatal("umbrella not told")
	}
	if err := a.Untell(ctx, host, "umbrella", "shared.example sub_u"); err != nil {
		t.Fatal(err)
	}
	// A failed probe keeps the spell and its record.
	clk.Advance(10 * time.Second)
	if d := mustAllow(t, a, host); d.Probe == "" {
		t.Fatalf("after the cool-down: %+v, want the probe", d)
	}
	if s := mustFail(t, a, host, 0); !s.Opened || s.Opens != 2 || s.Told {
		t.Fatalf("failed probe: %+v; want reopened, told nobody", s)
	}
	if tl, _ := a.Tell(ctx, host, "globex", "shared.example sub_g"); !tl.Open || tl.First {
		t.Fatalf("globex after a failed probe: %+v; want told already", tl)
	}

	clk.Advance(20 * time.Second)
	closed, told, err := b.Close(ctx, host)
	slices.SortFunc(told, func(x, y breaker.Told) int { return strings.Compare(x.Who, y.Who) })
	want := []breaker.Told{{Who: "acme", What: "shared.example sub_a"}, {Who: "globex", What: "shared.example sub_g"}}
	if err != nil || !closed || !slices.Equal(told, want) {
		t.Fatalf("close: %v %v %v; want closed, told %v", closed, told, err, want)
	}
	if closed, told, err := a.Close(ctx, host); err != nil || closed || len(told) != 0 {
		t.Fatalf("second close: %v %v %v; want nothing", closed, told, err)
	}

	// A new spell, opened without an Opening: nobody told yet.
	mustFail(t, a, host, 0)
	mustFail(t, a, host, 0)
	if tl, _ := b.Tell(ctx, host, "globex", "shared.example sub_g"); !tl.First || !tl.OpenedAt.IsZero() {
		t.Fatalf("globex in a new spell: %+v; want told, no opening recorded", tl)
	}
}

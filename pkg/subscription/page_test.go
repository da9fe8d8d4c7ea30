package subscription_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// TestListPage: a tenant with more subscriptions than a page lists each
// exactly once across pages, in id order, and other tenants never show.
func TestListPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var want []string
	for i := range 23 {
		id := fmt.Sprintf("sub_%03d", i)
		want = append(want, id)
		if _, err := e.store.Create(ctx, newSub("acme", id, "x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.Create(ctx, newSub("other", "sub_0015", "x")); err != nil {
		t.Fatal(err)
	}
	var got []string
	after, pages := "", 0
	for {
		page, next, err := e.store.ListPage(ctx, "acme", after, 5)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > 5 {
			t.Fatalf("page of %d", len(page))
		}
		got = append(got, ids(page)...)
		if next == "" {
			break
		}
		if next != page[len(page)-1].GetId() {
			t.Fatalf("next %q after a page ending at %s", next, page[len(page)-1].GetId())
		}
		after = next
	}
	if !slices.Equal(got, want) || pages != 5 {
		t.Fatalf("pages %d listed %v, want %v", pages, got, want)
	}
	if _, _, err := e.store.ListPage(ctx, "acme", "", 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
	if page, next, err := e.store.ListPage(ctx, "nobody", "", 5); err != nil || len(page) != 0 || next != "" {
		t.Fatalf("empty tenant: %v %q %v", page, next, err)
	}
	// Deleted subscriptions leave no hole: the page after them is full.
	for _, id := range want[5:10] {
		if _, _, err := e.store.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := e.store.ListPage(ctx, "acme", want[4], 5)
	if err != nil || len(page) != 5 || page[0].GetId() != want[10] || next != want[14] {
		t.Fatalf("after deletes: %v %q %v", ids(page), next, err)
	}
}

package deadletter

import (
	"context"
	"errors"
	"time"
)

// Purge deletes entries in order, calling onResult after each. An entry
// already gone is reported with outcome Gone. When ctx ends it stops before
// the next entry and returns ErrInterrupted.
func (st *Store) Purge(ctx context.Context, entries []Entry, onResult func(done int, r Result)) ([]Result, error) {
	results := make([]Result, 0, len(entries))
	for _, e := range entries {
		if ctx.Err() != nil {
			return results, ErrInterrupted
		}
		rec := e.Record
		res := Result{Seq: rec.GetSeq(), EventID: rec.GetEventId(), Tenant: rec.GetTenant(), SubscriptionID: rec.GetSubscriptionId(), Outcome: Purged}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := st.Delete(dctx, rec.GetSeq())
		cancel()
		switch {
		case errors.Is(err, ErrNotFound):
			res.Outcome = Gone
		case err != nil:
			return results, err
		}
		results = append(results, res)
		if onResult != nil {
			onResult(len(results), res)
		}
	}
	return results, nil
}

package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// The default puller's position is its real stored cursor even when more
// pullers than maxPullers sort before it (serve lists 64; any name a
// pull-token holder used with the stored cursor is in deliveries). Before
// the fix it was appended with cursor 0, so /metrics showed
// imbridge_pull_stored_cursor{puller="yunxin"} 0 and the age of the very
// first message as its oldest undelivered one.
func TestRegressGaugesDefaultPullerPastTheLimit(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	for _, test := range []struct {
		name       string
		others     int // advanced pullers named before "yunxin"
		maxPullers int
	}{
		{"within the limit", 1, 4},
		{"past the limit", 5, 4},
	} {
		t.Run(test.name, func(t *testing.T) {
			for i := 0; i < test.others; i++ {
				d := store.Delivery{At: time.Now(), Puller: fmt.Sprintf("a%02d", i), CursorTo: 3, Advanced: true}
				if err := st.RecordDelivery(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.RecordDelivery(ctx, store.Delivery{At: time.Now(), Puller: "yunxin", CursorTo: 7, Advanced: true}); err != nil {
				t.Fatal(err)
			}
			want, err := st.PullCursor(ctx, "yunxin")
			if err != nil || want != 7 {
				t.Fatalf("PullCursor: %d, %v; want 7", want, err)
			}
			g, err := st.Gauges(ctx, store.LineFilter{UpTo: 7}, "yunxin", test.maxPullers)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range g.Pullers {
				if p.Name == "yunxin" {
					found = true
					if p.Cursor != want {
						t.Errorf("yunxin's cursor in the gauges: %d, want its stored cursor %d", p.Cursor, want)
					}
				}
			}
			if !found {
				t.Errorf("pullers %+v: yunxin missing", g.Pullers)
			}
			if len(g.Pullers) > test.maxPullers+1 {
				t.Errorf("%d pullers, want at most %d", len(g.Pullers), test.maxPullers+1)
			}
		})
	}
}

//go:build linux

package tcpack_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/imbridge/imbridge/tcpack"
)

// Review: Slack's comment and the package documentation say 64 KiB + 1/32 of
// the largest window ("a slack of 1/8 would hide 600 KiB in an 8 MiB
// buffer"); the code uses 1/8.
func TestReviewSlackIsTheDocumentedOneThirtySecond(t *testing.T) {
	const max = 8 << 20
	if got, want := tcpack.Slack(max), uint32(64<<10+max/32); got != want {
		t.Fatalf("Slack(8 MiB) = %d (%d KiB), documented 64 KiB + 1/32 = %d (%d KiB): up to %d KiB unread is confirmed",
			got, got>>10, want, want>>10, got>>10)
	}
}

// Review: a puller with an 8 MiB receive buffer that leaves 600 KiB unread and
// keeps the connection open must not be confirmed.
func TestReviewSixHundredKiBUnreadInAnEightMiBBufferIsConfirmed(t *testing.T) {
	const size = 24 << 20
	c, client := connect(t, 4<<20) // the kernel doubles it: 8 MiB
	defer c.Close()
	defer client.Close()
	client.SetDeadline(time.Now().Add(time.Minute))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); readN(t, client, size-unread) }()
	tr, err := tcpack.New(c)
	if err != nil {
		t.Fatal(err)
	}
	write(t, c, tr, size)
	wg.Wait()
	err = tr.Wait(context.Background(), 3*time.Second)
	t.Logf("Wait: %v; largest window %d, slack %d", err, tr.MaxWindow(), tcpack.Slack(tr.MaxWindow()))
	if !errors.Is(err, tcpack.ErrUnread) && !errors.Is(err, tcpack.ErrUnacknowledged) {
		t.Fatalf("600 KiB unread in an 8 MiB buffer: Wait = %v, want not confirmed", err)
	}
}

//go:build linux

package tcpack_test

import (
	"testing"

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

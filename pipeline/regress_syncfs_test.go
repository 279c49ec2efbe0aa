package pipeline

import (
	"context"
	"testing"
)

// Review: the loader bounds Durable with a 30 s context ("dctx"), but syncfs
// ignores its context: a syncfs that hangs (a stuck disk, a busy shared
// filesystem) stalls the loader — and so release, and so ingest once the
// spool is full — for as long as it hangs.
func TestReviewSyncfsIgnoresItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := syncfs(t.TempDir())(ctx); err == nil {
		t.Fatal("syncfs ran to completion with a context that was already done: its deadline bounds nothing")
	}
}

package mapping_test

// Written by the review of 332d482, when an INSERT went to the server in
// several blocks (a Flush between them). Since then the chunks are appended
// on our side and sent as one block with the last; these tests hold and
// stay as regressions (their comments describe the earlier shape).

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// pauseAtBlock holds the first INSERT between its blocks (at the call of
// next numbered at) until gate closes: a long batch.
type pauseAtBlock struct {
	*store.Store
	at      int
	gate    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func (p *pauseAtBlock) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	calls := 0
	return p.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		calls++
		if calls == p.at {
			p.once.Do(func() { close(p.blocked); <-p.gate })
		}
		return next()
	})
}

// A team mapping committed while a batch is between its blocks: the
// batch's later blocks still render at the version it started with, so its
// message of that group is held; the re-issue of the new version must still
// serve it with the tid.
func TestReview3MappingCommittedMidBatchReissuesTheHeldMessage(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	in := ingest.New(sp)
	var msgs []message.Message
	for i := 0; i < 300; i++ {
		msgs = append(msgs, groupOf(fmt.Sprintf("other-%d", i), "@TGS#OTHER"))
	}
	msgs = append(msgs, groupOf("late-1", "@TGS#LATE")) // in the batch's last block
	if _, err := in.Ingest(ctx, "tencent", msgs); err != nil {
		t.Fatal(err)
	}
	ps := &pauseAtBlock{Store: st, at: 2, gate: make(chan struct{}), blocked: make(chan struct{})}
	ld := loader.New(sp, ps, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond, BatchRows: 1000, ChunkRows: 100})
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, 0)
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ld.Run(rctx, 5*time.Second) }()
	go func() { defer wg.Done(); ri.Run(rctx) }()
	defer func() { rcancel(); wg.Wait(); sp.Close() }()

	<-ps.blocked
	v, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#LATE", TID: 77}})
	if err != nil {
		t.Fatal(err)
	}
	close(ps.gate)
	waitFor(t, "the re-issue", func() bool { return ri.Done() >= v })
	var served bool
	for _, r := range storedRows(t, st, "late-1") {
		if r.held == 0 && hasTID(r.line, 77) {
			served = true
		}
	}
	t.Logf("late-1 rows: %+v", storedRows(t, st, "late-1"))
	if !served {
		t.Fatalf("late-1 rows %+v: never served with tid 77", storedRows(t, st, "late-1"))
	}
}

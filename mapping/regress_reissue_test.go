package mapping_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

// ---- helpers -------------------------------------------------------------

// nextVersion is store.nextMapVersion's query: what a load about to start
// gets as its version.
func nextVersion(t *testing.T, st *store.Store) uint64 {
	t.Helper()
	var v uint64
	if err := st.Conn().QueryRow(context.Background(), `SELECT toUInt64(greatest(greatest(
 (SELECT max(version) FROM map_versions), (SELECT max(version) FROM team_map)), (SELECT max(version) FROM url_map)))`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v + 1
}

// rawInsert does what putMappings does in one of its two steps.
func rawInsert(t *testing.T, st *store.Store, insert string, values ...any) {
	t.Helper()
	b, err := st.Conn().PrepareBatch(context.Background(), insert)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append(values...); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
}

func writeTeamEntry(t *testing.T, st *store.Store, source, group string, tid int64, v uint64) {
	rawInsert(t, st, "INSERT INTO team_map (source, group_id, tid, version, added_at)", source, group, tid, v, time.Now().UTC())
}

func writeURLEntry(t *testing.T, st *store.Store, old, repl string, v uint64) {
	rawInsert(t, st, "INSERT INTO url_map (old_url, new_url, version, added_at)", old, repl, v, time.Now().UTC())
}

func commitVersion(t *testing.T, st *store.Store, v uint64, kind string) {
	rawInsert(t, st, "INSERT INTO map_versions (version, kind, entries, committed_at)", v, kind, uint64(1), time.Now().UTC())
}

func groupOf(id, group string) message.Message {
	m := groupText(id)
	m.GroupID = group
	return m
}

// ---- 1. a map load that commits after a later one ------------------------

// Review: two map loads overlap (two admin calls, or an admin call and a
// teammap load with no serve): load A takes version v and writes its
// entries, load B takes v+1 and commits first; the re-issue of (…, v+1] runs
// without A's entries; then A commits v. MapVersion stays v+1 = Done, so the
// held messages of A's group are never re-issued, though the group is
// mapped and its new messages are served.
func TestReviewLoadCommittingAfterALaterOneLeavesHeldMessagesHeldForever(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.ingest(t, "tencent", groupOf("held-1", "@TGS#A"))
	waitFor(t, "the held row", func() bool { return len(r.rows(t, "held-1")) == 1 })

	vA := nextVersion(t, r.st)
	writeTeamEntry(t, r.st, "tencent", "@TGS#A", 900, vA) // load A: entries written, commit not yet
	vB, err := r.st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/x.jpg", New: "https://nim/x.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	if vB != vA+1 {
		t.Fatalf("load B got version %d, want %d", vB, vA+1)
	}
	waitFor(t, "re-issue of load B", func() bool { return r.ri.Done() >= vB })
	commitVersion(t, r.st, vA, "team") // load A commits

	r.ingest(t, "tencent", groupOf("held-2", "@TGS#A"))
	waitFor(t, "a new message of the group", func() bool { return len(r.rows(t, "held-2")) == 1 })
	if got := r.rows(t, "held-2")[0]; got.held != 0 || !strings.Contains(got.line, `"tid":900`) {
		t.Fatalf("the group's mapping is not in effect: %+v", got)
	}
	time.Sleep(3 * time.Second) // 150 re-issue polls
	rows := r.rows(t, "held-1")
	if len(rows) != 2 {
		t.Fatalf("group @TGS#A is mapped (version %d, committed; new messages served with tid 900), but its held message has %d row(s) %+v: never served (re-issuer done=%d)",
			vA, len(rows), rows, r.ri.Done())
	}
}

// ---- 2. re-issue larger than the spool ------------------------------------

// Review: the re-issue spools 5000 copies in one Append. A spool smaller
// than that (spool.max_bytes may be 1 MiB) refuses the append every time:
// the re-issue never finishes, and every refusal marks the spool full, so
// /readyz (Pipeline.Ready → Spool.Healthy) answers 503.
func TestReviewReissueChunkLargerThanTheSpoolNeverFinishes(t *testing.T) {
	st := storetest.Open(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	in := ingest.New(sp)
	ld := loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond,
		Durable: func(context.Context) error { return nil }, // the managed server: released once loaded
		Urgent:  func() bool { return sp.Stats().Bytes >= (1<<20)/4 }})
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, (1<<20)/4) // as pipeline sizes it
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ld.Run(ctx, 5*time.Second) }()
	go func() { defer wg.Done(); ri.Run(ctx) }()
	defer func() { cancel(); wg.Wait(); sp.Close() }()

	const n = 6000
	ext := strings.Repeat("e", 300)
	for lo := 0; lo < n; lo += 200 {
		var msgs []message.Message
		for i := lo; i < lo+200; i++ {
			m := p2pImage(fmt.Sprintf("big-%d", i), "https://old/shared.jpg")
			m.Ext = ext
			msgs = append(msgs, m)
		}
		for {
			_, err := in.Ingest(ctx, "tencent", msgs)
			if err == nil {
				break
			}
			if !errors.Is(err, ingest.ErrFull) {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, "all loaded", func() bool { return ld.Watermark() >= n })
	v, err := st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/shared.jpg", New: "https://nim/shared.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	var sawFull atomic.Bool
	deadline := time.Now().Add(20 * time.Second)
	for ri.Done() < v && time.Now().Before(deadline) {
		if errors.Is(sp.Healthy(), spool.ErrFull) {
			sawFull.Store(true)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ri.Done() < v {
		t.Fatalf("after 20 s the re-issue of version %d has spooled %d of %d copies (spool holds %d bytes, refused %d records; readyz saw spool full: %v, Healthy now: %v)",
			v, ri.Copies(), n, sp.Stats().Bytes, sp.Stats().Refused, sawFull.Load(), sp.Healthy())
	}
}

// ---- 3. a copy spooled twice around a restart -----------------------------

// slowStore delays every INSERT, as a backlog after a restart does.
type slowStore struct {
	*store.Store
	delay time.Duration
}

func (s *slowStore) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	time.Sleep(s.delay)
	return s.Store.InsertMessageChunks(ctx, next)
}

// ---- 4. a remap that races the loader ---------------------------------------

// gatedStore blocks the INSERT of any batch holding a row of group while
// gate is set, and says when it blocked.
type gatedStore struct {
	*store.Store
	group   string
	gate    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func (g *gatedStore) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	return g.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		rows, err := next()
		for _, r := range rows {
			if r.GroupID == g.group {
				g.once.Do(func() { close(g.blocked); <-g.gate })
				break
			}
		}
		return rows, err
	})
}

// Review: PutTeamMappings refuses to change a group's tid once messages were
// rendered under it — counting only rows already in ClickHouse. A batch the
// loader rendered with the old tid but has not inserted yet is not seen: the
// change is accepted, the message is served under the old tid, and a later
// re-issue (here: its image URL gets mapped) serves it again under the new
// tid. Same msgid, two tids: Yunxin stores it twice.
func TestReviewRemapRacingTheLoaderDuplicatesAMessage(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	in := ingest.New(sp)
	gs := &gatedStore{Store: st, group: "@TGS#C", gate: make(chan struct{}), blocked: make(chan struct{})}
	ld := loader.New(sp, gs, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, 0)
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ld.Run(rctx, 5*time.Second) }()
	go func() { defer wg.Done(); ri.Run(rctx) }()
	defer func() { rcancel(); wg.Wait(); sp.Close() }()

	if _, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#C", TID: 1}}); err != nil {
		t.Fatal(err)
	}
	m := groupOf("race-1", "@TGS#C")
	m.Type, m.Body, m.Attach = message.TypeImage, "", &message.Image{URL: "https://old/race.jpg", Ext: "jpg"}
	if _, err := in.Ingest(ctx, "tencent", []message.Message{m}); err != nil {
		t.Fatal(err)
	}
	<-gs.blocked // rendered with tid 1, INSERT under way
	_, err = st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#C", TID: 2}})
	close(gs.gate)
	if errors.Is(err, store.ErrMappingConflict) {
		return // refused: fine
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Log("changing @TGS#C from tid 1 to 2 was accepted while a message rendered under tid 1 was being inserted")
	v, err := st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/race.jpg", New: "https://nim/race.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the URL re-issue", func() bool { return ri.Done() >= v && len(reviewRows(t, st, "race-1")) == 2 })
	rows := reviewRows(t, st, "race-1")
	t.Logf("served:\n %s\n %s", rows[0].line, rows[1].line)
	if hasTID(rows[0].line, 1) != hasTID(rows[1].line, 1) {
		t.Fatalf("message %d served under two tids (Yunxin identity differs: a duplicate)", rows[0].msgid)
	}
}

func reviewRows(t *testing.T, st *store.Store, sourceID string) []row {
	return storedRows(t, st, sourceID)
}

func hasTID(line string, tid int) bool {
	return strings.Contains(line, fmt.Sprintf(`"tid":%d,`, tid)) || strings.Contains(line, fmt.Sprintf(`"tid":%d}`, tid))
}

// ---- 5. re-issue recorded done while its copies are only in the spool -------

// copyBlockingStore never inserts a block holding a re-issued copy (the
// machine dies before the loader gets them into ClickHouse).
type copyBlockingStore struct{ *store.Store }

func (c copyBlockingStore) InsertMessageChunks(ctx context.Context, next func() ([]store.Message, error)) error {
	return c.Store.InsertMessageChunks(ctx, func() ([]store.Message, error) {
		rows, err := next()
		for _, r := range rows {
			if r.Origin != r.Seq {
				<-ctx.Done()
				return nil, ctx.Err()
			}
		}
		return rows, err
	})
}

// Review: RecordReissue(v) is written as soon as the copies are in the
// spool, not once they are in ClickHouse. If that spool is lost — serve moved
// to a new machine with a fresh data_dir, as the README supports — the held
// messages of the newly mapped group are never served: ClickHouse says
// version v is re-issued, and the only copies were in the old spool.
func TestReviewFreshDataDirAfterReissueRecordedLosesTheCopies(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	in := ingest.New(sp)
	ld := loader.New(sp, copyBlockingStore{st}, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, 0)
	c1, cancel1 := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ld.Run(c1, 100*time.Millisecond) }()
	go func() { defer wg.Done(); ri.Run(c1) }()
	if _, err := in.Ingest(ctx, "tencent", []message.Message{groupOf("nm-held", "@TGS#N")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held row", func() bool { return len(reviewRows(t, st, "nm-held")) == 1 })
	v, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#N", TID: 55}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the copy spooled", func() bool { return ri.Copies() >= 1 })
	time.Sleep(200 * time.Millisecond) // well past when the version used to be recorded
	if pending, err := st.PendingReissues(ctx); err != nil || len(pending) == 0 {
		t.Fatalf("version %d recorded as re-issued while its copy is only in the spool (%v)", v, err)
	}
	cancel1() // the old machine is gone, with its spool
	wg.Wait()
	sp.Close()

	// The new machine: a fresh data_dir against the same ClickHouse.
	sp2, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.Close()
	max, err := st.MaxSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp2.SetFloor(max); err != nil { // what pipeline.prepareSpool does
		t.Fatal(err)
	}
	in2 := ingest.New(sp2)
	ld2 := loader.New(sp2, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	ri2 := mapping.NewReissuer(st, in2, ld2.Rendered, nil, 20*time.Millisecond, 0)
	c2, cancel2 := context.WithCancel(ctx)
	wg.Add(2)
	go func() { defer wg.Done(); ld2.Run(c2, 5*time.Second) }()
	go func() { defer wg.Done(); ri2.Run(c2) }()
	defer func() { cancel2(); wg.Wait() }()
	if _, err := in2.Ingest(ctx, "tencent", []message.Message{groupOf("nm-new", "@TGS#N")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new message of the group", func() bool { return len(reviewRows(t, st, "nm-new")) == 1 })
	time.Sleep(3 * time.Second)
	if rows := reviewRows(t, st, "nm-held"); len(rows) != 2 {
		t.Fatalf("group @TGS#N is mapped (version %d recorded as re-issued), new messages are served, but the held message has %d row(s): never served", v, len(rows))
	}
}

// ---- 6. re-issues that change nothing ---------------------------------------

// Review: loading the same URL mapping again (an operator re-loading a
// cumulative CSV of uploads) re-issues every message with that URL again,
// though its line does not change.
func TestReviewReloadingAnUnchangedURLMappingReissuesAgain(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.ingest(t, "tencent", p2pImage("same-1", "https://old/same.jpg"))
	waitFor(t, "the row", func() bool { return len(r.rows(t, "same-1")) == 1 })
	for i := 0; i < 3; i++ {
		v, err := r.st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/same.jpg", New: "https://nim/same.jpg"}})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the re-issue", func() bool { return r.ri.Done() >= v })
		waitFor(t, "loaded", func() bool { return r.ld.Watermark() >= 1+r.ri.Copies() })
	}
	rows := r.rows(t, "same-1")
	if len(rows) != 2 {
		t.Fatalf("the same mapping loaded 3 times: %d rows served (%d copies with an identical line), want the original and one copy", len(rows), len(rows)-1)
	}
}

// Review: a message rendered with a version that already had its URL
// mapping, then a later (unrelated) version in the same re-issue range:
// max(render_version) < to makes it a candidate, and it is copied with the
// line it already has.
func TestReviewMessageRenderedWithItsMappingIsReissuedAnyway(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	in := ingest.New(sp)
	ld := loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	c, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); ld.Run(c, time.Second) }()

	if _, err := st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/r.jpg", New: "https://nim/r.jpg"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Ingest(ctx, "tencent", []message.Message{p2pImage("rv-1", "https://old/r.jpg")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the row", func() bool { return len(reviewRows(t, st, "rv-1")) == 1 })
	if l := reviewRows(t, st, "rv-1")[0].line; !strings.Contains(l, "nim/r.jpg") {
		t.Fatalf("not rendered with the mapping: %s", l)
	}
	v2, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#other", TID: 3}})
	if err != nil {
		t.Fatal(err)
	}
	// The re-issuer (started now, or one that was busy) covers (0, v2].
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, 0)
	wg.Add(1)
	go func() { defer wg.Done(); ri.Run(c) }()
	waitFor(t, "the re-issue", func() bool { return ri.Done() >= v2 })
	if ri.Copies() != 0 {
		t.Fatalf("%d copies of a message whose line already carried its mapped URL", ri.Copies())
	}
}

// Review check (expected to pass): a held group image whose group and URL
// are both mapped within one re-issue range is copied once, with both.
func TestReviewTeamAndURLMappingInOneRangeCopyOnce(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	in := ingest.New(sp)
	ld := loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	c, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); ld.Run(c, time.Second) }()
	m := groupOf("both-1", "@TGS#E")
	m.Type, m.Body, m.Attach = message.TypeImage, "", &message.Image{URL: "https://old/both.jpg", Ext: "jpg"}
	if _, err := in.Ingest(ctx, "tencent", []message.Message{m}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held row", func() bool { return len(reviewRows(t, st, "both-1")) == 1 })
	if _, err := st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/both.jpg", New: "https://nim/both.jpg"}}); err != nil {
		t.Fatal(err)
	}
	v, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#E", TID: 8}})
	if err != nil {
		t.Fatal(err)
	}
	ri := mapping.NewReissuer(st, in, ld.Rendered, nil, 20*time.Millisecond, 0)
	wg.Add(1)
	go func() { defer wg.Done(); ri.Run(c) }()
	waitFor(t, "the re-issue", func() bool { return ri.Done() >= v })
	waitFor(t, "loaded", func() bool { return ld.Watermark() >= sp.LastSeq() })
	time.Sleep(200 * time.Millisecond)
	rows := reviewRows(t, st, "both-1")
	if len(rows) != 2 || !strings.Contains(rows[1].line, "nim/both.jpg") || !hasTID(rows[1].line, 8) {
		t.Fatalf("rows %+v: want the held original and one copy with tid 8 and the new URL", rows)
	}
}

package mapping_test

import (
	"context"
	"errors"
	"os"
	"strings"
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

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// rig is the ingest path of one serve: spool, loader and re-issue on a real
// ClickHouse.
type rig struct {
	st   *store.Store
	in   *ingest.Ingester
	ld   *loader.Loader
	ri   *mapping.Reissuer
	stop func()
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st := storetest.Open(t)
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{st: st, in: ingest.New(sp)}
	r.ld = loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond})
	r.ri = mapping.NewReissuer(st, r.in, r.ld.Rendered, nil, 20*time.Millisecond, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { r.ld.Run(ctx, 5*time.Second); done <- struct{}{} }()
	go func() { r.ri.Run(ctx); done <- struct{}{} }()
	r.stop = func() { cancel(); <-done; <-done; sp.Close() }
	t.Cleanup(r.stop)
	return r
}

func (r *rig) ingest(t *testing.T, source string, msgs ...message.Message) {
	t.Helper()
	if _, err := r.in.Ingest(context.Background(), source, msgs); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// row is what the test reads back of one stored copy.
type row struct {
	seq, origin uint64
	msgid       int64
	held        uint8
	line        string
}

func (r *rig) rows(t *testing.T, sourceID string) []row { return storedRows(t, r.st, sourceID) }

// storedRows reads back every stored copy of a source message, in seq order.
func storedRows(t *testing.T, st *store.Store, sourceID string) []row {
	t.Helper()
	rs, err := st.Conn().Query(context.Background(),
		"SELECT seq, origin, msgid, held, line FROM messages WHERE source_msg_id = ? ORDER BY seq", sourceID)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.seq, &x.origin, &x.msgid, &x.held, &x.line); err != nil {
			t.Fatal(err)
		}
		out = append(out, x)
	}
	return out
}

func groupText(id string) message.Message {
	return message.Message{SourceID: id, GroupID: "@TGS#1", Scene: message.Team, Type: message.TypeText,
		MsgID: message.MsgID("tencent", id), From: "a", CreateTime: 1700000000000, ClientType: message.Android, Body: "你好"}
}

func p2pImage(id, url string) message.Message {
	return message.Message{SourceID: id, Scene: message.P2P, Type: message.TypeImage, MsgID: message.MsgID("tencent", id),
		From: "a", To: "b", CreateTime: 1700000000000, ClientType: message.IOS, Attach: &message.Image{URL: url, Ext: "jpg"}}
}

func TestHeldTeamMessageIsServedOnceItsGroupIsMapped(t *testing.T) {
	r := newRig(t)
	r.ingest(t, "tencent", groupText("g-1"))
	waitFor(t, "the held row", func() bool { return len(r.rows(t, "g-1")) == 1 })
	if got := r.rows(t, "g-1")[0]; got.held != 1 || got.line != "" {
		t.Fatalf("unmapped group: %+v, want held with no line", got)
	}

	v, err := r.st.PutTeamMappings(context.Background(), []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#1", TID: 900}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the re-issue", func() bool { return r.ri.Done() >= v && len(r.rows(t, "g-1")) == 2 })
	rows := r.rows(t, "g-1")
	orig, copy := rows[0], rows[1]
	if copy.held != 0 || copy.origin != orig.seq || copy.msgid != orig.msgid || copy.seq <= orig.seq {
		t.Fatalf("copy %+v of %+v: want a rendered copy under a new seq with the same msgid", copy, orig)
	}
	if !strings.Contains(copy.line, `"tid":900`) || !strings.Contains(copy.line, `"body":"你好"`) {
		t.Fatalf("copy line %s does not carry the mapped tid", copy.line)
	}

	// Messages of the group that arrive now are rendered at once.
	r.ingest(t, "tencent", groupText("g-2"))
	waitFor(t, "g-2", func() bool { return len(r.rows(t, "g-2")) == 1 })
	if got := r.rows(t, "g-2")[0]; got.held != 0 || !strings.Contains(got.line, `"tid":900`) {
		t.Fatalf("mapped group: %+v", got)
	}

	// Changing a mapping that messages were rendered under is refused.
	_, err = r.st.PutTeamMappings(context.Background(), []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#1", TID: 901}})
	if !errors.Is(err, store.ErrMappingConflict) || !strings.Contains(err.Error(), "@TGS#1") || !strings.Contains(err.Error(), "2 messages") {
		t.Fatalf("remapping a used group: %v, want a conflict naming the group and the count", err)
	}
}

func TestURLMappingReissuesAMessageOnceWithTheNewURL(t *testing.T) {
	r := newRig(t)
	r.ingest(t, "tencent", p2pImage("i-1", "https://old/1.jpg"), p2pImage("i-2", "https://old/2.jpg"))
	waitFor(t, "both rows", func() bool { return len(r.rows(t, "i-1"))+len(r.rows(t, "i-2")) == 2 })

	v, err := r.st.PutURLMappings(context.Background(), []store.URLMapping{{Old: "https://old/1.jpg", New: "https://nim/1.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the re-issue", func() bool { return r.ri.Done() >= v && len(r.rows(t, "i-1")) == 2 })
	rows := r.rows(t, "i-1")
	if !strings.Contains(rows[0].line, "old/1.jpg") || !strings.Contains(rows[1].line, `https://nim/1.jpg`) ||
		rows[1].msgid != rows[0].msgid || rows[1].origin != rows[0].seq {
		t.Fatalf("rows %+v: want the original with the old URL, then a copy with the new one and the same msgid", rows)
	}
	if n := len(r.rows(t, "i-2")); n != 1 {
		t.Fatalf("an unmapped URL's message was re-issued (%d rows)", n)
	}

	// A second mapping of the same URL re-issues the latest copy only once more.
	v2, err := r.st.PutURLMappings(context.Background(), []store.URLMapping{{Old: "https://old/1.jpg", New: "https://nim/1b.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second re-issue", func() bool { return r.ri.Done() >= v2 })
	waitFor(t, "the third copy loaded", func() bool { return len(r.rows(t, "i-1")) == 3 })
	if rows := r.rows(t, "i-1"); !strings.Contains(rows[2].line, "nim/1b.jpg") || rows[2].origin != rows[0].seq {
		t.Fatalf("rows %+v", rows)
	}
	if r.ri.Copies() != 2 {
		t.Fatalf("%d copies, want 2 (one per mapping)", r.ri.Copies())
	}
}

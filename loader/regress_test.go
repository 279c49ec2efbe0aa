package loader_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// Review: with Durable set (the managed server: syncfs) and the sync failing,
// the loader logs "keeping loaded records in the spool" — and releases them
// anyway once Retain has passed, though ClickHouse never had them on disk.
func TestReviewFailedSyncReleasesAfterRetainAnyway(t *testing.T) {
	st := storetest.Open(t)
	sp := &releaseCounter{Spool: openSpool(t, t.TempDir())}
	ingestAll(t, sp.Spool, messages(0, 20))
	ingestAll(t, sp.Spool, messages(20, 21))
	ld := loader.New(sp, st, mapping.NewSnapshots(st), loader.Options{Linger: time.Millisecond, BatchRows: 20,
		Durable: func(context.Context) error { return errors.New("syncfs: EIO") }, Retain: 50 * time.Millisecond})
	stop := run(ld)
	defer stop()
	waitFor(t, "watermark 21", func() bool { return ld.Watermark() >= 21 })
	time.Sleep(300 * time.Millisecond)
	ingestAll(t, sp.Spool, messages(21, 22)) // one more pass of the loop
	waitFor(t, "watermark 22", func() bool { return ld.Watermark() >= 22 })
	time.Sleep(100 * time.Millisecond)
	if r := sp.released.Load(); r != 0 {
		t.Fatalf("the sync failed every time, yet records up to seq %d were released from the spool", r)
	}
}

// Review: a held team image (provider group without a team mapping) is
// stored with attach_url = "", so the README's "media URLs still without a
// mapping (the upload to-do list)" query does not list its URL.
func TestReviewHeldImageHasNoAttachURL(t *testing.T) {
	m := message.Message{Source: "tencent", SourceID: "h1", GroupID: "@TGS#9", Scene: message.Team, Type: message.TypeImage,
		MsgID: 1, From: "a", CreateTime: 1700000000000, ClientType: message.IOS,
		Attach: &message.Image{URL: "https://old/held.jpg", Ext: "jpg"}}
	rows := loader.Rows([]uint64{1}, []ingest.Spooled{{Message: m}}, &mapping.Snapshot{})
	if !rows[0].Held {
		t.Fatal("not held")
	}
	if rows[0].AttachURL != "https://old/held.jpg" {
		t.Fatalf("held image row: attach_url %q, want the original URL so that it shows in the upload to-do list", rows[0].AttachURL)
	}
}

// Review: what a re-issue renders — stored row → Canonical → render — must be
// the line the message was first served with (with the same maps). Every
// example line of the document, p2p and team, the team ones also as a
// provider group message mapped to the example's tid.
func TestReviewReissuedCopyRendersTheSameLine(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	f, err := os.Open(filepath.Join("..", "message", "testdata", "examples.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	var msgs []message.Message
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "#") || strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		name, line, _ := strings.Cut(sc.Text(), "\t")
		m, err := message.DecodeLine([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m.Source, m.SourceID = "native", name
		names, msgs = append(names, name), append(msgs, m)
		if m.Scene == message.Team {
			g := m
			g.Source, g.GroupID, g.SourceID = "tencent", "@TGS#"+name, name+"/group"
			if _, err := st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: g.GroupID, TID: m.TID}}); err != nil {
				t.Fatal(err)
			}
			g.TID = 0
			names, msgs = append(names, name+"/group"), append(msgs, g)
		}
	}
	ptrs := make([]*message.Message, len(msgs))
	recs := make([]ingest.Spooled, len(msgs))
	seqs := make([]uint64, len(msgs))
	for i := range msgs {
		ptrs[i] = &msgs[i]
		recs[i] = ingest.Spooled{Message: msgs[i], ReceivedAt: time.Now().UnixMilli()}
		seqs[i] = uint64(i + 1)
	}
	snap, err := mapping.NewSnapshots(st).Take(ctx, ptrs)
	if err != nil {
		t.Fatal(err)
	}
	rows := loader.Rows(seqs, recs, snap)
	if err := st.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	var enc message.Encoder
	n := 0
	err = st.MessagesBySeq(ctx, seqs, func(r *store.Message) error {
		n++
		i := r.Seq - 1
		c, err := r.Canonical()
		if err != nil {
			t.Errorf("%s: %v", names[i], err)
			return nil
		}
		c2 := c
		line, out := render.Line(nil, &enc, &c2, snap)
		if out.Held || string(line) != rows[i].Line {
			t.Errorf("%s: re-issued copy renders\n %s\nthe original was served as\n %s", names[i], line, rows[i].Line)
		}
		return nil
	})
	if err != nil || n != len(msgs) {
		t.Fatalf("%d of %d rows read back: %v", n, len(msgs), err)
	}
}

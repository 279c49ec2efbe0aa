package store_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/loader"
	"github.com/imbridge/imbridge/mapping"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

func row(seq uint64) store.Message {
	return store.Message{
		Seq: seq, Origin: seq, Source: "native", SourceMsgID: fmt.Sprint(seq), Scene: "p2p", Type: 0, MsgID: int64(seq),
		From: "aaa", To: "bbb", CreateTime: 1513685265481 + int64(seq), ClientType: 2, Body: "测试",
		Line: fmt.Sprintf(`{"n":%d}`, seq), ReceivedAt: time.Now().UnixMilli(),
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate #%d: %v", i+2, err)
		}
	}
	var n uint64
	if err := s.Conn().QueryRow(ctx, "SELECT count() FROM schema_migrations").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := store.Migrations()
	if int(n) != len(ms) {
		t.Errorf("schema_migrations has %d rows, want %d (one per migration)", n, len(ms))
	}
	for _, col := range []string{"seq", "source", "source_msg_id", "scene", "type", "msgid", "from_account", "to_account",
		"tid", "create_time", "created_at", "client_type", "body", "attach", "ext", "line", "received_at",
		"origin", "recall_key", "group_id", "tinfo", "attach_url", "held", "render_version"} {
		var c uint64
		if err := s.Conn().QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = 'messages' AND name = ?",
			s.Database(), col).Scan(&c); err != nil || c != 1 {
			t.Errorf("messages.%s missing (%v)", col, err)
		}
	}
}

func TestInsertAndStream(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	var rows []store.Message
	for i := uint64(1); i <= 1000; i++ {
		rows = append(rows, row(i))
	}
	if err := s.InsertMessages(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if max, err := s.MaxSeq(ctx); err != nil || max != 1000 {
		t.Fatalf("MaxSeq = %d, %v", max, err)
	}
	got, err := s.ExistingSeqs(ctx, 990, 2000)
	if err != nil || len(got) != 11 || !got[990] || !got[1000] {
		t.Fatalf("ExistingSeqs = %v, %v", got, err)
	}
	var lines []string
	err = s.StreamLines(ctx, store.LineFilter{After: 10, UpTo: 15}, func(l string) error {
		lines = append(lines, l)
		return nil
	})
	if want := []string{`{"n":11}`, `{"n":12}`, `{"n":13}`, `{"n":14}`, `{"n":15}`}; err != nil || !reflect.DeepEqual(lines, want) {
		t.Errorf("StreamLines = %v, %v; want %v", lines, err, want)
	}
	nth, ok, err := s.NthSeq(ctx, store.LineFilter{After: 100, UpTo: 1000, MinCreateTime: 1513685265481 + 500}, 3)
	if err != nil || !ok || nth != 502 {
		t.Errorf("NthSeq = %d, %v, %v; want 502", nth, ok, err)
	}
	if _, ok, _ := s.NthSeq(ctx, store.LineFilter{After: 998, UpTo: 1000}, 3); ok {
		t.Error("NthSeq found a 3rd message among 2")
	}
}

// Every canonical field survives the messages table: a row read back
// renders the same line with the same maps, and can be rendered again with
// others. Held rows are stored but never streamed to a puller.
func TestCanonicalMessageRoundTripsThroughTheTable(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	update := message.Message{Source: "tencent", SourceID: "e1", RecallKey: "@TGS#1/9", GroupID: "@TGS#1", Scene: message.Team,
		Type: message.TypeTeamUpdate, MsgID: 5, From: "op", CreateTime: 1700000000000, ClientType: message.Android}
	update.TInfo.SetString(message.TInfoAnnouncement, "公告")
	update.TInfo.SetInt(message.TInfoJoinMode, 2)
	msgs := []message.Message{
		{Source: "native", SourceID: "1", Scene: message.P2P, Type: message.TypeText, MsgID: 1, From: "a", To: "b",
			CreateTime: 1700000000000, ClientType: message.IOS, Body: "测试", Ext: `{"x":1}`},
		{Source: "easemob", SourceID: "2", GroupID: "g9", Scene: message.Team, Type: message.TypeVideo, MsgID: 2, From: "a",
			CreateTime: 1700000000000, ClientType: message.Web,
			Attach: &message.Video{Name: "v.mp4", URL: "https://old/v.mp4", Ext: "mp4", Dur: 3000, W: 1, H: 2, Size: 3}},
		{Source: "native", SourceID: "3", Scene: message.Team, TID: 44, Type: message.TypeLocation, MsgID: 3, From: "a",
			CreateTime: 1700000000000, ClientType: message.Mac, Attach: &message.Location{Title: "北京", Lng: "116.3", Lat: "39.9"}},
		{Source: "rongcloud", SourceID: "4", Scene: message.P2P, Type: message.TypeCustom, MsgID: 4, From: "a", To: "b",
			CreateTime: 1700000000000, ClientType: message.PC, Attach: message.CustomFromString("plain")},
		update,
	}
	recs := make([]ingest.Spooled, len(msgs))
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		recs[i], seqs[i] = ingest.Spooled{Message: m, ReceivedAt: 1700000000000}, uint64(i+1)
	}
	if err := s.InsertMessages(ctx, loader.Rows(seqs, recs, &mapping.Snapshot{})); err != nil {
		t.Fatal(err)
	}
	var got []message.Message
	err := s.MessagesBySeq(ctx, seqs, func(r *store.Message) error {
		m, err := r.Canonical()
		got = append(got, m)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, msgs) {
		t.Errorf("read back:\n%#v\nwant\n%#v", got, msgs)
	}
	var streamed []string
	if err := s.StreamLines(ctx, store.LineFilter{After: 0, UpTo: 5}, func(l string) error {
		streamed = append(streamed, l)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(streamed) != 3 { // the two provider group messages have no mapping: held
		t.Errorf("streamed %d lines, want the 3 not held: %v", len(streamed), streamed)
	}
}

func TestDeliveriesAndCursor(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	if c, err := s.PullCursor(ctx, "yunxin"); err != nil || c != 0 {
		t.Fatalf("fresh cursor = %d, %v", c, err)
	}
	for _, d := range []store.Delivery{
		{At: time.Now(), Puller: "yunxin", CursorFrom: 0, CursorTo: 10, Count: 10, Advanced: true},
		{At: time.Now(), Puller: "yunxin", CursorFrom: 10, CursorTo: 50, Count: 40, Advanced: false},
		{At: time.Now(), Puller: "other", CursorFrom: 0, CursorTo: 70, Count: 70, Advanced: true},
	} {
		if err := s.RecordDelivery(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := s.PullCursor(ctx, "yunxin"); err != nil || c != 10 {
		t.Errorf("cursor = %d, %v; want 10 (explicit-cursor pulls do not advance it)", c, err)
	}
}

func TestSchemaSQLPrintsEveryMigration(t *testing.T) {
	sql, err := store.SchemaSQL()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS messages", "CREATE TABLE IF NOT EXISTS deliveries", "schema_migrations"} {
		if !strings.Contains(sql, want) {
			t.Errorf("schema lacks %q", want)
		}
	}
}

func TestManagedStopLeavesNoProcess(t *testing.T) {
	ctx := context.Background()
	m, err := store.StartManaged(ctx, store.ManagedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	pid := m.Pid()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("clickhouse-server %d still running after Stop", pid)
	}
}

func TestNoBinaryGivesInstallHint(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := store.FindServerBinary("")
	if err != nil && !strings.Contains(err.Error(), "apt-get install") {
		t.Errorf("error %q does not say how to install", err)
	}
}

// A batch released twice (Abort after a successful Send) closed connections
// that other queries were already using; concurrent inserts and reads must
// never see a closed connection.
func TestConcurrentInsertsAndReadsShareThePool(t *testing.T) {
	s := storetest.Open(t)
	ctx := context.Background()
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func(w int) {
			for i := 0; i < 60; i++ {
				if err := s.RecordDelivery(ctx, store.Delivery{At: time.Now(), Puller: fmt.Sprint("p", w), CursorTo: uint64(i), Advanced: true}); err != nil {
					errs <- err
					return
				}
				if _, err := s.PullCursor(ctx, fmt.Sprint("p", w)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}(w)
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

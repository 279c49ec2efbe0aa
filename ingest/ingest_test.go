package ingest_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/spool"
)

func text(id string, msgid int64) message.Message {
	return message.Message{SourceID: id, Scene: message.P2P, Type: message.TypeText, MsgID: msgid, From: "a", To: "b",
		CreateTime: 1700000000000, ClientType: message.Web, Body: "hi"}
}

func open(t *testing.T) (*spool.Spool, *ingest.Ingester) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: t.TempDir(), DedupWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp, ingest.New(sp)
}

func TestIngest(t *testing.T) {
	invalid := text("3", 3)
	invalid.Body = ""
	foreign := text("4", 4)
	foreign.Source = "easemob"
	for _, test := range []struct {
		name    string
		msgs    []message.Message
		want    ingest.Result
		wantBad int // 1-based index of the invalid message, 0 when none
	}{
		{"new messages are accepted", []message.Message{text("1", 1), text("2", 2)}, ingest.Result{Accepted: 2}, 0},
		{"a retry is a duplicate", []message.Message{text("1", 1)}, ingest.Result{Duplicates: 1, Dropped: []int{0}}, 0},
		{"an invalid message fails the request", []message.Message{text("5", 5), invalid}, ingest.Result{}, 2},
		{"another source's message fails it", []message.Message{foreign}, ingest.Result{}, 1},
		{"nothing of a failed request was stored", []message.Message{text("5", 5)}, ingest.Result{Accepted: 1}, 0},
	} {
		t.Run(test.name, func(t *testing.T) {
			_, in := sharedIngester(t)
			got, err := in.Ingest(context.Background(), "native", test.msgs)
			var ie *ingest.InvalidError
			if test.wantBad > 0 {
				if !errors.As(err, &ie) || ie.Index+1 != test.wantBad {
					t.Fatalf("err %v, want an *InvalidError for message %d", err, test.wantBad)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, test.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, test.want)
			}
		})
	}
}

var shared struct {
	sp *spool.Spool
	in *ingest.Ingester
}

// sharedIngester is one spool for the steps of TestIngest, in order.
func sharedIngester(t *testing.T) (*spool.Spool, *ingest.Ingester) {
	if shared.in == nil {
		dir, err := tempDir()
		if err != nil {
			t.Fatal(err)
		}
		sp, err := spool.Open(spool.Options{Dir: dir, DedupWindow: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		shared.sp, shared.in = sp, ingest.New(sp)
	}
	return shared.sp, shared.in
}

func TestRecordsReadBackAsSpooled(t *testing.T) {
	sp, in := open(t)
	m := text("9", 9)
	if _, err := in.Ingest(context.Background(), "native", []message.Message{m}); err != nil {
		t.Fatal(err)
	}
	m.Source = "native"
	if _, err := in.Reissue(context.Background(), []ingest.Copy{{Origin: 1, ReceivedAt: 1700000000123, Message: m}}); err != nil {
		t.Fatal(err)
	}
	entries, err := sp.Read(1, 10, 1<<20)
	if err != nil || len(entries) != 2 {
		t.Fatalf("read %d entries, %v; want the original and its copy", len(entries), err)
	}
	for i, wantOrigin := range []uint64{0, 1} {
		got, err := ingest.Decode(entries[i].Data)
		if err != nil {
			t.Fatal(err)
		}
		if got.Origin != wantOrigin || !reflect.DeepEqual(got.Message, m) {
			t.Errorf("entry %d: %+v, want origin %d and %+v", i, got, wantOrigin, m)
		}
	}
}

// FuzzDecode: a damaged record is an error, never a panic.
func FuzzDecode(f *testing.F) {
	dir, err := tempDir()
	if err != nil {
		f.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	img := text("img", 2)
	img.Type, img.Body, img.Attach = message.TypeImage, "", &message.Image{URL: "https://x/a.jpg", Ext: "jpg"}
	if _, err := ingest.New(sp).Ingest(context.Background(), "native", []message.Message{text("1", 1), img}); err != nil {
		f.Fatal(err)
	}
	entries, err := sp.Read(1, 10, 1<<20)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(e.Data)
	}
	sp.Close()
	f.Add([]byte{1, 0, 0, 1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ingest.Decode(b); err == nil {
			if err := s.Message.Validate(); err != nil && s.Message.Source == "" {
				return // decodable but not a message ingest would have written
			}
		}
	})
}

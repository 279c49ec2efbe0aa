package importer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imbridge/imbridge/importer"
	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/store"
)

// memCheckpoints keeps checkpoints in memory: the latest row per file.
type memCheckpoints struct {
	mu   sync.Mutex
	rows map[string]store.ImportCheckpoint
}

func (m *memCheckpoints) key(sha, src, format string) string { return sha + "|" + src + "|" + format }

func (m *memCheckpoints) LastImport(_ context.Context, sha, src, format string) (store.ImportCheckpoint, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.rows[m.key(sha, src, format)]
	return c, ok, nil
}

func (m *memCheckpoints) RecordImport(_ context.Context, c store.ImportCheckpoint) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows == nil {
		m.rows = map[string]store.ImportCheckpoint{}
	}
	m.rows[m.key(c.SHA256, c.Source, c.Format)] = c
	return nil
}

// memSink stores what it is given, whatever its context says (as the spool
// does for a batch it already queued), and cancels the run once it has
// stored cancelAt batches.
type memSink struct {
	mu       sync.Mutex
	msgids   map[int64]bool
	calls    int
	cancelAt int
	cancel   context.CancelFunc
}

func (s *memSink) Ingest(_ context.Context, msgs []message.Message, _ []message.Recall) (ingest.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range msgs {
		s.msgids[msgs[i].MsgID] = true
	}
	s.calls++
	if s.calls == s.cancelAt {
		s.cancel()
	}
	return ingest.Result{Accepted: len(msgs)}, nil
}

// TestRegressInterruptedCheckpointOnlyCountsIngestedChunks: when the run is
// interrupted, the checkpoint (where a resume starts) never covers a line
// whose message did not reach the sink. The reader used to close a job it
// had put in order but not handed to a worker, and the consumer took that
// unprocessed chunk for a durable one.
func TestRegressInterruptedCheckpointOnlyCountsIngestedChunks(t *testing.T) {
	const n = 4000
	path := filepath.Join(t.TempDir(), "lines.ndjson")
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, `{"data":{"ext":"","clientType":"2","createTime":%d,"msgid":%d,"from":"u","to":"v","body":"x"},"type":0}`+"\n", 1700000000000+i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		workers  int
		cancelAt int
	}{
		{"one worker, cancel at batch 1", 1, 1},
		{"one worker, cancel at batch 3", 1, 3},
		{"three workers, cancel at batch 2", 3, 2},
		{"three workers, cancel at batch 5", 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for iter := 0; iter < 40; iter++ {
				ctx, cancel := context.WithCancel(context.Background())
				sink := &memSink{msgids: map[int64]bool{}, cancelAt: tc.cancelAt, cancel: cancel}
				cps := &memCheckpoints{}
				sum, err := importer.Run(ctx, []string{path}, importer.Options{
					Source: "native", Format: "lines", Sink: sink, Checkpoints: cps,
					ChunkBytes: 4 << 10, Workers: tc.workers,
				})
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("run: %v, want it interrupted", err)
				}
				cp, _, _ := cps.LastImport(ctx, sum.Files[0].SHA256, "native", "lines")
				for i := int64(1); i <= int64(cp.Lines); i++ {
					if !sink.msgids[i] {
						t.Fatalf("iteration %d: checkpoint (%s) says lines 1..%d are durable, but line %d never reached the sink: a resume skips it",
							iter, cp.State, cp.Lines, i)
					}
				}
			}
		})
	}
}

// TestRegressTencentOptionsKeyCheckpoint: a Tencent Group history file
// without a header whose records carry no GroupId is rejected whole when
// --group is missing; run again with --group it must be read (not skipped
// as "already imported whole" with nothing stored).
func TestRegressTencentOptionsKeyCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "group.history")
	content := `{"From_Account":"a","MsgSeq":42,"MsgTimestamp":1700000000,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]},
{"From_Account":"b","MsgSeq":43,"MsgTimestamp":1700000001,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"y"}}]},
`
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	cps := &memCheckpoints{}
	sink := &memSink{msgids: map[int64]bool{}}
	for _, step := range []struct {
		name           string
		tencent        importer.TencentOptions
		stored, reject int64
		skipped        bool
	}{
		{"without --group: every record rejected", importer.TencentOptions{ChatType: "Group"}, 0, 2, false},
		{"with --group: read again, stored", importer.TencentOptions{ChatType: "Group", GroupID: "@TGS#1"}, 2, 0, false},
		{"same options again: skipped", importer.TencentOptions{ChatType: "Group", GroupID: "@TGS#1"}, 0, 0, true},
	} {
		sum, err := importer.Run(context.Background(), []string{path}, importer.Options{
			Source: "tencent", Format: "history", Tencent: step.tencent, Sink: sink, Checkpoints: cps,
		})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		f := sum.Files[0]
		if f.Skipped != step.skipped || f.Stored != step.stored || f.RejectedTotal() != step.reject {
			t.Errorf("%s: skipped %v, stored %d, rejected %d; want %v, %d, %d", step.name, f.Skipped, f.Stored, f.RejectedTotal(), step.skipped, step.stored, step.reject)
		}
	}
}

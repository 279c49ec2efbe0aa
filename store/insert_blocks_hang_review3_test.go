package store_test

// Written by the review of 332d482, when an INSERT went to the server in
// several blocks (a Flush between them). Since then the chunks are appended
// on our side and sent as one block with the last; these tests hold and
// stay as regressions (their comments describe the earlier shape).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imbridge/imbridge/store"
	"github.com/imbridge/imbridge/store/storetest"
)

// stallProxy forwards TCP to target until frozen; then it stops reading
// what the client sends (a server that hangs, a network that drops packets
// without a reset): the client's writes block once the buffers are full.
type stallProxy struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	thaw   chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target, thaw: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(c, s) }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if p.frozen.Load() {
						<-p.thaw
						return
					}
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := s.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) close() {
	p.ln.Close()
	select {
	case <-p.thaw:
	default:
		close(p.thaw)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// The loader bounds an INSERT by a 2-minute context and stops it on
// shutdown through its context. Between blocks the driver's Flush watches
// no context (only Send does): a server that stops reading mid-INSERT
// holds InsertMessageChunks past its context's end.
func TestReview3InsertMessageChunksHonoursItsContextMidStream(t *testing.T) {
	for _, tc := range []struct {
		name           string
		blocks, freeze int
	}{
		{"one block, stalled at Send (the old InsertMessages)", 1, 2},
		{"20 blocks, stalled at a Flush", 20, 3},
	} {
		t.Run(tc.name, func(t *testing.T) { stallMidInsert(t, tc.blocks, tc.freeze) })
	}
}

func stallMidInsert(t *testing.T, blocks, freeze int) {
	direct := storetest.Open(t)
	p := newStallProxy(t, storetest.Server().Addr())
	s, err := store.Open(context.Background(), "clickhouse://"+p.ln.Addr().String()+"/"+direct.Database(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	const size = 2048
	buf := make([]store.Message, size)
	raw := make([]byte, 4096)
	calls := 0
	next := func() ([]store.Message, error) {
		calls++
		if calls == freeze {
			p.frozen.Store(true) // the server stops reading after two blocks
		}
		if calls > blocks {
			return nil, nil
		}
		for i := range buf {
			rand.Read(raw)
			buf[i] = row(uint64((calls-1)*size + i + 1))
			buf[i].Body = hex.EncodeToString(raw) // 8 KiB, incompressible: 16 MiB a block
		}
		return buf, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.InsertMessageChunks(ctx, next) }()
	select {
	case err := <-done:
		t.Logf("returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, context.DeadlineExceeded) && err == nil {
			t.Fatalf("INSERT succeeded through a stalled server?")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("InsertMessageChunks still blocked %v after its 3 s context ended (next called %d times): the loader's 2-minute bound and shutdown cannot stop it",
			time.Since(start).Round(time.Second)-3*time.Second, calls)
	}
}

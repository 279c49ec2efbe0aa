// Kept from the adversarial review of the callback allocation changes
// (a1b6aeb, d8dbad5): each test fails on a mutant of the change it covers.

package handler

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
)

// countingIngester counts messages, safe for a server's goroutines.
type countingIngester struct {
	mu   sync.Mutex
	msgs int
}

func (c *countingIngester) IngestBatch(_ context.Context, _ string, msgs []message.Message, _ []message.Recall) (ingest.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs += len(msgs)
	return ingest.Result{Accepted: len(msgs)}, nil
}

func (c *countingIngester) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs
}

// padded is good padded with trailing spaces to n bytes.
func padded(n int) string { return good + strings.Repeat(" ", n-len(good)) }

func gzipped(s string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	io.WriteString(zw, s)
	zw.Close()
	return b.String()
}

// rawExchange sends req (bytes as they go on the wire, the write side then
// closed) to srv and reads the first response.
func rawExchange(t *testing.T, srv *httptest.Server, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func chunked(body string) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(len(body), 1000)
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// The body's limits hold through net/http as before readAll: exactly
// max_body_bytes is read (plain, chunked, gzip), one byte over answers 413
// and stores nothing, a body shorter than its Content-Length is a 400 and
// stores nothing, and bytes past the Content-Length are not the body.
func TestReadBodyOverTheWireReview5(t *testing.T) {
	const maxBody = 4096 // testDeps
	head := "POST /v1/callbacks/native HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nt\r\nContent-Type: application/json\r\n"
	for _, test := range []struct {
		name     string
		req      string
		status   int
		wantMsgs int
		inBody   string
	}{
		{"plain, exactly the limit", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", maxBody) + padded(maxBody), 200, 1, `"accepted":1`},
		{"plain, one over", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", maxBody+1) + padded(maxBody+1), 413, 0, "larger than 4096"},
		{"plain, far over", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", 1<<20) + padded(1<<20), 413, 0, "larger than 4096"},
		{"chunked, exactly the limit", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(padded(maxBody)), 200, 1, `"accepted":1`},
		{"chunked, one over", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked(padded(maxBody+1)), 413, 0, "larger than 4096"},
		{"gzip, exactly the limit", head + "Content-Encoding: gzip\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(gzipped(padded(maxBody)))) + gzipped(padded(maxBody)), 200, 1, `"accepted":1`},
		{"gzip, one over", head + "Content-Encoding: gzip\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(gzipped(padded(maxBody+1)))) + gzipped(padded(maxBody+1)), 413, 0, "larger than 4096"},
		{"gzip, truncated", head + "Content-Encoding: gzip\r\n" + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(gzipped(good))-4) + gzipped(good)[:len(gzipped(good))-4], 400, 0, "reading the body"},
		{"shorter than its Content-Length", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(good)+10) + good, 400, 0, "reading the body: unexpected EOF"},
		{"longer than its Content-Length", head + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(good)) + good + `{"data":{}}garbage`, 200, 1, `"accepted":1`},
		{"Content-Length 0", head + "Content-Length: 0\r\n\r\n", 400, 0, "empty body"},
	} {
		t.Run(test.name, func(t *testing.T) {
			in := &countingIngester{}
			d := testDeps()
			d.Ingest = in
			srv := httptest.NewServer(NewServer(d))
			defer srv.Close()
			resp, body := rawExchange(t, srv, test.req)
			if resp.StatusCode != test.status || !strings.Contains(body, test.inBody) {
				t.Errorf("%d %s, want %d with %q", resp.StatusCode, body, test.status, test.inBody)
			}
			srv.Close() // the handler has returned
			if n := in.count(); n != test.wantMsgs {
				t.Errorf("%d messages stored, want %d", n, test.wantMsgs)
			}
		})
	}
}

// zeroThenData returns (0, nil) a few times between its reads.
type zeroThenData struct {
	r     io.Reader
	zeros int
}

func (z *zeroThenData) Read(p []byte) (int, error) {
	if z.zeros > 0 {
		z.zeros--
		return 0, nil
	}
	z.zeros = 2
	return z.r.Read(p)
}

// readAll against readers at their contract's edges, compared with
// io.ReadAll: (0, nil) reads, data returned with an error, an error after
// data, and the size exactly the body's (the buffer full before EOF).
func TestReadAllEdgesReview5(t *testing.T) {
	body := strings.Repeat("0123456789", 100)
	mid := errors.New("connection reset")
	for _, test := range []struct {
		name string
		r    func() io.Reader
		size int
	}{
		{"(0, nil) reads", func() io.Reader { return &zeroThenData{r: iotest.OneByteReader(strings.NewReader(body))} }, 7},
		{"data with EOF, exact size", func() io.Reader { return iotest.DataErrReader(strings.NewReader(body)) }, len(body)},
		{"exact size, EOF after", func() io.Reader { return strings.NewReader(body) }, len(body)},
		{"error mid-body", func() io.Reader { return io.MultiReader(strings.NewReader(body), iotest.ErrReader(mid)) }, 64},
		{"error with data", func() io.Reader {
			return iotest.DataErrReader(io.MultiReader(strings.NewReader(body), iotest.ErrReader(mid)))
		}, 64},
		{"limit", func() io.Reader { return io.LimitReader(strings.NewReader(body), 501) }, 501},
		{"size 0", func() io.Reader { return strings.NewReader(body) }, 0},
		{"size negative", func() io.Reader { return strings.NewReader(body) }, -5},
	} {
		t.Run(test.name, func(t *testing.T) {
			got, err := readAll(test.r(), test.size)
			want, wantErr := io.ReadAll(test.r())
			if !errors.Is(err, wantErr) && (err == nil || wantErr == nil || err.Error() != wantErr.Error()) {
				t.Errorf("err %v, io.ReadAll's %v", err, wantErr)
			}
			if wantErr == nil && string(got) != string(want) {
				t.Errorf("read %d bytes, io.ReadAll %d", len(got), len(want))
			}
		})
	}
}

// Command imbridge-load measures imbridge: durable single-message ingest
// against a gin handler that does nothing (both driven by the same client in
// one run), and a large pull against clickhouse-client selecting the same
// column. It starts its own ClickHouse, imbridge and no-op server, and checks
// that every acknowledged message comes back through the pull.
//
//	go build -o bin/imbridge ./cmd/imbridge && go run ./cmd/imbridge-load -binary bin/imbridge
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

// imbridgeEnv is added to the environment of the imbridge processes.
var imbridgeEnv []string

const (
	pullToken   = "load-pull-token"
	nativeToken = "load-native-token"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imbridge-load:", err)
		os.Exit(1)
	}
}

func run() error {
	binaries := flag.String("binary", "bin/imbridge", "imbridge binary to measure; several, comma-separated, are measured one after the other in the same run (e.g. the code before a change and after it)")
	conc := flag.Int("c", 16, "concurrent keep-alive clients")
	dur := flag.Duration("d", 10*time.Second, "duration of each ingest measurement")
	pullN := flag.Int("pull", 1000000, "messages for the pull measurement (0 skips it)")
	bulkN := flag.Int("bulk", 0, "before the pull measurement, ingest this many more messages in NDJSON batches of 1000 from 4 clients (memory: e.g. 10000000, all within the de-duplication window)")
	exportBenchOn := flag.Bool("export", true, "after the pull measurement, time `imbridge export --full` of everything stored beside serve against clickhouse-client writing the same rows' line column to a file")
	importN := flag.Int("import", 0, "instead of the rest: time `imbridge import` of a file of this many native lines, alone (its own spool) and through a running serve, with peak RSS")
	noop := flag.String("serve-noop", "", "internal: serve a do-nothing gin handler on this address")
	flag.Func("env", "extra `KEY=VALUE` for the imbridge processes only (repeatable), e.g. GOGC=200", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want KEY=VALUE")
		}
		imbridgeEnv = append(imbridgeEnv, v)
		return nil
	})
	flag.Parse()
	if *noop != "" {
		return serveNoop(*noop)
	}

	work, err := os.MkdirTemp("", "imbridge-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if *importN > 0 {
		return importBench(strings.Split(*binaries, ","), work, *importN)
	}
	// Baseline: a gin handler that does nothing, in its own process.
	self, _ := os.Executable()
	noopAddr := freeAddr()
	noopProc := exec.Command(self, "-serve-noop", noopAddr)
	noopProc.Stderr = os.Stderr
	if err := noopProc.Start(); err != nil {
		return err
	}
	defer noopProc.Process.Kill()
	if err := waitHTTP("http://"+noopAddr+"/healthz", 30*time.Second); err != nil {
		return err
	}

	fmt.Printf("machine: %d CPUs; %d keep-alive clients, one message per request, %v each\n\n", numCPU(), *conc, *dur)
	var next atomic.Int64
	baseline := drive("http://"+noopAddr+"/v1/callbacks/native", *conc, *dur, &next, false)
	fmt.Printf("%-34s %10s %9s %9s %9s %9s\n", "", "req/s", "p50", "p90", "p99", "max")
	baseline.print("gin no-op handler")
	list := strings.Split(*binaries, ",")
	for i, binary := range list {
		dataDir := filepath.Join(work, fmt.Sprintf("data%d", i))
		imb, base, err := startImbridge(binary, dataDir)
		if err != nil {
			return err
		}
		stop := func() { _ = imb.Process.Signal(syscall.SIGTERM); _ = imb.Wait() }
		commits0 := metric(base, "imbridge_spool_commits_total")
		durable := drive(base+"/v1/callbacks/native", *conc, *dur, &next, true)
		commits := metric(base, "imbridge_spool_commits_total") - commits0
		durable.print(filepath.Base(binary) + " durable ingest")
		fmt.Printf("%-34s %.0f fsync'd groups, %.1f messages per fsync\n", "", commits, float64(durable.n)/commits)
		fmt.Printf("%-34s %.0f%% of the no-op handler\n", "", 100*durable.rate()/baseline.rate())
		want := len(durable.acked)
		got, missing, err := verify(base, durable.acked)
		if err != nil {
			stop()
			return err
		}
		fmt.Printf("%-34s verify: %d acknowledged, %d pulled back, %d missing\n", "", want, got, missing)
		if missing > 0 {
			stop()
			return fmt.Errorf("%d acknowledged messages were not delivered", missing)
		}
		if i < len(list)-1 {
			stop()
			continue
		}
		defer stop()
		if *bulkN > 0 {
			if err := bulk(base, imb.Process.Pid, *bulkN, &next); err != nil {
				return err
			}
		}
		if *pullN > 0 {
			if err := pullBench(base, dataDir, imb.Process.Pid, *pullN, &next); err != nil {
				return err
			}
			if *exportBenchOn {
				return exportBench(binary, dataDir, work)
			}
		}
	}
	return nil
}
func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func serveNoop(addr string) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/healthz", func(c *gin.Context) { c.Status(200) })
	r.POST("/v1/callbacks/native", func(c *gin.Context) {
		_, _ = io.Copy(io.Discard, c.Request.Body)
		c.JSON(200, gin.H{"accepted": 1, "duplicates": 0})
	})
	return http.ListenAndServe(addr, r)
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 200 within %v", url, within)
}

// startImbridge runs serve as deployed by default: on its own managed
// ClickHouse under dataDir.
func startImbridge(binary, dataDir string) (*exec.Cmd, string, error) {
	addr := freeAddr()
	cmd := exec.Command(binary, "serve")
	cmd.Env = envFor(addr, dataDir)
	if p := os.Getenv("IMBRIDGE_LOAD_PPROF"); p != "" {
		cmd.Env = append(cmd.Env, "IMBRIDGE_DEBUG_PPROF_LISTEN="+p)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitHTTP(base+"/readyz", 60*time.Second); err != nil {
		cmd.Process.Kill()
		return nil, "", err
	}
	return cmd, base, nil
}

// envFor is the environment of the imbridge processes of one data_dir.
func envFor(addr, dataDir string) []string {
	env := append(os.Environ(), "IMBRIDGE_LISTEN="+addr, "IMBRIDGE_DATA_DIR="+dataDir,
		"IMBRIDGE_CLICKHOUSE_DSN=", "IMBRIDGE_PULL_TOKEN="+pullToken,
		"IMBRIDGE_SOURCES_NATIVE_TOKEN="+nativeToken, "IMBRIDGE_LOG_LEVEL=warn")
	return append(env, imbridgeEnv...)
}

func line(id int64) string {
	return fmt.Sprintf(`{"data":{"ext":"","clientType":"2","createTime":%d,"msgid":%d,"from":"u%d","to":"v%d","body":"负载测试消息 %d"},"type":0}`,
		1700000000000+id, id, id%1000, id%777, id)
}

type result struct {
	n     int
	errs  int
	took  time.Duration
	lat   []time.Duration
	acked []int64 // ids answered 200, when recorded
}

func (r result) rate() float64 { return float64(r.n) / r.took.Seconds() }

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

func (r result) print(name string) {
	fmt.Printf("%-34s %10.0f %9s %9s %9s %9s", name, r.rate(), r.pct(.50).Round(10*time.Microsecond),
		r.pct(.90).Round(10*time.Microsecond), r.pct(.99).Round(10*time.Microsecond), r.pct(1).Round(10*time.Microsecond))
	if r.errs > 0 {
		fmt.Printf("  (%d errors)", r.errs)
	}
	fmt.Println()
}

// drive posts one message per request from conc clients for d. Each client
// keeps its own records, so the measurement costs the same for every server.
func drive(url string, conc int, d time.Duration, next *atomic.Int64, record bool) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var all result
	start := time.Now()
	stop := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			var acked []int64
			n, errs := 0, 0
			for time.Now().Before(stop) {
				id := next.Add(1)
				req, _ := http.NewRequest("POST", url, strings.NewReader(line(id)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+nativeToken)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					errs++
					continue
				}
				lat = append(lat, time.Since(t0))
				n++
				if record {
					acked = append(acked, id)
				}
			}
			mu.Lock()
			all.n += n
			all.errs += errs
			all.lat = append(all.lat, lat...)
			all.acked = append(all.acked, acked...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	all.took = time.Since(start)
	sort.Slice(all.lat, func(i, j int) bool { return all.lat[i] < all.lat[j] })
	tr.CloseIdleConnections()
	return all
}

// verify pulls from cursor 0 until every acknowledged id was seen.
func verify(base string, acked []int64) (int, int, error) {
	seen := map[int64]bool{}
	var cursor string = "0"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(base + "/v1/pull?token=" + pullToken + "&name=load-verify&cursor=" + cursor)
		if err != nil {
			return 0, 0, err
		}
		var body struct {
			Data []struct {
				Data struct {
					MsgID int64 `json:"msgid"`
				} `json:"data"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			return 0, 0, err
		}
		for _, l := range body.Data {
			seen[l.Data.MsgID] = true
		}
		cursor = resp.Header.Get("X-Imbridge-Cursor")
		missing := 0
		for _, id := range acked {
			if !seen[id] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return len(seen), missing, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pullBench loads n messages in large NDJSON posts, then times one pull of
// all of them against clickhouse-client selecting the same column.
func pullBench(base, dataDir string, pid, n int, next *atomic.Int64) error {
	port, err := managedPort(dataDir)
	if err != nil {
		return err
	}
	fmt.Printf("\npull: loading %d messages (NDJSON batches of 5000)…\n", n)
	client := &http.Client{Timeout: 5 * time.Minute}
	startSeq := readyCursor(base)
	for sent := 0; sent < n; {
		var b strings.Builder
		k := min(5000, n-sent)
		for i := 0; i < k; i++ {
			b.WriteString(line(next.Add(1)))
			b.WriteByte('\n')
		}
		req, _ := http.NewRequest("POST", base+"/v1/callbacks/native", strings.NewReader(b.String()))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+nativeToken)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("bulk post: %d", resp.StatusCode)
		}
		sent += k
	}
	// Wait until the loader has everything in ClickHouse.
	deadline := time.Now().Add(5 * time.Minute)
	for metric(base, "imbridge_loader_lag") > 0 {
		if time.Now().After(deadline) {
			return errors.New("loader did not catch up within 5 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	total := int(metric(base, "imbridge_loader_watermark")) - startSeq

	// Both sides are read the same way: a separate process writing to
	// /dev/null (curl for imbridge, clickhouse-client for ClickHouse), timed
	// by wall clock, three times each, alternating; the median counts.
	pullURL := fmt.Sprintf("%s/v1/pull?token=%s&name=bench&cursor=%d", base, pullToken, startSeq)
	query := fmt.Sprintf("SELECT line FROM imbridge.messages WHERE seq > %d ORDER BY seq FORMAT TSVRaw", startSeq)
	// The pull's own condition (held, recalled) on the same rows: what the
	// server's work alone costs, apart from imbridge's.
	filtered := fmt.Sprintf("SELECT line FROM imbridge.messages WHERE seq > %d AND held = 0 AND (source, recall_key) NOT IN (SELECT source, recall_key FROM imbridge.recalls) ORDER BY seq FORMAT TSVRaw", startSeq)
	var imbTimes, chTimes, chFilteredTimes []time.Duration
	var peak int64
	rssBefore := rssKB(pid)
	for i := 0; i < 3; i++ {
		took, p, err := timed(pid, "curl", "-sf", "-o", "/dev/null", pullURL)
		if err != nil {
			return fmt.Errorf("curl: %w", err)
		}
		imbTimes = append(imbTimes, took)
		peak = max(peak, p)
		took, _, err = timed(0, "clickhouse-client", "--port", port, "-q", query)
		if err != nil {
			return fmt.Errorf("clickhouse-client: %w", err)
		}
		chTimes = append(chTimes, took)
		took, _, err = timed(0, "clickhouse-client", "--port", port, "-q", filtered)
		if err != nil {
			return fmt.Errorf("clickhouse-client: %w", err)
		}
		chFilteredTimes = append(chFilteredTimes, took)
	}
	// Then check, untimed, that the pull carries every line.
	resp, err := client.Get(pullURL)
	if err != nil {
		return err
	}
	var body struct {
		Data []json.RawMessage `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if len(body.Data) != total {
		return fmt.Errorf("the pull carried %d lines, want %d", len(body.Data), total)
	}
	imbTook, chTook := median(imbTimes), median(chTimes)
	imbRate := float64(total) / imbTook.Seconds()
	chRate := float64(total) / chTook.Seconds()
	fmt.Printf("%-34s %10s %12s\n", "", "lines", "lines/s")
	fmt.Printf("%-34s %10d %12.0f  (median of %v; RSS %d MiB before, peak %d MiB)\n", "imbridge GET /v1/pull (curl)", total, imbRate,
		roundAll(imbTimes), rssBefore>>10, peak>>10)
	fmt.Printf("%-34s %10d %12.0f  (median of %v)\n", "clickhouse-client SELECT line", total, chRate, roundAll(chTimes))
	chFilteredRate := float64(total) / median(chFilteredTimes).Seconds()
	fmt.Printf("%-34s %10d %12.0f  (median of %v)\n", "clickhouse-client, the pull's WHERE", total, chFilteredRate, roundAll(chFilteredTimes))
	fmt.Printf("ratio: %.0f%% of clickhouse-client (%.0f%% of it with the pull's WHERE)\n", 100*imbRate/chRate, 100*imbRate/chFilteredRate)
	fmt.Printf("imbridge peak RSS over the whole run (VmHWM): %d MiB\n", statusKB(pid, "VmHWM:")>>10)
	return nil
}

// bulk ingests n messages as NDJSON posts of 1000 lines from 4 clients and
// reports the rate and imbridge's peak RSS so far.
func bulk(base string, pid, n int, next *atomic.Int64) error {
	fmt.Printf("\nbulk: ingesting %d messages (NDJSON posts of 1000, 4 clients)…\n", n)
	client := &http.Client{Timeout: 5 * time.Minute}
	var sent atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b strings.Builder
			for firstErr.Load() == nil && sent.Add(1000) <= int64(n) {
				b.Reset()
				for i := 0; i < 1000; i++ {
					b.WriteString(line(next.Add(1)))
					b.WriteByte('\n')
				}
				for {
					req, _ := http.NewRequest("POST", base+"/v1/callbacks/native", strings.NewReader(b.String()))
					req.Header.Set("Content-Type", "application/x-ndjson")
					req.Header.Set("Authorization", "Bearer "+nativeToken)
					resp, err := client.Do(req)
					if err != nil {
						firstErr.Store(&err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 503 { // spool full: ClickHouse is behind; retry as a provider would
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if resp.StatusCode != 200 {
						err := fmt.Errorf("bulk post: %d", resp.StatusCode)
						firstErr.Store(&err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	took := time.Since(start)
	fmt.Printf("bulk: %d messages in %v, %.0f msg/s; imbridge RSS %d MiB, peak so far %d MiB\n", n, took.Round(time.Millisecond),
		float64(n)/took.Seconds(), rssKB(pid)>>10, statusKB(pid, "VmHWM:")>>10)
	return nil
}

// timed runs a command with its output discarded and returns its wall time
// and, when pid is set, the peak RSS (KiB) of that process meanwhile.
func timed(pid int, name string, args ...string) (time.Duration, int64, error) {
	cmd := exec.Command(name, args...)
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, err
	}
	defer devNull.Close()
	cmd.Stdout = devNull // straight to /dev/null: no copying through this process
	var peak atomic.Int64
	done := make(chan struct{})
	if pid > 0 {
		go func() {
			for {
				if v := rssKB(pid); v > peak.Load() {
					peak.Store(v)
				}
				select {
				case <-done:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
	}
	t0 := time.Now()
	err = cmd.Run()
	took := time.Since(t0)
	close(done)
	return took, peak.Load(), err
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

func readyCursor(base string) int { return int(metric(base, "imbridge_loader_watermark")) }

// metric reads one unlabelled gauge from /metrics.
func metric(base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// managedPort is the native port of the managed ClickHouse under dataDir,
// read from the config imbridge generated for it.
func managedPort(dataDir string) (string, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "clickhouse", "config.xml"))
	if err != nil {
		return "", err
	}
	_, rest, ok := strings.Cut(string(raw), "<tcp_port>")
	port, _, ok2 := strings.Cut(rest, "</tcp_port>")
	if !ok || !ok2 {
		return "", errors.New("no tcp_port in the managed ClickHouse's config.xml")
	}
	return strings.TrimSpace(port), nil
}

// rssKB is the process's resident set in KiB.
func rssKB(pid int) int64 { return statusKB(pid, "VmRSS:") }

// statusKB reads one kB figure of /proc/pid/status (VmRSS:, VmHWM: …).
func statusKB(pid int, key string) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// exportBench times `imbridge export --full` (a separate process, beside the
// running serve, so it attaches to serve's managed ClickHouse) against
// clickhouse-client writing the line column of the same rows to a file,
// three times each, alternating; the medians count. The export's peak RSS
// is its own VmHWM (runMeasured).
func exportBench(binary, dataDir, work string) error {
	port, err := managedPort(dataDir)
	if err != nil {
		return err
	}
	fmt.Printf("\nexport: imbridge export --full vs clickhouse-client SELECT line … > file\n")
	query := "SELECT line FROM imbridge.messages WHERE held = 0 ORDER BY seq FORMAT TSVRaw"
	var imbTimes, chTimes []time.Duration
	var lines uint64
	var peakKB int64
	for i := 0; i < 3; i++ {
		out := filepath.Join(work, fmt.Sprintf("export-%d", i))
		cmd := exec.Command(binary, "export", "--full", "--out", out)
		cmd.Env = envFor(freeAddr(), dataDir)
		cmd.Stderr = os.Stderr
		took, ownPeak, _, err := runMeasured(cmd, 0)
		if err != nil {
			return fmt.Errorf("imbridge export: %w", err)
		}
		imbTimes = append(imbTimes, took)
		peakKB = max(peakKB, ownPeak)
		manifests, _ := filepath.Glob(filepath.Join(out, "*", "manifest.json"))
		if len(manifests) != 1 {
			return fmt.Errorf("export wrote %d manifests", len(manifests))
		}
		raw, _ := os.ReadFile(manifests[0])
		var m struct {
			Lines uint64 `json:"lines"`
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return err
		}
		lines = m.Lines
		_ = os.RemoveAll(out)

		file := filepath.Join(work, "clickhouse-client.txt")
		fh, err := os.Create(file)
		if err != nil {
			return err
		}
		ch := exec.Command("clickhouse-client", "--port", port, "-q", query)
		ch.Stdout = fh
		t0 := time.Now()
		err = ch.Run()
		fh.Sync()
		chTimes = append(chTimes, time.Since(t0))
		fh.Close()
		_ = os.Remove(file)
		if err != nil {
			return fmt.Errorf("clickhouse-client: %w", err)
		}
	}
	imbRate := float64(lines) / median(imbTimes).Seconds()
	chRate := float64(lines) / median(chTimes).Seconds()
	fmt.Printf("%-34s %10d %12.0f  (median of %v; peak RSS %d MiB)\n", "imbridge export --full", lines, imbRate, roundAll(imbTimes), peakKB>>10)
	fmt.Printf("%-34s %10d %12.0f  (median of %v)\n", "clickhouse-client line > file", lines, chRate, roundAll(chTimes))
	fmt.Printf("ratio: %.0f%% of clickhouse-client\n", 100*imbRate/chRate)
	return nil
}

// importBench times `imbridge import` of n native lines: alone (it opens
// the spool and waits for ClickHouse), then through a running serve's
// admin API; then a second run of the same file. Rates count messages made
// durable (the summary's figure) and the wall time to the command's end.
func importBench(binaries []string, work string, n int) error {
	file := filepath.Join(work, "import.ndjson")
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for id := int64(1); id <= int64(n); id++ {
		w.WriteString(line(id))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	st, _ := f.Stat()
	f.Close()
	fmt.Printf("import: %d native lines, %d MiB\n", n, st.Size()>>20)
	fmt.Printf("%-40s %12s %12s %10s %10s\n", "", "durable/s", "wall", "peak RSS", "serve RSS")
	const adminToken = "load-admin-token"
	for i, binary := range binaries {
		name := filepath.Base(binary)
		dataDir := filepath.Join(work, fmt.Sprintf("import-alone-%d", i))
		cmd := exec.Command(binary, "import", "--quiet", "--source", "native", file)
		cmd.Env = envFor(freeAddr(), dataDir)
		if err := runImportTimed(cmd, name+" import, no serve", 0); err != nil {
			return err
		}

		dataDir = filepath.Join(work, fmt.Sprintf("import-serve-%d", i))
		addr := freeAddr()
		srv := exec.Command(binary, "serve")
		srv.Env = append(envFor(addr, dataDir), "IMBRIDGE_ADMIN_TOKEN="+adminToken)
		srv.Stderr = os.Stderr
		if err := srv.Start(); err != nil {
			return err
		}
		if err := waitHTTP("http://"+addr+"/readyz", 60*time.Second); err != nil {
			srv.Process.Kill()
			return err
		}
		for _, run := range []string{"import through serve", "same file again"} {
			cmd := exec.Command(binary, "import", "--quiet", "--source", "native", file)
			cmd.Env = append(envFor(addr, dataDir), "IMBRIDGE_ADMIN_TOKEN="+adminToken)
			if err := runImportTimed(cmd, name+" "+run, srv.Process.Pid); err != nil {
				srv.Process.Kill()
				return err
			}
		}
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()
	}
	return nil
}

// runImportTimed runs one import, printing its durable rate (from its
// summary), wall time, its own peak RSS and, with servePID, serve's peak RSS.
func runImportTimed(cmd *exec.Cmd, label string, servePID int) error {
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	took, ownPeak, servePeak, err := runMeasured(cmd, servePID)
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", label, err, out.String())
	}
	rate := "-"
	if m := regexp.MustCompile(`, (\d+) messages/s`).FindStringSubmatch(out.String()); m != nil {
		rate = m[1]
	}
	serve := "-"
	if servePID > 0 {
		serve = fmt.Sprintf("%d MiB", servePeak>>10)
	}
	fmt.Printf("%-40s %12s %12s %6d MiB %10s\n", label, rate, took.Round(time.Millisecond), ownPeak>>10, serve)
	return nil
}

// runMeasured runs cmd to its end and returns its wall time, its own peak
// RSS (VmHWM, KiB, sampled until it exits) and, when otherPID is set, the
// peak RSS of that process meanwhile. Not the rusage of the waited process:
// that includes the children it waited for (a managed clickhouse-server)
// and, through exec, the RSS of this (large) process at fork.
func runMeasured(cmd *exec.Cmd, otherPID int) (took time.Duration, ownPeakKB, otherPeakKB int64, err error) {
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if otherPID > 0 {
				otherPeakKB = max(otherPeakKB, rssKB(otherPID))
			}
			ownPeakKB = max(ownPeakKB, statusKB(cmd.Process.Pid, "VmHWM:"))
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	err = cmd.Wait()
	took = time.Since(t0)
	close(done)
	<-sampled
	return took, ownPeakKB, otherPeakKB, err
}

// Package tcpack tells whether the peer's TCP stack acknowledged, and the
// peer's application read, every byte written to a TCP connection.
//
// imbridge advances its server-side cursor for GET /v1/pull only when the
// puller has provably received the whole streamed response. Having handed
// the body to the kernel proves nothing: a puller that stops reading and
// resets the connection loses whatever was still in our send queue or in its
// own receive buffer. A handler therefore does
//
//	srv := &http.Server{ConnContext: tcpack.ConnContext, ...}
//
//	func pull(w http.ResponseWriter, r *http.Request) {
//		c, _ := tcpack.FromContext(r.Context())
//		tr, _ := tcpack.New(c) // nil when not TCP, e.g. under httptest.ResponseRecorder
//		for ... {
//			write a batch of lines (tens of KiB, one Write); flush
//			tr.Sample()
//		}
//		close the gzip writer; flush
//		if err := tr.Wait(r.Context(), 5*time.Second); err != nil {
//			record "not advanced" and why (err)
//		} else {
//			advance the cursor
//		}
//	}
//
// (A nil *Tracker confirms nothing, so New's error need not be checked
// separately.)
//
// # Method
//
// Wait polls three facts the Linux kernel keeps about the socket, every few
// milliseconds, until all hold or its timeout passes:
//
//  1. SIOCOUTQ is 0: every byte written has been acknowledged by the peer's
//     kernel (the ioctl counts bytes not yet sent plus bytes sent but not
//     acknowledged).
//  2. The connection is ESTABLISHED, or CLOSE_WAIT (the peer half-closed
//     after reading). A reset does not clear SIOCOUTQ (it went on counting
//     622592 unacknowledged bytes on a reset socket), but a peer that read
//     everything and then reset the connection has nothing outstanding and
//     a full window, so only this check tells it apart. SO_ERROR is not
//     read: reading it clears it, net/http's own background read usually
//     consumes it first, and every hard error TCP records on an established
//     socket (reset, retransmission or keepalive timeout) also moves it to
//     CLOSE.
//  3. The peer's application has read the data, not just its kernel. The
//     receive window a peer advertises (tcpi_snd_wnd on our side) is about
//     the free space in its receive buffer, so bytes its kernel acknowledged
//     but its application has not read shrink the window by about as much.
//     Sample, called after each flush, remembers the largest window the peer
//     advertised (New and Wait sample as well); Wait requires the current
//     window to be back to within Slack of that largest one.
//
// What Linux does with the window, measured on loopback with kernel 6.18:
//
//   - A receiver announces a larger window only when it has at least
//     doubled (tcp_cleanup_rbuf), or when it sends an ACK anyway. So after
//     the puller read everything, the last window we saw can stay well below
//     its empty-buffer window: Go's own http.Client, having read a whole
//     2 MiB body, was left at 447488 bytes against a largest window of
//     786432. Nothing more is sent on the connection until the handler
//     returns and net/http writes the terminating chunk, so nothing would
//     make the peer correct it. When everything is acknowledged but the
//     window is short, Wait therefore turns on TCP keepalive with one second
//     of idle time and interval (restoring the previous settings when it
//     returns). The peer answers a probe with an ACK carrying its current
//     window; after one probe the window of a client that had read
//     everything was back to its largest value. Confirming such a puller
//     takes a little over a second (1.02 to 1.04 s measured).
//   - The empty-buffer window is not fixed either. Windows are multiples of
//     2^wscale (1 KiB with the default 32 MiB tcp_rmem limit, at most
//     16 KiB). A receiver never takes back a window it advertised, but one
//     that shrinks its buffer (SO_RCVBUF set after connecting) will not
//     offer it again: its empty-buffer window ended up 62 KiB below the
//     largest seen. A receiver turns buffer space into window by a running
//     estimate of payload per byte of memory, which falls when segments get
//     smaller (net/http writes 4 KiB at a time): one client went from 0.98
//     to 0.86 of its buffer. And a receiver whose buffer overflowed
//     (TcpExtPruneCalled) resets rcv_ssthresh, which caps its window, and
//     regrows it only as more data arrives.
//   - Hence Slack: 64 KiB plus 1/32 of the largest window. The choice errs
//     towards never confirming unread data, at the price of sometimes not
//     confirming a puller that read everything. Of 280 Go http.Clients that
//     read a 2 MiB body under -race on two busy cores, 5 ended, even after
//     probes, 7 to 15% below their largest window (their rcv_ssthresh had
//     been cut, as after an overflow) and were not confirmed; 1/8 would have
//     confirmed them all, but would also hide 600 KiB unread in any window
//     above about 4 MB. With 256 MiB bodies (largest windows 2.7 to 12 MB)
//     the drift was at most 3%.
//   - Write in large pieces. Those clients' handler wrote line by line,
//     which net/http sends in chunks of 2 KiB, and small segments appear to
//     make the receiver's estimate drift: even with a fixed 8 MiB buffer the
//     body never filled, 3 of 40 Go clients ended 5 to 6% below their
//     largest window. Batching the lines into 64 KiB Writes, each followed
//     by Flush and Sample, left none unconfirmed in 120 runs.
//   - With 600 KiB left unread and autotuned buffers on loopback (largest
//     windows 0.1 to 1.7 MB), the 600 KiB usually does not even fit in the
//     peer's buffer, and check 1 fails. With a fixed 2 MiB buffer it fits,
//     and the window stayed 366 to 914 KB short of the largest (slack about
//     125 KB) in 320 runs, keepalive probes or not; with a fixed 1.25 MiB
//     buffer, 365 to 839 KB short (slack 98 KB) in 300 runs.
//
// # Limits
//
// What Wait proves is that the peer's TCP stack acknowledged every byte and
// that an application on the peer's host read() them from its socket:
//
//   - The peer is whatever terminates TCP. A proxy, load balancer or TLS
//     terminator in front of the puller acknowledges and reads on its
//     behalf, and Wait says nothing about what happens after it. Reading is
//     not processing either: a puller that read every byte and then crashed,
//     or discarded the response, counts as having read it.
//   - Unread bytes show only while the peer's window is limited by its free
//     space, and the largest window we saw was close to its empty-buffer
//     window at the end. Otherwise they are missed, and Wait confirms:
//     when something else caps the window below the free space (with a
//     fixed 8 MiB buffer the window stayed at 7360896 bytes with or without
//     600 KiB unread in 17 of 40 runs; with a fixed 1.5 MiB buffer the
//     window scale allowed no more than 1048560 bytes, so that 600 KiB
//     unread showed as less than 200 KB in half of 300 runs); when the puller's buffer was autotuned
//     upward near the end of the response (4 of 500 loopback runs confirmed
//     a client that had stopped 600 KiB short); when the response was short
//     or fitted in our send buffer, so that few samples were taken; and for
//     any amount below Slack. When Wait is wrong this way, it hides at most
//     one receive buffer of unread data. Sampling after every flush of a
//     long stream gives the estimate its best chance.
//   - The terminating chunk of a chunked response, and anything else written
//     after Wait, is not covered: Wait runs before the handler returns.
//     Close any gzip writer and Flush before calling Wait, or the gzip
//     trailer is not covered either.
//   - Only Linux peers were measured. Other stacks manage their windows
//     differently; one whose empty-buffer window varies by more than Slack
//     would be reported "not confirmed" when it read everything. Wait needs
//     tcpi_snd_wnd (Linux 5.4 or later); on older kernels it never confirms.
//     tcpack is Linux-only: elsewhere New always fails.
//   - While Wait probes, a peer that stops answering is dropped by the
//     kernel after the keepalive count (9 with Go's defaults) of one-second
//     probes, so a Wait timeout longer than about ten seconds can end the
//     connection of a silent peer.
//   - net/http cancels a request's context when the client half-closes or
//     resets the connection. Pass context.WithoutCancel(r.Context()) to Wait
//     if a puller that half-closes after reading everything should count.
package tcpack

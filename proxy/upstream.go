package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elazarl/goproxy"
)

// upstreamClient sends bodiless forwarded requests (GET, HEAD, DELETE, ...
// most of the traffic) on kept-alive upstream connections, reading and
// writing on the handler's goroutine. http.Transport hands every request
// to two goroutines of its own per connection; on a loaded 2-core machine
// those handoffs were the largest cost the proxy added to a small GET
// (BenchmarkForwardSmallGET: 0.42 of direct with Transport, 0.50 without).
// Requests with bodies keep using http.Transport, which handles the
// full-duplex cases (early answers, 100-continue) that need a second
// goroutine anyway.
type upstreamClient struct {
	dialer         *dialer
	tls            *tls.Config
	headerTimeout  time.Duration
	maxHeaderBytes int
	maxIdlePerHost int
	idleTimeout    time.Duration
	// order is where the persona puts header fields.
	order headOrder

	mu     sync.Mutex
	idle   map[string][]*upstreamConn // by scheme://host:port
	closed bool
	// sweeper closes connections idle past idleTimeout, so a proxy that
	// visited many hosts does not keep their sockets (half-closed by the
	// far side) open until the host is visited again. It runs only while
	// the pool holds connections.
	sweeper *time.Timer
}

// upstreamConn is one kept-alive connection to a destination.
type upstreamConn struct {
	conn    net.Conn
	limit   *headLimit
	br      *bufio.Reader
	bw      *bufio.Writer
	key     string
	idleSet time.Time
}

// headLimit caps the bytes read from the connection while a response
// head is parsed (http.ReadResponse has no limit of its own) and keeps a
// copy of them: http.ReadResponse deletes a Connection header that
// contains "close", and with it the list of headers it names.
type headLimit struct {
	conn      net.Conn
	remaining int    // < 0: no limit (reading a body)
	raw       []byte // what was read while reading the head; reused
}

var errHeadTooLarge = errors.New("response headers exceed --max-header-bytes")

// notHTTPError is an answer that does not parse as an HTTP response
// (net/http's parse errors have no type of their own to test for).
type notHTTPError struct{ err error }

func (e *notHTTPError) Error() string { return "malformed answer: " + e.err.Error() }
func (e *notHTTPError) Unwrap() error { return e.err }

func (l *headLimit) Read(p []byte) (int, error) {
	if l.remaining >= 0 {
		if l.remaining == 0 {
			return 0, errHeadTooLarge
		}
		if len(p) > l.remaining {
			p = p[:l.remaining]
		}
	}
	n, err := l.conn.Read(p)
	if l.remaining >= 0 {
		l.remaining -= n
		l.raw = append(l.raw, p[:n]...)
	}
	return n, err
}

// connectionNames returns the header names listed in the Connection
// header lines of a raw response head.
func connectionNames(head []byte) []string {
	var names []string
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of the head
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(name)), "Connection") {
			continue
		}
		for _, token := range strings.Split(string(value), ",") {
			if token = strings.TrimSpace(token); token != "" && !strings.EqualFold(token, "close") {
				names = append(names, token)
			}
		}
	}
	return names
}

// roundTripper plugs the client into goproxy's forward path for the
// requests it serves, and leaves the rest to the transport.
func (c *upstreamClient) roundTripper(fallback http.RoundTripper) goproxy.RoundTripper {
	return goproxy.RoundTripperFunc(func(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
		if hasBody(req) && !smallBody(req) {
			return fallback.RoundTrip(req)
		}
		return c.RoundTrip(req)
	})
}

// smallBodyLimit is the largest request body the upstream client sends
// itself, after the head, so that its fields keep their names and order
// (http.Transport writes them canonical and sorted). Larger bodies, and
// chunked ones, which may stream for as long as the client likes, go
// through http.Transport, which sends and reads at the same time.
const smallBodyLimit = 64 << 10

func hasBody(req *http.Request) bool { return req.Body != nil && req.Body != http.NoBody }

func smallBody(req *http.Request) bool {
	return req.ContentLength > 0 && req.ContentLength <= smallBodyLimit && len(req.TransferEncoding) == 0
}

// RoundTrip sends req (without a body, or a small one) and returns the answer; the
// connection goes back to the pool when the body has been read to its end.
func (c *upstreamClient) RoundTrip(req *http.Request) (*http.Response, error) {
	key := req.URL.Scheme + "://" + req.URL.Host
	for attempt := 0; ; attempt++ {
		uc, reused, err := c.get(req.Context(), req, key)
		if err != nil {
			return nil, err
		}
		resp, err := c.exchange(uc, req)
		if err == nil {
			return resp, nil
		}
		uc.conn.Close()
		// A kept-alive connection the destination closed while idle fails
		// at once; an idempotent request is safe to send again, as
		// http.Transport does.
		if reused && attempt == 0 && isIdempotent(req.Method) && isStale(err) && !hasBody(req) {
			continue
		}
		return nil, err
	}
}

func isIdempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodDelete, http.MethodPut:
		return true
	}
	return false
}

// isStale reports whether err is how a connection the other side closed
// while idle fails: end of stream or reset before any answer.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange writes req on uc and reads the answer's head.
func (c *upstreamClient) exchange(uc *upstreamConn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { _ = uc.conn.SetDeadline(time.Now()) })
	// Not req.Write: it writes the fields sorted and canonicalised.
	writeRequestHead(uc.bw, req, wireNamesFrom(ctx), c.order)
	if hasBody(req) {
		if _, err := io.CopyN(uc.bw, req.Body, req.ContentLength); err != nil {
			stop()
			return nil, fmt.Errorf("sending the request body: %w", err)
		}
	}
	if err := uc.bw.Flush(); err != nil {
		stop()
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	if c.headerTimeout > 0 {
		_ = uc.conn.SetReadDeadline(time.Now().Add(c.headerTimeout))
	}
	// A read may carry the start of the body along with the head's end.
	uc.limit.remaining = c.maxHeaderBytes + 4096
	uc.limit.raw = uc.limit.raw[:0]
	var resp *http.Response
	var err error
	for {
		resp, err = http.ReadResponse(uc.br, req)
		// Informational answers (103 Early Hints, 100) precede the real one.
		if err != nil || resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	uc.limit.remaining = -1
	if err != nil {
		stop()
		if !isStale(err) && !errors.Is(err, errHeadTooLarge) {
			var ne net.Error
			if !errors.As(err, &ne) {
				err = &notHTTPError{err: err}
			}
		}
		return nil, err
	}
	_ = uc.conn.SetReadDeadline(time.Time{})
	if ex := exchangeFrom(ctx); ex != nil {
		ex.wireNames = wireNameMap(uc.limit.raw)
	}
	if resp.Close {
		// Go removed "Connection: close, X-Named" whole; remove what it
		// named too, so hop-by-hop headers do not reach the client.
		for _, name := range connectionNames(uc.limit.raw) {
			resp.Header.Del(name)
		}
	}
	reusable := !resp.Close && !req.Close
	resp.Body = &upstreamBody{ReadCloser: resp.Body, client: c, uc: uc, stop: stop, reusable: reusable}
	return resp, nil
}

// upstreamBody returns its connection to the pool once read to the end.
type upstreamBody struct {
	io.ReadCloser
	client   *upstreamClient
	uc       *upstreamConn
	stop     func() bool
	reusable bool
	done     bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		// stop reports false when the cancellation hook already ran (the
		// client left): it may have set a deadline in the past, so the
		// connection must not go back to the pool.
		if b.stop() && b.reusable {
			b.client.put(b.uc)
		} else {
			b.uc.conn.Close()
		}
	}
	return n, err
}

// Close ends the exchange; a body not read to its end leaves the
// connection unusable, so it is closed.
func (b *upstreamBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.stop()
		b.uc.conn.Close()
	}
	return err
}

// get returns an idle connection for key, or dials a new one.
func (c *upstreamClient) get(ctx context.Context, req *http.Request, key string) (*upstreamConn, bool, error) {
	c.mu.Lock()
	for list := c.idle[key]; len(list) > 0; list = c.idle[key] {
		uc := list[len(list)-1]
		c.idle[key] = list[:len(list)-1]
		if time.Since(uc.idleSet) < c.idleTimeout {
			c.mu.Unlock()
			return uc, true, nil
		}
		uc.conn.Close() // idle too long: the destination may be about to close it
	}
	c.mu.Unlock()

	addr := req.URL.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		port := "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(req.URL.Hostname(), port)
	}
	if p := primedFrom(ctx); p != nil && req.URL.Scheme == "https" {
		// A bump opened TLS on its tunnel's connection for the leaf.
		if tc := p.takeTLS(addr); tc != nil {
			return newUpstreamConn(tc, key), false, nil
		}
	}
	conn, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	if req.URL.Scheme == "https" {
		conf := c.tls.Clone()
		conf.ServerName = req.URL.Hostname()
		conf.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, conf)
		hsCtx, cancel := context.WithTimeout(ctx, c.dialer.net.Timeout)
		err := tc.HandshakeContext(hsCtx)
		cancel()
		if err != nil {
			conn.Close()
			return nil, false, err
		}
		conn = tc
	}
	return newUpstreamConn(conn, key), false, nil
}

func newUpstreamConn(conn net.Conn, key string) *upstreamConn {
	limit := &headLimit{conn: conn, remaining: -1}
	return &upstreamConn{conn: conn, limit: limit, br: bufio.NewReader(limit), bw: bufio.NewWriter(conn), key: key}
}

// put keeps uc for the next request to the same destination.
func (c *upstreamClient) put(uc *upstreamConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle[uc.key]) >= c.maxIdlePerHost {
		uc.conn.Close()
		return
	}
	if c.idle == nil {
		c.idle = map[string][]*upstreamConn{}
	}
	uc.idleSet = time.Now()
	c.idle[uc.key] = append(c.idle[uc.key], uc)
	if c.sweeper == nil {
		c.sweeper = time.AfterFunc(c.idleTimeout, c.sweep)
	}
}

// sweep closes the connections idle for longer than idleTimeout and runs
// again while any are left.
func (c *upstreamClient) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeper = nil
	if c.closed {
		return
	}
	for key, list := range c.idle {
		kept := list[:0]
		for _, uc := range list {
			if time.Since(uc.idleSet) >= c.idleTimeout {
				uc.conn.Close()
			} else {
				kept = append(kept, uc)
			}
		}
		if len(kept) == 0 {
			delete(c.idle, key)
		} else {
			c.idle[key] = kept
		}
	}
	if len(c.idle) > 0 {
		c.sweeper = time.AfterFunc(c.idleTimeout/2, c.sweep)
	}
}

// closeIdle closes every idle connection and keeps no more.
func (c *upstreamClient) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.sweeper != nil {
		c.sweeper.Stop()
		c.sweeper = nil
	}
	for _, list := range c.idle {
		for _, uc := range list {
			uc.conn.Close()
		}
	}
	c.idle = nil
}

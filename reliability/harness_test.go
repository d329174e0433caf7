package reliability

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// noLeaks checks, when the test and everything it started have ended,
// that no goroutine is left and the process holds no more descriptors
// than before. Call it first in a test: cleanups run last-first, so its
// check runs after the proxy and the servers are shut.
func noLeaks(t *testing.T) {
	t.Helper()
	before := openFDs()
	t.Cleanup(func() {
		goleak.VerifyNone(t)
		if before < 0 {
			return
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := openFDs()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d file descriptors open after the test, %d before", now, before)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// openFDs counts this process's open descriptors (-1 where /proc is not).
func openFDs() int {
	if runtime.GOOS != "linux" {
		return -1
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}

// start runs hopscope for the test through proxytest, with short limits
// so that timeouts are reached quickly.
func start(t *testing.T, change func(*config.Config), opts ...proxytest.Option) *proxytest.Server {
	t.Helper()
	opts = append(opts, proxytest.WithConfig(func(c *config.Config) {
		c.ReadHeaderTimeout = 500 * time.Millisecond
		c.IdleTimeout = 500 * time.Millisecond
		c.ResponseHeaderTimeout = 500 * time.Millisecond
		c.MaxHeaderBytes = 8 << 10
		if change != nil {
			change(c)
		}
	}))
	return proxytest.Start(t, opts...)
}

// rawConn is a client connection to the proxy spoken raw.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, px *proxytest.Server) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", px.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	return &rawConn{Conn: conn, r: bufio.NewReader(conn)}
}

// send writes s in the background (the proxy may answer before reading it
// all) and returns the proxy's answer.
func (c *rawConn) send(t *testing.T, s string) *http.Response {
	t.Helper()
	go func() { _, _ = io.WriteString(c.Conn, s) }()
	return c.answer(t)
}

func (c *rawConn) answer(t *testing.T) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("reading the proxy's answer: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// closed asserts the proxy ended the connection: it sends nothing more.
func (c *rawConn) closed(t *testing.T) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c.r)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the proxy left the connection open")
	}
	if len(rest) > 0 {
		t.Fatalf("the proxy went on answering on the connection: %q", rest)
	}
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return string(b)
}

// refusal asserts a proxy answer: status, Proxy-Status error type (empty:
// not checked, for answers net/http's parser gives) and words in the body.
func refusal(t *testing.T, resp *http.Response, status int, errType string, words ...string) {
	t.Helper()
	b := body(t, resp)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %q", resp.StatusCode, status, b)
	}
	if errType != "" && !strings.Contains(resp.Header.Get("Proxy-Status"), "error="+errType) {
		t.Errorf("Proxy-Status %q, want error=%s", resp.Header.Get("Proxy-Status"), errType)
	}
	for _, w := range words {
		if !strings.Contains(b, w) {
			t.Errorf("body %q does not say %q", b, w)
		}
	}
}

// rawOrigin is a destination that records the request heads it receives
// and does whatever serve says with each connection.
type rawOrigin struct {
	ln    net.Listener
	mu    sync.Mutex
	heads []string
	wg    sync.WaitGroup
}

// startOrigin runs serve for every connection until the test ends; serve
// gets the connection and a reader positioned after the request head.
func startOrigin(t *testing.T, serve func(conn net.Conn, r *bufio.Reader, head string)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{ln: ln}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(conn)
				var head strings.Builder
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" || line == "\n" {
						break
					}
				}
				o.mu.Lock()
				o.heads = append(o.heads, head.String())
				o.mu.Unlock()
				serve(conn, r, head.String())
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		o.wg.Wait()
	})
	return o
}

func (o *rawOrigin) addr() string { return o.ln.Addr().String() }

func (o *rawOrigin) received() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.heads...)
}

// answer is a serve function that reads a Content-Length body, if any, and
// answers with raw.
func answer(raw string) func(net.Conn, *bufio.Reader, string) {
	return func(conn net.Conn, r *bufio.Reader, head string) {
		for _, line := range strings.Split(head, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "content-length") {
				var n int64
				for _, c := range strings.TrimSpace(v) {
					n = n*10 + int64(c-'0')
				}
				_, _ = io.CopyN(io.Discard, r, n)
			}
		}
		_, _ = io.WriteString(conn, raw)
	}
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

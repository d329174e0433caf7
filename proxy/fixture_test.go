package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// syncBuffer is a log sink that tests read while the proxy writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// reset forgets what was written, for tests that reuse one proxy.
func (b *syncBuffer) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Reset()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// event is one decoded line of the event log.
type event map[string]any

func (e event) str(k string) string {
	s, _ := e[k].(string)
	return s
}

func (e event) num(k string) float64 {
	f, _ := e[k].(float64)
	return f
}

// proxyFixture is a proxy on a loopback port with its event log.
type proxyFixture struct {
	t    testing.TB
	srv  *proxy.Server
	addr string
	logs *syncBuffer
}

// startProxy runs a proxy with opts (nil: defaults) until the test ends.
func startProxy(t testing.TB, opts *proxy.Options) *proxyFixture {
	t.Helper()
	logs := &syncBuffer{}
	return startProxyLogging(t, opts, logs, logs)
}

// startProxyLogging is startProxy with events written to sink; logs is
// what events() reads (nil when sink keeps nothing).
func startProxyLogging(t testing.TB, opts *proxy.Options, sink io.Writer, logs *syncBuffer) *proxyFixture {
	t.Helper()
	return startProxyWithLog(t, opts, sink, logs, eventlog.Options{})
}

// startProxyWithLog is startProxyLogging with event log options (--ws-log).
func startProxyWithLog(t testing.TB, opts *proxy.Options, sink io.Writer, logs *syncBuffer, logOpts eventlog.Options) *proxyFixture {
	t.Helper()
	logger := zerolog.New(sink).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	srv, err := proxy.New(opts, logger)
	if err != nil {
		t.Fatal(err)
	}
	eventlog.Subscribe(srv.Flows(), logger, logOpts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve returned %v", err)
		}
	})
	return &proxyFixture{t: t, srv: srv, addr: ln.Addr().String(), logs: logs}
}

// openPolicy lets CONNECT reach any port, since test servers listen on
// random ones.
func openPolicy() *policy.Policy {
	p := policy.New()
	p.ConnectPorts = policy.MustParsePortSet("*")
	return p
}

func (f *proxyFixture) url() *url.URL { return &url.URL{Scheme: "http", Host: f.addr} }

// client is a real net/http client configured with the proxy.
func (f *proxyFixture) client() *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(f.url()), DisableCompression: true}
	f.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// events returns the decoded events named name, in order.
func (f *proxyFixture) events(name string) []event {
	var out []event
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			f.t.Fatalf("event log line is not JSON: %q: %v", line, err)
		}
		if e.str("event") == name {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event named name that match accepts. Events are
// written when an exchange is complete, which can be just after the client
// has its answer.
func (f *proxyFixture) waitEvent(name string, match func(event) bool) event {
	f.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range f.events(name) {
			if match == nil || match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no %s event matched; log:\n%s", name, f.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawRequest sends raw bytes to the proxy and returns the parsed answer and
// the connection (for tunnels).
func (f *proxyFixture) rawRequest(raw string) (*http.Response, net.Conn, *bufio.Reader) {
	f.t.Helper()
	conn, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		f.t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		f.t.Fatalf("reading the proxy's answer to %q: %v", firstLine(raw), err)
	}
	return resp, conn, br
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rawUpstream is an origin server that records the exact header lines of
// every request it receives and answers with a fixed raw response, so tests
// see what crossed the wire rather than what net/http made of it.
type rawUpstream struct {
	ln       net.Listener
	response string
	mu       sync.Mutex
	heads    [][]string
	wg       sync.WaitGroup
}

func startRawUpstream(t testing.TB, response string) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, response: response}
	u.wg.Add(1)
	go u.serve()
	t.Cleanup(func() {
		ln.Close()
		u.wg.Wait()
	})
	return u
}

func (u *rawUpstream) addr() string { return u.ln.Addr().String() }

func (u *rawUpstream) serve() {
	defer u.wg.Done()
	for {
		conn, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			var head []string
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				line = strings.TrimRight(line, "\r\n")
				if line == "" {
					break
				}
				head = append(head, line)
			}
			u.mu.Lock()
			u.heads = append(u.heads, head)
			u.mu.Unlock()
			// Read a Content-Length body first, as a real server would, so
			// the answer never races the client's last write.
			for _, v := range headerValues(head, "Content-Length") {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					_, _ = io.CopyN(io.Discard, br, n)
				}
			}
			_, _ = io.WriteString(conn, u.response)
		}()
	}
}

// lastHead returns the header lines of the last request received.
func (u *rawUpstream) lastHead(t testing.TB) []string {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.heads) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.heads[len(u.heads)-1]
}

// headerNames returns the lower-cased names of header lines.
func headerValues(lines []string, name string) []string {
	var out []string
	for _, line := range lines[1:] {
		k, v, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

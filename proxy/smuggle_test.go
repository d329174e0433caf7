package proxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// expectClosed asserts the proxy ends the client connection after its
// answer: nothing more is read as a request.
func expectClosed(t *testing.T, conn net.Conn, br *bufio.Reader) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		t.Fatalf("the connection stayed open: a second answer %d came", resp.StatusCode)
	} else if isTimeout(err) {
		t.Fatal("the connection stayed open after the answer")
	}
}

// A request with both Content-Length and chunked framing (the classic
// smuggling pair) is handled as chunked and reaches the origin with one
// framing only; then the client connection is closed, as RFC 9112 section
// 6.3 requires, so a request hidden behind the body is never served.
func TestChunkedWithContentLengthClosesTheConnection(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)
	smuggled := "GET http://" + up.addr() + "/smuggled HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n"
	for _, order := range []string{"CL first", "TE first"} {
		t.Run(order, func(t *testing.T) {
			framing := "Content-Length: " + strconv.Itoa(5+len(smuggled)) + "\r\nTransfer-Encoding: chunked\r\n"
			if order == "TE first" {
				framing = "Transfer-Encoding: chunked\r\nContent-Length: " + strconv.Itoa(5+len(smuggled)) + "\r\n"
			}
			raw := "POST http://" + up.addr() + "/ HTTP/1.1\r\nHost: " + up.addr() + "\r\n" + framing + "\r\n0\r\n\r\n" + smuggled
			resp, conn, br := px.rawRequest(raw)
			if body := readBody(t, resp); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Errorf("the answer does not say Connection: close: %v", resp.Header)
			}
			expectClosed(t, conn, br)
			head := up.lastHead(t)
			if cl, te := headerValues(head, "Content-Length"), headerValues(head, "Transfer-Encoding"); len(cl) > 0 && len(te) > 0 {
				t.Fatalf("origin received both framings: Content-Length %q, Transfer-Encoding %q", cl, te)
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			for _, h := range up.heads {
				if strings.Contains(h[0], "/smuggled") {
					t.Fatalf("the hidden request reached the origin: %q", h)
				}
			}
		})
	}
}

// Framing a recipient cannot trust, in every spelling of the smuggling
// tricks: the client gets one answer and its connection ends, so that a
// request hidden after (or inside) the body is never served, and the
// origin sees at most the one request. HTTP/1.0 with Transfer-Encoding
// is the subtle one: net/http ignores the field for 1.0 (RFC 9112 section
// 6.1 says the framing is faulty), so a body framed by it would otherwise
// be read as requests of their own on a kept-alive connection.
func TestFramingDefectsEndTheConnection(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)
	a := up.addr()
	smuggled := "GET http://" + a + "/smuggled HTTP/1.1\r\nHost: " + a + "\r\n\r\n"
	post := func(proto, fields, body string) string {
		return "POST http://" + a + "/ " + proto + "\r\nHost: " + a + "\r\n" + fields + "\r\n" + body + smuggled
	}
	for _, tc := range []struct{ name, raw string }{
		{"coding other than chunked", post("HTTP/1.1", "Transfer-Encoding: gzip\r\n", "0\r\n\r\n")},
		{"chunked twice", post("HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")},
		{"chunked, chunked", post("HTTP/1.1", "Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n")},
		{"xchunked", post("HTTP/1.1", "Transfer-Encoding: xchunked\r\n", "0\r\n\r\n")},
		{"space before the colon", post("HTTP/1.1", "Transfer-Encoding : chunked\r\n", "0\r\n\r\n")},
		{"two Content-Lengths", post("HTTP/1.1", "Content-Length: 5\r\nContent-Length: 6\r\n", "hello!")},
		{"a Content-Length list", post("HTTP/1.1", "Content-Length: 5, 6\r\n", "hello!")},
		{"signed Content-Length", post("HTTP/1.1", "Content-Length: +5\r\n", "hello")},
		{"negative Content-Length", post("HTTP/1.1", "Content-Length: -1\r\n", "hello")},
		{"HTTP/1.0 chunked", post("HTTP/1.0", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n", "")},
		{"HTTP/1.0 chunked with a Content-Length", post("HTTP/1.0", "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n", "")},
		{"HTTP/1.0 chunked, lower case", post("HTTP/1.0", "connection: keep-alive\r\ntransfer-encoding: chunked\r\n", "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, conn, br := px.rawRequest(tc.raw)
			body := readBody(t, resp)
			if !resp.Close {
				t.Errorf("the answer (%d %q) does not say Connection: close", resp.StatusCode, body)
			}
			expectClosed(t, conn, br)
		})
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, h := range up.heads {
		if strings.Contains(h[0], "/smuggled") {
			t.Fatalf("the hidden request reached the origin: %q", h)
		}
	}
}

// bodyOrigin reads every request body whole before answering, and counts
// the bodies it received complete and the connections it accepted.
type bodyOrigin struct {
	*httptest.Server
	complete, broken atomic.Int64
	conns            atomic.Int64
	mu               sync.Mutex
	bodies           []string
}

func startBodyOrigin(t *testing.T) *bodyOrigin {
	o := &bodyOrigin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			o.broken.Add(1)
			return
		}
		o.complete.Add(1)
		o.mu.Lock()
		o.bodies = append(o.bodies, string(b))
		o.mu.Unlock()
		_, _ = io.WriteString(w, "got "+strconv.Itoa(len(b)))
	}))
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			o.conns.Add(1)
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

// A malformed chunked body from the client is the client's fault: it gets
// a 400 that says why, with Proxy-Status, and its connection is closed; the
// origin never gets a complete request out of it, and the half-written
// request is not left on a connection that is reused.
func TestMalformedChunkedBodies(t *testing.T) {
	origin := startBodyOrigin(t)
	px := startProxy(t, nil)
	host := strings.TrimPrefix(origin.URL, "http://")
	head := "POST " + origin.URL + "/up HTTP/1.1\r\nHost: " + host + "\r\nTransfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name, body string
		halfClose  bool
	}{
		{"non-hex size", "5\r\nhello\r\nzz\r\nabc\r\n0\r\n\r\n", false},
		{"size overflow", "5\r\nhello\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n", false},
		{"1 MiB chunk extension", "5\r\nhello\r\n3;" + strings.Repeat("x", 1<<20) + "\r\nabc\r\n0\r\n\r\n", false},
		{"chunk longer than its size", "5\r\nhello\r\n3\r\nabcdef\r\n0\r\n\r\n", false},
		{"EOF before the last chunk", "5\r\nhello\r\n3\r\nab", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", px.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				_, _ = io.WriteString(conn, head+tc.body)
				if tc.halfClose {
					_ = conn.(*net.TCPConn).CloseWrite()
				}
			}()
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			checkProxyAnswer(t, resp, http.StatusBadRequest, "http_request_error", "request body is malformed")
			expectClosed(t, conn, br)
			if n := origin.complete.Load(); n != 0 {
				t.Fatalf("the origin received %d complete requests from a malformed body", n)
			}
		})
	}
	// A good request after them all is whole at the origin.
	c := px.client()
	resp, err := c.Post(origin.URL+"/after", "text/plain", io.MultiReader(strings.NewReader("fine"))) // unknown length: chunked
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "got 4" {
		t.Fatalf("the request after the malformed ones: %d %q", resp.StatusCode, body)
	}
	origin.mu.Lock()
	defer origin.mu.Unlock()
	if len(origin.bodies) != 1 || origin.bodies[0] != "fine" {
		t.Errorf("the origin received bodies %q, want just \"fine\"", origin.bodies)
	}
	if px.waitEvent("http", func(e event) bool { return e.num("status") == 400 }) == nil {
		t.Error("no http event for the refused body")
	}
}

// The header defects net/http's parser already refuses end in a 400 and a
// closed connection before anything is sent on; obs-fold and a bare LF,
// which RFC 9112 lets a recipient accept, reach the origin as clean lines
// (a folded value unfolded, never a line that starts with a space); and an
// absolute-form target decides the Host the origin sees (RFC 9112 section
// 3.2.2), whatever the client's Host header says.
func TestHeaderDefects(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, nil)
	a := up.addr()
	get := "GET http://" + a + "/ HTTP/1.1\r\n"
	refused := []struct{ name, raw string }{
		{"bare CR in a value", get + "Host: " + a + "\r\nX-A: 1\r2\r\n\r\n"},
		{"NUL in a value", get + "Host: " + a + "\r\nX-A: 1\x002\r\n\r\n"},
		{"two different Host headers", get + "Host: " + a + "\r\nHost: evil.example\r\n\r\n"},
		{"space before the colon", get + "Host : " + a + "\r\n\r\n"},
		{"no colon", get + "Host: " + a + "\r\nX-A\r\n\r\n"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			resp, conn, br := px.rawRequest(tc.raw)
			if body := readBody(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(body, "400 Bad Request") {
				t.Fatalf("got %d %q, want 400", resp.StatusCode, body)
			}
			expectClosed(t, conn, br)
		})
	}
	up.mu.Lock()
	n := len(up.heads)
	up.mu.Unlock()
	if n != 0 {
		t.Fatalf("the origin received %d requests from refused heads", n)
	}
	accepted := []struct {
		name, raw string
		want      []string // exact header lines the origin must see
	}{
		{"obs-fold", get + "Host: " + a + "\r\nX-A: 1\r\n  folded\r\n\r\n", []string{"X-A: 1 folded"}},
		{"bare LF line ends", get + "Host: " + a + "\nX-A: 1\nX-B: 2\r\n\r\n", []string{"X-A: 1", "X-B: 2"}},
		{"Host disagreeing with the target", get + "Host: evil.example\r\n\r\n", []string{"Host: " + a}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := px.rawRequest(tc.raw)
			if body := readBody(t, resp); resp.StatusCode != 200 {
				t.Fatalf("got %d %q", resp.StatusCode, body)
			}
			head := up.lastHead(t)
			for _, w := range tc.want {
				found := false
				for _, line := range head {
					found = found || line == w
				}
				if !found {
					t.Errorf("origin head %q lacks %q", head, w)
				}
			}
			for _, line := range head {
				if strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") || strings.Contains(line, "evil.example") {
					t.Errorf("origin head line %q", line)
				}
			}
		})
	}
}

// Credentials in the request target are refused: browsers never send
// them, and forwarding them leaks them (or disguises a phishing host).
func TestUserinfoInTargetRefused(t *testing.T) {
	up := startRawUpstream(t, okResponse)
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	for _, target := range []string{"http://user:secret@" + up.addr() + "/", "http://bank.example@" + up.addr() + "/", "ws://u:p@" + up.addr() + "/ws"} {
		resp, _, _ := px.rawRequest("GET " + target + " HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
		checkProxyAnswer(t, resp, http.StatusBadRequest, "http_request_error", "user name", "credentials")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.heads) != 0 {
		t.Fatalf("the origin received %q", up.heads)
	}
	if strings.Contains(px.logs.String(), "secret") {
		t.Error("the password reached the event log")
	}
}

// earlyConn sends a CONNECT head in the same write as the first bytes of
// what follows, as clients that do not wait for the 200 do, and reads the
// 200 off before handing on what the tunnel returns.
type earlyConn struct {
	net.Conn
	head string
	br   *bufio.Reader
	t    *testing.T
}

func (c *earlyConn) Write(p []byte) (int, error) {
	if c.head != "" {
		b := append([]byte(c.head), p...)
		c.head = ""
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *earlyConn) Read(p []byte) (int, error) {
	if c.br == nil {
		c.br = bufio.NewReader(c.Conn)
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK {
			c.t.Errorf("CONNECT answered %d", resp.StatusCode)
		}
	}
	return c.br.Read(p)
}

// Bytes sent right behind the CONNECT head, before the 200, belong to the
// tunnel: a TLS ClientHello reaches the bump's TLS server, a pipelined
// plaintext request the destination.
func TestConnectEarlyBytesReachTheTunnel(t *testing.T) {
	t.Run("ClientHello to the bump", func(t *testing.T) {
		w := newTLSWorld(t, policy.BumpRules{All: true}, hello("bumped"))
		conn, err := net.DialTimeout("tcp", w.px.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		target := net.JoinHostPort("localhost", w.originPort)
		ec := &earlyConn{Conn: conn, head: "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n", t: t}
		tc := tls.Client(ec, &tls.Config{RootCAs: w.clientCAs, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake sent with the CONNECT: %v", err)
		}
		_, _ = io.WriteString(tc, "GET / HTTP/1.1\r\nHost: "+target+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, resp); body != "bumped" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("pipelined request", func(t *testing.T) {
		up := startRawUpstream(t, okResponse)
		px := startProxy(t, &proxy.Options{Policy: openPolicy()})
		resp, _, br := px.rawRequest("CONNECT " + up.addr() + " HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n" +
			"GET /early HTTP/1.1\r\nHost: " + up.addr() + "\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %d", resp.StatusCode)
		}
		inner, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, inner); body != "ok" || up.lastHead(t)[0] != "GET /early HTTP/1.1" {
			t.Errorf("inner answer %q, origin saw %q", body, up.lastHead(t))
		}
	})
}

// A client that stops in the middle of its body (slowloris on the body) is
// cut off after --idle-timeout without a byte: a 408 that says so, and the
// origin's request is dropped, not left waiting as long as it would wait.
func TestStalledRequestBodyTimesOut(t *testing.T) {
	origin := startBodyOrigin(t)
	px := startProxy(t, &proxy.Options{IdleTimeout: 300 * time.Millisecond})
	host := strings.TrimPrefix(origin.URL, "http://")
	resp, conn, br := px.rawRequest("POST " + origin.URL + "/slow HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 10\r\n\r\nabc")
	checkProxyAnswer(t, resp, http.StatusRequestTimeout, "http_request_error", "no request body bytes", "--idle-timeout")
	expectClosed(t, conn, br)
	if origin.complete.Load() != 0 {
		t.Error("the origin received the stalled request complete")
	}
}

package proxy_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/proxy"
)

// startEcho runs a TCP server that echoes what it reads and, when the
// client half-closes, writes "bye" and closes.
func startEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
				_, _ = io.WriteString(c, "bye")
			}()
		}
	}()
	return ln.Addr().String()
}

func TestConnectTunnelHTTPS(t *testing.T) {
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "through the tunnel")
	}))
	defer origin.Close()
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	tr := origin.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(px.url())
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); body != "through the tunnel" {
		t.Fatalf("body %q", body)
	}
	tr.CloseIdleConnections()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(origin.URL, "https://"))
	e := px.waitEvent("tunnel", nil)
	if e.str("host") != host || e.num("port") == 0 || e.str(("mode")) != "splice" || e.num("status") != 200 {
		t.Errorf("tunnel event %v (want host %s port %s)", e, host, port)
	}
	if e.num("bytes_up") < 100 || e.num("bytes_down") < 100 {
		t.Errorf("tunnel event bytes %v/%v: the TLS handshake alone is larger", e["bytes_up"], e["bytes_down"])
	}
}

// Bytes a client sends right behind its CONNECT, in the same packet, must
// reach the destination (goproxy drops them on its own).
func TestConnectKeepsEarlyBytes(t *testing.T) {
	echo := startEcho(t)
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	resp, conn, br := px.rawRequest("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\nearly")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "early" {
		t.Fatalf("echoed %q, %v", got, err)
	}
	_, _ = io.WriteString(conn, "more")
	if _, err := io.ReadFull(br, got[:4]); err != nil || string(got[:4]) != "more" {
		t.Fatalf("echoed %q, %v", got[:4], err)
	}
	// Half-close: the destination sees EOF, answers, and closes.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close got %q, %v", rest, err)
	}
	e := px.waitEvent("tunnel", nil)
	if e.num("bytes_up") != 9 || e.num("bytes_down") != 12 {
		t.Errorf("tunnel bytes up %v down %v, want 9 and 12", e["bytes_up"], e["bytes_down"])
	}
}

// When the destination closes abruptly the client's side is closed too: no
// half-dead tunnel.
func TestTunnelClosedWhenDestinationCloses(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// Reset only once the tunnel is up: a reset during the
			// proxy's dial is (rightly) a 502.
			_, _ = c.Read(make([]byte, 2))
			_, _ = io.WriteString(c, "hi")
			_ = c.(*net.TCPConn).SetLinger(0) // RST
			c.Close()
		}
	}()
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	resp, conn, br := px.rawRequest("CONNECT " + ln.Addr().String() + " HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, readBody(t, resp))
	}
	_, _ = io.WriteString(conn, "go")
	if _, err := io.ReadAll(br); err != nil && !isReset(err) {
		t.Fatalf("reading the tunnel: %v", err)
	}
	px.waitEvent("tunnel", nil)
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "reset")
}

// A parent proxy receives CONNECT and forwarded requests, with the
// credentials from the upstream URL.
func TestUpstreamProxyChain(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "origin")
	}))
	defer origin.Close()
	creds := proxy.NewCredentials()
	_ = creds.AddPair("up:pw")
	parent := startProxy(t, &proxy.Options{Policy: openPolicy(), Credentials: creds, Pseudonym: "parent"})
	parentURL := &url.URL{Scheme: "http", Host: parent.addr, User: url.UserPassword("up", "pw")}
	child := startProxy(t, &proxy.Options{Policy: openPolicy(), UpstreamProxy: parentURL})

	resp, err := child.client().Get(origin.URL + "/plain")
	if err != nil {
		t.Fatal(err)
	}
	// Each proxy adds its own entry on the way back: the parent first.
	if body := readBody(t, resp); body != "origin" || strings.Join(resp.Header.Values("Via"), ", ") != "1.1 parent, 1.1 hopscope" {
		t.Errorf("forward through parent: %q Via %q", body, resp.Header.Values("Via"))
	}
	parent.waitEvent("http", func(e event) bool { return e.str("url") == origin.URL+"/plain" })

	echo := startEcho(t)
	resp, conn, br := child.rawRequest("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT through parent: %d", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "ping")
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo through two tunnels: %q %v", got, err)
	}
	conn.Close()
	parent.waitEvent("tunnel", nil)

	// A parent that refuses is reported as such.
	wrong := &url.URL{Scheme: "http", Host: parent.addr, User: url.UserPassword("up", "bad")}
	child2 := startProxy(t, &proxy.Options{Policy: openPolicy(), UpstreamProxy: wrong})
	resp, _, _ = child2.rawRequest("CONNECT " + echo + " HTTP/1.1\r\nHost: " + echo + "\r\n\r\n")
	checkProxyAnswer(t, resp, 502, "destination_unavailable", "parent proxy", "407")
}

// Shutdown waits for tunnels until its deadline, then closes them.
func TestShutdownClosesTunnels(t *testing.T) {
	echo := startEcho(t)
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	resp, conn, br := px.rawRequest("CONNECT " + echo + " HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	_, _ = io.WriteString(conn, "x")
	_, _ = br.ReadByte()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := px.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the tunnel is still open after shutdown")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("shutdown took %v", time.Since(start))
	}
	if _, err := net.DialTimeout("tcp", px.addr, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

// Malformed input gets a clear 4xx and leaves nothing behind.
func TestMalformedRequests(t *testing.T) {
	px := startProxy(t, &proxy.Options{Policy: openPolicy(), MaxHeaderBytes: 4096})
	huge := strings.Repeat("a", 8192)
	cases := []struct {
		name   string
		raw    string
		status int
		words  string
	}{
		{"garbage request line", "GARBAGE\r\n\r\n", 400, ""},
		{"bad HTTP version", "GET http://example.com/ HTTP/9.9\r\nHost: example.com\r\n\r\n", 505, ""},
		{"oversized header", "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nX-Big: " + huge + "\r\n\r\n", 431, ""},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "host:port"},
		{"CONNECT with empty host", "CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "host:port"},
		{"CONNECT with path", "CONNECT http://example.com:443/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "host:port"},
		{"CONNECT with bad port", "CONNECT example.com:99999 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "host:port"},
		{"unsupported scheme", "GET ftp://example.com/file HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "ftp://"},
		{"two different Content-Lengths", "POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, ""},
		{"negative Content-Length", "POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: -1\r\n\r\n", 400, ""},
		{"unknown Transfer-Encoding", "POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, ""},
		{"space before colon", "GET http://example.com/ HTTP/1.1\r\nHost : example.com\r\n\r\n", 400, ""},
		{"missing Host in HTTP/1.1", "GET http://example.com/ HTTP/1.1\r\n\r\n", 400, ""},
		{"absolute URL without host", "GET http:///path HTTP/1.1\r\nHost: x\r\n\r\n", 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _, _ := px.rawRequest(tc.raw)
			body := readBody(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, tc.words) {
				t.Errorf("body %q does not say %q", body, tc.words)
			}
		})
	}
}

// A client that stops sending mid-headers is cut off after the header
// timeout instead of holding a goroutine forever.
func TestSlowHeadersTimeOut(t *testing.T) {
	px := startProxy(t, &proxy.Options{ReadHeaderTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", px.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET http://example.com/ HTTP/1.1\r\nHost: exa")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = bufio.NewReader(conn).ReadString('\n')
	if err == nil || isTimeout(err) {
		t.Errorf("connection still open after the header timeout: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Proxy-Authorization with bad base64 on a CONNECT is a 407, not a crash.
func TestMalformedAuthOnConnect(t *testing.T) {
	creds := proxy.NewCredentials()
	_ = creds.AddPair("a:b")
	px := startProxy(t, &proxy.Options{Credentials: creds, Policy: openPolicy()})
	for _, value := range []string{"Basic", "Basic ====", "Basic " + base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}), "NTLM TlRMTVNTUAAB"} {
		resp, _, _ := px.rawRequest("CONNECT example.com:443 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: " + value + "\r\n\r\n")
		checkProxyAnswer(t, resp, 407, "http_request_denied")
	}
}

// IPv6 literals work for tunnels and plain requests alike.
func TestIPv6Targets(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback here:", err)
	}
	ln.Close()
	origin := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "v6 "+r.Host)
	}))
	origin.Listener, err = net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	origin.Start()
	defer origin.Close()
	target := origin.Listener.Addr().String() // [::1]:port
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})

	resp, err := px.client().Get(origin.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); body != "v6 "+target {
		t.Errorf("plain request: %q", body)
	}
	resp, conn, br := px.rawRequest("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %d", target, resp.StatusCode)
	}
	// Plain HTTP inside the tunnel, pinned to the bracketed authority.
	_, _ = io.WriteString(conn, "GET /y HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, inner); body != "v6 "+target {
		t.Errorf("inside the tunnel: %d %q", inner.StatusCode, body)
	}
	conn.Close()
	if e := px.waitEvent("tunnel", nil); e.str("host") != "::1" || e.str("mode") != "http" {
		t.Errorf("tunnel event %v", e)
	}
}

// Shutdown closes a WebSocket that rides inside a tunnel and returns. The
// WebSocket's client connection is the tunnel's inner connection, whose
// Close ends the tunnel and leaves the hijacked set: closing it under that
// set's lock once deadlocked Shutdown for good.
func TestShutdownClosesWebSocketsInsideTunnels(t *testing.T) {
	_, px, conn := wsThroughTunnel(t)
	if err := wsutil.WriteClientText(conn, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if got, err := wsutil.ReadServerText(conn); err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- px.srv.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return with a WebSocket open inside a tunnel")
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the WebSocket is still open after Shutdown")
		}
	}
}

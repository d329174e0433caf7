package proxy_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
	"github.com/hopscope/hopscope/proxy/socks5"
)

// socksFixture is a proxy serving HTTP and SOCKS5 side by side.
type socksFixture struct {
	*proxyFixture
	socksAddr string
}

// startSOCKS runs a proxy with opts and a SOCKS5 listener on loopback.
func startSOCKS(t testing.TB, opts *proxy.Options) *socksFixture {
	t.Helper()
	done := make(chan error, 1)
	// Registered first, so it runs after the proxy's Shutdown.
	t.Cleanup(func() {
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("ServeSOCKS returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeSOCKS did not return after Shutdown")
		}
	})
	px := startProxy(t, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- px.srv.ServeSOCKS(ln) }()
	return &socksFixture{proxyFixture: px, socksAddr: ln.Addr().String()}
}

func (f *socksFixture) dialer(t testing.TB, auth *xproxy.Auth) xproxy.ContextDialer {
	t.Helper()
	d, err := xproxy.SOCKS5("tcp", f.socksAddr, auth, &net.Dialer{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d.(xproxy.ContextDialer)
}

// httpClient is a net/http client whose proxy is socks5h://, so names are
// resolved by hopscope.
func (f *socksFixture) httpClient(t testing.TB, userinfo *url.Userinfo, tlsConf *tls.Config) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5h", Host: f.socksAddr, User: userinfo}), TLSClientConfig: tlsConf}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// echoThrough checks that a tunnel to an echo server carries bytes both
// ways. (x/net/proxy's connection cannot half-close, so the echo's "bye"
// is not awaited.)
func echoThrough(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
		t.Fatalf("through the SOCKS5 tunnel: %q, %v", got, err)
	}
}

// A Go SOCKS5 client reaches destinations named by IPv4, IPv6 and domain
// addresses; each tunnel is spliced and logged like a CONNECT tunnel.
func TestSOCKS5GoClient(t *testing.T) {
	echo4 := startEcho(t)
	_, port4, _ := net.SplitHostPort(echo4)
	targets := []struct{ addr, host string }{
		{echo4, "127.0.0.1"},
		{net.JoinHostPort("localhost", port4), "localhost"}, // sent as a name
	}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_, _ = io.Copy(c, c)
				_, _ = io.WriteString(c, "bye")
				c.Close()
			}
		}()
		t.Cleanup(func() { ln.Close() })
		targets = append(targets, struct{ addr, host string }{ln.Addr().String(), "::1"})
	} else if os.Getenv("CI") == "true" {
		t.Errorf("no IPv6 loopback: %v", err)
	}
	px := startSOCKS(t, &proxy.Options{Policy: openPolicy()})
	d := px.dialer(t, nil)
	for _, target := range targets {
		conn, err := d.DialContext(context.Background(), "tcp", target.addr)
		if err != nil {
			t.Fatalf("SOCKS5 to %s: %v", target.addr, err)
		}
		echoThrough(t, conn)
		conn.Close()
		e := px.waitEvent("tunnel", func(e event) bool { return e.str("host") == target.host })
		if e.str("mode") != "splice" || e.str("via") != "socks5" || e.num("status") != 200 || e.num("bytes_up") != 4 || e.num("bytes_down") < 4 {
			t.Errorf("tunnel event for %s: %v", target.addr, e)
		}
	}
}

// curl --socks5-hostname, the conventional client, through a plaintext
// HTTP tunnel (served and logged as HTTP) and against a refusal.
func TestSOCKS5Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is missing; CI installs it (.ci/run)")
		}
		t.Skip("curl is not installed; apt-get install curl")
	}
	origin := httptest.NewServer(hello("hello over socks"))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	pol := openPolicy()
	pol.Deny = []policy.HostPattern{mustPattern(t, "denied.localhost")}
	px := startSOCKS(t, &proxy.Options{Policy: pol})

	run := func(target string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "--socks5-hostname", px.socksAddr, target)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
	}
	out, errOut, code := run("http://localhost:" + port + "/hi")
	if code != 0 || out != "hello over socks" {
		t.Fatalf("curl exit %d: %q %q", code, out, errOut)
	}
	e := px.waitEvent("http", nil)
	if e.str("url") != "http://localhost:"+port+"/hi" || e.num("status") != 200 || e.num("tunnel") == 0 {
		t.Errorf("http event %v", e)
	}
	_, errOut, code = run("http://denied.localhost:" + port + "/")
	if code == 0 || !strings.Contains(errOut, "(2)") {
		t.Errorf("curl to a denied host: exit %d, %q; want SOCKS5 reply 2 (not allowed by ruleset)", code, errOut)
	}
	d := px.waitEvent("deny", nil)
	if d.str("method") != "SOCKS5" || d.str("target") != "denied.localhost:"+port || d.str("rule") != "deny-host=denied.localhost" {
		t.Errorf("deny event %v", d)
	}
}

// HTTPS through SOCKS5 is bumped with the local CA, like a CONNECT.
func TestSOCKS5Bump(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("secret over socks"))
	sx := &socksFixture{proxyFixture: w.px, socksAddr: serveSOCKSToo(t, w.px)}
	c := sx.httpClient(t, nil, &tls.Config{RootCAs: w.clientCAs})
	resp, err := c.Get(w.url("localhost", "/in"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); body != "secret over socks" {
		t.Fatalf("body %q", body)
	}
	c.CloseIdleConnections()
	if e := w.px.waitEvent("http", nil); e.str("url") != w.url("localhost", "/in") || e.num("tunnel") == 0 {
		t.Errorf("http event %v", e)
	}
	if te := w.px.waitEvent("tunnel", nil); te.str("mode") != "bump" || te.str("sni") != "localhost" {
		t.Errorf("tunnel event %v", te)
	}
}

// serveSOCKSToo adds a SOCKS5 listener to a running proxy and returns its
// address; it stops with the proxy.
func serveSOCKSToo(t testing.TB, px *proxyFixture) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- px.srv.ServeSOCKS(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = px.srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeSOCKS: %v", err)
		}
	})
	return ln.Addr().String()
}

// RFC 1929 with the proxy's own users: right credentials pass, wrong ones
// and none are refused, and a deny event says why.
func TestSOCKS5Auth(t *testing.T) {
	echo := startEcho(t)
	creds := proxy.NewCredentials()
	if err := creds.AddPair("alice:s3cret"); err != nil {
		t.Fatal(err)
	}
	px := startSOCKS(t, &proxy.Options{Policy: openPolicy(), Credentials: creds})
	conn, err := px.dialer(t, &xproxy.Auth{User: "alice", Password: "s3cret"}).DialContext(context.Background(), "tcp", echo)
	if err != nil {
		t.Fatalf("right credentials: %v", err)
	}
	echoThrough(t, conn)
	conn.Close()

	if _, err := px.dialer(t, &xproxy.Auth{User: "alice", Password: "wrong"}).DialContext(context.Background(), "tcp", echo); err == nil {
		t.Error("wrong password accepted")
	}
	if e := px.waitEvent("deny", nil); e.str("rule") != "auth" || !strings.Contains(e.str("reason"), "wrong user name or password") || e.num("status") != 407 {
		t.Errorf("deny event %v", e)
	}
	px.logs.reset()
	if _, err := px.dialer(t, nil).DialContext(context.Background(), "tcp", echo); err == nil || !strings.Contains(err.Error(), "no acceptable authentication methods") {
		t.Errorf("no credentials: %v", err)
	}
	if e := px.waitEvent("deny", nil); e.str("rule") != "auth" || !strings.Contains(e.str("reason"), "RFC 1929") {
		t.Errorf("deny event %v", e)
	}
}

// socksRaw runs a handshake by hand and returns the server's reply code
// to request.
func socksRaw(t *testing.T, addr string, request []byte) socks5.Reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(append([]byte{5, 1, socks5.MethodNoAuth}, request...)); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(conn, reply); err != nil {
		t.Fatalf("reading the reply: %v (got % x)", err, reply)
	}
	if reply[0] != 5 || reply[1] != socks5.MethodNoAuth || reply[2] != 5 {
		t.Fatalf("reply % x", reply)
	}
	return socks5.Reply(reply[3])
}

// Each refusal reaches the client as the reply code that says it.
func TestSOCKS5Refusals(t *testing.T) {
	echo := startEcho(t)
	echoHost, echoPortStr, _ := net.SplitHostPort(echo)
	echoPort, _ := strconv.Atoi(echoPortStr)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	_, closedPortStr, _ := net.SplitHostPort(closedAddr)
	closedPort, _ := strconv.Atoi(closedPortStr)

	pol := policy.New() // CONNECT to 443 only
	pol.Deny = []policy.HostPattern{mustPattern(t, "blocked.example"), mustPattern(t, "10.0.0.0/8")}
	// Names resolve through a resolver that fails, so a name is
	// unreachable without any network.
	failing := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nil, errors.New("no DNS here")
	}}
	px := startSOCKS(t, &proxy.Options{Policy: pol, Resolver: failing})
	open := startSOCKS(t, &proxy.Options{Policy: openPolicy(), Resolver: failing})
	// A name server that never answers, and a short dial timeout.
	silent := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	slow := startSOCKS(t, &proxy.Options{Policy: openPolicy(), Resolver: silent, DialTimeout: 50 * time.Millisecond})
	req := func(cmd byte, host string, port int) []byte {
		return socks5.AppendRequest(nil, socks5.Request{Command: cmd, Host: host, Port: uint16(port)})
	}
	for _, tc := range []struct {
		name    string
		addr    string
		request []byte
		want    socks5.Reply
		rule    string
	}{
		{"port not in connect-ports", px.socksAddr, req(socks5.CommandConnect, echoHost, echoPort), socks5.ReplyNotAllowed, "connect-ports=443"},
		{"denied host", px.socksAddr, req(socks5.CommandConnect, "blocked.example", 443), socks5.ReplyNotAllowed, "deny-host=blocked.example"},
		{"denied range", px.socksAddr, req(socks5.CommandConnect, "10.1.2.3", 443), socks5.ReplyNotAllowed, "deny-host=10.0.0.0/8"},
		{"refused", open.socksAddr, req(socks5.CommandConnect, "127.0.0.1", closedPort), socks5.ReplyConnectionRefused, ""},
		{"unresolvable", open.socksAddr, req(socks5.CommandConnect, "nowhere.example", 443), socks5.ReplyHostUnreachable, ""},
		{"timeout", slow.socksAddr, req(socks5.CommandConnect, "silent.example", 443), socks5.ReplyTTLExpired, ""},
		{"bind", open.socksAddr, req(socks5.CommandBind, "127.0.0.1", echoPort), socks5.ReplyCommandNotSupported, "socks5-command"},
		{"udp associate", open.socksAddr, req(socks5.CommandUDPAssociate, "0.0.0.0", 0), socks5.ReplyCommandNotSupported, "socks5-command"},
		{"unknown address type", open.socksAddr, []byte{5, 1, 0, 9, 0, 0}, socks5.ReplyAddressNotSupported, "request"},
		{"bad name", open.socksAddr, append(append([]byte{5, 1, 0, 3, 4}, "a:b@"...), 0, 80), socks5.ReplyGeneralFailure, "request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := map[string]*socksFixture{px.socksAddr: px, open.socksAddr: open, slow.socksAddr: slow}[tc.addr]
			f.logs.reset()
			if got := socksRaw(t, tc.addr, tc.request); got != tc.want {
				t.Fatalf("reply %v, want %v", got, tc.want)
			}
			if tc.rule != "" {
				if e := f.waitEvent("deny", nil); e.str("rule") != tc.rule || e.str("method") != "SOCKS5" {
					t.Errorf("deny event %v, want rule %s", e, tc.rule)
				}
			} else if e := f.waitEvent("tunnel", nil); e.num("status") < 502 || e.str("via") != "socks5" {
				t.Errorf("tunnel event %v", e)
			}
		})
	}
}

// Clients outside --allow-client are refused with "not allowed by
// ruleset", whatever they offer.
func TestSOCKS5ClientRange(t *testing.T) {
	echo := startEcho(t)
	pol := openPolicy()
	pol.Clients = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	px := startSOCKS(t, &proxy.Options{Policy: pol})
	if got := socksRaw(t, px.socksAddr, socks5.AppendRequest(nil, socks5.Request{Command: socks5.CommandConnect, Host: "127.0.0.1", Port: 1})); got != socks5.ReplyNotAllowed {
		t.Fatalf("reply %v", got)
	}
	if e := px.waitEvent("deny", nil); e.str("rule") != "allow-client" || e.str("hint") != "To allow them, start hopscope with --allow-client 127.0.0.1." {
		t.Errorf("deny event %v", e)
	}
	if _, err := px.dialer(t, nil).DialContext(context.Background(), "tcp", echo); err == nil {
		t.Error("a client outside the range got a tunnel")
	}
}

// A client that sends its greeting, request and first bytes in one write
// (optimistic data) loses none of them; an HTTP client on the SOCKS port
// is told what it reached.
func TestSOCKS5EarlyBytesAndWrongProtocol(t *testing.T) {
	echo := startEcho(t)
	px := startSOCKS(t, &proxy.Options{Policy: openPolicy()})
	host, port, _ := net.SplitHostPort(echo)
	p, _ := strconv.Atoi(port)
	conn, err := net.DialTimeout("tcp", px.socksAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	msg := append([]byte{5, 1, 0}, socks5.AppendRequest(nil, socks5.Request{Command: socks5.CommandConnect, Host: host, Port: uint16(p)})...)
	if _, err := conn.Write(append(msg, "early"...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(conn)
	if len(got) < 12 || got[3] != 0 || string(got[12:]) != "earlybye" {
		t.Fatalf("got % x (%q)", got, got)
	}

	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: px.socksAddr})}, Timeout: 5 * time.Second}
	resp, err := hc.Get("http://example.com/")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.StatusCode != 400 || !strings.Contains(body, "SOCKS5 port") {
		t.Errorf("HTTP on the SOCKS port: %d %q", resp.StatusCode, body)
	}
}

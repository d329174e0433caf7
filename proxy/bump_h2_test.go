package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// protoEcho answers with what the origin saw: its protocol, the Via the
// proxy added and the request body.
func protoEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s via=%q body=%q", r.Proto, r.Header.Get("Via"), body)
	})
}

// A Go HTTP/2 client through the bump: h2 to the client, many exchanges
// multiplexed on one tunnel, each logged with its protocol; HTTP/1.1 to
// the destination, with the Via entry RFC 9110 writes for HTTP/2.
func TestBumpHTTP2(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, protoEcho())
	c, tr := w.client(t, w.clientCAs, true)
	// One request first, so the concurrent ones find its connection.
	first, err := c.Get(w.url("localhost", "/first"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, first)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Post(w.url("localhost", fmt.Sprintf("/p%d", i)), "text/plain", strings.NewReader(fmt.Sprintf("body %d", i)))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := fmt.Sprintf(`HTTP/1.1 via="2 hopscope" body="body %d"`, i)
			if resp.Proto != "HTTP/2.0" || string(b) != want {
				errs <- fmt.Errorf("request %d: %s %q, want HTTP/2.0 %q", i, resp.Proto, b, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := range n {
		e := w.px.waitEvent("http", func(e event) bool { return strings.HasSuffix(e.str("url"), fmt.Sprintf("/p%d", i)) })
		if e.str("proto") != "HTTP/2.0" || e.str("method") != "POST" || e.num("status") != 200 || e.num("req_bytes") != 6 || e.num("tunnel") == 0 {
			t.Errorf("http event %v", e)
		}
	}
	tr.CloseIdleConnections()
	te := w.px.waitEvent("tunnel", nil)
	if te.str("alpn") != "h2" || te.str("mode") != "bump" {
		t.Errorf("tunnel event %v", te)
	}
	if tunnels := len(w.px.events("tunnel")); tunnels != 1 {
		t.Errorf("%d tunnels for %d multiplexed requests, want 1", tunnels, n+1)
	}
}

// A client that offers only http/1.1 gets it, and BumpHTTP1Only keeps
// every client on HTTP/1.1.
func TestBumpHTTP1(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, protoEcho())
	c, tr := w.client(t, w.clientCAs, true)
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.ForceAttemptHTTP2 = false
	resp, err := c.Get(w.url("localhost", "/one"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); resp.Proto != "HTTP/1.1" || body != `HTTP/1.1 via="1.1 hopscope" body=""` {
		t.Errorf("%s %q", resp.Proto, body)
	}
	tr.CloseIdleConnections()
	if te := w.px.waitEvent("tunnel", nil); te.str("alpn") != "http/1.1" {
		t.Errorf("tunnel event %v", te)
	}

	pol := openPolicy()
	pol.Bump = policy.BumpRules{All: true}
	px := startProxy(t, &proxy.Options{Policy: pol, Issuer: w.issuer, UpstreamTLS: &tls.Config{RootCAs: w.originCAs}, BumpHTTP1Only: true})
	w.px = px
	c, tr = w.client(t, w.clientCAs, true)
	resp, err = c.Get(w.url("localhost", "/two"))
	if err != nil {
		t.Fatal(err)
	}
	if readBody(t, resp); resp.Proto != "HTTP/1.1" {
		t.Errorf("with BumpHTTP1Only: %s", resp.Proto)
	}
	tr.CloseIdleConnections()
}

// The inner HTTP/2 server must not offer RFC 8441 extended CONNECT:
// browsers would then send WebSockets over HTTP/2, which the relay does
// not serve, instead of opening an HTTP/1.1 connection for them.
func TestBumpHTTP2OffersNoExtendedConnect(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, protoEcho())
	target := net.JoinHostPort("localhost", w.originPort)
	resp, conn, br := w.px.rawRequest("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %d", resp.StatusCode)
	}
	tc := tls.Client(&bufferedConn{Conn: conn, r: br}, &tls.Config{RootCAs: w.clientCAs, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("handshake: %v, ALPN %q", err, tc.ConnectionState().NegotiatedProtocol)
	}
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(tc, bufio.NewReader(tc))
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	settings, ok := f.(*http2.SettingsFrame)
	if !ok || settings.IsAck() {
		t.Fatalf("first frame %v, want the server's SETTINGS", f)
	}
	if v, ok := settings.Value(http2.SettingEnableConnectProtocol); ok && v != 0 {
		t.Errorf("the bump advertises SETTINGS_ENABLE_CONNECT_PROTOCOL=%d", v)
	}
	tc.Close()
}

// curl, the conventional client, speaks HTTP/2 through the bump when it
// trusts the CA.
func TestBumpHTTP2Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is missing; CI installs it (.ci/run)")
		}
		t.Skip("curl is not installed; apt-get install curl")
	}
	w := newTLSWorld(t, policy.BumpRules{All: true}, protoEcho())
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, w.ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "10", "--http2", "--proxy", "http://"+w.px.addr,
		"--cacert", caFile, "-w", " http_version=%{http_version}", w.url("localhost", "/curl")).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if want := `HTTP/1.1 via="2 hopscope" body="" http_version=2`; string(out) != want {
		t.Errorf("curl printed %q, want %q", out, want)
	}
	if e := w.px.waitEvent("http", nil); e.str("proto") != "HTTP/2.0" {
		t.Errorf("http event %v", e)
	}
}

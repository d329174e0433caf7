package proxy_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// tlsWorld is a bumping proxy and an HTTPS origin with its own private
// root, which only the proxy trusts (as --upstream-ca would make it).
type tlsWorld struct {
	px         *proxyFixture
	ca         *certs.CA
	issuer     *mitm.Issuer
	origin     *httptest.Server
	originPort string
	originConn atomic.Int64 // connections the origin accepted
	clientCAs  *x509.CertPool
	originCAs  *x509.CertPool
}

// newTLSWorld starts the world; bump sets the policy's bump rules.
func newTLSWorld(t testing.TB, bump policy.BumpRules, handler http.Handler) *tlsWorld {
	t.Helper()
	return newTLSWorldWith(t, bump, handler, nil)
}

// newTLSWorldWith is newTLSWorld with tweak applied to the proxy's
// options (nil: none) before it starts.
func newTLSWorldWith(t testing.TB, bump policy.BumpRules, handler http.Handler, tweak func(*proxy.Options)) *tlsWorld {
	t.Helper()
	w := &tlsWorld{}
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, _, err := certs.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	w.ca = ca
	// The client trusts only what it reads from ca.pem, as a person who
	// ran `hopscope ca install` would.
	pemBytes, err := os.ReadFile(filepath.Join(caDir, certs.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	w.clientCAs = x509.NewCertPool()
	if !w.clientCAs.AppendCertsFromPEM(pemBytes) {
		t.Fatal("ca.pem holds no certificate")
	}

	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	originIssuer := mitm.NewIssuer(originCA, mitm.IssuerOptions{})
	w.originCAs = x509.NewCertPool()
	w.originCAs.AddCert(originCA.Cert)

	w.origin = httptest.NewUnstartedServer(handler)
	w.origin.TLS = originIssuer.ServerConfig("localhost", nil)
	w.origin.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are what some tests cause
	w.origin.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			w.originConn.Add(1)
		}
	}
	w.origin.StartTLS()
	t.Cleanup(w.origin.Close)
	_, w.originPort, _ = net.SplitHostPort(w.origin.Listener.Addr().String())

	pol := openPolicy()
	pol.Bump = bump
	w.issuer = mitm.NewIssuer(ca, mitm.IssuerOptions{})
	opts := &proxy.Options{
		Policy:      pol,
		Issuer:      w.issuer,
		CA:          ca,
		UpstreamTLS: &tls.Config{RootCAs: w.originCAs},
	}
	if tweak != nil {
		tweak(opts)
	}
	w.px = startProxy(t, opts)
	return w
}

// client returns an HTTPS client through the proxy that trusts roots.
func (w *tlsWorld) client(t testing.TB, roots *x509.CertPool, keepAlive bool) (*http.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy: http.ProxyURL(w.px.url()),
		// Offer h2 first and speak it, as browsers do.
		TLSClientConfig:   &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: !keepAlive,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr
}

func (w *tlsWorld) url(host, path string) string {
	return "https://" + net.JoinHostPort(host, w.originPort) + path
}

func hello(body string) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("X-Seen-Host", r.Host)
		_, _ = io.WriteString(rw, body)
	})
}

func TestBumpHTTPS(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("secret page"))
	c, tr := w.client(t, w.clientCAs, true)
	var peer *x509.Certificate
	tr.TLSClientConfig.VerifyConnection = func(cs tls.ConnectionState) error {
		peer = cs.PeerCertificates[0]
		return nil
	}
	resp, err := c.Get(w.url("localhost", "/inside?x=1"))
	if err != nil {
		t.Fatalf("a client that trusts only hopscope's CA: %v", err)
	}
	if body := readBody(t, resp); body != "secret page" {
		t.Fatalf("body %q", body)
	}
	if peer == nil || peer.CheckSignatureFrom(w.ca.Cert) != nil || len(peer.DNSNames) != 1 || peer.DNSNames[0] != "localhost" {
		t.Fatalf("client saw certificate %v issued by %v, want a leaf for localhost from the hopscope CA", peer.DNSNames, peer.Issuer)
	}
	// The decrypted exchange is logged like plain HTTP, with its tunnel.
	e := w.px.waitEvent("http", nil)
	if e.str("url") != w.url("localhost", "/inside?x=1") || e.num("status") != 200 || e.num("tunnel") == 0 || e.num("tunnel") != e.num("conn") {
		t.Errorf("inner http event %v", e)
	}
	tr.CloseIdleConnections()
	te := w.px.waitEvent("tunnel", nil)
	want := map[string]any{"mode": "bump", "sni": "localhost", "alpn": "h2", "leaf": "minted", "status": float64(200)}
	for k, v := range want {
		if te[k] != v {
			t.Errorf("tunnel event %s = %v, want %v", k, te[k], v)
		}
	}
	if v := te.str("tls_version"); v != "TLS 1.3" && v != "TLS 1.2" {
		t.Errorf("tls_version %q", v)
	}
	if te.num("bytes_up") == 0 || te.num("bytes_down") == 0 {
		t.Errorf("tunnel bytes %v", te)
	}
	// The connection dialed to check the destination served the request:
	// the origin saw one connection, not one dropped and one used.
	if n := w.originConn.Load(); n != 1 {
		t.Errorf("origin accepted %d connections for one bumped request, want 1", n)
	}
}

// An IP literal gets an IP SAN; a client that sends no SNI gets a leaf for
// the CONNECT host.
func TestBumpIPAndNoSNI(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("ip"))
	// The origin's own leaf is for "localhost", so the proxy's upstream
	// check needs that name; the client side is what is tested here.
	c, _ := w.client(t, w.clientCAs, false)
	resp, err := c.Get(w.url("127.0.0.1", "/"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway {
		// the origin's leaf has no IP SAN, so verification must fail
		t.Fatalf("status %d, want 502 for an origin whose certificate does not name 127.0.0.1", resp.StatusCode)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		t.Fatal("no TLS state")
	}
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("leaf IP SANs %v", leaf.IPAddresses)
	}
}

// An upstream certificate the proxy does not trust becomes a 502 page
// inside the bumped connection, naming the reason, and an event.
func TestBumpUpstreamCertificateError(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("never"))
	// A second proxy that does not trust the origin's root.
	pol := openPolicy()
	pol.Bump.All = true
	px := startProxy(t, &proxy.Options{Policy: pol, Issuer: w.issuer})
	tr := &http.Transport{Proxy: http.ProxyURL(px.url()), TLSClientConfig: &tls.Config{RootCAs: w.clientCAs}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(w.url("localhost", "/"))
	if err != nil {
		t.Fatal(err)
	}
	checkProxyAnswer(t, resp, http.StatusBadGateway, "tls_certificate_error", "localhost", "--upstream-ca", "unknown authority")
	e := px.waitEvent("http", nil)
	if e.num("status") != 502 || !strings.Contains(e.str("error"), "certificate") {
		t.Errorf("http event %v", e)
	}
}

// Requests inside a bumped tunnel must target the CONNECT authority.
func TestBumpHostMismatchIsMisdirected(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("x"))
	target := net.JoinHostPort("localhost", w.originPort)
	resp, conn, br := w.px.rawRequest("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	tconn := tls.Client(&bufferedConn{Conn: conn, r: br}, &tls.Config{ServerName: "localhost", RootCAs: w.clientCAs})
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", // right name, wrong (default) port
		"GET https://other.example/ HTTP/1.1\r\nHost: " + target + "\r\n\r\n",
	} {
		_, _ = io.WriteString(tconn, raw)
		resp, err := http.ReadResponse(bufio.NewReader(tconn), nil)
		if err != nil {
			t.Fatal(err)
		}
		checkProxyAnswer(t, resp, http.StatusMisdirectedRequest, "http_request_denied", target)
	}
	if n := w.originConn.Load(); n > 1 {
		t.Errorf("the origin saw %d connections; misdirected requests must not reach anything", n)
	}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Concurrent first handshakes to one host mint one leaf.
func TestBumpConcurrentHandshakesMintOnce(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("x"))
	c, _ := w.client(t, w.clientCAs, false)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(w.url("localhost", "/"))
			if err != nil {
				t.Error(err)
				return
			}
			readBody(t, resp)
		}()
	}
	wg.Wait()
	if n := w.issuer.Minted(); n != 1 {
		t.Errorf("minted %d leaves for one host, want 1", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(w.px.events("tunnel")) < 16 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	minted := 0
	for _, e := range w.px.events("tunnel") {
		if e.str("leaf") == "minted" {
			minted++
		}
	}
	if minted != 1 {
		t.Errorf("%d tunnel events say minted, want 1", minted)
	}
}

// --no-mitm-host leaves a tunnel untouched: the client talks TLS with the
// origin itself and sees the origin's certificate.
func TestNoMITMHostIsSpliced(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true, Never: []policy.HostPattern{mustPattern(t, "localhost")}}, hello("direct"))
	c, tr := w.client(t, w.originCAs, true)
	resp, err := c.Get(w.url("localhost", "/"))
	if err != nil {
		t.Fatalf("a client trusting only the origin's root: %v", err)
	}
	if body := readBody(t, resp); body != "direct" {
		t.Fatalf("body %q", body)
	}
	if resp.TLS.PeerCertificates[0].CheckSignatureFrom(w.ca.Cert) == nil {
		t.Error("the pinned host was bumped")
	}
	tr.CloseIdleConnections()
	if e := w.px.waitEvent("tunnel", nil); e.str("mode") != "splice" {
		t.Errorf("tunnel mode %q", e.str("mode"))
	}
	if n := len(w.px.events("http")); n != 0 {
		t.Errorf("%d http events for a spliced tunnel", n)
	}
}

// With bumping limited to other hosts, TLS tunnels are spliced.
func TestMITMHostListLeavesOthersSpliced(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{Hosts: []policy.HostPattern{mustPattern(t, "*.example.com")}}, hello("direct"))
	c, _ := w.client(t, w.originCAs, false)
	resp, err := c.Get(w.url("localhost", "/"))
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); body != "direct" {
		t.Fatalf("body %q", body)
	}
}

// A client that does not trust the CA fails its handshake, and the tunnel
// event says why and what to do.
func TestBumpUntrustingClient(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("x"))
	c, _ := w.client(t, w.originCAs, false)
	if _, err := c.Get(w.url("localhost", "/")); err == nil {
		t.Fatal("a client that does not trust hopscope's CA accepted the bump")
	}
	e := w.px.waitEvent("tunnel", nil)
	if e.str("mode") != "bump" || !strings.Contains(e.str("error"), "ca install") {
		t.Errorf("tunnel event %v", e)
	}
}

// Plaintext HTTP inside CONNECT (how browsers send http:// and ws://
// through a proxy) is served as HTTP, with events, without any CA.
func TestPlaintextHTTPInsideTunnel(t *testing.T) {
	origin := httptest.NewServer(hello("plain inside"))
	defer origin.Close()
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	target := strings.TrimPrefix(origin.URL, "http://")
	resp, conn, br := px.rawRequest("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT %d", resp.StatusCode)
	}
	for i := range 2 { // keep-alive inside the tunnel
		_, _ = io.WriteString(conn, "GET /p HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		inner, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if body := readBody(t, inner); body != "plain inside" || inner.Header.Get("Via") != "1.1 hopscope" {
			t.Fatalf("request %d: %q via %q", i, body, inner.Header.Get("Via"))
		}
	}
	_, _ = io.WriteString(conn, "GET /p HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n")
	inner, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkProxyAnswer(t, inner, http.StatusMisdirectedRequest, "http_request_denied")
	conn.Close()
	e := px.waitEvent("http", nil)
	if e.str("url") != origin.URL+"/p" || e.num("tunnel") == 0 {
		t.Errorf("inner http event %v", e)
	}
	if te := px.waitEvent("tunnel", nil); te.str("mode") != "http" || te.num("bytes_up") == 0 {
		t.Errorf("tunnel event %v", te)
	}
}

// A server-first protocol (the destination speaks before the client) is
// spliced at once, with no wait for the client to say something.
func TestServerFirstProtocolSpliced(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "220 smtp.example ESMTP ready\r\n")
		line, _ := bufio.NewReader(c).ReadString('\n')
		_, _ = io.WriteString(c, "250 got "+line)
	}()
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	resp, conn, br := px.rawRequest("CONNECT " + ln.Addr().String() + " HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	banner, err := br.ReadString('\n')
	if err != nil || banner != "220 smtp.example ESMTP ready\r\n" {
		t.Fatalf("banner %q %v", banner, err)
	}
	_, _ = io.WriteString(conn, "EHLO me\r\n")
	if reply, _ := br.ReadString('\n'); reply != "250 got EHLO me\r\n" {
		t.Fatalf("reply %q", reply)
	}
	conn.Close()
	if e := px.waitEvent("tunnel", nil); e.str("mode") != "splice" {
		t.Errorf("mode %q", e.str("mode"))
	}
}

// The CA is served at http://hopscope.ca/ through the proxy.
func TestCAPage(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("x"))
	c := w.px.client()
	resp, err := c.Get("http://hopscope.ca/ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	if body := readBody(t, resp); body != string(w.ca.CertPEM) {
		t.Errorf("ca.pem = %q", body)
	}
	resp, err = c.Get("http://hopscope.ca/")
	if err != nil {
		t.Fatal(err)
	}
	page := readBody(t, resp)
	for _, want := range []string{w.ca.Fingerprint(), "ca install", "/ca.crt"} {
		if !strings.Contains(page, want) {
			t.Errorf("CA page lacks %q", want)
		}
	}
	resp, err = c.Get("http://hopscope.ca/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if der := readBody(t, resp); der != string(w.ca.DER()) {
		t.Error("ca.crt is not the DER certificate")
	}
}

// Garbage after CONNECT that looks like TLS but is not ends the tunnel
// cleanly, with an event, and nothing panics.
func TestBumpGarbageHandshake(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("x"))
	target := net.JoinHostPort("localhost", w.originPort)
	resp, conn, br := w.px.rawRequest("CONNECT " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	_, _ = conn.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5})
	_, _ = io.ReadAll(br)
	if e := w.px.waitEvent("tunnel", nil); !strings.Contains(e.str("error"), "handshake") {
		t.Errorf("tunnel event %v", e)
	}
}

// Without a CA the CA page says how to make one, and the name never goes
// upstream.
func TestCAPageWithoutCA(t *testing.T) {
	px := startProxy(t, nil)
	resp, err := px.client().Get("http://hopscope.ca/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "hopscope ca init") {
		t.Errorf("got %d %q", resp.StatusCode, body)
	}
}

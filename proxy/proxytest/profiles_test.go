package proxytest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// origin is a test server that records what each request looked like and
// serves WebSockets (coder/websocket) at /ws: it greets, then echoes.
type origin struct {
	*httptest.Server
	mu       sync.Mutex
	heads    []http.Header
	received []string
	conns    int
}

func startOrigin(t *testing.T) *origin {
	o := &origin{}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	o.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			o.mu.Lock()
			o.conns++
			o.mu.Unlock()
		}
	}
	o.Start()
	t.Cleanup(o.Close)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.heads = append(o.heads, r.Header.Clone())
	o.mu.Unlock()
	if r.URL.Path != "/ws" {
		_, _ = io.WriteString(w, "a page")
		return
	}
	if r.Header.Get("Upgrade") == "" {
		// What a WebSocket endpoint says to a plain GET.
		http.Error(w, "upgrade required", http.StatusUpgradeRequired)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	_ = c.Write(ctx, websocket.MessageText, []byte("hello from the server"))
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		o.mu.Lock()
		o.received = append(o.received, string(data))
		o.mu.Unlock()
		if string(data) == "count to 5" {
			for i := 1; i <= 5; i++ {
				_ = c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("#", i)))
			}
			continue
		}
		_ = c.Write(ctx, typ, data)
	}
}

func (o *origin) lastHead() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.heads[len(o.heads)-1]
}

func (o *origin) got() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.received...)
}

func (o *origin) hostport() string { return strings.TrimPrefix(o.URL, "http://") }

// dialForward dials ws:// the way Go's HTTP stack does through a proxy: an
// absolute-form GET (the forward path).
func dialForward(t *testing.T, px *proxytest.Server, u string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: px.Client()})
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

// dialTunnel dials ws:// through CONNECT, as browsers do.
func dialTunnel(px *proxytest.Server, u string) (net.Conn, error) {
	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: px.Dialer().DialContext}
	conn, _, _, err := d.Dial(context.Background(), u)
	return conn, err
}

func wsURL(o *origin) string { return "ws://" + o.hostport() + "/ws" }

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// squid: CONNECT only to 443, with squid's own refusal.
func TestSquidRefusesConnectToOtherPorts(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithProfile("squid"))
	_, err := dialTunnel(px, wsURL(o))
	if !errors.Is(err, proxytest.ErrRefused) || !strings.Contains(err.Error(), "ERR_ACCESS_DENIED 0") {
		t.Fatalf("ws:// through CONNECT: %v, want squid's refusal", err)
	}
	conn, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "CONNECT "+o.hostport()+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 403 || resp.Header.Get("Server") != "squid/5.7" || resp.Header.Get("X-Squid-Error") != "ERR_ACCESS_DENIED 0" ||
		!strings.Contains(string(body), "<title>ERROR: The requested URL could not be retrieved</title>") {
		t.Errorf("refusal %d %v %q", resp.StatusCode, resp.Header, body)
	}
	px.WaitFor(t, proxytest.IsDenial(o.hostport()), 10*time.Second)

	// The flag override: explicit connect-ports win over the profile.
	px2 := proxytest.Start(t, proxytest.WithProfile("squid"), proxytest.WithConfig(func(c *config.Config) { c.ConnectPorts = "*" }))
	conn2, err := dialTunnel(px2, wsURL(o))
	if err != nil {
		t.Fatalf("with --connect-ports '*': %v", err)
	}
	conn2.Close()
}

// squid: plain ws:// is not refused; Upgrade is dropped and the origin
// sees an ordinary GET with Connection: keep-alive.
func TestSquidDropsUpgrade(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithProfile("squid"))
	_, resp, err := dialForward(t, px, wsURL(o))
	if err == nil || resp == nil || resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("handshake: %v %v; want the origin's 426 to a plain GET", resp, err)
	}
	head := o.lastHead()
	if head.Get("Upgrade") != "" || head.Get("Connection") != "keep-alive" {
		t.Errorf("origin saw Upgrade %q Connection %q", head.Get("Upgrade"), head.Get("Connection"))
	}
	host, _ := os.Hostname()
	if v := head.Get("Via"); v != "1.1 "+host+" (squid/5.7)" || head.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("origin saw Via %q X-Forwarded-For %q", v, head.Get("X-Forwarded-For"))
	}
	page, err := px.Client().Get(o.URL + "/page")
	if err != nil {
		t.Fatal(err)
	}
	page.Body.Close()
	if page.Header.Get("X-Cache") != "MISS from "+host || !strings.Contains(page.Header.Get("Via"), "(squid/5.7)") {
		t.Errorf("answer headers %v", page.Header)
	}
}

// squid's way out, http_upgrade_request_protocols, and its trap: the
// protocol name is compared case-sensitively.
func TestSquidUpgradeProtocols(t *testing.T) {
	o := startOrigin(t)
	trap := proxytest.Start(t, proxytest.WithProfile("squid"), proxytest.WithConfig(func(c *config.Config) { c.AllowUpgrade = []string{"WebSocket"} }))
	if _, _, err := dialForward(t, trap, wsURL(o)); err == nil {
		t.Fatal("allowing WebSocket (capitalised) let Upgrade: websocket through")
	}
	fixed := proxytest.Start(t, proxytest.WithProfile("squid"), proxytest.WithConfig(func(c *config.Config) { c.AllowUpgrade = []string{"websocket"} }))
	c, _, err := dialForward(t, fixed, wsURL(o))
	if err != nil {
		t.Fatalf("allowing websocket: %v", err)
	}
	if got := readText(t, c); got != "hello from the server" {
		t.Errorf("greeting %q", got)
	}
}

// squid: plain requests only to Safe_ports.
func TestSquidSafePorts(t *testing.T) {
	px := proxytest.Start(t, proxytest.WithProfile("squid"))
	resp, err := px.Client().Get("http://127.0.0.1:25/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Squid-Error") != "ERR_ACCESS_DENIED 0" {
		t.Errorf("port 25: %d %v", resp.StatusCode, resp.Header)
	}
}

// web-filter: the 101's Connection header is rewritten, so a strict client
// (coder/websocket) rejects the handshake; a lenient one gets the server's
// frames but the server never receives a message.
func TestWebFilter(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithProfile("web-filter"))
	if _, _, err := dialForward(t, px, wsURL(o)); err == nil || !strings.Contains(err.Error(), "Connection") {
		t.Fatalf("strict client: %v, want a rejected handshake naming Connection", err)
	}
	conn, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET "+wsURL(o)+" HTTP/1.1\r\nHost: "+o.hostport()+"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Connection") != "keep-alive" {
		t.Fatalf("lenient client: %v %v", resp, err)
	}
	greeting, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{br, conn})
	if err != nil || string(greeting) != "hello from the server" {
		t.Fatalf("server-to-client frames must still arrive: %q %v", greeting, err)
	}
	_ = wsutil.WriteClientText(conn, []byte("anyone there?"))
	px.WaitFor(t, proxytest.IsFault("web-filter"), 2*time.Second)
	if got := o.got(); len(got) != 0 {
		t.Errorf("the server received %q through a web filter", got)
	}

	// Override: web-filter off again.
	px2 := proxytest.Start(t, proxytest.WithProfile("web-filter"), proxytest.WithConfig(func(c *config.Config) { c.WebFilter = false }))
	c, _, err := dialForward(t, px2, wsURL(o))
	if err != nil {
		t.Fatalf("with --web-filter=false: %v", err)
	}
	readText(t, c)
}

// strip-upgrade (tinyproxy): Upgrade removed, Connection: close upstream,
// the origin answers as to a plain GET, and nothing is reused.
func TestStripUpgrade(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithProfile("strip-upgrade"))
	_, resp, err := dialForward(t, px, wsURL(o))
	if err == nil || resp == nil || resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("%v %v, want the origin's 426", resp, err)
	}
	if head := o.lastHead(); head.Get("Upgrade") != "" {
		t.Errorf("origin saw Upgrade %q", head.Get("Upgrade"))
	}
	o.mu.Lock()
	before := o.conns
	o.mu.Unlock()
	for range 2 {
		r, err := px.Client().Get(o.URL + "/page")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	o.mu.Lock()
	opened := o.conns - before
	o.mu.Unlock()
	if opened != 2 {
		t.Errorf("two plain requests opened %d upstream connections, want 2 (Connection: close)", opened)
	}

	px2 := proxytest.Start(t, proxytest.WithProfile("strip-upgrade"), proxytest.WithConfig(func(c *config.Config) { c.Upgrade = "relay" }))
	c, _, err := dialForward(t, px2, wsURL(o))
	if err != nil {
		t.Fatalf("with --upgrade relay: %v", err)
	}
	readText(t, c)
}

// ssl-inspect: every TLS tunnel is bumped; only clients that trust the CA
// get through, and their messages are visible.
func TestSSLInspect(t *testing.T) {
	o := httptest.NewTLSServer(http.HandlerFunc((&origin{}).serve))
	defer o.Close()
	originRoots := o.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	pem := certPEM(o.Certificate().Raw)
	px := proxytest.Start(t, proxytest.WithProfile("ssl-inspect"), proxytest.WithUpstreamCA(pem))
	u := "wss://" + strings.TrimPrefix(o.URL, "https://") + "/ws"
	untrusting := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(px.URL()), TLSClientConfig: &tls.Config{RootCAs: originRoots}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: untrusting}); err == nil {
		t.Fatal("a client that trusts only the origin accepted the inspected connection")
	}
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: px.Client()})
	if err != nil {
		t.Fatalf("a client that trusts the proxy CA: %v\n%v", err, px.Flows())
	}
	defer c.CloseNow()
	px.WaitFor(t, proxytest.IsMessage("server", "hello from the server"), 2*time.Second)

	// Override: --no-mitm-host leaves the host alone.
	px2 := proxytest.Start(t, proxytest.WithProfile("ssl-inspect"), proxytest.WithConfig(func(c *config.Config) { c.NoMITMHost = []string{"127.0.0.1"} }))
	trusting := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(px2.URL()), TLSClientConfig: &tls.Config{RootCAs: originRoots}}}
	c2, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: trusting})
	if err != nil {
		t.Fatalf("with --no-mitm-host: %v", err)
	}
	c2.CloseNow()
}

// auth: 407 for everything without credentials.
func TestAuthProfile(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithProfile("auth"), proxytest.WithAuth("alice", "s3cret"))
	noCreds := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: px.Addr()})}}
	resp, err := noCreds.Get(o.URL + "/page")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Errorf("without credentials: %d %v", resp.StatusCode, resp.Header)
	}
	c, _, err := dialForward(t, px, wsURL(o))
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	readText(t, c)
	conn, err := dialTunnel(px, wsURL(o))
	if err != nil {
		t.Fatalf("CONNECT with credentials: %v", err)
	}
	conn.Close()

	cfg, err := config.Parse([]string{"--profile", "auth"}, io.Discard)
	if err == nil {
		_, _, err = cfg.ProxyOptions()
	}
	if err == nil || !strings.Contains(err.Error(), "--auth") {
		t.Errorf("the auth profile without credentials: %v", err)
	}
}

// idle-timeout: an idle WebSocket is cut without a close frame; traffic
// keeps it alive; the flag overrides the profile.
func TestIdleTimeout(t *testing.T) {
	o := startOrigin(t)
	// The limit is ten times the busy client's gap, so that a loaded
	// machine's stalls never look like idleness.
	px := proxytest.Start(t, proxytest.WithProfile("idle-timeout=1s"))
	c, _, err := dialForward(t, px, wsURL(o))
	if err != nil {
		t.Fatal(err)
	}
	readText(t, c)
	// Busy: a message every 100 ms for 1.2 s, longer than the limit,
	// keeps it open.
	ctx := context.Background()
	for range 12 {
		time.Sleep(100 * time.Millisecond)
		if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
			t.Fatalf("a busy connection was cut: %v", err)
		}
		readText(t, c)
	}
	// Idle: cut, with no close frame (1006 for the client).
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _, err = c.Read(rctx)
	if websocket.CloseStatus(err) != -1 || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle connection ended with %v, want a cut without a close frame", err)
	}
	px.WaitFor(t, proxytest.IsFault("idle-timeout"), 10*time.Second)
	px.WaitFor(t, proxytest.IsClose(1006), 10*time.Second)

	px2 := proxytest.Start(t, proxytest.WithProfile("idle-timeout=1s"), proxytest.WithConfig(func(c *config.Config) { c.TunnelIdleTimeout = time.Hour }))
	c2, _, err := dialForward(t, px2, wsURL(o))
	if err != nil {
		t.Fatal(err)
	}
	readText(t, c2)
	time.Sleep(1200 * time.Millisecond) // idle past the profile's limit
	if err := c2.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c2); got != "still here" {
		t.Errorf("after the override: %q", got)
	}
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

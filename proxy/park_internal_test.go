package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
)

// A quiet tunnel and a quiet WebSocket give up their goroutines to the
// poller, wake when bytes come, and end when a peer leaves or the proxy
// shuts down.
func TestQuietRelaysParkAndWake(t *testing.T) {
	wsOrigin := httptest.NewServer(echoWS())
	defer wsOrigin.Close()
	tcpEcho, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpEcho.Close()
	go func() {
		for {
			c, err := tcpEcho.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()

	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	srv, err := New(&Options{Policy: pol}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv.poller.quiet = 20 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	shutdown := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	defer shutdown()

	tunnel := dialTunnel(t, ln.Addr().String(), tcpEcho.Addr().String())
	defer tunnel.Close()
	wsConn := dialForwardWS(t, ln.Addr().String(), wsOrigin.Listener.Addr().String())
	defer wsConn.Close()
	roundTrips := func() {
		t.Helper()
		if _, err := tunnel.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if got := readN(t, tunnel, 4); got != "ping" {
			t.Fatalf("tunnel echoed %q", got)
		}
		if err := wsutil.WriteClientText(wsConn, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		msg, err := wsutil.ReadServerText(wsConn)
		if err != nil || string(msg) != "hello" {
			t.Fatalf("WebSocket echoed %q, %v", msg, err)
		}
	}
	roundTrips()
	waitParked(t, srv, 4) // both directions of both relays
	roundTrips()          // woken by the bytes
	waitParked(t, srv, 4)

	// The tunnel's client leaves: its relay ends, parked or not.
	tunnel.Close()
	waitParked(t, srv, 2)
	waitRelays(t, srv, 1)
	// Shutdown closes the parked WebSocket; its relay ends and reports.
	shutdown()
	waitRelays(t, srv, 0)
	if n := srv.poller.parkedCount(); n != 0 {
		t.Errorf("%d pumps still parked after shutdown", n)
	}
}

// echoWS is a WebSocket origin that echoes every message.
func echoWS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
				return
			}
		}
	})
}

func waitParked(t *testing.T, srv *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); srv.poller.parkedCount() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d pumps parked, want %d", srv.poller.parkedCount(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitRelays(t *testing.T, srv *Server, n int) {
	t.Helper()
	relays := func() int {
		srv.hijacked.mu.Lock()
		defer srv.hijacked.mu.Unlock()
		return srv.hijacked.relays
	}
	for deadline := time.Now().Add(5 * time.Second); relays() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d relays running, want %d", relays(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dialTunnel(t *testing.T, proxyAddr, target string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	return c
}

// dialForwardWS opens ws:// as an absolute-form request, as a client
// configured with the proxy sends it.
func dialForwardWS(t *testing.T, proxyAddr, origin string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", origin, origin)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || br.Buffered() > 0 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c
}

func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	b := make([]byte, n)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A bumped wss:// WebSocket parks too: TLS reads that time out are
// retried, and the socket under each TLS connection wakes its pump.
func TestQuietBumpedWebSocketParks(t *testing.T) {
	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	origin := httptest.NewUnstartedServer(echoWS())
	origin.TLS = mitm.NewIssuer(originCA, mitm.IssuerOptions{}).ServerConfig("localhost", nil)
	origin.StartTLS()
	defer origin.Close()
	originRoots := x509.NewCertPool()
	originRoots.AddCert(originCA.Cert)
	ca, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	proxyRoots := x509.NewCertPool()
	proxyRoots.AddCert(ca.Cert)

	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	pol.Bump.All = true
	srv, err := New(&Options{Policy: pol, CA: ca, Issuer: mitm.NewIssuer(ca, mitm.IssuerOptions{}),
		UpstreamTLS: &tls.Config{RootCAs: originRoots}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	srv.poller.quiet = 20 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	host := net.JoinHostPort("localhost", port)
	raw := dialTunnel(t, ln.Addr().String(), host)
	conn := tls.Client(raw, &tls.Config{ServerName: "localhost", RootCAs: proxyRoots, NextProtos: []string{"http/1.1"}})
	defer conn.Close()
	fmt.Fprintf(conn, "GET /chat HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{br, conn}
	for range 2 {
		if err := wsutil.WriteClientText(rw, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		msg, err := wsutil.ReadServerText(rw)
		if err != nil || string(msg) != "hello" {
			t.Fatalf("echoed %q, %v", msg, err)
		}
		waitParked(t, srv, 2)
	}
	conn.Close()
	waitParked(t, srv, 0)
	waitRelays(t, srv, 0)
}

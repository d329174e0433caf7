package reliability

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// wsEnd is one raw end of a WebSocket after its handshake.
type wsEnd struct {
	conn net.Conn
	r    *bufio.Reader
}

// rest reads until the proxy closes the connection.
func (e wsEnd) rest(t *testing.T) []byte {
	t.Helper()
	_ = e.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(e.r)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the proxy did not close the connection (%d bytes so far)", len(b))
	}
	return b
}

// wsPath is one way a WebSocket goes through hopscope.
type wsPath struct {
	name    string
	px      *proxytest.Server
	host    string // the origin's host:port
	servers chan wsEnd
	dial    func(t *testing.T) net.Conn // the client's connection, ready for the upgrade request
	target  string                      // the upgrade request's target
}

// wsOrigin answers any upgrade with a 101 and hands over its raw end.
func wsOrigin(servers chan wsEnd) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(sum[:]))
		servers <- wsEnd{conn: conn, r: brw.Reader}
	})
}

func connectTo(t *testing.T, px *proxytest.Server, host string) net.Conn {
	t.Helper()
	c := dialRaw(t, px)
	if resp := c.send(t, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %d", host, resp.StatusCode)
	}
	return c
}

// wsPaths starts an origin and a proxy for each of the three paths.
func wsPaths(t *testing.T) []*wsPath {
	t.Helper()
	plain := &wsPath{name: "forward", servers: make(chan wsEnd, 1)}
	o := httptest.NewServer(wsOrigin(plain.servers))
	t.Cleanup(o.Close)
	plain.host = strings.TrimPrefix(o.URL, "http://")
	plain.px = start(t, nil)
	plain.target = "http://" + plain.host + "/ws"
	plain.dial = func(t *testing.T) net.Conn { return dialRaw(t, plain.px) }

	tunnel := &wsPath{name: "tunnel", px: plain.px, host: plain.host, servers: plain.servers, target: "/ws"}
	tunnel.dial = func(t *testing.T) net.Conn { return connectTo(t, tunnel.px, tunnel.host) }

	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	bump := &wsPath{name: "bump", servers: make(chan wsEnd, 1), target: "/ws"}
	so := httptest.NewUnstartedServer(wsOrigin(bump.servers))
	so.TLS = mitm.NewIssuer(originCA, mitm.IssuerOptions{}).ServerConfig("localhost", nil)
	so.Config.ErrorLog = log.New(io.Discard, "", 0)
	so.StartTLS()
	t.Cleanup(so.Close)
	_, port, _ := net.SplitHostPort(so.Listener.Addr().String())
	bump.host = net.JoinHostPort("localhost", port)
	bump.px = start(t, nil, proxytest.WithMITM(), proxytest.WithUpstreamCA(originCA.CertPEM))
	bump.dial = func(t *testing.T) net.Conn {
		tc := tls.Client(connectTo(t, bump.px, bump.host), &tls.Config{RootCAs: bump.px.CertPool(), ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS through the bump: %v", err)
		}
		return tc
	}
	return []*wsPath{plain, tunnel, bump}
}

// open upgrades a new connection and returns both raw ends.
func (p *wsPath) open(t *testing.T) (client, server wsEnd) {
	t.Helper()
	conn := p.dial(t)
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", p.target, p.host)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade on the %s path: %v %v", p.name, resp, err)
	}
	select {
	case server = <-p.servers:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin never got the upgrade")
	}
	t.Cleanup(func() { server.conn.Close() })
	return wsEnd{conn: conn, r: r}, server
}

func frame(op ws.OpCode, fin, masked bool, payload string) []byte {
	f := ws.NewFrame(op, fin, []byte(payload))
	if masked {
		f = ws.MaskFrame(f)
	}
	return ws.MustCompileFrame(f)
}

// closeCode parses one close frame that must be all of b.
func closeCode(t *testing.T, b []byte, masked bool) ws.StatusCode {
	t.Helper()
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	if err != nil || h.OpCode != ws.OpClose || h.Masked != masked || h.Length > 125 || int(h.Length) != r.Len() {
		t.Fatalf("want exactly one close frame (masked %v), got %q", masked, b)
	}
	payload := make([]byte, h.Length)
	_, _ = io.ReadFull(r, payload)
	if masked {
		ws.Cipher(payload, h.Mask, 0)
	}
	code, _ := ws.ParseCloseFrameData(payload)
	return code
}

// On each path, the far peer gets the valid frames sent with a refused one
// exactly as sent, then one close frame, and never a byte of the refused
// frame; the offender gets the violation's code. A violation late in a long
// message cuts it where it turned invalid.
func TestWebSocketViolationsNeverReachTheFarPeer(t *testing.T) {
	noLeaks(t)
	good := frame(ws.OpText, true, true, "good")
	goodServer := frame(ws.OpText, true, false, "good")
	cases := []struct {
		name     string
		byServer bool
		bad      []byte
		code     ws.StatusCode
	}{
		{"invalid UTF-8", false, frame(ws.OpText, true, true, "bad \xff"), 1007},
		{"UTF-8 split across fragments", false, append(frame(ws.OpText, false, true, "\xe2\x82"), frame(ws.OpContinuation, true, true, "A")...), 1007},
		{"close code 1005 on the wire", false, ws.MustCompileFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1005, "")))), 1002},
		{"close with a 1-byte body", false, frame(ws.OpClose, true, true, "x"), 1002},
		{"reserved opcode", false, frame(0x5, true, true, "x"), 1002},
		{"unmasked client frame", false, frame(ws.OpText, true, false, "x"), 1002},
		{"masked server frame", true, frame(ws.OpBinary, true, true, "x"), 1002},
		{"server text not UTF-8", true, frame(ws.OpText, true, false, "\xc0\xaf"), 1007},
	}
	for _, p := range wsPaths(t) {
		t.Run(p.name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					client, server := p.open(t)
					offender, far, lead := client, server, good
					if tc.byServer {
						offender, far, lead = server, client, goodServer
					}
					// The valid prefix of a split sequence goes out with its
					// fragment, which is valid on its own.
					passes := lead
					if tc.name == "UTF-8 split across fragments" {
						passes = append(append([]byte(nil), lead...), tc.bad[:len(tc.bad)-7]...)
					}
					if _, err := offender.conn.Write(append(append([]byte(nil), lead...), tc.bad...)); err != nil {
						t.Fatal(err)
					}
					got := far.rest(t)
					if !bytes.HasPrefix(got, passes) {
						t.Fatalf("the far peer got %q, want %q first", got, passes)
					}
					if code := closeCode(t, got[len(passes):], !tc.byServer); code != 1002 {
						t.Errorf("the far peer's close code %d, want 1002", code)
					}
					if code := closeCode(t, offender.rest(t), tc.byServer); code != tc.code {
						t.Errorf("the offender's close code %d, want %d", code, tc.code)
					}
				})
			}
			t.Run("late in a long message", func(t *testing.T) {
				client, server := p.open(t)
				payload := strings.Repeat("x", 100000) + "\xff"
				wire := frame(ws.OpText, true, true, payload)
				valid := wire[:len(wire)-1]
				// The valid start streams through before the bad byte is sent.
				if _, err := client.conn.Write(valid); err != nil {
					t.Fatal(err)
				}
				seen := make([]byte, len(valid))
				if _, err := io.ReadFull(server.r, seen); err != nil || !bytes.Equal(seen, valid) {
					t.Fatalf("the server did not get the valid start as sent: %v", err)
				}
				if _, err := client.conn.Write(wire[len(valid):]); err != nil {
					t.Fatal(err)
				}
				// Inside the frame the server gets no close frame, which it
				// would read as payload: only the connection's end.
				if got := server.rest(t); len(got) != 0 {
					t.Fatalf("the server got %q after the valid start", got)
				}
				if code := closeCode(t, client.rest(t), false); code != 1007 {
					t.Errorf("the client's close code %d, want 1007", code)
				}
			})
		})
	}
}

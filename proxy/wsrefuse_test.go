package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// rawWSEnd is one end of a WebSocket after the handshake, spoken raw so a
// test sends exactly the bytes it means and sees exactly what arrived.
type rawWSEnd struct {
	conn net.Conn
	r    *bufio.Reader
}

// readAll reads until the proxy closes the connection.
func (e rawWSEnd) readAll(t *testing.T) []byte {
	t.Helper()
	_ = e.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(e.r)
	if isTimeout(err) {
		t.Fatalf("the proxy did not close the connection; got %d bytes", len(b))
	}
	return b
}

// readN reads exactly n bytes.
func (e rawWSEnd) readN(t *testing.T, n int) []byte {
	t.Helper()
	_ = e.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(e.r, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

// wsPathWorld opens raw WebSockets through the proxy on one of the three
// paths, to an origin that hands over its raw end after the 101.
type wsPathWorld struct {
	px      *proxyFixture
	origin  string // host:port
	servers chan rawWSEnd
	// open dials the proxy and returns the client's raw end after the
	// 101.
	open func(t *testing.T) rawWSEnd
}

// rawWSOrigin answers any upgrade with a 101 and passes its end on.
func rawWSOrigin(servers chan rawWSEnd) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			accept(r.Header.Get("Sec-WebSocket-Key")))
		servers <- rawWSEnd{conn: conn, r: brw.Reader}
	})
}

func upgradeHead(target, host string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
}

// handshake sends the upgrade on conn and reads the 101.
func handshake(t *testing.T, conn net.Conn, r *bufio.Reader, target, host string) rawWSEnd {
	t.Helper()
	if _, err := io.WriteString(conn, upgradeHead(target, host)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade through the proxy: %v %v", resp, err)
	}
	return rawWSEnd{conn: conn, r: r}
}

// connectThrough opens a CONNECT tunnel to addr.
func connectThrough(t *testing.T, px *proxyFixture, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", px.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", addr, resp, err)
	}
	return conn, br
}

func newWSPathWorld(t *testing.T, path string) *wsPathWorld {
	t.Helper()
	w := &wsPathWorld{servers: make(chan rawWSEnd, 1)}
	switch path {
	case "forward", "tunnel":
		origin := httptest.NewServer(rawWSOrigin(w.servers))
		t.Cleanup(origin.Close)
		w.origin = strings.TrimPrefix(origin.URL, "http://")
		w.px = startProxy(t, &proxy.Options{Policy: openPolicy()})
	case "bump":
		tw := newTLSWorld(t, policy.BumpRules{All: true}, rawWSOrigin(w.servers))
		w.px, w.origin = tw.px, net.JoinHostPort("localhost", tw.originPort)
		w.open = func(t *testing.T) rawWSEnd {
			conn, br := connectThrough(t, w.px, w.origin)
			if br.Buffered() > 0 {
				t.Fatal("bytes after the 200")
			}
			tc := tls.Client(conn, &tls.Config{RootCAs: tw.clientCAs, ServerName: "localhost"})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("TLS through the bump: %v", err)
			}
			return handshake(t, tc, bufio.NewReader(tc), "/ws", w.origin)
		}
	}
	switch path {
	case "forward":
		w.open = func(t *testing.T) rawWSEnd {
			conn, err := net.DialTimeout("tcp", w.px.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return handshake(t, conn, bufio.NewReader(conn), "http://"+w.origin+"/ws", w.origin)
		}
	case "tunnel":
		w.open = func(t *testing.T) rawWSEnd {
			conn, br := connectThrough(t, w.px, w.origin)
			return handshake(t, conn, br, "/ws", w.origin)
		}
	}
	return w
}

// pair opens a WebSocket and returns the client's and the server's ends.
func (w *wsPathWorld) pair(t *testing.T) (client, server rawWSEnd) {
	t.Helper()
	client = w.open(t)
	select {
	case server = <-w.servers:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin never got the upgrade")
	}
	t.Cleanup(func() { server.conn.Close() })
	return client, server
}

// wsFrame builds a frame's wire bytes, masked as a client's must be.
func wsFrame(op ws.OpCode, fin bool, rsv byte, masked bool, payload []byte) []byte {
	f := ws.NewFrame(op, fin, payload)
	f.Header.Rsv = rsv
	if masked {
		f = ws.MaskFrame(f)
	}
	return ws.MustCompileFrame(f)
}

// checkFarEnd asserts the far peer got want byte for byte and then, when
// closeCode is not 0, exactly one close frame of hopscope's with that code
// (masked towards a server), and nothing else.
func checkFarEnd(t *testing.T, got, want []byte, closeCode ws.StatusCode, toServer bool) {
	t.Helper()
	if !bytes.HasPrefix(got, want) {
		n := min(len(got), len(want))
		t.Fatalf("the far peer got %d bytes, not the %d valid bytes first (first %d: %q, want %q)", len(got), len(want), n, got[:n], want[:n])
	}
	rest := got[len(want):]
	if closeCode == 0 {
		if len(rest) != 0 {
			t.Fatalf("the far peer got %d bytes after the valid ones: %q", len(rest), rest)
		}
		return
	}
	r := bytes.NewReader(rest)
	f, err := readFrame(r)
	if err != nil || f.Header.OpCode != ws.OpClose || f.Header.Masked != toServer {
		t.Fatalf("after the valid bytes the far peer got %q, want one close frame (masked %v)", rest, toServer)
	}
	if f.Header.Masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	if code, reason := ws.ParseCloseFrameData(f.Payload); code != closeCode || !strings.Contains(reason, "broke the protocol") {
		t.Errorf("the far peer's close: %d %q, want %d", code, reason, closeCode)
	}
	if r.Len() != 0 {
		t.Errorf("the far peer got %d bytes after hopscope's close frame", r.Len())
	}
}

// checkOffenderClose asserts the offender got a close frame with code.
func checkOffenderClose(t *testing.T, got []byte, code ws.StatusCode, says string) {
	t.Helper()
	f, err := readFrame(bytes.NewReader(got))
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("the offender got %q, want a close frame", got)
	}
	if f.Header.Masked {
		ws.Cipher(f.Payload, f.Header.Mask, 0)
	}
	if c, reason := ws.ParseCloseFrameData(f.Payload); c != code || !strings.Contains(reason, says) {
		t.Errorf("the offender's close: %d %q, want %d mentioning %q", c, reason, code, says)
	}
}

type refusedFrameCase struct {
	name string
	// from is the offender: "client" or "server".
	from string
	// passes are frames sent with the bad bytes that are valid and reach
	// the far peer; bad is what must not.
	passes, bad []byte
	code        ws.StatusCode
	says        string
}

func refusedFrameCases() []refusedFrameCase {
	c := func(op ws.OpCode, fin bool, payload string) []byte { return wsFrame(op, fin, 0, true, []byte(payload)) }
	s := func(op ws.OpCode, fin bool, payload string) []byte {
		return wsFrame(op, fin, 0, false, []byte(payload))
	}
	closeC := func(code ws.StatusCode) []byte {
		return wsFrame(ws.OpClose, true, 0, true, ws.NewCloseFrameBody(code, "x"))
	}
	cases := []refusedFrameCase{
		{"text not UTF-8", "client", nil, c(ws.OpText, true, "ok\xffok"), 1007, "UTF-8"},
		{"text not UTF-8 in its second fragment", "client", c(ws.OpText, false, "ok"), c(ws.OpContinuation, true, "\xff"), 1007, "UTF-8"},
		{"code point split across fragments", "client", c(ws.OpText, false, "ok\xe2"), c(ws.OpContinuation, true, "\x82A"), 1007, "UTF-8"},
		{"text ends inside a code point", "client", nil, c(ws.OpText, true, "ok\xe2\x82"), 1007, "inside a UTF-8"},
		{"close with a 1-byte body", "client", nil, c(ws.OpClose, true, "\x03"), 1002, "1-byte"},
		{"reserved opcode", "client", nil, c(0x3, true, "x"), 1002, "reserved opcode"},
		{"reserved control opcode", "client", nil, c(0xB, true, "x"), 1002, "reserved opcode"},
		{"RSV1 without an extension", "client", nil, wsFrame(ws.OpText, true, 4, true, []byte("x")), 1002, "RSV1"},
		{"RSV3 without an extension", "client", nil, wsFrame(ws.OpBinary, true, 1, true, []byte("x")), 1002, "RSV2/RSV3"},
		{"control frame over 125 bytes", "client", nil, c(ws.OpPing, true, strings.Repeat("p", 126)), 1002, "at most 125"},
		{"fragmented control frame", "client", nil, c(ws.OpPing, false, "p"), 1002, "fragmented ping"},
		{"continuation with no message", "client", nil, c(ws.OpContinuation, true, "x"), 1002, "no message in progress"},
		{"new message inside a message", "client", c(ws.OpText, false, "a"), c(ws.OpText, true, "b"), 1002, "before the previous one ended"},
		{"unmasked client frame", "client", nil, s(ws.OpText, true, "x"), 1002, "unmasked"},
		{"masked server frame", "server", nil, c(ws.OpText, true, "x"), 1002, "masked frame from the server"},
		{"server text not UTF-8", "server", s(ws.OpText, true, "fine"), s(ws.OpText, true, "ok\xc0\xaf"), 1007, "UTF-8"},
		{"server close code 1005", "server", nil, wsFrame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1005, "")), 1002, "1005"},
	}
	for _, code := range []ws.StatusCode{999, 1004, 1005, 1006, 1015, 5000} {
		cases = append(cases, refusedFrameCase{fmt.Sprintf("close code %d", code), "client", nil, closeC(code), 1002, fmt.Sprint(code)})
	}
	return cases
}

// The far peer never receives a byte of a frame the relay refuses: it gets
// the valid frames sent before it, exactly as sent, then hopscope's close
// (1002, naming the offender); the offender gets the violation's code. On
// every path a WebSocket can take.
func TestRefusedFramesNeverReachTheFarPeer(t *testing.T) {
	before := wsFrame(ws.OpText, true, 0, true, []byte("before"))
	beforeServer := wsFrame(ws.OpBinary, true, 0, false, []byte("before"))
	for _, path := range []string{"forward", "tunnel", "bump"} {
		t.Run(path, func(t *testing.T) {
			w := newWSPathWorld(t, path)
			for _, tc := range refusedFrameCases() {
				t.Run(tc.name, func(t *testing.T) {
					client, server := w.pair(t)
					offender, far := client, server
					lead := before
					if tc.from == "server" {
						offender, far, lead = server, client, beforeServer
					}
					// One write: the bad frame comes in the same read as the
					// valid ones before it.
					if _, err := offender.conn.Write(bytes.Join([][]byte{lead, tc.passes, tc.bad}, nil)); err != nil {
						t.Fatal(err)
					}
					checkFarEnd(t, far.readAll(t), append(append([]byte(nil), lead...), tc.passes...), ws.StatusProtocolError, tc.from == "client")
					checkOffenderClose(t, offender.readAll(t), tc.code, tc.says)
					e := w.px.waitEvent("ws_error", func(e event) bool { return strings.Contains(e.str("violation"), tc.says) })
					if e.str("side") != tc.from || e.num("code") != float64(tc.code) {
						t.Errorf("ws_error %v", e)
					}
					w.px.logs.reset()
				})
			}
		})
	}
}

// A long text message streams; when it turns invalid late, the far peer
// has had its valid start, never the first invalid byte, and, being inside
// the frame, gets the connection's end rather than a close frame it would
// read as payload. A code point cut between two reads is held until the
// next read shows whether it goes on validly.
func TestLateViolationInALongMessage(t *testing.T) {
	for _, path := range []string{"forward", "tunnel", "bump"} {
		t.Run(path, func(t *testing.T) {
			w := newWSPathWorld(t, path)
			client, server := w.pair(t)
			payload := append(bytes.Repeat([]byte("é"), 20000), "ok\xe2\x82A and more"...)
			wire := wsFrame(ws.OpText, true, 0, true, payload)
			cut := len(wire) - len(payload) + 40002 // the header and the valid bytes before \xe2
			if _, err := client.conn.Write(wire[:cut+1]); err != nil {
				t.Fatal(err)
			}
			if got := server.readN(t, cut); !bytes.Equal(got, wire[:cut]) {
				t.Fatal("the server did not get the valid start of the message as sent")
			}
			if _, err := client.conn.Write(wire[cut+1:]); err != nil {
				t.Fatal(err)
			}
			if rest := server.readAll(t); len(rest) != 0 {
				t.Fatalf("the server got %d more bytes (%q); want none, not even \\xe2", len(rest), rest[:min(len(rest), 16)])
			}
			checkOffenderClose(t, client.readAll(t), 1007, "UTF-8")
			e := w.px.waitEvent("ws_error", nil)
			if e.str("side") != "client" || e.num("bytes_passed") != float64(cut) {
				t.Errorf("ws_error %v, want bytes_passed %d", e, cut)
			}
		})
	}
}

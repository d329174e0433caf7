package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// recordingEcho is a WebSocket echo server (coder/websocket) that also
// records the messages it received.
type recordingEcho struct {
	mu       sync.Mutex
	received []string
	closes   []websocket.StatusCode
	mode     websocket.CompressionMode
}

func (e *recordingEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: e.mode, CompressionThreshold: 1})
	if err != nil {
		return
	}
	c.SetReadLimit(64 << 20)
	ctx := r.Context()
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			e.mu.Lock()
			e.closes = append(e.closes, websocket.CloseStatus(err))
			e.mu.Unlock()
			c.CloseNow()
			return
		}
		e.mu.Lock()
		e.received = append(e.received, string(data))
		e.mu.Unlock()
		if string(data) == "server-says-kick" {
			_ = c.Write(ctx, websocket.MessageText, []byte("kick me"))
			continue
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

func (e *recordingEcho) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.received...)
}

// gobwasEcho is an echo server written with gobwas/ws, the other
// implementation.
func gobwasEcho() http.Handler {
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

// coderClient dials through the proxy as Go's HTTP client does: ws:// as an
// absolute-form GET (the forward path), wss:// through CONNECT.
func coderClient(t testing.TB, px *proxyFixture, u string, roots *tls.Config, mode websocket.CompressionMode) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(px.url()), TLSClientConfig: roots}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, CompressionMode: mode, CompressionThreshold: 1})
	if err != nil {
		t.Fatalf("dialing %s through the proxy: %v (response %v)", u, err, resp)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// connectDialer makes gobwas/ws dial through a CONNECT tunnel, as browsers
// send ws:// through a proxy.
func connectDialer(px *proxyFixture) ws.Dialer {
	return ws.Dialer{Timeout: 10 * time.Second, NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := net.Dial("tcp", px.addr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			conn.Close()
			return nil, fmt.Errorf("CONNECT %s: %v %v", addr, resp, err)
		}
		return conn, nil
	}}
}

func wsURL(httpURL string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http")
}

func echoRoundTrip(t *testing.T, c *websocket.Conn, typ websocket.MessageType, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, payload); err != nil {
		t.Fatalf("write %d bytes: %v", len(payload), err)
	}
	gotTyp, got, err := c.Read(ctx)
	if err != nil || gotTyp != typ || !bytes.Equal(got, payload) {
		t.Fatalf("echo of %d bytes: type %v, %d bytes, err %v", len(payload), gotTyp, len(got), err)
	}
}

var wsLengths = []int{0, 125, 126, 65535, 65536, 16 << 20}

// The forward path: a Go client sends ws:// as an absolute-form request;
// the server is gobwas/ws.
func TestWebSocketForwardPath(t *testing.T) {
	origin := httptest.NewServer(gobwasEcho())
	defer origin.Close()
	px := startProxy(t, nil)
	c := coderClient(t, px, wsURL(origin.URL)+"/chat?room=1", nil, websocket.CompressionDisabled)
	for _, n := range wsLengths {
		payload := bytes.Repeat([]byte("h"), n)
		echoRoundTrip(t, c, websocket.MessageText, payload)
		echoRoundTrip(t, c, websocket.MessageBinary, payload)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close handshake through the proxy: %v", err)
	}
	open := px.waitEvent("ws_open", nil)
	if open.str("path") != "forward" || open.str("url") != wsURL(origin.URL)+"/chat?room=1" {
		t.Errorf("ws_open %v", open)
	}
	closeEv := px.waitEvent("ws_close", nil)
	if closeEv.num("code") != 1000 || closeEv.str("reason") != "done" || closeEv.str("from") != "client" ||
		closeEv.num("client_messages") != float64(2*len(wsLengths)+1) || closeEv.num("server_messages") < float64(2*len(wsLengths)) {
		t.Errorf("ws_close %v", closeEv)
	}
	msgs := px.events("ws_message")
	big := 0
	for _, m := range msgs {
		if m.num("len") == 16<<20 {
			big++
			if m["truncated"] != true {
				t.Errorf("a 16 MiB message beyond --ws-inspect-limit must be logged as truncated: %v", m)
			}
		}
	}
	if big != 4 {
		t.Errorf("%d ws_message events for 16 MiB messages, want 4 (2 each way)", big)
	}
	if e := px.waitEvent("http", nil); e.num("status") != 101 {
		t.Errorf("http event for the upgrade: %v", e)
	}
}

// The tunnel path: gobwas/ws sends ws:// through CONNECT, as browsers do;
// the server is coder/websocket.
func TestWebSocketPlaintextTunnelPath(t *testing.T) {
	echo := &recordingEcho{}
	origin := httptest.NewServer(echo)
	defer origin.Close()
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	conn, _, _, err := connectDialer(px).Dial(context.Background(), wsURL(origin.URL)+"/t")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, msg := range []string{"one", "two", strings.Repeat("3", 70000)} {
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		got, err := wsutil.ReadServerText(conn)
		if err != nil || string(got) != msg {
			t.Fatalf("echo %d bytes: %d, %v", len(msg), len(got), err)
		}
	}
	_ = ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))))
	_, _ = io.ReadAll(conn)
	if e := px.waitEvent("ws_open", nil); e.str("path") != "tunnel" || e.num("tunnel") == 0 {
		t.Errorf("ws_open %v", e)
	}
	if e := px.waitEvent("ws_close", nil); e.num("code") != 1001 || e.str("from") != "client" {
		t.Errorf("ws_close %v", e)
	}
	if e := px.waitEvent("tunnel", nil); e.str("mode") != "http" {
		t.Errorf("tunnel %v", e)
	}
}

// The bump path: wss:// through a bumped CONNECT, client trusting only the
// hopscope CA.
func TestWebSocketBumpPath(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, &recordingEcho{})
	c := coderClient(t, w.px, "wss://"+net.JoinHostPort("localhost", w.originPort)+"/secure", &tls.Config{RootCAs: w.clientCAs}, websocket.CompressionDisabled)
	echoRoundTrip(t, c, websocket.MessageText, []byte("over tls"))
	_ = c.Close(websocket.StatusNormalClosure, "")
	if e := w.px.waitEvent("ws_open", nil); e.str("path") != "bump" || e.str("url") != "wss://localhost:"+w.originPort+"/secure" {
		t.Errorf("ws_open %v", e)
	}
	m := w.px.waitEvent("ws_message", func(e event) bool { return e.str("from") == "client" && e.str("type") == "text" })
	if m.str("preview") != "over tls" || m.num("len") != 8 {
		t.Errorf("ws_message %v", m)
	}
}

// Fragments with pings between them reach the server as one message, the
// pings in place; the proxy never answers a ping itself.
func TestWebSocketFragmentsAndPings(t *testing.T) {
	echo, px, conn := wsThroughTunnel(t)
	frames := []ws.Frame{
		ws.NewFrame(ws.OpText, false, []byte("hel")),
		ws.NewPingFrame([]byte("are you there")),
		ws.NewFrame(ws.OpContinuation, false, []byte("lo ")),
		ws.NewPingFrame(nil),
		ws.NewFrame(ws.OpContinuation, true, []byte("world")),
	}
	for _, f := range frames {
		if err := ws.WriteFrame(conn, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
	}
	// The server (coder/websocket) answers both pings, then echoes.
	var seen []string
	for len(seen) < 3 {
		f, err := readFrame(conn)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%s:%s", opName(f.Header.OpCode), f.Payload))
	}
	want := []string{"pong:are you there", "pong:", "text:hello world"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("client saw %q, want %q", seen, want)
	}
	// The server echoes after recording, so the record is complete here.
	if got := echo.got(); len(got) != 1 || got[0] != "hello world" {
		t.Errorf("the server received %q, want one message \"hello world\"", got)
	}
	m := px.waitEvent("ws_message", func(e event) bool { return e.str("type") == "text" && e.str("from") == "client" })
	if m.num("fragments") != 3 || m.str("preview") != "hello world" {
		t.Errorf("ws_message %v", m)
	}
	pings := 0
	for _, e := range px.events("ws_message") {
		if e.str("type") == "ping" {
			pings++
		}
	}
	if pings != 2 {
		t.Errorf("%d ping events, want 2", pings)
	}
}

func opName(op ws.OpCode) string {
	return map[ws.OpCode]string{ws.OpText: "text", ws.OpBinary: "binary", ws.OpPing: "ping", ws.OpPong: "pong", ws.OpClose: "close"}[op]
}

// permessage-deflate with and without context takeover: messages are
// inspected decompressed while the compressed bytes pass.
func TestWebSocketDeflate(t *testing.T) {
	for _, mode := range []websocket.CompressionMode{websocket.CompressionContextTakeover, websocket.CompressionNoContextTakeover} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			echo := &recordingEcho{mode: mode}
			origin := httptest.NewServer(echo)
			defer origin.Close()
			px := startProxy(t, nil)
			c := coderClient(t, px, wsURL(origin.URL), nil, mode)
			msgs := []string{strings.Repeat("compress me ", 100), strings.Repeat("compress me ", 101) + "again", "tiny"}
			for _, m := range msgs {
				echoRoundTrip(t, c, websocket.MessageText, []byte(m))
			}
			_ = c.Close(websocket.StatusNormalClosure, "")
			open := px.waitEvent("ws_open", nil)
			if !strings.Contains(open.str("extensions"), "permessage-deflate") {
				t.Fatalf("no deflate negotiated: %v", open)
			}
			px.waitEvent("ws_close", nil)
			checked := 0
			for _, e := range px.events("ws_message") {
				if e.str("type") != "text" {
					continue
				}
				want := msgs[checked/2]
				if e["compressed"] != true || e.num("len") != float64(len(want)) || !strings.HasPrefix(want, e.str("preview")) || e.num("wire_len") >= float64(len(want)) && len(want) > 100 {
					t.Errorf("ws_message %d: %v", checked, e)
				}
				checked++
			}
			if checked != 2*len(msgs) {
				t.Errorf("%d text events, want %d", checked, 2*len(msgs))
			}
		})
	}
}

func wsRules(t testing.TB, specs ...policy.WSRuleSpec) policy.WSRules {
	t.Helper()
	rules, err := policy.CompileWSRules(specs)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// Every rule action, as the far side sees it, with and without deflate
// (rules that change messages negotiate no context takeover).
func TestWebSocketRules(t *testing.T) {
	rules := wsRules(t,
		policy.WSRuleSpec{Name: "no-secrets", Match: policy.WSMatchSpec{From: "client", Contains: "secret"}, Action: policy.WSDrop},
		policy.WSRuleSpec{Name: "pets", Match: policy.WSMatchSpec{From: "client", Type: "text"}, Action: policy.WSRewrite, Replace: &policy.WSReplaceSpec{Regex: `cat(s?)`, With: "dog$1"}},
		policy.WSRuleSpec{Name: "kick", Match: policy.WSMatchSpec{From: "server", Regex: "^kick"}, Action: policy.WSClose, Code: 4000, Reason: "kicked"},
	)
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			echo := &recordingEcho{mode: mode}
			origin := httptest.NewServer(echo)
			defer origin.Close()
			px := startProxy(t, &proxy.Options{WebSocket: proxy.WebSocketOptions{Rules: rules}})
			c := coderClient(t, px, wsURL(origin.URL), nil, mode)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = c.Write(ctx, websocket.MessageText, []byte("my secret"))
			_ = c.Write(ctx, websocket.MessageText, []byte("cats and cat"))
			if _, got, err := c.Read(ctx); err != nil || string(got) != "dogs and dog" {
				t.Fatalf("rewritten echo %q %v", got, err)
			}
			// After a dropped and a rewritten message, compressed messages
			// still decode on both sides.
			_ = c.Write(ctx, websocket.MessageBinary, []byte("plain binary"))
			if _, got, err := c.Read(ctx); err != nil || string(got) != "plain binary" {
				t.Fatalf("echo after drop/rewrite %q %v", got, err)
			}
			if got := echo.got(); strings.Join(got, "|") != "dogs and dog|plain binary" {
				t.Errorf("server received %q; the secret must never arrive", got)
			}
			_ = c.Write(ctx, websocket.MessageText, []byte("server-says-kick"))
			_, _, err := c.Read(ctx)
			if websocket.CloseStatus(err) != 4000 || !strings.Contains(err.Error(), "kicked") {
				t.Fatalf("client saw %v, want close 4000 kicked", err)
			}
			e := px.waitEvent("ws_message", func(e event) bool { return e.str("action") == "drop" })
			if e.str("rule") != "no-secrets" || e.str("from") != "client" {
				t.Errorf("drop event %v", e)
			}
			px.waitEvent("ws_message", func(e event) bool { return e.str("action") == "rewrite" && e.str("rule") == "pets" })
			px.waitEvent("ws_message", func(e event) bool { return e.str("action") == "close" && e.str("rule") == "kick" })
			if cl := px.waitEvent("ws_close", nil); cl.num("code") != 4000 || cl.str("from") != "proxy" {
				t.Errorf("ws_close %v", cl)
			}
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				echo.mu.Lock()
				n := len(echo.closes)
				echo.mu.Unlock()
				if n > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			echo.mu.Lock()
			defer echo.mu.Unlock()
			if len(echo.closes) != 1 || echo.closes[0] != 4000 {
				t.Errorf("server saw closes %v, want 4000", echo.closes)
			}
		})
	}
}

func TestWebSocketMaxMessage(t *testing.T) {
	origin := httptest.NewServer(&recordingEcho{})
	defer origin.Close()
	px := startProxy(t, &proxy.Options{WebSocket: proxy.WebSocketOptions{MaxMessage: 1000}})
	c := coderClient(t, px, wsURL(origin.URL), nil, websocket.CompressionDisabled)
	echoRoundTrip(t, c, websocket.MessageBinary, make([]byte, 1000))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Write(ctx, websocket.MessageBinary, make([]byte, 1001))
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("got %v, want close 1009", err)
	}
	if e := px.waitEvent("ws_error", nil); e.num("code") != 1009 || e.str("side") != "client" {
		t.Errorf("ws_error %v", e)
	}
}

// A protocol violation closes both sides: 1002 to the offender, and the
// other side learns who broke the protocol.
func TestWebSocketViolationClosesBoth(t *testing.T) {
	echo, px, conn := wsThroughTunnel(t)
	// An unmasked frame from a client is a protocol error.
	if err := ws.WriteFrame(conn, ws.NewTextFrame([]byte("unmasked"))); err != nil {
		t.Fatal(err)
	}
	f, err := readFrame(conn)
	if err != nil || f.Header.OpCode != ws.OpClose {
		t.Fatalf("want a close frame, got %v %v", f.Header, err)
	}
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if code != ws.StatusProtocolError || !strings.Contains(reason, "unmasked") {
		t.Errorf("close %d %q", code, reason)
	}
	if _, err := io.ReadAll(conn); err != nil && !isReset(err) {
		t.Errorf("connection not closed after the violation: %v", err)
	}
	e := px.waitEvent("ws_error", nil)
	if e.str("side") != "client" || e.num("code") != 1002 || !strings.Contains(e.str("violation"), "unmasked") {
		t.Errorf("ws_error %v", e)
	}
	if len(echo.got()) != 0 {
		t.Error("the offending frame reached the server")
	}
}

// An abrupt TCP reset on either side closes the other side too.
func TestWebSocketAbruptReset(t *testing.T) {
	for _, side := range []string{"client", "server"} {
		t.Run(side, func(t *testing.T) {
			serverConn := make(chan net.Conn, 1)
			serverDone := make(chan error, 1)
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, _, _, err := ws.UpgradeHTTP(r, w)
				if err != nil {
					return
				}
				serverConn <- conn
				_, err = io.ReadAll(conn)
				serverDone <- err
			}))
			defer origin.Close()
			px := startProxy(t, &proxy.Options{Policy: openPolicy()})
			conn, _, _, err := connectDialer(px).Dial(context.Background(), wsURL(origin.URL))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			sc := <-serverConn
			victim, survivor := conn, sc
			if side == "server" {
				victim, survivor = sc, conn
			}
			_ = victim.(interface{ SetLinger(int) error }).SetLinger(0)
			victim.Close()
			_ = survivor.SetReadDeadline(time.Now().Add(5 * time.Second))
			if side == "client" {
				if err := <-serverDone; err != nil && !isReset(err) && !errors.Is(err, net.ErrClosed) {
					t.Errorf("server side: %v", err)
				}
			} else if _, err := io.ReadAll(survivor); isTimeout(err) {
				t.Error("the client connection stayed open after the server reset")
			}
			e := px.waitEvent("ws_close", nil)
			if e.num("code") != 1006 || e.str("from") != side {
				t.Errorf("ws_close %v", e)
			}
		})
	}
}

// A non-101 answer to the upgrade goes back as an ordinary response.
func TestWebSocketRefusedUpgrade(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Drop")
		w.Header().Set("X-Drop", "hop")
		http.Error(w, "no websockets here", http.StatusForbidden)
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	host := strings.TrimPrefix(origin.URL, "http://")
	resp, _, _ := px.rawRequest("GET " + origin.URL + "/ws HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	body := readBody(t, resp)
	if resp.StatusCode != 403 || !strings.Contains(body, "no websockets here") || resp.Header.Get("X-Drop") != "" {
		t.Errorf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// The upstream handshake carries the client's end-to-end headers and the
// upgrade asked for again, without hop-by-hop headers; a wrong
// Sec-WebSocket-Accept is logged and left to the client.
func TestWebSocketHandshakeHeaders(t *testing.T) {
	up := startRawUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Resp-Hop\r\nX-Resp-Hop: 1\r\nSec-WebSocket-Accept: wrong\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
	px := startProxy(t, nil)
	resp, conn, _ := px.rawRequest("GET http://" + up.addr() + "/ws HTTP/1.1\r\nHost: " + up.addr() + "\r\n" +
		"Connection: keep-alive, Upgrade, X-Hop\r\nX-Hop: 1\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eDp5\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\nOrigin: http://app.example\r\n\r\n")
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" || resp.Header.Get("X-Resp-Hop") != "" || resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Fatalf("101 to client: %d %v", resp.StatusCode, resp.Header)
	}
	conn.Close()
	head := up.lastHead(t)
	for h, want := range map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "X-Hop": "", "Proxy-Authorization": "",
		"Sec-Websocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://app.example", "Via": "1.1 hopscope"} {
		if got := strings.Join(headerValues(head, h), ","); got != want {
			t.Errorf("upstream %s = %q, want %q", h, got, want)
		}
	}
	if e := px.waitEvent("ws_open", nil); e["accept_mismatch"] != true || e.str("subprotocol") != "chat" {
		t.Errorf("ws_open %v", e)
	}
}

// Frames that arrive in the same packets as the handshake are kept: the
// client's behind its request, the server's behind its 101.
func TestWebSocketEarlyFrames(t *testing.T) {
	early := ws.MustCompileFrame(ws.NewTextFrame([]byte("hello early")))
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		key := r.Header.Get("Sec-WebSocket-Key")
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept(key) + "\r\n\r\n"
		_, _ = conn.Write(append([]byte(resp), early...))
		f, err := readFrame(brw.Reader)
		if err == nil {
			ws.Cipher(f.Payload, f.Header.Mask, 0)
			_ = ws.WriteFrame(conn, ws.NewTextFrame(append([]byte("got: "), f.Payload...)))
		}
		_, _ = io.ReadAll(conn)
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	host := strings.TrimPrefix(origin.URL, "http://")
	clientEarly := ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("client early"))))
	req := "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + string(clientEarly)
	resp, conn, br := px.rawRequest(req)
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{"hello early", "got: client early"} {
		f, err := readFrame(br)
		if err != nil || string(f.Payload) != want {
			t.Fatalf("read %q %v, want %q", f.Payload, err, want)
		}
	}
	conn.Close()
}

// accept computes Sec-WebSocket-Accept as RFC 6455 section 4.2.2 says.
func accept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// readFrame reads one frame from a trusted test peer, refusing payloads
// over 1 MiB (ws.ReadFrame trusts the declared length).
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, fmt.Errorf("test frame of %d bytes", h.Length)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: payload}, nil
}

// A destination that answers an upgrade with a broken 101 or with garbage
// gets the client a 502 that says so, not a half-open WebSocket.
func TestWebSocketBrokenUpgradeAnswers(t *testing.T) {
	cases := []struct {
		name, answer, errType string
	}{
		{"101 without Upgrade", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "http_protocol_error"},
		{"101 upgrading to something else", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", "http_protocol_error"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n", ""},
		{"nothing", "", "connection_terminated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := startRawUpstream(t, tc.answer)
			px := startProxy(t, nil)
			resp, _, _ := px.rawRequest("GET http://" + up.addr() + "/ws HTTP/1.1\r\nHost: " + up.addr() + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			checkProxyAnswer(t, resp, http.StatusBadGateway, tc.errType)
		})
	}
}

// wsThroughTunnel starts a recording echo origin and a proxy, and opens a
// WebSocket to the origin through CONNECT, as a browser sends ws://.
func wsThroughTunnel(t *testing.T) (*recordingEcho, *proxyFixture, net.Conn) {
	t.Helper()
	echo := &recordingEcho{}
	origin := httptest.NewServer(echo)
	t.Cleanup(origin.Close)
	px := startProxy(t, &proxy.Options{Policy: openPolicy()})
	conn, _, _, err := connectDialer(px).Dial(context.Background(), wsURL(origin.URL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return echo, px, conn
}

// With rules that hold messages, a ping between the fragments of a held
// message passes at once and the message still arrives whole.
func TestHeldMessageWithInterleavedPing(t *testing.T) {
	echo := &recordingEcho{}
	origin := httptest.NewServer(echo)
	defer origin.Close()
	rules := wsRules(t, policy.WSRuleSpec{Match: policy.WSMatchSpec{Contains: "never-there"}, Action: policy.WSDrop})
	px := startProxy(t, &proxy.Options{Policy: openPolicy(), WebSocket: proxy.WebSocketOptions{Rules: rules}})
	conn, _, _, err := connectDialer(px).Dial(context.Background(), wsURL(origin.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, f := range []ws.Frame{
		ws.NewFrame(ws.OpText, false, []byte("held ")),
		ws.NewPingFrame([]byte("mid")),
		ws.NewFrame(ws.OpContinuation, false, []byte("and ")),
		ws.NewFrame(ws.OpContinuation, true, []byte("whole")),
	} {
		if err := ws.WriteFrame(conn, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	for len(seen) < 2 {
		f, err := readFrame(conn)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%s:%s", opName(f.Header.OpCode), f.Payload))
	}
	if strings.Join(seen, "|") != "pong:mid|text:held and whole" {
		t.Errorf("client saw %q", seen)
	}
	if got := echo.got(); len(got) != 1 || got[0] != "held and whole" {
		t.Errorf("server received %q", got)
	}
}

package intercept_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
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
	"github.com/gobwas/ws/wsflate"
	"go.uber.org/goleak"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/intercept"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/proxytest"
	"github.com/hopscope/hopscope/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer is a WebSocket server written with gobwas/ws: it records
// every message it receives and answers "echo:" and the message. With
// deflate it accepts permessage-deflate and compresses its answers.
type echoServer struct {
	deflate bool

	mu       sync.Mutex
	received []string
	closes   []ws.StatusCode
	arrived  chan string
	pongs    chan string
	wg       sync.WaitGroup
	// conn is the last session's connection; writes go under wmu.
	// connected is closed once the first session has one.
	conn      net.Conn
	wmu       sync.Mutex
	connected chan struct{}
	connOnce  sync.Once
}

func newEchoServer(deflate bool) *echoServer {
	return &echoServer{deflate: deflate, arrived: make(chan string, 64), pongs: make(chan string, 8), connected: make(chan struct{})}
}

func (e *echoServer) write(f ws.Frame) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	return ws.WriteFrame(e.conn, f)
}

// ping sends the client a ping from the server. The proxy may relay the
// 101 (and the client act on it) before ServeHTTP has kept its
// connection, so it waits for that first.
func (e *echoServer) ping(payload string) error {
	select {
	case <-e.connected:
	case <-time.After(10 * time.Second):
		return errors.New("no WebSocket reached the origin")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.write(ws.NewPingFrame([]byte(payload)))
}

func (e *echoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.wg.Add(1)
	defer e.wg.Done()
	ext := &wsflate.Extension{Parameters: wsflate.DefaultParameters}
	up := ws.HTTPUpgrader{}
	if e.deflate {
		up.Negotiate = ext.Negotiate
	}
	conn, _, _, err := up.Upgrade(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	e.mu.Lock()
	e.conn = conn
	e.mu.Unlock()
	e.connOnce.Do(func() { close(e.connected) })
	_, compress := ext.Accepted()
	for {
		f, err := readTestFrame(conn)
		if err != nil {
			return
		}
		if f.Header.Masked {
			ws.Cipher(f.Payload, f.Header.Mask, 0)
		}
		if compressed, _ := wsflate.IsCompressed(f.Header); compressed {
			if f, err = wsflate.DecompressFrame(f); err != nil {
				return
			}
		}
		switch f.Header.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(f.Payload)
			e.mu.Lock()
			e.closes = append(e.closes, code)
			e.mu.Unlock()
			_ = e.write(ws.NewCloseFrame(f.Payload))
			return
		case ws.OpPing:
			_ = e.write(ws.NewPongFrame(f.Payload))
			continue
		case ws.OpPong:
			e.pongs <- string(f.Payload)
			continue
		case ws.OpText, ws.OpBinary:
		default:
			continue
		}
		msg := string(f.Payload)
		e.mu.Lock()
		e.received = append(e.received, msg)
		e.mu.Unlock()
		e.arrived <- msg
		answer := ws.NewFrame(f.Header.OpCode, true, []byte("echo:"+msg))
		if compress {
			if answer, err = wsflate.CompressFrame(answer); err != nil {
				return
			}
		}
		if err := e.write(answer); err != nil {
			return
		}
	}
}

func (e *echoServer) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.received...)
}

// next waits for the next message the server receives.
func (e *echoServer) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-e.arrived:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("the server received nothing more; it has %q", e.got())
		return ""
	}
}

// world is a proxy with an interception engine, an origin and a client
// (coder/websocket) on one of the three paths.
type world struct {
	engine *intercept.Engine
	px     *proxytest.Server
	origin *echoServer
	client *websocket.Conn
	api    *httptest.Server
}

func startWorld(t *testing.T, path string, deflate bool, opts intercept.Options, extra ...proxytest.Option) *world {
	t.Helper()
	engine, err := intercept.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{engine: engine, origin: newEchoServer(deflate)}
	var origin *httptest.Server
	pxOpts := append([]proxytest.Option{proxytest.WithInterceptor(engine)}, extra...)
	if path == "bump" {
		origin = httptest.NewTLSServer(w.origin)
		pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw})
		pxOpts = append(pxOpts, proxytest.WithMITM(), proxytest.WithUpstreamCA(pemCert))
	} else {
		origin = httptest.NewServer(w.origin)
	}
	t.Cleanup(func() {
		origin.Close()
		w.origin.wg.Wait()
	})
	w.px = proxytest.Start(t, pxOpts...)
	w.api = httptest.NewServer(engine.Handler())
	t.Cleanup(w.api.Close)

	tr := &http.Transport{}
	u := "ws" + strings.TrimPrefix(origin.URL, "http") + "/live"
	switch path {
	case "forward":
		tr.Proxy = http.ProxyURL(w.px.URL())
	case "tunnel":
		tr.DialContext = w.px.Dialer().DialContext
	case "bump":
		tr.Proxy = http.ProxyURL(w.px.URL())
		tr.TLSClientConfig = &tls.Config{RootCAs: w.px.CertPool()}
	}
	t.Cleanup(tr.CloseIdleConnections)
	mode := websocket.CompressionDisabled
	if deflate {
		mode = websocket.CompressionContextTakeover
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}, CompressionMode: mode, CompressionThreshold: 1})
	if err != nil {
		t.Fatalf("dialing %s through the proxy: %v", u, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); deflate != strings.Contains(got, "permessage-deflate") {
		t.Fatalf("negotiated extensions %q, deflate %v", got, deflate)
	}
	t.Cleanup(func() { c.CloseNow() })
	w.client = c
	return w
}

func (w *world) send(t *testing.T, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.client.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("client writing %q: %v", text, err)
	}
}

func (w *world) read(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, data, err := w.client.Read(ctx)
	if err != nil {
		t.Fatalf("client reading: %v", err)
	}
	return string(data)
}

// paused waits for a message to be paused and returns it, as the API
// lists it.
func (w *world) paused(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var list []map[string]any
		w.call(t, "GET", "/paused", nil, http.StatusOK, &list)
		if len(list) > 0 {
			return list[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no message was paused")
	return nil
}

// call makes an API request and decodes its answer.
func (w *world) call(t *testing.T, method, path string, body any, wantStatus int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.api.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s answered %d %s, want %d", method, path, resp.StatusCode, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

func (w *world) session(t *testing.T) uint64 {
	t.Helper()
	// The session is registered just after the client has its 101.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var list []map[string]any
		w.call(t, "GET", "/sessions", nil, http.StatusOK, &list)
		if len(list) == 1 {
			return uint64(list[0]["id"].(float64))
		}
		if len(list) > 1 || time.Now().After(deadline) {
			t.Fatalf("live sessions %v, want one", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decision(id any) string { return fmt.Sprintf("/paused/%d", uint64(id.(float64))) }

var paths = []string{"forward", "tunnel", "bump"}

// A paused message waits while the other direction flows; the person
// edits one, drops another and injects both ways; every action is a
// flow record saying who did what, before and after.
func TestPauseEditDropInject(t *testing.T) {
	for _, path := range paths {
		for _, deflate := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/deflate=%v", path, deflate), func(t *testing.T) {
				w := startWorld(t, path, deflate, intercept.Options{Breakpoints: []intercept.BreakpointSpec{
					{Name: "orders", Match: policy.WSMatchSpec{From: "client", URL: "*/live", JSONPath: "op", JSONEquals: ptr("order")}},
				}})
				id := w.session(t)

				w.send(t, `{"op":"order","qty":1}`)
				p := w.paused(t)
				if p["breakpoint"] != "orders" || p["text"] != `{"op":"order","qty":1}` || p["editable"] != true || p["remaining_ms"].(float64) <= 0 {
					t.Fatalf("paused message %v", p)
				}
				// The other direction keeps flowing: a message injected
				// to the client arrives while the client's message waits.
				var inj map[string]any
				w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]string{"to": "client", "text": "hello from hopscope"}, http.StatusOK, &inj)
				if got := w.read(t); got != "hello from hopscope" {
					t.Fatalf("client read %q while its message was paused", got)
				}
				if deflate != strings.Contains(fmt.Sprint(inj["note"]), "uncompressed") {
					t.Errorf("inject note %q (deflate %v)", inj["note"], deflate)
				}
				w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "json": `{"op":"order","qty":3}`}, http.StatusOK, nil)
				if got := w.origin.next(t); got != `{"op":"order","qty":3}` {
					t.Fatalf("server received %q, want the edited message", got)
				}
				if got := w.read(t); got != `echo:{"op":"order","qty":3}` {
					t.Fatalf("client read %q", got)
				}

				w.send(t, `{"op":"order","qty":2}`)
				p = w.paused(t)
				w.call(t, "POST", decision(p["id"]), map[string]any{"action": "drop"}, http.StatusOK, nil)
				w.send(t, `{"op":"noop"}`)
				if got := w.origin.next(t); got != `{"op":"noop"}` {
					t.Fatalf("server received %q after the drop", got)
				}
				if got := w.read(t); got != `echo:{"op":"noop"}` {
					t.Fatalf("client read %q", got)
				}

				w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]string{"to": "server", "text": "injected"}, http.StatusOK, nil)
				if got := w.origin.next(t); got != "injected" {
					t.Fatalf("server received %q, want the injected message", got)
				}
				if got := w.read(t); got != "echo:injected" {
					t.Fatalf("client read %q", got)
				}
				if got := w.origin.got(); strings.Contains(strings.Join(got, "|"), `"qty":2`) {
					t.Fatalf("the dropped message reached the server: %q", got)
				}

				edited := w.px.WaitFor(t, func(r flow.Record) bool {
					return r.Kind == flow.KindWSMessage && r.Message.Action == policy.WSRewrite
				}, 5*time.Second).Message
				if edited.Actor != "person" || edited.Rule != "orders" || string(edited.Payload) != `{"op":"order","qty":1}` || string(edited.Replacement) != `{"op":"order","qty":3}` {
					t.Errorf("edit record %+v", edited)
				}
				dropped := w.px.WaitFor(t, func(r flow.Record) bool {
					return r.Kind == flow.KindWSMessage && r.Message.Action == policy.WSDrop
				}, 5*time.Second).Message
				if dropped.Actor != "person" || string(dropped.Payload) != `{"op":"order","qty":2}` {
					t.Errorf("drop record %+v", dropped)
				}
				injected := w.px.WaitFor(t, func(r flow.Record) bool {
					return r.Kind == flow.KindWSMessage && r.Message.Action == policy.WSInject && r.Message.From == flow.FromClient
				}, 5*time.Second).Message
				if injected.Actor != "person" || string(injected.Payload) != "injected" {
					t.Errorf("inject record %+v", injected)
				}
				checkHAR(t, w.px.Flows())
				if deflate {
					// The peers really compressed: the relay saw it.
					w.px.WaitFor(t, func(r flow.Record) bool {
						return r.Kind == flow.KindWSMessage && r.Message.Compressed && r.Message.From == flow.FromServer
					}, 5*time.Second)
				}
				w.client.Close(websocket.StatusNormalClosure, "")
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }

// checkHAR exports the records as HAR: the person's edit, drop and
// injection are under _hopscope with their before and after.
func checkHAR(t *testing.T, records []flow.Record) {
	t.Helper()
	h := harOf(t, records)
	seen := map[string]bool{}
	for _, e := range h.Log.Entries {
		if e.WebSocket == nil {
			continue
		}
		for _, m := range *e.WebSocket {
			if m.X == nil || m.X.Actor != "person" {
				continue
			}
			seen[m.X.Action] = true
			if m.X.Action == policy.WSRewrite && (m.Data != `{"op":"order","qty":1}` || m.X.Replacement != `{"op":"order","qty":3}`) {
				t.Errorf("HAR edit: data %q replacement %q", m.Data, m.X.Replacement)
			}
		}
	}
	for _, action := range []string{policy.WSRewrite, policy.WSDrop, policy.WSInject} {
		if !seen[action] {
			t.Errorf("HAR has no %s by a person; it has %v", action, seen)
		}
	}
}

// A paused message nobody acts on goes on unchanged after the timeout.
func TestPauseTimeout(t *testing.T) {
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%v", deflate), func(t *testing.T) {
			w := startWorld(t, "tunnel", deflate, intercept.Options{Timeout: 50 * time.Millisecond,
				Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{Contains: "slow"}}}})
			w.send(t, "slow one")
			if got := w.origin.next(t); got != "slow one" {
				t.Fatalf("server received %q", got)
			}
			rec := w.px.WaitFor(t, proxytest.IsMessage("client", "slow one"), 5*time.Second).Message
			if rec.Actor != "timeout" || rec.Action != policy.WSPass || !strings.Contains(rec.Note, "timeout") {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// Closing on a paused message sends both sides the person's code.
func TestPauseCloseWithCode(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			w := startWorld(t, path, path == "bump", intercept.Options{Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{Type: "text"}}}})
			w.send(t, "bye")
			p := w.paused(t)
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "close", "code": 1000, "reason": ""}, http.StatusOK, nil)
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "forward"}, http.StatusNotFound, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _, err := w.client.Read(ctx)
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
				t.Fatalf("client read %v, want a close 1000", err)
			}
			w.px.WaitFor(t, proxytest.IsClose(1000), 5*time.Second)
		})
	}
	t.Run("custom code", func(t *testing.T) {
		w := startWorld(t, "forward", false, intercept.Options{Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{Type: "text"}}}})
		w.send(t, "bye")
		p := w.paused(t)
		w.call(t, "POST", decision(p["id"]), map[string]any{"action": "close", "code": 999}, http.StatusConflict, nil)
		w.call(t, "POST", decision(p["id"]), map[string]any{"action": "close", "code": 4001, "reason": "stop"}, http.StatusOK, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _, err := w.client.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "stop" {
			t.Fatalf("client read %v, want close 4001 stop", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			w.origin.mu.Lock()
			closes := append([]ws.StatusCode(nil), w.origin.closes...)
			w.origin.mu.Unlock()
			if len(closes) == 1 && closes[0] == 4001 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("server saw closes %v, want 4001", closes)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// Bad requests are refused with a reason and change nothing.
func TestAPIRefusals(t *testing.T) {
	w := startWorld(t, "forward", false, intercept.Options{})
	id := w.session(t)
	w.call(t, "POST", "/breakpoints", map[string]any{"name": "bad", "match": map[string]any{"regex": "("}}, http.StatusBadRequest, nil)
	w.call(t, "POST", "/breakpoints", map[string]any{"name": "b", "match": map[string]any{"from": "server"}}, http.StatusOK, nil)
	var bps []intercept.BreakpointSpec
	w.call(t, "GET", "/breakpoints", nil, http.StatusOK, &bps)
	if len(bps) != 1 || bps[0].Name != "b" || bps[0].Match.From != "server" {
		t.Fatalf("breakpoints %+v", bps)
	}
	w.call(t, "DELETE", "/breakpoints/b", nil, http.StatusOK, nil)
	w.call(t, "DELETE", "/breakpoints/b", nil, http.StatusNotFound, nil)
	w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]any{"to": "server", "hex": "ff"}, http.StatusOK, nil)
	if got := w.origin.next(t); got != "\xff" {
		t.Fatalf("server received %q", got)
	}
	w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]any{"to": "up", "text": "x"}, http.StatusBadRequest, nil)
	w.call(t, "POST", "/sessions/999/inject", map[string]any{"to": "server", "text": "x"}, http.StatusConflict, nil)
	w.call(t, "POST", "/paused/1", map[string]any{"action": "forward"}, http.StatusNotFound, nil)

	w.call(t, "POST", "/breakpoints", map[string]any{"match": map[string]any{"contains": "edit-me"}}, http.StatusOK, nil)
	w.send(t, "edit-me")
	p := w.paused(t)
	w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "json": `{"x":`}, http.StatusConflict, nil)
	w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "text": "a", "hex": "62"}, http.StatusConflict, nil)
	w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "hex": "c3"}, http.StatusConflict, nil)
	w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "hex": "6f6b"}, http.StatusOK, nil)
	if got := w.origin.next(t); got != "ok" {
		t.Fatalf("server received %q", got)
	}
	// The session ends; injecting into it is refused.
	w.client.Close(websocket.StatusNormalClosure, "")
	w.px.WaitFor(t, proxytest.IsKind(flow.KindWSClose), 5*time.Second)
	w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]any{"to": "server", "text": "late"}, http.StatusConflict, nil)
}

// readTestFrame reads one frame whole, refusing lengths a test never sends
// (ws.ReadFrame would allocate whatever the peer declares).
func readTestFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 16<<20 {
		return ws.Frame{}, fmt.Errorf("test frame of %d bytes is too long", h.Length)
	}
	f := ws.Frame{Header: h, Payload: make([]byte, h.Length)}
	_, err = io.ReadFull(r, f.Payload)
	return f, err
}

// A session with an extension hopscope does not know refuses injection
// with the reason, and the stream goes on untouched.
func TestInjectRefusedForUnknownExtension(t *testing.T) {
	engine, err := intercept.New(intercept.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		up := ws.HTTPUpgrader{Header: http.Header{"Sec-WebSocket-Extensions": {"x-custom-frames"}}}
		conn, _, _, err := up.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(io.Discard, conn)
	}))
	defer func() {
		origin.Close()
		wg.Wait()
	}()
	px := proxytest.Start(t, proxytest.WithInterceptor(engine))
	api := httptest.NewServer(engine.Handler())
	defer api.Close()
	w := &world{engine: engine, px: px, api: api}

	conn, err := net.Dial("tcp", px.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s/x HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: x-custom-frames\r\n\r\n",
		origin.URL, strings.TrimPrefix(origin.URL, "http://"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	id := w.session(t)
	var refusal map[string]string
	w.call(t, "POST", fmt.Sprintf("/sessions/%d/inject", id), map[string]string{"to": "server", "text": "x"}, http.StatusConflict, &refusal)
	if !strings.Contains(refusal["error"], "does not know (x-custom-frames)") {
		t.Errorf("refusal %q", refusal["error"])
	}
}

// harOf is the HAR export of a flow store that saw records.
func harOf(t *testing.T, records []flow.Record) *har.HAR {
	t.Helper()
	st := store.New(store.Options{})
	st.Observe(records)
	var buf bytes.Buffer
	if err := har.Write(&buf, st, har.Options{}); err != nil {
		t.Fatal(err)
	}
	h, err := har.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// While the client's message is paused, the server's ping is answered: the
// client's pong passes the paused message, and the client's next message
// waits behind it.
func TestPauseLetsHeartbeatsThrough(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			w := startWorld(t, path, path == "bump", intercept.Options{Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{From: "client", Contains: "first"}}}})
			// coder/websocket answers pings while a Read is waiting.
			answers := make(chan string, 2)
			go func() {
				for range 2 {
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					_, p, err := w.client.Read(ctx)
					cancel()
					if err != nil {
						close(answers)
						return
					}
					answers <- string(p)
				}
			}()
			w.send(t, "first")
			p := w.paused(t)
			w.send(t, "second")
			if err := w.origin.ping("are you there"); err != nil {
				t.Fatal(err)
			}
			select {
			case pong := <-w.origin.pongs:
				if pong != "are you there" {
					t.Fatalf("pong %q", pong)
				}
			case m := <-w.origin.arrived:
				t.Fatalf("the server received %q while the first message was paused", m)
			case <-time.After(10 * time.Second):
				t.Fatal("the client's pong did not pass the paused message")
			}
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "forward"}, http.StatusOK, nil)
			if a, b := w.origin.next(t), w.origin.next(t); a != "first" || b != "second" {
				t.Fatalf("server received %q then %q", a, b)
			}
			for _, want := range []string{"echo:first", "echo:second"} {
				if got := <-answers; got != want {
					t.Fatalf("client read %q, want %q", got, want)
				}
			}
			pong := w.px.WaitFor(t, func(r flow.Record) bool {
				return r.Kind == flow.KindWSMessage && r.Message.Opcode == flow.OpPong
			}, 5*time.Second).Message
			if !strings.Contains(pong.Note, "paused") {
				t.Errorf("pong record %+v", pong)
			}
		})
	}
}

// A client that goes away while its message is paused ends the pause and
// the session, even with no timeout: nothing waits on, holding the
// server's connection, for a decision about a peer that has left.
func TestPausedMessageOfAClientThatLeaves(t *testing.T) {
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			w := startWorld(t, path, false, intercept.Options{Timeout: -1, Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{From: "client", Contains: "leaving"}}}})
			w.send(t, "leaving")
			w.paused(t)
			_ = w.client.CloseNow() // no close frame: the process went away
			closed := w.px.WaitFor(t, proxytest.IsKind(flow.KindWSClose), 10*time.Second).Session
			if closed.ClosedBy != "client" {
				t.Errorf("the session's end: %+v", closed)
			}
			if n := len(w.engine.PausedMessages()); n != 0 {
				t.Errorf("%d messages still paused after their client left", n)
			}
		})
	}
}

// A message too big to hold is not paused; its record says why.
func TestBreakpointOnStreamedMessage(t *testing.T) {
	w := startWorld(t, "forward", false, intercept.Options{Breakpoints: []intercept.BreakpointSpec{{Match: policy.WSMatchSpec{Contains: "big"}}}},
		proxytest.WithConfig(func(c *config.Config) { c.WSInspectLimit = 1024 }))
	big := "big " + strings.Repeat("x", 4096)
	w.send(t, big)
	if got := w.origin.next(t); got != big {
		t.Fatalf("server received %d bytes", len(got))
	}
	rec := w.px.WaitFor(t, proxytest.IsMessage("client", "big "), 5*time.Second).Message
	if rec.Actor != "" || !rec.Truncated || !strings.Contains(rec.Note, "not paused") {
		t.Errorf("record %+v", rec)
	}
	w.send(t, "small big")
	p := w.paused(t)
	w.call(t, "POST", decision(p["id"]), map[string]any{"action": "forward"}, http.StatusOK, nil)
	if got := w.origin.next(t); got != "small big" {
		t.Fatalf("server received %q", got)
	}
}

package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// recorder is a typed observer of a proxy's flows.
type recorder struct {
	mu   sync.Mutex
	recs []flow.Record
}

func (r *recorder) Observe(batch []flow.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, batch...)
}

func (r *recorder) all() []flow.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flow.Record(nil), r.recs...)
}

// kind returns the records of kind k, in order.
func (r *recorder) kind(k flow.Kind) []flow.Record {
	var out []flow.Record
	for _, rec := range r.all() {
		if rec.Kind == k {
			out = append(out, rec)
		}
	}
	return out
}

// wait waits for n records of kind k.
func (r *recorder) wait(t testing.TB, k flow.Kind, n int) []flow.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := r.kind(k); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d %s records; got %v", n, k, r.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// record subscribes a recorder to the fixture's proxy.
func (f *proxyFixture) record(opts flow.Options) *recorder {
	r := &recorder{}
	f.t.Cleanup(f.srv.Flows().Subscribe(r, opts).Cancel)
	return r
}

// A WebSocket inside a CONNECT tunnel, as browsers send ws://: every record
// links to the one it belongs to (message -> session -> handshake ->
// tunnel), the handshake shows the client's hop-by-hop headers, and
// payloads are copied up to what the observer asked for.
func TestFlowRecordsLinkMessagesToTheirTunnel(t *testing.T) {
	origin := httptest.NewServer(gobwasEcho())
	defer origin.Close()
	// The event log without payloads, so that the recorder's wish is the
	// largest (every observer gets the largest).
	logs := &syncBuffer{}
	px := startProxyWithLog(t, &proxy.Options{Policy: openPolicy()}, logs, logs, eventlog.Options{WSLog: eventlog.WSLogMeta})
	rec := px.record(flow.Options{PayloadBytes: 4})

	conn, _, _, err := connectDialer(px).Dial(context.Background(), wsURL(origin.URL)+"/t")
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"hello", "héllo wörld"} {
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := wsutil.ReadServerText(conn); err != nil {
			t.Fatal(err)
		}
	}
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")))); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, conn) // the server's close, then the end
	conn.Close()

	tunnel := rec.wait(t, flow.KindTunnel, 1)[0].Tunnel
	if tunnel.Mode != "http" || tunnel.Status != 200 || tunnel.BytesUp == 0 || tunnel.BytesDown == 0 || tunnel.ID == 0 {
		t.Errorf("tunnel %+v", tunnel)
	}
	if opens := rec.kind(flow.KindTunnelOpen); len(opens) != 1 || opens[0].Tunnel.ID != tunnel.ID {
		t.Errorf("tunnel open records %v", opens)
	}
	starts := rec.kind(flow.KindExchangeStart)
	exchanges := rec.kind(flow.KindExchange)
	if len(starts) != 1 || len(exchanges) != 1 {
		t.Fatalf("%d exchange starts, %d exchanges; want one handshake", len(starts), len(exchanges))
	}
	hs := exchanges[0].Exchange
	if hs.ID != starts[0].Exchange.ID || hs.Tunnel != tunnel.ID || hs.Status != 101 || hs.AnsweredBy != "destination" || hs.WebSocket == 0 {
		t.Errorf("handshake %+v", hs)
	}
	if starts[0].Exchange.Status != 0 || starts[0].Exchange.ResponseHeader != nil {
		t.Errorf("an exchange's start must carry the request only: %+v", starts[0].Exchange)
	}
	if hs.RequestHeader.Get("Upgrade") != "websocket" || hs.RequestHeader.Get("Connection") == "" || hs.RequestHeader.Get("Host") == "" {
		t.Errorf("the handshake's request head must be as the client sent it, hop-by-hop fields included: %v", hs.RequestHeader)
	}
	if hs.ResponseHeader.Get("Sec-WebSocket-Accept") == "" || hs.ResponseHeader.Get("Upgrade") != "websocket" {
		t.Errorf("response head %v", hs.ResponseHeader)
	}
	sess := rec.wait(t, flow.KindWSClose, 1)[0].Session
	open := rec.kind(flow.KindWSOpen)
	if len(open) != 1 || open[0].Session.ID != hs.WebSocket || open[0].Session.Exchange != hs.ID || open[0].Session.Tunnel != tunnel.ID || open[0].Session.Path != "tunnel" {
		t.Errorf("session open %v, handshake %+v", open, hs)
	}
	if sess.ID != hs.WebSocket || !sess.CloseHandshake || sess.Code != 1000 || sess.Reason != "bye" || sess.ClosedBy != "client" || sess.ClientMessages != 3 {
		t.Errorf("session close %+v", sess)
	}
	msgs := rec.kind(flow.KindWSMessage)
	want := []struct {
		from    flow.Side
		op      flow.Opcode
		payload string
	}{
		{flow.FromClient, flow.OpText, "hell"}, {flow.FromServer, flow.OpText, "hell"},
		{flow.FromClient, flow.OpText, "h\xc3\xa9l"}, {flow.FromServer, flow.OpText, "h\xc3\xa9l"},
		{flow.FromClient, flow.OpClose, "\x03\xe8by"}, {flow.FromServer, flow.OpClose, "\x03\xe8"},
	}
	if len(msgs) != len(want) {
		t.Fatalf("%d messages, want %d: %v", len(msgs), len(want), msgs)
	}
	for i, w := range want {
		m := msgs[i].Message
		if m.Session != sess.ID || m.Seq != uint64(i+1) || m.Tunnel != tunnel.ID || m.From != w.from || m.Opcode != w.op ||
			string(m.Payload) != w.payload || m.Action != "pass" || m.Client != sess.Client {
			t.Errorf("message %d: %+v, want %v", i, m, w)
		}
	}
}

// A forwarded POST: the record has both heads as the client sent and got
// them, the first bytes of both bodies with the whole length and a hash,
// and nothing of the bodies for an observer that did not ask.
func TestFlowRecordsForwardedExchange(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Origin", "yes")
		_, _ = w.Write(b)
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	withBodies := px.record(flow.Options{BodyBytes: 16})
	body := bytes.Repeat([]byte("0123456789"), 10000)
	req, _ := http.NewRequest(http.MethodPost, origin.URL+"/echo?q=1", bytes.NewReader(body))
	req.Header.Set("Connection", "keep-alive, X-Hop")
	req.Header.Set("X-Hop", "1")
	resp, err := px.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, resp); got != string(body) {
		t.Fatalf("echo of %d bytes came back as %d", len(body), len(got))
	}
	x := withBodies.wait(t, flow.KindExchange, 1)[0].Exchange
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	if x.Method != "POST" || x.URL != origin.URL+"/echo?q=1" || x.Status != 200 || x.AnsweredBy != "destination" || x.Error != "" || x.Tunnel != 0 {
		t.Errorf("exchange %+v", x)
	}
	if x.RequestHeader.Get("X-Hop") != "1" || !strings.Contains(x.RequestHeader.Get("Connection"), "X-Hop") {
		t.Errorf("request head must keep the client's hop-by-hop fields: %v", x.RequestHeader)
	}
	if x.ResponseHeader.Get("X-Origin") != "yes" || x.ResponseHeader.Get("Via") == "" {
		t.Errorf("response head must be as the client got it: %v", x.ResponseHeader)
	}
	for name, b := range map[string]flow.Body{"request": x.RequestBody, "response": x.ResponseBody} {
		if string(b.Data) != string(body[:16]) || b.Len != int64(len(body)) || !b.Truncated || b.SHA256 != digest {
			t.Errorf("%s body %q, %d bytes, truncated %v, sha256 %s; want the first 16 of %d bytes and %s",
				name, b.Data, b.Len, b.Truncated, b.SHA256, len(body), digest)
		}
	}
	if x.FirstByte <= 0 || x.FirstByte > x.Duration {
		t.Errorf("first byte after %s of %s", x.FirstByte, x.Duration)
	}
}

// Without an observer asking for bodies, none is kept.
func TestFlowRecordsKeepNoBodyUnasked(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello"))
	}))
	defer origin.Close()
	px := startProxy(t, nil)
	rec := px.record(flow.Options{})
	resp, err := px.client().Get(origin.URL)
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	x := rec.wait(t, flow.KindExchange, 1)[0].Exchange
	if x.ResponseBody.Data != nil || x.ResponseBody.SHA256 != "" || x.ResponseBody.Len != 5 {
		t.Errorf("response body %+v", x.ResponseBody)
	}
}

// A refusal names the flow it refused: the exchange for a request, an ID
// of its own for a CONNECT.
func TestFlowRecordsDenials(t *testing.T) {
	pol := policy.New()
	pol.Deny = append(pol.Deny, mustPattern(t, "blocked.test"))
	px := startProxy(t, &proxy.Options{Policy: pol})
	rec := px.record(flow.Options{})
	resp, _, _ := px.rawRequest("GET http://blocked.test/x HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
	hostBody := readBody(t, resp)
	resp, _, _ = px.rawRequest("CONNECT example.com:25 HTTP/1.1\r\nHost: example.com:25\r\n\r\n")
	connectBody := readBody(t, resp)

	denials := rec.wait(t, flow.KindDenial, 2)
	x := rec.wait(t, flow.KindExchange, 1)[0].Exchange
	if d := denials[0].Denial; d.Flow != x.ID || d.Rule != "deny-host=blocked.test" || d.Status != 403 {
		t.Errorf("denial %+v of exchange %+v", d, x)
	}
	if x.AnsweredBy != "proxy" || x.Status != 403 || x.ResponseBody.Len == 0 {
		t.Errorf("refused exchange %+v", x)
	}
	if d := denials[1].Denial; d.Flow == 0 || d.Flow == x.ID || d.Method != "CONNECT" || d.Target != "example.com:25" {
		t.Errorf("CONNECT denial %+v", d)
	}
	// Each record says how to allow it, in the words the client was told.
	for i, want := range []struct{ hint, body string }{
		{"To allow it, remove the rule --deny-host blocked.test.", hostBody},
		{"To allow it, start hopscope with --connect-ports 443,25.", connectBody},
	} {
		if d := denials[i].Denial; d.Hint != want.hint || !strings.Contains(want.body, d.Hint) {
			t.Errorf("denial %d hint %q, want %q, as in the answer %q", i, d.Hint, want.hint, want.body)
		}
	}
	if n := len(rec.kind(flow.KindExchange)); n != 1 {
		t.Errorf("%d exchanges; a refused CONNECT to the proxy is a denial only", n)
	}
}

// Inside a bumped tunnel: the exchange is marked bumped and names its
// tunnel, which opens only once the TLS handshake has told its SNI.
func TestFlowRecordsBumpedExchange(t *testing.T) {
	w := newTLSWorld(t, policy.BumpRules{All: true}, hello("secret page"))
	rec := w.px.record(flow.Options{BodyBytes: 64})
	c, tr := w.client(t, w.clientCAs, true)
	resp, err := c.Get(w.url("localhost", "/inside"))
	if err != nil {
		t.Fatal(err)
	}
	readBody(t, resp)
	tr.CloseIdleConnections()
	tunnel := rec.wait(t, flow.KindTunnel, 1)[0].Tunnel
	open := rec.kind(flow.KindTunnelOpen)
	if len(open) != 1 || open[0].Tunnel.Mode != "bump" || open[0].Tunnel.SNI != "localhost" || open[0].Tunnel.ID != tunnel.ID {
		t.Errorf("tunnel open %v", open)
	}
	x := rec.wait(t, flow.KindExchange, 1)[0].Exchange
	if !x.Bumped || x.Tunnel != tunnel.ID || x.URL != w.url("localhost", "/inside") || string(x.ResponseBody.Data) != "secret page" {
		t.Errorf("bumped exchange %+v in tunnel %+v", x, tunnel)
	}
}

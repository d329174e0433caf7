package store_test

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/proxytest"
	"github.com/hopscope/hopscope/store"
)

// echo serves /api with JSON and /ws as a WebSocket echo.
func echo(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/ws" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"answer":42}`)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, p, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, p); err != nil {
			return
		}
	}
}

// TestStoreShowsRealProxyTraffic sends traffic of every kind through a
// real proxy, feeds the records it published to a store, and checks the
// list, the filters and the messages a person would see in the UI.
func TestStoreShowsRealProxyTraffic(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(echo))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(echo))
	defer secure.Close()
	_, securePort, _ := net.SplitHostPort(secure.Listener.Addr().String())
	px := proxytest.Start(t,
		proxytest.WithMITM(),
		proxytest.WithUpstreamCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw})),
		proxytest.WithRules(policy.WSRuleSpec{Name: "no-secrets", Match: policy.WSMatchSpec{From: "client", Contains: "secret"}, Action: "drop"}),
		proxytest.WithFault("ws-delay=1ms,from=server,url=ws://*"),
		proxytest.WithConfig(func(c *config.Config) { c.ConnectPorts = securePort }),
	)
	client := px.Client()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: px.CertPool()}

	resp, err := client.Get(plain.URL + "/api?q=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	talk := func(url string, msgs ...string) {
		t.Helper()
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		for _, m := range msgs {
			if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(m, "secret") { // a dropped message has no echo
				if _, _, err := c.Read(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		c.Close(websocket.StatusNormalClosure, "done")
	}
	talk("wss://"+strings.TrimPrefix(secure.URL, "https://")+"/ws", "hello bumped", "my secret", "bye")
	talk("ws://"+strings.TrimPrefix(plain.URL, "http://")+"/ws", "hello plain")

	if _, err := px.Dialer().DialContext(ctx, "tcp", "127.0.0.1:1"); !errors.Is(err, proxytest.ErrRefused) {
		t.Fatalf("CONNECT to a port not allowed: %v", err)
	}
	px.WaitFor(t, proxytest.IsDenial("127.0.0.1:1"), 10*time.Second)
	waitCloses(t, px, 2)
	px.WaitFor(t, proxytest.IsKind(flow.KindTunnel), 10*time.Second)

	st := store.New(store.Options{})
	st.Observe(px.Flows())
	find := func(filter string) []store.Summary {
		t.Helper()
		p, err := st.List(store.Query{Filter: filter})
		if err != nil {
			t.Fatal(err)
		}
		return p.Flows
	}

	if f := find("type:http path:/api"); len(f) != 1 || f[0].Status != 200 || f[0].Method != "GET" || f[0].Size != int64(len(`{"answer":42}`)) {
		t.Errorf("the GET: %+v", f)
	}
	if f := find("body:answer"); len(f) != 1 {
		t.Errorf("body search found %d flows", len(f))
	}
	ws := find("type:websocket")
	if len(ws) != 2 {
		t.Fatalf("%d WebSocket flows, want 2: %+v", len(ws), find(""))
	}
	if f := find("url:wss://"); len(f) != 1 {
		t.Errorf("url:wss:// found %+v", f)
	}
	bumped := find("type:websocket ~bumped")
	if len(bumped) != 1 || bumped[0].Tunnel == 0 || bumped[0].Open {
		t.Fatalf("the wss session: %+v", bumped)
	}
	tun, ok := st.Get(bumped[0].Tunnel)
	if !ok || tun.Type != store.TypeBumped || tun.TunnelRecord == nil || tun.TunnelRecord.SNI == "" && tun.TunnelRecord.Host == "" {
		t.Errorf("the session's tunnel: %v %+v", ok, tun.Summary)
	}
	if f := find(`msg:"hello bumped"`); len(f) != 1 || f[0].ID != bumped[0].ID {
		t.Errorf("message search: %+v", f)
	}
	if f := find("~dropped"); len(f) != 1 || f[0].ID != bumped[0].ID || f[0].Dropped != 1 {
		t.Errorf("~dropped: %+v", f)
	}
	page, _, err := st.Messages(bumped[0].ID, store.MessageQuery{Text: "secret"})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Action != "drop" || page.Messages[0].Rule != "no-secrets" || page.Messages[0].From != "client" {
		t.Errorf("the dropped message: %+v %v", page.Messages, err)
	}
	all, _, _ := st.Messages(bumped[0].ID, store.MessageQuery{Type: "data"})
	var seen []string
	for _, m := range all.Messages {
		seen = append(seen, m.From+":"+string(m.Payload))
	}
	if want := "client:hello bumped server:hello bumped client:my secret client:bye server:bye"; strings.Join(seen, " ") != want {
		t.Errorf("the session's messages:\n got %s\nwant %s", strings.Join(seen, " "), want)
	}
	if f := find("~fault"); len(f) == 0 {
		t.Error("no flow shows the ws-delay fault")
	}
	denied := find("type:denied")
	if len(denied) != 1 || denied[0].Status != 403 || !strings.Contains(denied[0].Rule, "connect-ports") || denied[0].Method != "CONNECT" {
		t.Errorf("the refused CONNECT: %+v", denied)
	}
	for _, f := range find("") {
		t.Logf("%-9s %-7s %-40s %3d size %d msgs %d faults %d", f.Type, f.Method, f.URL, f.Status, f.Size, f.Messages, f.Faults)
	}
	if s := st.Stats(); s.Orphans != 0 {
		t.Errorf("%d records the store could not place", s.Orphans)
	}
}

func waitCloses(t *testing.T, px *proxytest.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		closes := 0
		for _, r := range px.Flows() {
			if r.Kind == flow.KindWSClose {
				closes++
			}
		}
		if closes >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d WebSocket closes published", n)
}

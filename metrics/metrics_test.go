package metrics_test

import (
	"bufio"
	"context"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/hopscope/hopscope/config"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/metrics"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scrape fetches the handler over HTTP, as Prometheus does, and returns
// each sample by its exposition key (name{label="v",...}, labels sorted).
func scrape(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("Content-Type %q", ct)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cut := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[cut+1:], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		out[line[:cut]] = v
	}
	return out
}

// waitMetric waits until sample key reaches want: records reach the
// metrics on the bus's goroutine, just after the client has its answer.
func waitMetric(t *testing.T, m *metrics.Metrics, key string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, ok := scrape(t, m)[key]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (present %v), want %v", key, got, ok, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func atLeast(t *testing.T, m *metrics.Metrics, key string, min float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got := scrape(t, m)[key]; got >= min {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want at least %v", key, scrape(t, m)[key], min)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each metric moves when the traffic behind its flow records happens,
// through a real proxy, real clients and real origins.
func TestMetricsMoveWithTraffic(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "twelve bytes")
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "tls")
	}))
	defer tlsOrigin.Close()
	wsOrigin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, p, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, p); err != nil {
				return
			}
		}
	}))
	defer wsOrigin.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	m := metrics.New()
	px := proxytest.Start(t,
		proxytest.WithMITM(),
		proxytest.WithUpstreamCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw})),
		proxytest.WithRules(policy.WSRuleSpec{Name: "no-secrets", Match: policy.WSMatchSpec{Contains: "secret"}, Action: "drop"}),
		proxytest.WithFault("ws-duplicate=1,from=server"),
		proxytest.WithConfig(func(c *config.Config) { c.DenyHost = []string{"denied.example"} }),
		proxytest.WithBus(func(b *flow.Bus) { m.Subscribe(b) }),
	)
	c := px.Client()
	get := func(url string) *http.Response {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp
	}

	// Forwarded exchanges, their bodies and latencies.
	get(origin.URL + "/a")
	resp, err := c.Post(origin.URL+"/b", "text/plain", strings.NewReader("seven b"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitMetric(t, m, `hopscope_http_requests_total{code="200",decision="forwarded",method="GET"}`, 1)
	waitMetric(t, m, `hopscope_http_requests_total{code="200",decision="forwarded",method="POST"}`, 1)
	waitMetric(t, m, `hopscope_http_body_bytes_total{direction="up"}`, 7)
	waitMetric(t, m, `hopscope_http_body_bytes_total{direction="down"}`, 24)
	waitMetric(t, m, `hopscope_http_request_duration_seconds_count`, 2)
	waitMetric(t, m, `hopscope_http_first_byte_seconds_count`, 2)

	// A refusal, and a destination that is not there.
	if resp := get("http://denied.example/"); resp.StatusCode != 403 {
		t.Fatalf("denied host: %d", resp.StatusCode)
	}
	waitMetric(t, m, `hopscope_http_requests_total{code="403",decision="denied",method="GET"}`, 1)
	waitMetric(t, m, `hopscope_rule_hits_total{kind="policy",rule="deny-host=denied.example"}`, 1)
	get("http://" + closedAddr + "/")
	waitMetric(t, m, `hopscope_http_requests_total{code="502",decision="error",method="GET"}`, 1)
	waitMetric(t, m, `hopscope_upstream_errors_total{reason="connection_refused"}`, 1)

	// Tunnels: denied, failed, and one held open to see the gauge.
	connect := func(target string) (net.Conn, string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", px.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(conn, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
		status, _ := bufio.NewReader(conn).ReadString('\n')
		return conn, status
	}
	conn, status := connect("denied.example:443")
	conn.Close()
	if !strings.Contains(status, "403") {
		t.Fatalf("CONNECT to a denied host: %q", status)
	}
	waitMetric(t, m, `hopscope_tunnels_total{mode="denied"}`, 1)
	conn, _ = connect(closedAddr)
	conn.Close()
	waitMetric(t, m, `hopscope_tunnels_total{mode="failed"}`, 1)
	waitMetric(t, m, `hopscope_upstream_errors_total{reason="connection_refused"}`, 2)
	originAddr := strings.TrimPrefix(origin.URL, "http://")
	conn, status = connect(originAddr)
	if !strings.Contains(status, "200") {
		t.Fatalf("CONNECT: %q", status)
	}
	_, _ = io.WriteString(conn, "\x00 not HTTP, so the tunnel is spliced\r\n")
	waitMetric(t, m, `hopscope_tunnels_active`, 1)
	conn.Close()
	waitMetric(t, m, `hopscope_tunnels_active`, 0)
	waitMetric(t, m, `hopscope_tunnels_total{mode="splice"}`, 1)
	atLeast(t, m, `hopscope_tunnel_bytes_total{direction="up"}`, 30)
	atLeast(t, m, `hopscope_tunnel_dial_duration_seconds_count`, 2)

	// Bumped tunnels: the first mints the leaf, the second finds it.
	get(tlsOrigin.URL + "/one")
	c.CloseIdleConnections()
	get(tlsOrigin.URL + "/two")
	c.CloseIdleConnections()
	waitMetric(t, m, `hopscope_tunnels_total{mode="bump"}`, 2)
	waitMetric(t, m, `hopscope_leaf_cache_total{result="miss"}`, 1)
	waitMetric(t, m, `hopscope_leaf_cache_total{result="hit"}`, 1)

	// A WebSocket: the gauge, messages by action, a rule, a fault.
	wsClient := &http.Client{Transport: &http.Transport{DialContext: px.Dialer().DialContext}}
	ws, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(wsOrigin.URL, "http")+"/echo", &websocket.DialOptions{HTTPClient: wsClient})
	if err != nil {
		t.Fatal(err)
	}
	waitMetric(t, m, `hopscope_websockets_active`, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = ws.Write(ctx, websocket.MessageText, []byte("a secret"))
	_ = ws.Write(ctx, websocket.MessageText, []byte("hello"))
	for range 2 { // the echo, and its duplicate
		if _, p, err := ws.Read(ctx); err != nil || string(p) != "hello" {
			t.Fatalf("echo %q %v", p, err)
		}
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	waitMetric(t, m, `hopscope_websockets_active`, 0)
	waitMetric(t, m, `hopscope_ws_messages_total{action="drop",direction="client",opcode="text"}`, 1)
	atLeast(t, m, `hopscope_ws_messages_total{action="pass",direction="server",opcode="text"}`, 1)
	waitMetric(t, m, `hopscope_rule_hits_total{kind="websocket",rule="no-secrets"}`, 1)
	atLeast(t, m, `hopscope_faults_total{fault="ws-duplicate"}`, 1)
	wsClient.CloseIdleConnections()
	c.CloseIdleConnections()

	if got := scrape(t, m)[`hopscope_metrics_records_dropped_total`]; got != 0 {
		t.Errorf("dropped %v records", got)
	}
}

// What no traffic test reaches easily, fed as records: protocol
// violations, hopscope's own pages, and a long run of refused tunnels
// (whose IDs have no exchange) not mistaken for later refusals.
func TestMetricsFromRecords(t *testing.T) {
	m := metrics.New()
	m.Observe([]flow.Record{
		{Kind: flow.KindWSViolation, Violation: &flow.WSViolation{Side: flow.FromClient}},
		{Kind: flow.KindExchange, Exchange: &flow.Exchange{ID: 1, Method: "GET", Status: 200, AnsweredBy: "proxy"}},
		{Kind: flow.KindTunnel, Tunnel: &flow.Tunnel{ID: 2, Status: 504, ErrorType: "connection_timeout"}},
		{Kind: flow.KindExchange, Exchange: &flow.Exchange{ID: 3, Method: "X-RANDOM-1", Status: 200, AnsweredBy: "destination"}},
	})
	for i := range 10000 {
		m.Observe([]flow.Record{{Kind: flow.KindDenial, Denial: &flow.Denial{Flow: flow.ID(100 + i), Method: "CONNECT", Rule: "connect-ports=443"}}})
	}
	m.Observe([]flow.Record{{Kind: flow.KindExchange, Exchange: &flow.Exchange{ID: 100, Method: "GET", Status: 400, AnsweredBy: "proxy"}}})
	got := scrape(t, m)
	for key, want := range map[string]float64{
		`hopscope_ws_violations_total{side="client"}`:                                1,
		`hopscope_http_requests_total{code="200",decision="local",method="GET"}`:     1,
		`hopscope_tunnels_total{mode="failed"}`:                                      1,
		`hopscope_upstream_errors_total{reason="connection_timeout"}`:                1,
		`hopscope_tunnels_total{mode="denied"}`:                                      10000,
		`hopscope_rule_hits_total{kind="policy",rule="connect-ports=443"}`:           10000,
		`hopscope_http_requests_total{code="400",decision="local",method="GET"}`:     1,
		`hopscope_tunnels_active`:                                                    0,
		`hopscope_http_requests_total{code="200",decision="forwarded",method="GET"}`: 0,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got[`go_goroutines`]; !ok {
		t.Error("no Go runtime metrics")
	}
}

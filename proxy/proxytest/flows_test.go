package proxytest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// A test sees the exchange as typed records: both heads, the body, who
// answered, and the start before the end.
func TestFlowsShowTheExchange(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer origin.Close()
	px := proxytest.Start(t)
	req, _ := http.NewRequest(http.MethodGet, origin.URL+"/api", nil)
	req.Header.Set("X-Trace", "abc")
	resp, err := px.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	x := px.WaitFor(t, proxytest.IsExchange("GET", origin.URL+"/api"), 10*time.Second).Exchange
	if x.Status != 200 || x.AnsweredBy != "destination" || x.RequestHeader.Get("X-Trace") != "abc" ||
		x.ResponseHeader.Get("Content-Type") != "application/json" || string(x.ResponseBody.Data) != `{"ok":true}` {
		t.Errorf("exchange %s", proxytest.Describe(flow.Record{Kind: flow.KindExchange, Exchange: x}))
	}
	var kinds []flow.Kind
	for _, r := range px.Flows() {
		if (r.Kind == flow.KindExchangeStart || r.Kind == flow.KindExchange) && r.Exchange.ID == x.ID {
			kinds = append(kinds, r.Kind)
		}
	}
	if len(kinds) != 2 || kinds[0] != flow.KindExchangeStart || kinds[1] != flow.KindExchange {
		t.Errorf("records of the exchange: %v, want its start and its end", kinds)
	}
}

// Describe shows what every kind of record carries, for failure messages;
// a record it did not know would print as "<nil>" and hide the cause.
func TestDescribeShowsEveryKind(t *testing.T) {
	for _, tc := range []struct {
		rec  flow.Record
		want string
	}{
		{flow.Record{Kind: flow.KindExchangeStart, Exchange: &flow.Exchange{URL: "http://a.test/x"}}, "http://a.test/x"},
		{flow.Record{Kind: flow.KindExchange, Exchange: &flow.Exchange{URL: "http://a.test/y"}}, "http://a.test/y"},
		{flow.Record{Kind: flow.KindTunnelOpen, Tunnel: &flow.Tunnel{Host: "t.test"}}, "t.test"},
		{flow.Record{Kind: flow.KindTunnel, Tunnel: &flow.Tunnel{Host: "u.test"}}, "u.test"},
		{flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Rule: "connect-ports"}}, "connect-ports"},
		{flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Fault: "ws-drop"}}, "ws-drop"},
		{flow.Record{Kind: flow.KindWSOpen, Session: &flow.WSSession{URL: "ws://o.test/"}}, "ws://o.test/"},
		{flow.Record{Kind: flow.KindWSClose, Session: &flow.WSSession{Reason: "bye"}}, "bye"},
		{flow.Record{Kind: flow.KindWSMessage, Message: flow.WSMessage{Payload: []byte("hello")}}, `payload "hello"`},
		{flow.Record{Kind: flow.KindWSViolation, Violation: &flow.WSViolation{Violation: "reserved opcode"}}, "reserved opcode"},
		{flow.Record{Kind: flow.KindIntercept, Intercept: &flow.Intercept{Breakpoint: "api-calls"}}, "api-calls"},
	} {
		if got := proxytest.Describe(tc.rec); !strings.Contains(got, tc.want) {
			t.Errorf("Describe(%s record) = %q, want it to show %q", tc.rec.Kind, got, tc.want)
		}
	}
}

package proxytest_test

import (
	"io"
	"net/http"
	"net/http/httptest"
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

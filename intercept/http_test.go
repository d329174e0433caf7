package intercept_test

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/intercept"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// httpOrigin records what reached it and answers with the body it got.
type httpOrigin struct {
	mu   sync.Mutex
	seen []string
}

func (o *httpOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	o.mu.Lock()
	o.seen = append(o.seen, r.Method+" "+r.URL.Path+" "+string(body)+" x-edited="+r.Header.Get("X-Edited"))
	o.mu.Unlock()
	io.WriteString(w, "origin says "+string(body))
}

func (o *httpOrigin) requests() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

type answer struct {
	status int
	body   string
	err    error
}

// A request paused before it goes upstream is edited or answered by the
// person; an answer paused before the client is changed; each is a flow
// record with the before and after. On the forward and bumped paths.
func TestHTTPBreakpoints(t *testing.T) {
	for _, path := range []string{"forward", "bump"} {
		t.Run(path, func(t *testing.T) {
			engine, err := intercept.New(intercept.Options{Timeout: -1, HTTPBreakpoints: []intercept.HTTPBreakpointSpec{
				{Name: "api", Method: "POST", URL: "*/api/*"},
				{Name: "local", URL: "*/local"},
				{Name: "answers", Stage: "response", URL: "*/resp"},
			}})
			if err != nil {
				t.Fatal(err)
			}
			o := &httpOrigin{}
			var origin *httptest.Server
			opts := []proxytest.Option{proxytest.WithInterceptor(engine)}
			if path == "bump" {
				origin = httptest.NewTLSServer(o)
				opts = append(opts, proxytest.WithMITM(), proxytest.WithUpstreamCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: origin.Certificate().Raw})))
			} else {
				origin = httptest.NewServer(o)
			}
			defer origin.Close()
			px := proxytest.Start(t, opts...)
			client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(px.URL()), TLSClientConfig: &tls.Config{RootCAs: px.CertPool()}}, Timeout: 20 * time.Second}
			defer client.CloseIdleConnections()
			w := &world{engine: engine, px: px, api: httptest.NewServer(engine.Handler())}
			defer w.api.Close()

			do := func(method, path, body string) chan answer {
				ch := make(chan answer, 1)
				go func() {
					req, _ := http.NewRequest(method, origin.URL+path, strings.NewReader(body))
					resp, err := client.Do(req)
					if err != nil {
						ch <- answer{err: err}
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ch <- answer{status: resp.StatusCode, body: string(b)}
				}()
				return ch
			}
			got := func(ch chan answer) answer {
				t.Helper()
				select {
				case a := <-ch:
					if a.err != nil {
						t.Fatal(a.err)
					}
					return a
				case <-time.After(15 * time.Second):
					t.Fatal("no answer")
					return answer{}
				}
			}

			ch := do("POST", "/api/order", `{"a":1}`)
			p := w.paused(t)
			if p["kind"] != "request" || p["text"] != `{"a":1}` || p["method"] != "POST" || p["editable"] != true {
				t.Fatalf("paused request %v", p)
			}
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "json": `{"a":`}, http.StatusConflict, nil)
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "json": `{"a":2}`,
				"header": map[string][]string{"Content-Type": {"application/json"}, "X-Edited": {"yes"}}}, http.StatusOK, nil)
			if a := got(ch); a.status != 200 || a.body != `origin says {"a":2}` {
				t.Fatalf("edited request answered %d %q", a.status, a.body)
			}
			if seen := o.requests(); len(seen) != 1 || seen[0] != `POST /api/order {"a":2} x-edited=yes` {
				t.Fatalf("origin saw %q", seen)
			}

			ch = do("GET", "/local", "")
			p = w.paused(t)
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "respond", "status": 418, "text": "answered by hand"}, http.StatusOK, nil)
			if a := got(ch); a.status != 418 || a.body != "answered by hand" {
				t.Fatalf("local answer %d %q", a.status, a.body)
			}
			if seen := o.requests(); len(seen) != 1 {
				t.Fatalf("the locally answered request reached the origin: %q", seen)
			}

			ch = do("GET", "/resp", "")
			p = w.paused(t)
			if p["kind"] != "response" || p["status"].(float64) != 200 || p["text"] != "origin says " {
				t.Fatalf("paused answer %v", p)
			}
			w.call(t, "POST", decision(p["id"]), map[string]any{"action": "edit", "status": 201, "text": "changed"}, http.StatusOK, nil)
			if a := got(ch); a.status != 201 || a.body != "changed" {
				t.Fatalf("edited answer %d %q", a.status, a.body)
			}

			rec := px.WaitFor(t, func(r flow.Record) bool {
				return r.Kind == flow.KindIntercept && r.Intercept.Stage == "request" && r.Intercept.Action == "edit"
			}, 5*time.Second).Intercept
			if rec.Actor != "person" || rec.Breakpoint != "api" || string(rec.Before.Body) != `{"a":1}` || string(rec.After.Body) != `{"a":2}` || rec.After.Header.Get("X-Edited") != "yes" || rec.Exchange == 0 {
				t.Errorf("intercept record %+v", rec)
			}
			local := px.WaitFor(t, proxytest.IsExchange("GET", origin.URL+"/local"), 5*time.Second).Exchange
			if local.AnsweredBy != "proxy" || local.Status != 418 {
				t.Errorf("locally answered exchange: by %s status %d", local.AnsweredBy, local.Status)
			}
			px.WaitFor(t, proxytest.IsExchange("GET", origin.URL+"/resp"), 5*time.Second)

			// HAR shows each intercept under _hopscope.
			h := harOf(t, px.Flows())
			found := map[string]string{}
			for _, e := range h.Log.Entries {
				if e.X != nil {
					for _, i := range e.X.Intercepts {
						found[e.Request.URL] = i.Stage + " " + i.Action + " " + i.Actor + " " + i.After.Text
					}
				}
			}
			want := map[string]string{
				origin.URL + "/api/order": `request edit person {"a":2}`,
				origin.URL + "/local":     "request respond person answered by hand",
				origin.URL + "/resp":      "response edit person changed",
			}
			for u, w := range want {
				if found[u] != w {
					t.Errorf("HAR intercept of %s: %q, want %q", u, found[u], w)
				}
			}
		})
	}
}

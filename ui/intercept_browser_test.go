package ui

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/intercept"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
	"github.com/hopscope/hopscope/store"
)

// chatPage sends one message on a ws:// session and puts what comes back
// in its title.
const chatPage = `<!doctype html><title>waiting</title><body>
<script>
const ws = new WebSocket("ws://127.0.0.1:PLAIN/echo");
ws.onopen = () => ws.send("please pause me");
ws.onmessage = (e) => { document.title = "got: " + e.data; ws.close(1000, "done"); };
ws.onerror = () => { document.title = "failed"; };
</script>`

// interceptWorld is hopscope with an interception engine and the UI that
// controls it, an origin serving mux, and a browser using the proxy: the
// UI's tab (live) and the page's tab.
func interceptWorld(t *testing.T, ctx context.Context, opts intercept.Options, mux *http.ServeMux) (origin *httptest.Server, uiTab, pageTab context.Context) {
	t.Helper()
	engine, err := intercept.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	origin = httptest.NewServer(mux)
	t.Cleanup(origin.Close)
	st := store.New(store.Options{})
	web, err := New(Options{Source: StoreSource(st), HAR: StoreHAR(st, "test"), Hosts: []string{"hopscope.ui"}, Intercept: engine.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := certs.LoadOrCreate(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	srv, err := proxy.New(&proxy.Options{Policy: pol, CA: ca, Issuer: mitm.NewIssuer(ca, mitm.IssuerOptions{}),
		UpstreamTLS: &tls.Config{}, UI: web, Interceptor: engine}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st.Attach(srv.Flows())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		web.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		<-served
	})
	browser := startBrowser(t, ctx, browserOptions{Proxy: ln.Addr().String()})
	pageTab = browser
	uiTab = newTab(t, browser)
	do(t, uiTab, "opening the UI", chromedp.Navigate(web.URL("http://hopscope.ui")))
	// The token link redirects to the page: wait until the page that
	// stays is there, so that no poll below runs in one that went away.
	do(t, uiTab, "the UI page is ready", chromedp.WaitReady("#live"))
	eventually(t, uiTab, "the UI is live", `document.querySelector("#live").classList.contains("on")`)
	eventually(t, uiTab, "the interception controls are there", `(() => { const e = document.querySelector("#ix-toggle"); return !!e && !e.hidden; })()`)
	return origin, uiTab, pageTab
}

// A person pauses a page's WebSocket message in the UI, edits it and
// forwards it; the page receives the server's answer to the edited text.
func TestBrowserEditsAPausedMessage(t *testing.T) {
	chromiumPath(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		_, port, _ := net.SplitHostPort(r.Host)
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(rw, strings.ReplaceAll(chatPage, "PLAIN", port))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	origin, uiTab, pageTab := interceptWorld(t, ctx, intercept.Options{Timeout: 30 * time.Second, Breakpoints: []intercept.BreakpointSpec{
		{Name: "pause-me", Match: policy.WSMatchSpec{From: "client", Contains: "pause me"}},
	}}, mux)

	do(t, pageTab, "opening the chat page", chromedp.Navigate(origin.URL+"/"))
	eventually(t, uiTab, "the message is paused in the UI", `(() => { const c = document.querySelector(".ix-card"); return !!c && c.querySelector(".ix-body").value === "please pause me"; })()`)
	eventually(t, uiTab, "the countdown runs", `/^\d+s left$/.test((document.querySelector(".ix-countdown") || {}).textContent)`)
	screenshot(t, uiTab, "intercept-paused")
	do(t, uiTab, "editing the message",
		chromedp.SetValue(".ix-card .ix-body", "edited in the UI"),
		chromedp.Click(".ix-card .ix-edit"))
	eventually(t, pageTab, "the page receives the answer to the edited text", `document.title === "got: echo: edited in the UI"`)
	eventually(t, uiTab, "the card is gone", `!document.querySelector(".ix-card")`)
}

// pricePage fetches a price and shows it in its title.
const pricePage = `<!doctype html><title>waiting</title><body>
<script>
fetch("/api/price").then(r => r.json()).then(p => { document.title = "price " + p.price; }, () => { document.title = "failed"; });
</script>`

// A person sets an HTTP breakpoint in the panel and changes an answer
// before it reaches the page: the page shows the edited body.
func TestBrowserEditsAPausedAnswer(t *testing.T) {
	chromiumPath(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/api/price", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(rw, `{"price":100}`)
	})
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(rw, pricePage)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	origin, uiTab, pageTab := interceptWorld(t, ctx, intercept.Options{Timeout: 30 * time.Second}, mux)

	// The breakpoint is set in the panel.
	do(t, uiTab, "setting an HTTP breakpoint",
		chromedp.Click("#ix-toggle"),
		chromedp.SetValue("#ix-hbp-stage", "response"),
		chromedp.SetValue("#ix-hbp-url", "*/api/price"),
		chromedp.Click("#ix-hbp-add"))
	eventually(t, uiTab, "the breakpoint is listed", `document.querySelector("#ix-http-bps").innerText.includes("response · any method · */api/price")`)

	do(t, pageTab, "opening the shop page", chromedp.Navigate(origin.URL+"/"))
	eventually(t, uiTab, "the answer is paused in the UI", `(() => { const c = document.querySelector(".ix-card"); return !!c && c.querySelector(".ix-body").value === '{"price":100}'; })()`)
	do(t, uiTab, "editing the answer",
		chromedp.SetValue(".ix-card .ix-body", `{"price":1}`),
		chromedp.Click(".ix-card .ix-edit"))
	eventually(t, pageTab, "the page shows the edited price", `document.title === "price 1"`)
}

package proxy_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// chromiumPage loads a page over HTTPS and, from it, a wss:// WebSocket to
// the same origin, then reports what the browser saw to /report.
const chromiumPage = `<!doctype html><title>h2 and WebSocket through the bump</title><script>
const nav = performance.getEntriesByType("navigation")[0];
const report = (r) => fetch("/report?r=" + encodeURIComponent(r + ";page=" + nav.nextHopProtocol));
const ws = new WebSocket("wss://" + location.host + "/ws");
ws.onopen = () => ws.send("hi");
ws.onmessage = (e) => report("echo=" + e.data);
ws.onerror = () => report("ws-error");
</script>`

// Chromium through the bump, with hopscope as its HTTP proxy and as its
// SOCKS5 proxy: the page over HTTP/2, as without hopscope, and its
// WebSocket on an HTTP/1.1 connection of its own (no extended CONNECT),
// relayed frame by frame.
func TestChromiumHTTP2AndWebSocketThroughBump(t *testing.T) {
	for _, via := range []string{"http", "socks5"} {
		t.Run(via, func(t *testing.T) { chromiumThroughBump(t, via) })
	}
}

func chromiumThroughBump(t *testing.T, via string) {
	chromium := chromiumPath(t)
	reports := make(chan string, 4)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, chromiumPage)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		typ, p, err := c.Read(ctx)
		if err == nil {
			_ = c.Write(ctx, typ, p)
		}
		_, _, _ = c.Read(ctx) // until the browser goes
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
		reports <- r.URL.Query().Get("r")
	})
	mux.HandleFunc("/favicon.ico", http.NotFound)
	// Chromium's own background requests (clients2.google.com and the
	// like) come through the proxy too: only localhost is allowed, so they
	// are refused by name before any lookup, and names resolve in process.
	w := newTLSWorldWith(t, policy.BumpRules{All: true}, mux, func(o *proxy.Options) {
		o.Policy.Allow = []policy.HostPattern{mustPattern(t, "localhost")}
		o.Resolver = loopbackResolver()
	})
	proxyURL := "http://" + w.px.addr
	if via == "socks5" {
		proxyURL = "socks5://" + serveSOCKSToo(t, w.px)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(),
		"--proxy-server="+proxyURL, "--proxy-bypass-list=<-loopback>",
		// The browser's trust store is not the test's to change; the
		// leaf's issuer is checked by the Go client tests.
		"--ignore-certificate-errors",
		w.url("localhost", "/"))
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	defer stop()
	var got string
	select {
	case got = <-reports:
	case <-ctx.Done():
		t.Fatalf("Chromium reported nothing; proxy log:\n%s", w.px.logs.String())
	}
	stop() // its connections end, and with them the tunnel events
	if got != "echo=hi;page=h2" {
		t.Errorf("Chromium saw %q, want the echo over the WebSocket and the page over h2", got)
	}
	open := w.px.waitEvent("ws_open", nil)
	if open.str("path") != "bump" {
		t.Errorf("ws_open %v", open)
	}
	w.px.waitEvent("ws_message", func(e event) bool { return e.str("from") == "client" && e.str("preview") == "hi" })
	report := w.px.waitEvent("http", func(e event) bool { return strings.Contains(e.str("url"), "/report") })
	if report.str("proto") != "HTTP/2.0" {
		t.Errorf("the page's exchanges: %v", report)
	}
	for _, alpn := range []string{"h2", "http/1.1"} {
		w.px.waitEvent("tunnel", func(e event) bool { return e.str("mode") == "bump" && e.str("alpn") == alpn })
	}
}

// chromiumPath finds the browser, failing under CI (where .ci/run
// installs it) and skipping elsewhere.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; .ci/run installs it")
	}
	t.Skip("chromium is not installed: apt-get install chromium to run the browser test")
	return ""
}

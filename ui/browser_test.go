package ui

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
	"github.com/hopscope/hopscope/store"
)

// world is hopscope with its store and UI, and the origins a browser
// talks to through it: a plain HTTP one and a TLS one, each with a
// WebSocket echo.
type world struct {
	proxyAddr string
	ui        *Server
	st        *store.Store
	plain     *httptest.Server
	tlsPort   string
	spki      string
}

// echo answers every WebSocket message with "echo: " and the message,
// with permessage-deflate on, as real chat servers do.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify:   true, // the page is on another port of the same host
		CompressionMode:      websocket.CompressionContextTakeover,
		CompressionThreshold: 16,
	})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	for {
		typ, p, err := c.Read(ctx)
		if err != nil {
			return
		}
		if typ == websocket.MessageText {
			p = append([]byte("echo: "), p...)
		}
		if err := c.Write(ctx, typ, p); err != nil {
			return
		}
	}
}

const wssNeedle = "needle-in-wss-7f3a"

// page opens ws:// (a CONNECT tunnel to port 80's stand-in, as browsers
// send it) and wss:// (bumped), exchanges messages on both and says in its
// title when every echo came back.
const page = `<!doctype html><title>running</title><body>
<script>
function session(url, msgs) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    let got = 0;
    ws.onopen = () => { for (const m of msgs) ws.send(m); };
    ws.onmessage = () => { if (++got === msgs.length) ws.close(1000, "done here"); };
    ws.onclose = () => resolve(got);
    ws.onerror = () => reject(new Error("websocket " + url));
  });
}
(async () => {
  const data = await (await fetch("/api/data")).json();
  await fetch("http://blocked.test/track", { mode: "no-cors" }).catch(() => {});
  const a = await session("ws://127.0.0.1:PLAIN/echo", ["hello over plain ws", JSON.stringify({ op: "join", room: "general", user: data.user, padding: "x".repeat(200) })]);
  const b = await session("wss://127.0.0.1:TLS/echo", ["` + wssNeedle + `", new Uint8Array([0, 1, 2, 254, 255])]);
  document.title = "done " + a + " " + b;
})().catch((e) => { document.title = "failed " + e; });
</script>`

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	ca, _, err := certs.LoadOrCreate(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(ca.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	w.spki = base64.StdEncoding.EncodeToString(sum[:])

	originCA, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	originCAs := x509.NewCertPool()
	originCAs.AddCert(originCA.Cert)

	mux := http.NewServeMux()
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/api/data", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(rw)
		_, _ = io.WriteString(gz, `{"user":"ada","rooms":["general","random"],"unread":3}`)
		_ = gz.Close()
	})
	tlsOrigin := httptest.NewUnstartedServer(mux)
	// A fixed certificate: httptest would answer a handshake without SNI
	// (an IP address) with its own.
	leaf, _, err := mitm.NewIssuer(originCA, mitm.IssuerOptions{}).Certificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tlsOrigin.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	tlsOrigin.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsOrigin.StartTLS()
	t.Cleanup(tlsOrigin.Close)
	_, w.tlsPort, _ = net.SplitHostPort(tlsOrigin.Listener.Addr().String())

	plainMux := http.NewServeMux()
	plainMux.Handle("/echo", http.HandlerFunc(echo))
	plainMux.Handle("/api/data", mux)
	plainMux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		_, port, _ := net.SplitHostPort(r.Host)
		rw.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(rw, strings.NewReplacer("PLAIN", port, "TLS", w.tlsPort).Replace(page))
	})
	w.plain = httptest.NewServer(plainMux)
	t.Cleanup(w.plain.Close)

	w.st = store.New(store.Options{})
	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	pol.Bump = policy.BumpRules{All: true}
	blocked, err := policy.ParseHostPattern("blocked.test")
	if err != nil {
		t.Fatal(err)
	}
	pol.Deny = []policy.HostPattern{blocked}
	w.ui, err = New(Options{Source: StoreSource(w.st), HAR: StoreHAR(w.st, "test"), Hosts: []string{"hopscope.ui"}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(&proxy.Options{
		Policy:      pol,
		Issuer:      mitm.NewIssuer(ca, mitm.IssuerOptions{}),
		CA:          ca,
		UpstreamTLS: &tls.Config{RootCAs: originCAs},
		UI:          w.ui,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	w.st.Attach(srv.Flows())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.proxyAddr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		w.ui.Close() // the UI's event streams ride the proxy's connections
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("proxy shutdown: %v", err)
		}
		<-served
	})
	return w
}

// dump lists the store's flows, for a failure message.
func (w *world) dump() string {
	page, _ := w.st.List(store.Query{Limit: 1000})
	var b strings.Builder
	for _, f := range page.Flows {
		fmt.Fprintf(&b, "  %d %s %s %s %d %s %s\n", f.ID, f.Type, f.Method, f.URL, f.Status, f.Error, f.Reason)
	}
	return b.String()
}

// forwardSession is a ws:// session sent in absolute form, as non-browser
// clients do (the "forward" path).
func (w *world) forwardSession(t *testing.T, ctx context.Context) {
	t.Helper()
	proxyURL := &url.URL{Scheme: "http", Host: w.proxyAddr}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	u := strings.Replace(w.plain.URL, "http://", "ws://", 1) + "/echo"
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("forward-path WebSocket: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello on the forward path")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.Read(ctx); err != nil || string(p) != "echo: hello on the forward path" {
		t.Fatalf("forward-path echo %q, %v", p, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A browser uses hopscope as its proxy; a second tab shows, live, the
// page's exchanges, its ws:// and wss:// sessions and their messages,
// finds a message by its text and downloads them as HAR.
func TestBrowserSeesItsOwnTrafficLive(t *testing.T) {
	chromiumPath(t)
	w := newWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	browser := startBrowser(t, ctx, browserOptions{Proxy: w.proxyAddr, SPKI: w.spki})

	// The UI first, through the proxy's magic host, so everything after
	// arrives live; in the tab in front, as a person watching it would
	// have it (background tabs are not painted).
	pageTab := browser
	uiTab := newTab(t, browser)
	do(t, uiTab, "opening the UI", chromedp.Navigate(w.ui.URL("http://hopscope.ui")))
	eventually(t, uiTab, "the UI is live", `document.querySelector("#live").classList.contains("on")`)
	if u, _ := chromedp.Run(uiTab, chromedp.Evaluate[string](`location.href`)); strings.Contains(u, "token") {
		t.Errorf("the token stayed in the address bar: %s", u)
	}

	do(t, pageTab, "loading the page", chromedp.Navigate(w.plain.URL+"/"))
	eventually(t, pageTab, "the page's WebSockets", `document.title.startsWith("done") || document.title.startsWith("failed")`)
	if title, _ := chromedp.Run(pageTab, chromedp.Evaluate[string](`document.title`)); title != "done 2 2" {
		t.Fatalf("page: %q\nflows:\n%s", title, w.dump())
	}
	w.forwardSession(t, ctx)

	// Rows arrived without a reload: the page's exchange, the bumped and
	// plaintext tunnels, three WebSocket sessions and the denial.
	eventually(t, uiTab, "three WebSocket rows", `document.querySelectorAll("#rows .badge.t-websocket").length === 3`)
	eventually(t, uiTab, "a denied row", `[...document.querySelectorAll("#rows tr.denied")].some(r => r.innerText.includes("blocked.test"))`)
	eventually(t, uiTab, "the page's exchanges", `[...document.querySelectorAll("#rows tr")].some(r => r.innerText.includes("/api/data") && r.innerText.includes("200"))`)
	eventually(t, uiTab, "the tunnels", `document.querySelectorAll("#rows .badge.t-tunnel").length >= 2`)
	eventually(t, uiTab, "ws sessions closed by the page", `[...document.querySelectorAll("#rows tr")].filter(r => r.innerText.includes("closed 1000")).length >= 2`)

	// The wss session's timeline: both directions, inflated text.
	wssRow := fmt.Sprintf(`[...document.querySelectorAll("#rows tr")].find(r => r.querySelector(".badge.t-websocket") && r.innerText.includes("127.0.0.1:%s"))`, w.tlsPort)
	eventually(t, uiTab, "the wss row", wssRow+` !== undefined`)
	if _, err := chromedp.Run(uiTab, chromedp.Evaluate[bool](wssRow+`.click() || true`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, uiTab, "the wss messages both ways", `(() => { const l = document.querySelector(".ws-list"); return l && l.querySelectorAll("td.dir-client").length >= 2 && l.querySelectorAll("td.dir-server").length >= 2 && l.innerText.includes("echo: `+wssNeedle+`") && l.innerText.includes("fe ff") && l.innerText.includes("1000 “done here”"); })()`)

	// The plain ws session: its JSON message was compressed on the wire.
	plainRow := fmt.Sprintf(`[...document.querySelectorAll("#rows tr")].find(r => r.querySelector(".badge.t-websocket") && r.innerText.includes("/echo") && !r.innerText.includes("127.0.0.1:%s") && r.innerText.includes("tunnel path"))`, w.tlsPort)
	eventually(t, uiTab, "the ws row", plainRow+` !== undefined`)
	if _, err := chromedp.Run(uiTab, chromedp.Evaluate[bool](plainRow+`.click() || true`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, uiTab, "inflated JSON beside its compressed size", `(() => { const l = document.querySelector(".ws-list"); return l && l.innerText.includes('"op":"join"') && l.innerText.includes("deflate"); })()`)
	if _, err := chromedp.Run(uiTab, chromedp.Evaluate[bool](`[...document.querySelectorAll('.ws-list tr[data-seq]')].find(r => r.querySelector("td.dir-client") && r.innerText.includes('"op":"join"')).click() || true`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, uiTab, "the message pretty-printed", `document.querySelector(".ws-detail pre") && document.querySelector(".ws-detail pre").innerText.includes('"room": "general"')`)
	shot := screenshot(t, uiTab, "ui")
	if dst := os.Getenv("HOPSCOPE_README_SHOT"); dst != "" {
		if b, err := os.ReadFile(shot); err == nil {
			_ = os.WriteFile(dst, b, 0o644)
		}
	}

	// Search across flows finds the wss session by a message's text.
	do(t, uiTab, "searching", chromedp.SendKeys(chromedp.CSS("#q"), "msg:"+wssNeedle))
	eventually(t, uiTab, "search by message text", fmt.Sprintf(`(() => { const rows = [...document.querySelectorAll("#rows tr")]; return rows.length === 1 && rows[0].innerText.includes("127.0.0.1:%s"); })()`, w.tlsPort))

	// Opened from the search, the session marks the message it matched.
	evalTrue(t, uiTab, `document.querySelector("#rows tr").click() || true`)
	eventually(t, uiTab, "the match marked in the timeline", `[...document.querySelectorAll(".ws-list .hl")].some(e => e.innerText === "`+wssNeedle+`")`)

	// The HAR the button downloads holds the messages, both ways.
	harText, err := chromedp.Run(uiTab, chromedp.Evaluate[string](`fetch("/api/har").then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Log struct {
			Entries []struct {
				Request struct {
					URL string `json:"url"`
				} `json:"request"`
				ResourceType string `json:"_resourceType"`
				Messages     []struct {
					Type string `json:"type"`
					Data string `json:"data"`
				} `json:"_webSocketMessages"`
			} `json:"entries"`
		} `json:"log"`
	}
	if err := json.Unmarshal([]byte(harText), &doc); err != nil {
		t.Fatalf("HAR: %v\n%.500s", err, harText)
	}
	var sent, received bool
	for _, e := range doc.Log.Entries {
		for _, m := range e.Messages {
			sent = sent || (m.Type == "send" && m.Data == wssNeedle)
			received = received || (m.Type == "receive" && m.Data == "echo: "+wssNeedle)
		}
	}
	if !sent || !received {
		t.Errorf("HAR (%d entries) lacks the wss messages: sent %v received %v", len(doc.Log.Entries), sent, received)
	}
	if !bytes.Contains([]byte(harText), []byte(`"_resourceType":"websocket"`)) {
		t.Error("HAR has no websocket entry")
	}

	// Back to every flow: the gzip answer is shown decoded, and the
	// request copies as curl.
	evalTrue(t, uiTab, `(() => { const q = document.querySelector("#q"); q.value = ""; q.dispatchEvent(new Event("input")); return true; })()`)
	dataRow := `[...document.querySelectorAll("#rows tr")].find(r => r.innerText.includes("/api/data"))`
	eventually(t, uiTab, "the whole list again", dataRow+` !== undefined && document.querySelectorAll("#rows tr").length > 5`)
	evalTrue(t, uiTab, dataRow+`.click() || true`)
	eventually(t, uiTab, "the response tab", `document.querySelector('#tabs button[data-tab="response"]') !== null`)
	evalTrue(t, uiTab, `document.querySelector('#tabs button[data-tab="response"]').click() || true`)
	eventually(t, uiTab, "the body decoded from gzip", `(() => { const b = document.querySelector("#tab-body"); return b.innerText.includes('"unread": 3') && b.innerText.includes("decoded from gzip"); })()`)
	curl, err := chromedp.Run(uiTab, chromedp.Evaluate[string](`curlFor(state.detail)`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(curl, "curl '"+w.plain.URL+"/api/data'") || strings.Contains(strings.ToLower(curl), "proxy-connection") {
		t.Errorf("copy as curl: %q %v", curl, err)
	}

	// Paused, the list holds still and counts what it missed.
	evalTrue(t, uiTab, `document.querySelector("#pause").click() || true`)
	w.get(t, w.plain.URL+"/api/data?while-paused")
	eventually(t, uiTab, "paused, counting", `/\d+ new/.test(document.querySelector("#live").innerText)`)
	if n, _ := chromedp.Run(uiTab, chromedp.Evaluate[int](`[...document.querySelectorAll("#rows tr")].filter(r => r.innerText.includes("while-paused")).length`)); n != 0 {
		t.Error("a flow appeared while the view was paused")
	}
	evalTrue(t, uiTab, `document.querySelector("#pause").click() || true`)
	eventually(t, uiTab, "resumed", `[...document.querySelectorAll("#rows tr")].some(r => r.innerText.includes("while-paused"))`)

	// Clear empties the store; importing the HAR brings the sessions back,
	// messages and all.
	evalTrue(t, uiTab, `document.querySelector("#clear").click() || true`)
	eventually(t, uiTab, "cleared", `document.querySelectorAll("#rows tr").length === 0`)
	if n := w.st.Stats().Flows; n != 0 {
		t.Errorf("after Clear the store holds %d flows", n)
	}
	harFile := filepath.Join(t.TempDir(), "flows.har")
	if err := os.WriteFile(harFile, []byte(harText), 0o600); err != nil {
		t.Fatal(err)
	}
	do(t, uiTab, "importing the HAR", chromedp.SetUploadFiles(chromedp.CSS("#harfile"), []string{harFile}))
	eventually(t, uiTab, "imported sessions", `document.querySelectorAll("#rows .badge.t-websocket").length === 3`)
	eventually(t, uiTab, "the wss row again", wssRow+` !== undefined`)
	evalTrue(t, uiTab, wssRow+`.click() || true`)
	eventually(t, uiTab, "imported messages", `(() => { const l = document.querySelector(".ws-list"); return l && l.innerText.includes("echo: `+wssNeedle+`"); })()`)
}

func evalTrue(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr)); err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
}

// get fetches u through the proxy.
func (w *world) get(t *testing.T, u string) {
	t.Helper()
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: w.proxyAddr})}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

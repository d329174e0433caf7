package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/store"
)

// TestRunWritesHAROnExit runs the command with --har, sends an exchange
// and a WebSocket conversation through it, stops it as SIGTERM would, and
// reads the HAR it wrote: the exchange, and the WebSocket's messages in
// both directions as Chrome writes them.
func TestRunWritesHAROnExit(t *testing.T) {
	var prefix atomic.Pointer[string]
	prefix.Store(ptr("echo: "))
	origin := httptest.NewServer(echoOrigin(&prefix))
	defer origin.Close()

	dir := t.TempDir()
	harPath := filepath.Join(dir, "flows.har")
	logFile := filepath.Join(dir, "events.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--log-file", logFile, "--har", harPath, "--store-item-bytes", "1KiB"}, io.Discard, io.Discard)
	}()
	addr := waitListenAddr(t, logFile)
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	resp, err := client.Get(origin.URL + "/page?x=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	wsURL := "ws" + strings.TrimPrefix(origin.URL, "http") + "/echo"
	c, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"first", "second"} {
		if err := c.Write(dctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(dctx); err != nil {
			t.Fatal(err)
		}
	}
	c.Write(dctx, websocket.MessageBinary, []byte{0, 1, 2})
	c.Read(dctx)
	c.Close(websocket.StatusNormalClosure, "done")

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return")
	}

	info, err := os.Stat(harPath)
	if err != nil {
		t.Fatalf("no HAR written: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("HAR mode %v, want 0600: it holds secrets", info.Mode().Perm())
	}
	data, err := os.ReadFile(harPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, problem := range har.Validate(data) {
		t.Errorf("the HAR of real traffic is not HAR 1.2: %s", problem)
	}
	h, err := har.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var page, ws *har.Entry
	for i := range h.Log.Entries {
		e := &h.Log.Entries[i]
		switch {
		case strings.HasSuffix(e.Request.URL, "/page?x=1"):
			page = e
		case e.ResourceType == "websocket":
			ws = e
		}
	}
	if page == nil || page.Response.Status != 200 || page.Response.Content.Text != "plain answer" {
		t.Fatalf("the exchange is missing or wrong in the HAR: %+v", page)
	}
	if ws == nil || ws.WebSocket == nil {
		t.Fatalf("no WebSocket entry in the HAR (%d entries)", len(h.Log.Entries))
	}
	var got []string
	for _, m := range *ws.WebSocket {
		if m.Opcode == 1 || m.Opcode == 2 {
			got = append(got, m.Type+" "+m.Data)
		}
	}
	want := []string{"send first", "receive echo: first", "send second", "receive echo: second", "send AAEC", "receive ZWNobzogAAEC"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("WebSocket messages in the HAR:\n got %q\nwant %q", got, want)
	}
	if !strings.HasPrefix(ws.Request.URL, "ws://") || ws.Response.Status != 101 {
		t.Errorf("WebSocket entry: %s %d", ws.Request.URL, ws.Response.Status)
	}

	// The file loads back into a store, messages and all.
	st := store.New(store.Options{})
	if stats := har.Import(st, h); stats.Messages < len(want) {
		t.Errorf("import: %+v", stats)
	}
	if p, _ := st.List(store.Query{Filter: `msg:"echo: second"`}); len(p.Flows) != 1 {
		t.Errorf("search after import found %d flows", len(p.Flows))
	}
	logged, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logged), `"event":"har"`) {
		t.Error("no har event in the log")
	}
}

func TestBadStoreSettingsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store-flows", "0"}, "--store-flows"},
		{[]string{"--store-bytes", "12"}, "--store-bytes"},
		{[]string{"--har", filepath.Join(t.TempDir(), "no", "such", "dir.har")}, "--har"},
	} {
		err := run(context.Background(), append(tc.args, "--listen", "127.0.0.1:0"), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}

// --har-import loads a HAR into the store at start (to view it with the
// UI); with --har, it comes out again on exit, messages included.
func TestHARImportAtStart(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.har")
	logFile := filepath.Join(dir, "events.log")
	chrome := filepath.Join("..", "..", "har", "testdata", "chrome-websocket.har")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--log-file", logFile, "--har-import", chrome, "--har", out}, io.Discard, io.Discard)
	}()
	waitListenAddr(t, logFile)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := har.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Log.Entries) != 1 || h.Log.Entries[0].WebSocket == nil || len(*h.Log.Entries[0].WebSocket) != 4 {
		t.Fatalf("entries after import and export: %+v", h.Log.Entries)
	}
	logged, _ := os.ReadFile(logFile)
	if !strings.Contains(string(logged), `"event":"har_import"`) || !strings.Contains(string(logged), `"messages":4`) {
		t.Errorf("no har_import event with the counts:\n%s", logged)
	}

	bad := filepath.Join(dir, "bad.har")
	os.WriteFile(bad, []byte(`{"not":"har"}`), 0o600)
	for _, path := range []string{bad, filepath.Join(dir, "missing.har")} {
		err := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--har-import", path}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--har-import") {
			t.Errorf("--har-import %s: %v", path, err)
		}
	}
}

// echoOrigin answers "plain answer" (text/plain) on every path but /echo,
// where it accepts a WebSocket and sends each message back behind the
// current prefix.
func echoOrigin(prefix *atomic.Pointer[string]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/echo" {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "plain answer")
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
			if err := c.Write(r.Context(), typ, append([]byte(*prefix.Load()), p...)); err != nil {
				return
			}
		}
	})
}

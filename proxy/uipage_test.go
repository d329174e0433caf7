package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/proxy"
)

// The UI is served through the proxy at its magic host to local clients,
// never forwarded upstream, and refused to clients from elsewhere.
func TestUIThroughTheProxy(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ui "+r.Host+" "+r.URL.Path)
	})
	px := startProxy(t, &proxy.Options{UI: ui})
	resp, err := px.client().Get("http://hopscope.ui/api/flows")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ui hopscope.ui /api/flows" {
		t.Fatalf("local client: %d %q", resp.StatusCode, body)
	}

	// A client from another machine: the proxy's handler is called as
	// its listener would for a remote address.
	srv, err := proxy.New(&proxy.Options{UI: ui}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://hopscope.ui/", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || strings.HasPrefix(rec.Body.String(), "ui ") {
		t.Fatalf("remote client: %d %q", rec.Code, rec.Body.String())
	}

	off := startProxy(t, nil)
	resp, err = off.client().Get("http://hopscope.ui/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "--ui") {
		t.Fatalf("UI off: %d %q", resp.StatusCode, body)
	}
}

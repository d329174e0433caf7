package main

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// hopscope record writes what passed through it; hopscope replay serves it
// to a new client as the origin did, and --against reports a live server
// that now answers differently.
func TestRecordThenReplay(t *testing.T) {
	var prefix atomic.Pointer[string]
	prefix.Store(ptr("echo: "))
	handler := echoOrigin(&prefix)
	origin := httptest.NewServer(handler)
	defer origin.Close()
	wsURL := func(base string) string { return "ws" + strings.TrimPrefix(base, "http") + "/echo" }
	talk := func(client *http.Client, base string) []string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, wsURL(base), &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		var got []string
		for _, m := range []string{"one", "two"} {
			if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				t.Fatal(err)
			}
			_, p, err := c.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(p))
		}
		c.Close(websocket.StatusNormalClosure, "")
		return got
	}

	dir := t.TempDir()
	session := filepath.Join(dir, "session.har")
	logFile := filepath.Join(dir, "events.log")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"record", "--out", session, "--listen", "127.0.0.1:0", "--log-file", logFile}, io.Discard, io.Discard)
	}()
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: waitListenAddr(t, logFile)})}
	if got := talk(&http.Client{Transport: tr}, origin.URL); strings.Join(got, "|") != "echo: one|echo: two" {
		t.Fatalf("through the recording proxy: %q", got)
	}
	tr.CloseIdleConnections()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("record: %v", err)
	}

	out := &lockedBuffer{}
	rctx, rcancel := context.WithCancel(context.Background())
	rdone := make(chan error, 1)
	go func() { rdone <- run(rctx, []string{"replay", session, "--listen", "127.0.0.1:0"}, out, io.Discard) }()
	addr := regexp.MustCompile(`on (http://[0-9.:]+)/`)
	var mock string
	for deadline := time.Now().Add(5 * time.Second); mock == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if m := addr.FindStringSubmatch(out.String()); m != nil {
			mock = m[1]
		}
	}
	if mock == "" {
		t.Fatalf("replay printed %q", out.String())
	}
	if got := talk(http.DefaultClient, mock); strings.Join(got, "|") != "echo: one|echo: two" {
		t.Fatalf("from the mock: %q", got)
	}
	rcancel()
	if err := <-rdone; err != nil {
		t.Fatalf("replay: %v", err)
	}

	report := &lockedBuffer{}
	if err := run(context.Background(), []string{"replay", session, "--against", origin.URL}, report, io.Discard); err != nil {
		t.Fatalf("against the same origin: %v\n%s", err, report)
	}
	// Against a TLS server, trusting its certificate with --ca.
	tlsOrigin := httptest.NewTLSServer(handler)
	defer tlsOrigin.Close()
	caFile := filepath.Join(dir, "origin.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	report = &lockedBuffer{}
	if err := run(context.Background(), []string{"replay", session, "--against", tlsOrigin.URL, "--ca", caFile}, report, io.Discard); err != nil {
		t.Fatalf("against the TLS origin: %v\n%s", err, report)
	}
	if !strings.Contains(report.String(), "WebSocket wss://") {
		t.Errorf("the session was not replayed over wss:\n%s", report)
	}

	prefix.Store(ptr("ECHO: "))
	report = &lockedBuffer{}
	err := run(context.Background(), []string{"replay", session, "--against", origin.URL}, report, io.Discard)
	if err == nil || !strings.Contains(report.String(), `+ "ECHO: one"`) || !strings.Contains(report.String(), "2 differences") {
		t.Fatalf("against a changed origin: %v\n%s", err, report)
	}
}

func ptr[T any](v T) *T { return &v }

func TestCountOf(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{{0, "0 rounds"}, {1, "1 round"}, {2, "2 rounds"}} {
		if got := countOf(tc.n, "round", "rounds"); got != tc.want {
			t.Errorf("countOf(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

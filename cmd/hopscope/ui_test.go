package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitEvent returns the first event named name in the log file.
func waitEvent(t *testing.T, logFile, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["event"] == name {
				return e
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %s event", name)
	return nil
}

// --ui prints a link with a token; the link opens the UI, which lists what
// crossed the proxy, and the same UI answers at hopscope.ui through it.
func TestRunServesTheWebUI(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer origin.Close()
	logFile := filepath.Join(t.TempDir(), "events.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0", "--log-file", logFile}, io.Discard, stderr)
	}()
	addr := waitListenAddr(t, logFile)
	ev := waitEvent(t, logFile, "ui")
	link, _ := ev["url"].(string)
	viaProxy, _ := ev["proxy_url"].(string)
	if !strings.Contains(link, "?token=") || !strings.HasPrefix(viaProxy, "http://hopscope.ui/?token=") {
		t.Fatalf("ui event %v", ev)
	}
	if !strings.Contains(stderr.String(), link) {
		t.Errorf("with --log-file the link goes to stderr too; stderr %q", stderr.String())
	}

	proxyTr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer proxyTr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: proxyTr}).Get(origin.URL + "/seen-by-the-ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	for _, tc := range []struct {
		name, link string
		tr         *http.Transport
	}{{"direct", link, &http.Transport{}}, {"through the proxy", viaProxy, proxyTr}} {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Transport: tc.tr, Timeout: 5 * time.Second}
		resp, err := c.Get(tc.link)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<title>hopscope</title>") {
			t.Fatalf("%s: %d %.100s", tc.name, resp.StatusCode, page)
		}
		base := strings.SplitN(tc.link, "/?", 2)[0]
		var list struct {
			Flows []struct{ Path string }
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := c.Get(base + "/api/flows")
			if err != nil {
				t.Fatal(err)
			}
			_ = json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			if len(list.Flows) > 0 && list.Flows[0].Path == "/seen-by-the-ui" {
				break
			}
		}
		if len(list.Flows) == 0 || list.Flows[0].Path != "/seen-by-the-ui" {
			t.Errorf("%s: the UI lists %+v", tc.name, list.Flows)
		}
		tc.tr.CloseIdleConnections()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestRunRefusesAnOpenUI(t *testing.T) {
	err := run(context.Background(), []string{"--listen", "127.0.0.1:0", "--ui", "0.0.0.0:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--ui-auth") {
		t.Fatalf("run: %v, want a refusal naming --ui-auth", err)
	}
}

// --ui also serves Prometheus metrics at /metrics, without the UI's token
// (scrapers have none), fed by the proxy's flows.
func TestRunServesMetricsOnTheUIListener(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "counted")
	}))
	defer origin.Close()
	r := startRun(t, nil, "--listen", "127.0.0.1:0", "--ui", "127.0.0.1:0")
	addr := waitListenAddr(t, r.logFile)
	link, _ := waitEvent(t, r.logFile, "ui")["url"].(string)
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	proxyTr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer proxyTr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: proxyTr}).Get(origin.URL + "/one")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	const want = `hopscope_http_requests_total{code="200",decision="forwarded",method="GET"} 1`
	scrapeURL := "http://" + u.Host + "/metrics"
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(scrapeURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(body), want+"\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d, no %q in\n%s", scrapeURL, resp.StatusCode, want, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodGet, scrapeURL, nil)
	req.Host = "rebound.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a Host that is not loopback: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	proxyTr.CloseIdleConnections()
	r.stop(t)
}

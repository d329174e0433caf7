package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigPrecedence(t *testing.T) {
	path := writeFile(t, "hopscope.yaml", `
listen: 127.0.0.1:9999
connect-ports: "443,8443"
allow-host:
  - "*.example.com"
  - api.example.org
deny-host: [10.0.0.0/8]
dial-timeout: 3s
`)
	cfg, err := parseConfig([]string{"--config", path, "--connect-ports", "*", "--allow-host", "only.example"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" {
		t.Errorf("listen from file = %q", cfg.Listen)
	}
	if cfg.ConnectPorts != "*" {
		t.Errorf("flag must override file: connect-ports = %q", cfg.ConnectPorts)
	}
	if strings.Join(cfg.AllowHost, ",") != "only.example" {
		t.Errorf("a repeatable flag replaces the file's list: allow-host = %q", cfg.AllowHost)
	}
	if strings.Join(cfg.DenyHost, ",") != "10.0.0.0/8" || cfg.DialTimeout != 3*time.Second {
		t.Errorf("file values lost: %+v", cfg)
	}
	if cfg.ShutdownTimeout != defaultConfig().ShutdownTimeout {
		t.Errorf("defaults lost: shutdown-timeout %v", cfg.ShutdownTimeout)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "listen: 127.0.0.1:1\nconect-ports: 443\n", []string{"conect-ports", "line 2"}},
		{"wrong type", "allow-host: {a: b}\n", []string{"line 1"}},
		{"bad duration", "dial-timeout: soon\n", []string{"line 1", "soon"}},
		{"not yaml", "listen: [\n", []string{"hopscope.yaml"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "hopscope.yaml", tc.yaml)
			_, err := parseConfig([]string{"--config=" + path}, io.Discard)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := parseConfig([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, io.Discard); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestBadSettingsAreRefused(t *testing.T) {
	htpasswd := writeFile(t, "users", "carol:$apr1$abc$def\n")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--connect-ports", "https"}, "--connect-ports"},
		{[]string{"--allow-host", "bad host"}, "--allow-host"},
		{[]string{"--deny-host", "10.0.0.0/40"}, "--deny-host"},
		{[]string{"--allow-client", "somewhere"}, "--allow-client"},
		{[]string{"--auth", "nopassword"}, "USER:PASSWORD"},
		{[]string{"--htpasswd", htpasswd}, "users:1"},
		{[]string{"--upstream-ca", "/nonexistent.pem"}, "--upstream-ca"},
		{[]string{"--upstream-proxy", "::"}, "--upstream-proxy"},
		{[]string{"--upstream-proxy", "socks5://127.0.0.1:1080"}, "only http://"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--pseudonym", "two words"}, "--pseudonym"},
		{[]string{"--listen", "nonsense"}, "--listen"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"extra-arg"}, "extra-arg"},
	}
	for _, tc := range cases {
		err := run(context.Background(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

func TestOpenProxyRefused(t *testing.T) {
	cases := []struct {
		cfg    func(*config)
		refuse bool
	}{
		{func(c *config) { c.Listen = "127.0.0.1:8080" }, false},
		{func(c *config) { c.Listen = "[::1]:8080" }, false},
		{func(c *config) { c.Listen = "localhost:8080" }, false},
		{func(c *config) { c.Listen = "0.0.0.0:8080" }, true},
		{func(c *config) { c.Listen = ":8080" }, true},
		{func(c *config) { c.Listen = "192.0.2.1:8080" }, true},
		{func(c *config) { c.Listen = ":8080"; c.AllowOpen = true }, false},
		{func(c *config) { c.Listen = ":8080"; c.Auth = []string{"a:b"} }, false},
		{func(c *config) { c.Listen = ":8080"; c.Htpasswd = "users" }, false},
		{func(c *config) { c.Listen = ":8080"; c.AllowClient = []string{"10.0.0.0/8"} }, false},
	}
	for _, tc := range cases {
		cfg := defaultConfig()
		tc.cfg(&cfg)
		err := checkOpenProxy(cfg)
		if (err != nil) != tc.refuse {
			t.Errorf("listen %s auth %v clients %v open %v: err %v", cfg.Listen, cfg.Auth, cfg.AllowClient, cfg.AllowOpen, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "open proxy") || !strings.Contains(err.Error(), "--allow-open")) {
			t.Errorf("the refusal must say why and how: %v", err)
		}
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), "hopscope ") {
		t.Errorf("version: %q %v", out.String(), err)
	}
	out.Reset()
	err := run(context.Background(), []string{"--help"}, &out, io.Discard)
	if !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help returned %v", err)
	}
	for _, w := range []string{"--listen", "--connect-ports", "--allow-host", "--deny-host", "--auth", "--htpasswd",
		"--upstream-ca", "--insecure-upstream", "--upstream-proxy", "--log-format", "--log-level", "--log-file",
		"--config", "--allow-client", "--allow-open", "--shutdown-timeout"} {
		if !strings.Contains(out.String(), "  "+w+" ") && !strings.Contains(out.String(), "  "+w+"\n") {
			t.Errorf("help does not list %s", w)
		}
	}
}

// lockedBuffer is standard error for an in-process run.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The command serves until its context ends (SIGINT/SIGTERM in main), lets
// in-flight exchanges finish, and returns nil: exit status 0.
func TestRunServesAndShutsDown(t *testing.T) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	defer origin.Close()
	logFile := filepath.Join(t.TempDir(), "events.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--log-file", logFile, "--shutdown-timeout", "5s"}, io.Discard, stderr)
	}()
	addr := waitListenAddr(t, logFile)

	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	answer := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(origin.URL)
		if err != nil {
			answer <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- string(b)
	}()
	time.Sleep(100 * time.Millisecond) // let the request reach the origin
	cancel()
	time.Sleep(100 * time.Millisecond)
	close(release)
	if got := <-answer; got != "finished" {
		t.Errorf("the in-flight exchange got %q, want it to finish during shutdown", got)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after shutdown, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if stderr.String() != "" {
		t.Errorf("with --log-file nothing goes to stderr, got %q", stderr.String())
	}
}

func waitListenAddr(t *testing.T, logFile string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			var e struct {
				Event, Addr string
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Event == "listen" {
				return e.Addr
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no listen event")
	return ""
}

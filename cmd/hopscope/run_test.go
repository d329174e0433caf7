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
		{[]string{"--socks5", "0.0.0.0:1080"}, "--socks5"},
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
		"--config", "--allow-client", "--allow-open", "--shutdown-timeout", "--socks5"} {
		if !strings.Contains(out.String(), "  "+w+" ") && !strings.Contains(out.String(), "  "+w+"\n") {
			t.Errorf("help does not list %s", w)
		}
	}
	// Every subcommand run dispatches is in the usage, and one given after
	// flags is pointed to its place.
	for _, sub := range []string{"ca init", "bench", "compare", "record", "replay", "version"} {
		if !strings.Contains(out.String(), "  hopscope "+sub+" ") {
			t.Errorf("help does not list hopscope %s", sub)
		}
	}
	// Each subcommand's --help is its usage, not a complaint.
	for _, sub := range []string{"bench", "compare", "record", "replay"} {
		out.Reset()
		if err := run(context.Background(), []string{sub, "--help"}, &out, io.Discard); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "hopscope "+sub) {
			t.Errorf("hopscope %s --help: %v, printed %q", sub, err, out.String())
		}
	}
	err = run(context.Background(), []string{"--listen", "127.0.0.1:0", "replay", "x.har"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "a subcommand comes first") {
		t.Errorf("a subcommand after flags: %v", err)
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
	answer := getInBackground(tr, origin.URL)
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
	// The event log runs beside the proxy; when run returns, it has
	// written the exchange that finished during the shutdown.
	logged, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), `"event":"http"`) || !strings.Contains(string(logged), `"url":"`+origin.URL+`/"`) {
		t.Errorf("no http event for the in-flight exchange in the log:\n%s", logged)
	}
}

// backgroundRun is the command running on a goroutine of the test, with
// its events in a log file of its own.
type backgroundRun struct {
	logFile string
	cancel  context.CancelFunc
	done    chan error
}

// startRun runs the command with args and --log-file until stop, or until
// the test ends. stderr may be nil.
func startRun(t *testing.T, stderr io.Writer, args ...string) *backgroundRun {
	t.Helper()
	if stderr == nil {
		stderr = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &backgroundRun{logFile: filepath.Join(t.TempDir(), "events.log"), cancel: cancel, done: make(chan error, 1)}
	args = append(args, "--log-file", r.logFile)
	go func() { r.done <- run(ctx, args, io.Discard, stderr) }()
	return r
}

// stop ends the run as SIGTERM does and fails the test unless run returns
// nil in time.
func (r *backgroundRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("run returned %v after shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func waitListenAddr(t *testing.T, logFile string) string {
	t.Helper()
	return waitListenProtocol(t, logFile, "")
}

// waitListenProtocol returns the address of the listen event for protocol
// ("" for the HTTP proxy, "socks5").
func waitListenProtocol(t *testing.T, logFile, protocol string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			var e struct {
				Event, Addr, Protocol string
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Event == "listen" && e.Protocol == protocol {
				return e.Addr
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no listen event")
	return ""
}

// getInBackground fetches u through tr and delivers the body, or the
// error's text, on the channel.
func getInBackground(tr *http.Transport, u string) <-chan string {
	answer := make(chan string, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Get(u)
		if err != nil {
			answer <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answer <- string(b)
	}()
	return answer
}

// --socks5 serves SOCKS5 beside the HTTP listener, and both stop on
// shutdown.
func TestRunServesSOCKS5(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "via socks")
	}))
	defer origin.Close()
	r := startRun(t, nil, "--listen", "127.0.0.1:0", "--socks5", "127.0.0.1:0", "--connect-ports", "*")
	addr := waitListenProtocol(t, r.logFile, "socks5")
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5h", Host: addr})}
	defer tr.CloseIdleConnections()
	if got := <-getInBackground(tr, origin.URL); got != "via socks" {
		t.Errorf("through --socks5: %q", got)
	}
	tr.CloseIdleConnections()
	r.stop(t)
}

package reliability

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is the hopscope command running as a process of its own.
type proc struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

// runHopscope starts the built command with args after "serve --listen
// 127.0.0.1:0" and waits for its listen event.
func runHopscope(t testing.TB, args ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	logFile := filepath.Join(dir, "events.log")
	cmd := exec.Command(hopscopeBin, append([]string{"serve", "--listen", "127.0.0.1:0", "--log-file", logFile}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "HTTP_PROXY=", "HTTPS_PROXY=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(10 * time.Second)
	for p.addr == "" {
		data, _ := os.ReadFile(logFile)
		for _, line := range strings.Split(string(data), "\n") {
			var e struct{ Event, Addr, Protocol string }
			if json.Unmarshal([]byte(line), &e) == nil && e.Event == "listen" && e.Protocol == "" {
				p.addr = e.Addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("hopscope did not start: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// SIGTERM with requests in flight: an exchange that finishes within
// --shutdown-timeout is answered in full, one that does not is cut off (the
// client sees its connection end, not a hang), an open tunnel is closed,
// new connections are refused, and the process exits 0.
func TestSIGTERMWithRequestsInFlight(t *testing.T) {
	noLeaks(t)
	arrived := make(chan string, 2)
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		switch r.URL.Path {
		case "/quick":
			<-release
			_, _ = io.WriteString(w, "finished")
		case "/forever":
			<-r.Context().Done()
		}
	}))
	defer origin.Close()
	defer close(release)
	p := runHopscope(t, "--shutdown-timeout", "2s", "--connect-ports", "*")

	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: p.addr})}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	results := make(chan string, 2)
	for _, path := range []string{"/quick", "/forever"} {
		go func() {
			resp, err := client.Get(origin.URL + path)
			if err != nil {
				results <- path + ": " + err.Error()
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- fmt.Sprintf("%s: %d %s %v", path, resp.StatusCode, b, err)
		}()
	}
	// A tunnel is open too.
	tunnel, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tunnel.Close()
	fmt.Fprintf(tunnel, "CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n", strings.TrimPrefix(origin.URL, "http://"))
	tr2 := bufio.NewReader(tunnel)
	if resp, err := http.ReadResponse(tr2, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	for range 2 {
		<-arrived
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Until the listener is closed a dial may still land; wait for refusal.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("hopscope still accepts connections after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	release <- struct{}{}
	got := map[string]string{}
	for range 2 {
		r := <-results
		path, _, _ := strings.Cut(r, ":")
		got[path] = r
	}
	if got["/quick"] != "/quick: 200 finished <nil>" {
		t.Errorf("the exchange that finished during shutdown: %s", got["/quick"])
	}
	if strings.Contains(got["/forever"], " 200 ") && strings.HasSuffix(got["/forever"], "<nil>") {
		t.Errorf("the exchange cut by the shutdown looked complete: %s", got["/forever"])
	}
	_ = tunnel.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(tr2); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Error("the open tunnel was not closed by the shutdown")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Errorf("hopscope exited with %v after SIGTERM, want status 0", err)
		}
	case <-ctx.Done():
		t.Fatal("hopscope did not exit after SIGTERM and its shutdown timeout")
	}
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hopscope/hopscope/config"
)

// TestMain lets a test run the real main() in a child process: the child
// is this test binary with HOPSCOPE_RUN_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("HOPSCOPE_RUN_MAIN") == "1" {
		os.Args = append([]string{"hopscope"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// SIGTERM stops the process: in-flight exchanges finish, the exit status
// is 0, and a shutdown event is written.
func TestSIGTERMExitsCleanly(t *testing.T) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "finished")
	}))
	defer origin.Close()

	cmd := exec.Command(os.Args[0], "--listen", "127.0.0.1:0", "--log-format", "json", "--shutdown-timeout", "5s")
	cmd.Env = append(os.Environ(), "HOPSCOPE_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // only if the test fails before Wait
	events := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				events <- e
			}
		}
		close(events)
	}()
	var addr string
	select {
	case e := <-events:
		addr, _ = e["addr"].(string)
	case <-time.After(10 * time.Second):
		t.Fatal("no listen event")
	}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: addr})}
	defer tr.CloseIdleConnections()
	answer := getInBackground(tr, origin.URL)
	time.Sleep(200 * time.Millisecond) // the request is at the origin
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(release)
	if got := <-answer; got != "finished" {
		t.Errorf("in-flight exchange: %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v, want status 0", err)
	}
	sawShutdown := false
	for e := range events {
		if e["event"] == "shutdown" {
			sawShutdown = true
		}
	}
	if !sawShutdown {
		t.Error("no shutdown event")
	}
}

// A usage error exits with status 2 and says what is wrong.
func TestUsageErrorExitStatus(t *testing.T) {
	cmd := exec.Command(os.Args[0], "--connect-ports", "nope")
	cmd.Env = append(os.Environ(), "HOPSCOPE_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2; output %q", err, out)
	}
	if len(out) == 0 {
		t.Error("no message")
	}
}

// hopscope bench starts hopscope from its own binary as a separate process
// (here the test binary, which runs main()) and prints one table.
func TestBenchStartsHopscopeProcesses(t *testing.T) {
	var stdout, stderr strings.Builder
	err := run(context.Background(), []string{"bench", "--rounds", "1", "--round-time", "50ms", "--idle-conns", "3", "--idle-settle", "50ms",
		"--cases", "idle-wss-rss,wss-tunnel-64B-x1"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	table := stdout.String()
	for _, want := range []string{"hopscope", "hopscope-mitm", "idle-wss-rss", "wss-tunnel-64B-x1"} {
		if !strings.Contains(table, want) {
			t.Errorf("%q missing:\n%s", want, table)
		}
	}
	if strings.Contains(table, "failed") {
		t.Errorf("a case failed:\n%s\n%s", table, stderr.String())
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--cases", "nope"},
		{"--builtin", "squid"},
		{"--builtin", "none"},
		{"--compare-ca", "x=/dev/null"},
		{"--compare", "a=127.0.0.1:1", "--compare", "a=127.0.0.1:2"},
	} {
		err := run(context.Background(), append([]string{"bench"}, args...), io.Discard, io.Discard)
		var usage config.UsageError
		if !errors.As(err, &usage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

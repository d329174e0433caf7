//go:build soak

package reliability

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

var (
	soakConns    = flag.Int("soak.conns", 100, "WebSockets held open through hopscope")
	soakDuration = flag.Duration("soak.duration", time.Minute, "how long the soak runs")
	soakEvery    = flag.Duration("soak.sample", 10*time.Second, "how often memory and descriptors are sampled")
	soakGap      = flag.Duration("soak.gap", 50*time.Millisecond, "pause between a connection's messages")
)

// TestSoak holds -soak.conns WebSockets through a started hopscope (the
// built command, so its memory is its own) for -soak.duration. Each sends
// sequence-numbered messages that the origin echoes; any message lost,
// changed or out of order fails the test. The proxy's resident memory and
// open descriptors are sampled and printed as a table (run with -v):
//
//	go test -tags soak -run TestSoak -timeout 30m -v ./reliability -args -soak.conns 500 -soak.duration 5m
func TestSoak(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
				return
			}
		}
	}))
	defer origin.Close()
	p := runHopscope(t, "--connect-ports", "*")
	pid := p.cmd.Process.Pid
	host := strings.TrimPrefix(origin.URL, "http://")
	dialer := ws.Dialer{Timeout: 10 * time.Second, NetDial: func(ctx context.Context, _, addr string) (net.Conn, error) {
		conn, err := net.Dial("tcp", p.addr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != 200 {
			conn.Close()
			return nil, fmt.Errorf("CONNECT %s: %v %v", addr, resp, err)
		}
		return conn, nil
	}}

	baseline := procFDs(pid)
	ctx, cancel := context.WithTimeout(context.Background(), *soakDuration)
	defer cancel()
	var messages, failures atomic.Int64
	var firstFailure sync.Once
	fail := func(format string, args ...any) {
		failures.Add(1)
		firstFailure.Do(func() { t.Errorf(format, args...) })
	}
	var wg sync.WaitGroup
	for i := range *soakConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, _, _, err := dialer.Dial(context.Background(), "ws://"+host+"/soak")
			if err != nil {
				fail("connection %d: %v", i, err)
				return
			}
			defer conn.Close()
			for seq := 0; ctx.Err() == nil; seq++ {
				msg := strconv.Itoa(i) + ":" + strconv.Itoa(seq)
				if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
					fail("connection %d message %d: %v", i, seq, err)
					return
				}
				got, err := wsutil.ReadServerText(conn)
				if err != nil || string(got) != msg {
					fail("connection %d: sent %q, got %q (%v)", i, msg, got, err)
					return
				}
				messages.Add(1)
				time.Sleep(*soakGap)
			}
		}()
	}

	start := time.Now()
	table := []string{fmt.Sprintf("%8s  %12s  %9s  %9s  %5s  %8s", "elapsed", "messages", "msg/s", "RSS MiB", "fds", "failures")}
	sample := func() {
		rss, fds := procRSS(pid), procFDs(pid)
		el := time.Since(start)
		table = append(table, fmt.Sprintf("%8s  %12d  %9.0f  %9.1f  %5d  %8d",
			el.Round(time.Second), messages.Load(), float64(messages.Load())/el.Seconds(), float64(rss)/(1<<20), fds, failures.Load()))
	}
	tick := time.NewTicker(*soakEvery)
	for done := false; !done; {
		select {
		case <-tick.C:
			sample()
		case <-ctx.Done():
			done = true
		}
	}
	tick.Stop()
	wg.Wait()
	// Every WebSocket is closed: the proxy must give back its descriptors.
	for deadline := time.Now().Add(10 * time.Second); procFDs(pid) > baseline; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the proxy holds %d descriptors after every WebSocket closed, %d before", procFDs(pid), baseline)
			break
		}
	}
	sample()
	t.Logf("soak: %d WebSockets for %s through hopscope (pid %d)\n%s", *soakConns, *soakDuration, pid, strings.Join(table, "\n"))
	if failures.Load() > 0 {
		t.Fatalf("%d connections failed", failures.Load())
	}
}

// procRSS is a process's resident memory in bytes.
func procRSS(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// procFDs counts a process's open descriptors.
func procFDs(pid int) int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

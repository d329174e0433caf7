package proxytest_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// startSender runs a TCP server that sends size bytes to each client.
func startSender(t *testing.T, size int) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// Wait for the client's first byte: the tunnel is then
				// spliced (the client spoke first, and not HTTP).
				_, _ = c.Read(make([]byte, 1))
				_, _ = c.Write(make([]byte, size))
			}()
		}
	}()
	return ln.Addr().String()
}

// download opens a tunnel and reads what the sender sends.
func download(t *testing.T, px *proxytest.Server, addr string) (int, time.Duration, error) {
	conn, err := px.Dialer().DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_, _ = conn.Write([]byte("x"))
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	return int(n), time.Since(start), err
}

// Byte faults: latency and bandwidth slow a tunnel down (the elapsed time
// has a floor the fault guarantees); reset-after cuts it.
func TestByteFaults(t *testing.T) {
	const size = 32 << 10
	sender := startSender(t, size)
	cases := []struct {
		spec  string
		floor time.Duration
		n     int
	}{
		{"latency=150ms,from=server", 150 * time.Millisecond, size},
		{"bandwidth=64KB/s,from=server", 400 * time.Millisecond, size},
		{"reset-after=1000,from=server", 0, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.spec, func(t *testing.T) {
			px := proxytest.Start(t, proxytest.WithFault(tc.spec))
			n, took, _ := download(t, px, sender)
			if n != tc.n || took < tc.floor {
				t.Errorf("got %d bytes in %s, want %d in at least %s", n, took, tc.n, tc.floor)
			}
			e := px.WaitFor(t, proxytest.IsFault(strings.SplitN(tc.spec, "=", 2)[0]), 10*time.Second)
			if f := e.Fault; f.Spec != tc.spec || f.From != "server" || f.Target != sender {
				t.Errorf("fault %+v", f)
			}
		})
	}
	// Scope: a fault on what the client sends leaves downloads alone.
	px := proxytest.Start(t, proxytest.WithFault("reset-after=10,from=client"))
	if n, _, _ := download(t, px, sender); n != size {
		t.Errorf("a client-side reset-after cut the download at %d bytes", n)
	}
}

// wsClient dials the origin through px and reads the greeting.
func wsClient(t *testing.T, px *proxytest.Server, o *origin) *websocket.Conn {
	c, _, err := dialForward(t, px, wsURL(o))
	if err != nil {
		t.Fatal(err)
	}
	if g := readText(t, c); g != "hello from the server" {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func send(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	if err := c.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

func TestWSDrop(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-drop=1,from=client"))
	c := wsClient(t, px, o)
	send(t, c, "lost")
	px.WaitFor(t, proxytest.IsFault("ws-drop"), 10*time.Second)
	e := px.WaitFor(t, proxytest.IsMessage("client", "lost"), 10*time.Second)
	if m := e.Message; m.Action != "drop" || !strings.Contains(m.Note, "ws-drop") {
		t.Errorf("message %+v", m)
	}
	if got := o.got(); len(got) != 0 {
		t.Errorf("the server received %q", got)
	}
	// Scope: the server's messages still pass.
	c2 := wsClient(t, proxytest.Start(t, proxytest.WithFault("ws-drop=1,from=server,url=ws://*/other*")), o)
	send(t, c2, "kept")
	if got := readText(t, c2); got != "kept" {
		t.Errorf("a fault scoped to another URL dropped %q", got)
	}
}

// ws-drop with a rate and a seed drops the same messages every run.
func TestWSDropIsRepeatableWithSeed(t *testing.T) {
	first, second := runSeeded(t), runSeeded(t)
	if first != second || !strings.Contains(first, "drop") || !strings.Contains(first, "pass") {
		t.Errorf("seeded runs differ or are all one way: %q vs %q", first, second)
	}
}

// runSeeded sends "count to 5" and returns the server-side actions.
func runSeeded(t *testing.T) string {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-drop=0.5,from=server"), proxytest.WithFaultSeed(42))
	c, _, err := dialForward(t, px, wsURL(o))
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, "count to 5")
	var actions []string
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		actions = actions[:0]
		for _, r := range px.Flows() {
			if r.Kind == flow.KindWSMessage && r.Message.From == flow.FromServer {
				actions = append(actions, r.Message.Action)
			}
		}
		if len(actions) >= 6 { // the greeting and five counts
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return strings.Join(actions, ",")
}

func TestWSDelay(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-delay=200ms,from=client"))
	c := wsClient(t, px, o)
	start := time.Now()
	send(t, c, "slow")
	if got := readText(t, c); got != "slow" {
		t.Fatalf("echo %q", got)
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("a 200ms delay took %s", took)
	}
	px.WaitFor(t, proxytest.IsFault("ws-delay"), 10*time.Second)
}

func TestWSDuplicate(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-duplicate=1,from=server"))
	c, _, err := dialForward(t, px, wsURL(o))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if g := readText(t, c); g != "hello from the server" {
			t.Fatalf("read %d: %q, want the greeting twice", i, g)
		}
	}
	px.WaitFor(t, proxytest.IsFault("ws-duplicate"), 10*time.Second)
}

func TestWSCloseAfterN(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-close=1011@3,from=server"))
	c := wsClient(t, px, o) // server message 1
	send(t, c, "count to 5")
	if got := readText(t, c); got != "#" { // server message 2
		t.Fatalf("got %q", got)
	}
	if got := readText(t, c); got != "##" { // message 3, then the close
		t.Fatalf("got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Fatalf("after 3 server messages: %v, want close 1011", err)
	}
	e := px.WaitFor(t, proxytest.IsClose(1011), 10*time.Second)
	if e.Session.ClosedBy != "proxy" {
		t.Errorf("session close %+v", e.Session)
	}
	px.WaitFor(t, proxytest.IsFault("ws-close"), 10*time.Second)
}

// ws-stall-pings swallows pongs, so a client's heartbeat goes unanswered
// while messages still flow.
func TestWSStallPings(t *testing.T) {
	o := startOrigin(t)
	px := proxytest.Start(t, proxytest.WithFault("ws-stall-pings,from=server"))
	c := wsClient(t, px, o)
	reads := make(chan string, 4)
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				close(reads)
				return
			}
			reads <- string(b)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Fatal("the heartbeat was answered through ws-stall-pings")
	}
	px.WaitFor(t, proxytest.IsFault("ws-stall-pings"), 10*time.Second)
	send(t, c, "still flowing")
	select {
	case got := <-reads:
		if got != "still flowing" {
			t.Errorf("got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("messages stopped flowing")
	}
}

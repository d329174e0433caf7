package proxytest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/proxy/proxytest"
)

// exampleT lets runnable examples call Start; in a test, pass t.
type exampleT struct{ cleanups []func() }

func (e *exampleT) Helper()                        {}
func (e *exampleT) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }
func (e *exampleT) Errorf(format string, a ...any) { fmt.Printf(format+"\n", a...) }
func (e *exampleT) Cleanup(f func())               { e.cleanups = append(e.cleanups, f) }
func (e *exampleT) TempDir() string {
	dir, _ := os.MkdirTemp("", "proxytest")
	e.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
func (e *exampleT) done() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

// exampleApp is the application under test: a live feed that prefers a
// WebSocket (opened through CONNECT, as browsers do) and falls back to
// polling over plain HTTP when the proxy refuses the tunnel.
func exampleApp(px *proxytest.Server, server string) string {
	d := ws.Dialer{Timeout: 5 * time.Second, NetDial: px.Dialer().DialContext}
	if conn, _, _, err := d.Dial(context.Background(), "ws://"+server+"/feed"); err == nil {
		conn.Close()
		return "websocket"
	} else if !errors.Is(err, proxytest.ErrRefused) {
		return "error: " + err.Error()
	}
	resp, err := px.Client().Get("http://" + server + "/poll")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return "polling: " + string(body)
}

// A customer's squid allows CONNECT only to port 443: the app must fall
// back to polling, and the test sees the denial.
func Example_squidBlocksWebSocketPort() {
	t := &exampleT{}
	defer t.done()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "latest news")
	}))
	defer server.Close()
	host := strings.TrimPrefix(server.URL, "http://")

	px := proxytest.Start(t, proxytest.WithProfile("squid"))
	fmt.Println(exampleApp(px, host))
	denial := px.WaitFor(t, proxytest.IsDenial(host), 10*time.Second)
	fmt.Println("denied by", strings.SplitN(denial.Denial.Rule, "=", 2)[0])
	// Output:
	// polling: latest news
	// denied by connect-ports
}

// Assert that the client keeps its connection alive with a heartbeat: the
// proxy records each ping. (A real app pings every 30 s; this one every 50 ms.)
func Example_heartbeat() {
	t := &exampleT{}
	defer t.done()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Read(r.Context()) // answers pings until the client goes
	}))
	defer server.Close()
	px := proxytest.Start(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(server.URL, "http"), &websocket.DialOptions{HTTPClient: px.Client()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	go c.Read(ctx) // lets Ping see the pongs
	go func() {    // the app's heartbeat
		for ctx.Err() == nil {
			_ = c.Ping(ctx)
			time.Sleep(50 * time.Millisecond)
		}
	}()

	pings := func(r flow.Record) bool {
		return r.Kind == flow.KindWSMessage && r.Message.From == flow.FromClient && r.Message.Opcode == flow.OpPing
	}
	// Three pings, each after the one before: the heartbeat goes on. (How
	// far apart they came is the machine's business, not the test's: a
	// loaded CI machine stretches any interval.)
	var seen []uint64
	for range 3 {
		after := uint64(0)
		if len(seen) > 0 {
			after = seen[len(seen)-1]
		}
		ping := px.WaitFor(t, func(r flow.Record) bool { return pings(r) && r.Message.Seq > after }, 10*time.Second)
		seen = append(seen, ping.Message.Seq)
	}
	fmt.Println("heartbeats seen:", len(seen))
	// Output:
	// heartbeats seen: 3
}

// Reproduce a server that fails after three messages: the proxy closes the
// WebSocket with 1011 and the test asserts on the close code the client
// saw and on the proxy's record of it.
func Example_closeCode() {
	t := &exampleT{}
	defer t.done()
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for i := 1; i <= 5; i++ {
			c.Write(r.Context(), websocket.MessageText, []byte(fmt.Sprint("update ", i)))
		}
		c.Read(r.Context())
	}))
	defer server.Close()
	px := proxytest.Start(t, proxytest.WithFault("ws-close=1011@3,from=server"))

	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(server.URL, "http"), &websocket.DialOptions{HTTPClient: px.Client()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.CloseNow()
	for {
		_, msg, err := c.Read(context.Background())
		if err != nil {
			fmt.Println("client saw close", int(websocket.CloseStatus(err)))
			break
		}
		fmt.Println(string(msg))
	}
	closed := px.WaitFor(t, proxytest.IsClose(1011), 10*time.Second)
	fmt.Println("proxy logged", closed.Session.Code, "from", closed.Session.ClosedBy)
	// Output:
	// update 1
	// update 2
	// update 3
	// client saw close 1011
	// proxy logged 1011 from proxy
}

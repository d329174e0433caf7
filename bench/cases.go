package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

func allCases() []caseDef {
	lockstep := func(route wsRoute, conns int) func(context.Context, *env, *target) (float64, []time.Duration, error) {
		return func(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
			return wsLockstep(ctx, e, t, route, conns)
		}
	}
	idle := func(open func(*env, *target) (io.Closer, error)) func(context.Context, *env, *target) (float64, []time.Duration, error) {
		return func(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
			return idleRSS(ctx, e, t, open)
		}
	}
	return []caseDef{
		// Memory first: later cases leave heap behind in processes that
		// cannot be restarted (--compare targets).
		{name: "idle-tunnel-rss", unit: "KiB/conn", memory: true, run: idle(openIdleTunnel)},
		{name: "idle-ws-rss", unit: "KiB/conn", memory: true, run: idle(openIdleWS(wsForward))},
		{name: "idle-wss-rss", unit: "KiB/conn", memory: true, run: idle(openIdleWS(wssTunnel))},
		{name: "ws-forward-64B-x1", unit: "msg/s", run: lockstep(wsForward, 1)},
		{name: "ws-forward-64B-x100", unit: "msg/s", run: lockstep(wsForward, 100)},
		{name: "ws-tunnel-64B-x1", unit: "msg/s", run: lockstep(wsTunnel, 1)},
		{name: "ws-tunnel-64B-x100", unit: "msg/s", run: lockstep(wsTunnel, 100)},
		{name: "wss-tunnel-64B-x1", unit: "msg/s", run: lockstep(wssTunnel, 1)},
		{name: "wss-tunnel-64B-x100", unit: "msg/s", run: lockstep(wssTunnel, 100)},
		{name: "ws-forward-1MiB", unit: "MB/s", run: wsBig},
		{name: "small-get-x32", unit: "req/s", run: smallGET},
		{name: "connect-10MiB", unit: "MB/s", run: download},
		{name: "https-10MiB", unit: "MB/s", run: httpsDownload},
		{name: "https-keepalive-x32", unit: "req/s", run: func(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
			return httpsRequests(ctx, e, t, true)
		}},
		{name: "https-newconn-x32", unit: "req/s", run: func(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
			return httpsRequests(ctx, e, t, false)
		}},
	}
}

// wsLockstep: conns WebSockets each send a 64-byte message and wait for its
// echo before sending the next, so what counts is the latency each hop
// adds (wake-ups, system calls), not bandwidth. Messages per second.
func wsLockstep(ctx context.Context, e *env, t *target, route wsRoute, conns int) (float64, []time.Duration, error) {
	clients := make([]*wsClient, 0, conns)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range conns {
		c, err := e.dialWS(t, route, 64)
		if err != nil {
			return 0, nil, err
		}
		clients = append(clients, c)
	}
	for _, c := range clients { // warm up: the first message of each
		// A proxy that stalls fails the round instead of hanging it.
		_ = c.conn.SetDeadline(time.Now().Add(e.opts.RoundTime + 10*time.Second))
		if err := c.echo(); err != nil {
			return 0, nil, err
		}
	}
	return e.loop(ctx, conns, func(w int) error { return clients[w].echo() })
}

// wsBig: 1 MiB messages echoed on one ws:// connection (absolute form);
// MB/s counts each message once.
func wsBig(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
	c, err := e.dialWS(t, wsForward, 1<<20)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	rate, lats, err := e.loop(ctx, 1, func(int) error { return c.echo() })
	return rate * (1 << 20) / 1e6, lats, err
}

func (e *env) transport(t *target, keepAlive bool, conns int) *http.Transport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: conns,
		DisableKeepAlives:   !keepAlive,
		DisableCompression:  true,
		TLSClientConfig: &tls.Config{RootCAs: e.originRoots, NextProtos: []string{"http/1.1"},
			// Clients resume TLS sessions, as browsers and curl do.
			ClientSessionCache: tls.NewLRUClientSessionCache(64)},
	}
	if t != nil {
		tr.TLSClientConfig.RootCAs = t.roots
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: t.Addr})
	}
	return tr
}

func get(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return err
}

// smallGET: 32 concurrent keep-alive clients fetch an 18-byte answer.
func smallGET(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
	const workers = 32
	tr := e.transport(t, true, workers)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	return e.loop(ctx, workers, func(int) error { return get(c, e.httpOrigin.URL) })
}

// httpsRequests: 32 concurrent clients fetch over HTTPS (bumped by a proxy
// that bumps); keepAlive false makes each request a new TLS connection.
func httpsRequests(ctx context.Context, e *env, t *target, keepAlive bool) (float64, []time.Duration, error) {
	const workers = 32
	tr := e.transport(t, keepAlive, workers)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	u := "https://" + withHost(e.tlsOrigin.Listener.Addr().String(), tlsHost) + "/"
	return e.loop(ctx, workers, func(int) error { return get(c, u) })
}

// download: one client fetches 10 MiB over a new connection, through a
// spliced CONNECT tunnel when proxied.
func download(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
	origin := e.bulk.Addr().String()
	var bytes atomic.Int64
	start := time.Now()
	_, lats, err := e.loop(ctx, 1, func(int) error {
		var conn net.Conn
		var err error
		if t == nil {
			conn, err = net.Dial("tcp", origin)
		} else {
			conn, err = connectVia(t.Addr, origin)
		}
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(e.opts.RoundTime + 30*time.Second))
		if _, err := conn.Write([]byte("x")); err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, conn)
		bytes.Add(n)
		if n != bulkSize {
			return fmt.Errorf("downloaded %d of %d bytes: %v", n, bulkSize, err)
		}
		return nil
	})
	return float64(bytes.Load()) / 1e6 / time.Since(start).Seconds(), lats, err
}

// httpsDownload: one client GETs 10 MiB over HTTPS on a kept-alive
// connection (bumped by a proxy that bumps).
func httpsDownload(ctx context.Context, e *env, t *target) (float64, []time.Duration, error) {
	tr := e.transport(t, true, 1)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	u := "https://" + withHost(e.tlsOrigin.Listener.Addr().String(), tlsHost) + "/10MiB"
	rate, lats, err := e.loop(ctx, 1, func(int) error { return get(c, u) })
	return rate * bulkSize / 1e6, lats, err
}

// loop runs op from workers goroutines for one round (the clock starts
// here, after the case's set-up), and returns operations per second and
// each operation's latency.
func (e *env) loop(parent context.Context, workers int, op func(worker int) error) (float64, []time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, e.opts.RoundTime)
	defer cancel()
	var count atomic.Int64
	var mu sync.Mutex
	var lats []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(w); err != nil {
					if ctx.Err() == nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
					break
				}
				mine = append(mine, time.Since(t0))
				count.Add(1)
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if count.Load() == 0 && firstErr == nil {
		firstErr = errors.New("no operation completed within the round")
	}
	return float64(count.Load()) / time.Since(start).Seconds(), lats, firstErr
}

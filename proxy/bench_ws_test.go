package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// wsRoutes are the three ways a benchmark reaches the echo server.
type wsRoutes struct {
	origin    *httptest.Server
	url       string
	inspected *proxyFixture // ws:// through CONNECT, relayed frame by frame
	raw       *proxyFixture // the same, spliced (--no-mitm-host): a raw tunnel
}

func newWSRoutes(b *testing.B) *wsRoutes {
	return newWSRoutesLogging(b, startProxy)
}

// quietProxy is startProxy with events logged to nowhere, as in
// production with a file sink: the fixture keeps every event line in
// memory, which memory benchmarks must not count as the proxy's.
func quietProxy(b testing.TB, opts *proxy.Options) *proxyFixture {
	return startProxyLogging(b, opts, io.Discard, nil)
}

func newWSRoutesLogging(b *testing.B, start func(testing.TB, *proxy.Options) *proxyFixture) *wsRoutes {
	origin := httptest.NewServer(gobwasEcho())
	b.Cleanup(origin.Close)
	host, _, _ := net.SplitHostPort(origin.Listener.Addr().String())
	spliced := openPolicy()
	spliced.Bump.Never = []policy.HostPattern{mustPattern(b, host)}
	return &wsRoutes{
		origin:    origin,
		url:       wsURL(origin.URL),
		inspected: start(b, &proxy.Options{Policy: openPolicy()}),
		raw:       start(b, &proxy.Options{Policy: spliced}),
	}
}

func (r *wsRoutes) dial(b *testing.B, via *proxyFixture) net.Conn {
	d := ws.Dialer{Timeout: 10 * time.Second}
	if via != nil {
		d = connectDialer(via)
	}
	conn, _, _, err := d.Dial(context.Background(), r.url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// echoRate sends n messages of size bytes over conns (round trips, one
// in flight per connection) and returns messages per second.
func echoRate(b *testing.B, conns []net.Conn, n, size int) float64 {
	payload := make([]byte, size)
	var wg sync.WaitGroup
	per := (n + len(conns) - 1) / len(conns)
	start := time.Now()
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				if err := wsutil.WriteClientBinary(c, payload); err != nil {
					b.Error(err)
					return
				}
				if _, err := wsutil.ReadServerBinary(c); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(per*len(conns)) / time.Since(start).Seconds()
}

// benchEcho compares direct, raw-tunnel and inspected echo rates.
func benchEcho(b *testing.B, connections, size int, unit string) {
	r := newWSRoutes(b)
	routes := []struct {
		name string
		via  *proxyFixture
	}{{"direct", nil}, {"raw-tunnel", r.raw}, {"inspected", r.inspected}}
	conns := make([][]net.Conn, len(routes))
	for i, route := range routes {
		for range connections {
			conns[i] = append(conns[i], r.dial(b, route.via))
		}
		echoRate(b, conns[i], connections, size) // warm up
	}
	b.ReportAllocs()
	b.ResetTimer()
	rates := make([]float64, len(routes))
	for i := range routes {
		rates[i] = echoRate(b, conns[i], b.N, size)
	}
	b.StopTimer()
	scale := 1.0
	if unit == "MiB/s" {
		scale = float64(size) / (1 << 20)
	}
	for i, route := range routes {
		b.ReportMetric(rates[i]*scale, route.name+"-"+unit)
	}
	b.ReportMetric(rates[2]/rates[0], "inspected/direct")
	b.ReportMetric(rates[2]/rates[1], "inspected/raw")
}

// BenchmarkWSEcho64 is 64-byte echo round trips on one connection.
func BenchmarkWSEcho64(b *testing.B) { benchEcho(b, 1, 64, "msg/s") }

// BenchmarkWSEcho64x100 is the same on 100 connections at once.
func BenchmarkWSEcho64x100(b *testing.B) { benchEcho(b, 100, 64, "msg/s") }

// BenchmarkWSEcho1MiB is 1 MiB messages echoed on one connection; the
// rate counts each message once.
func BenchmarkWSEcho1MiB(b *testing.B) { benchEcho(b, 1, 1<<20, "MiB/s") }

// BenchmarkWSIdleMemory holds 1,000 idle WebSockets open directly and then
// through the proxy (inspected) and reports the proxy's share per
// connection: the heap and stacks of the second set minus the first.
func BenchmarkWSIdleMemory(b *testing.B) {
	r := newWSRoutesLogging(b, quietProxy)
	benchIdleMemory(b, func(via *proxyFixture) net.Conn {
		c := r.dial(b, via)
		// One message each, so every relay has run its first read.
		if err := wsutil.WriteClientBinary(c, []byte("x")); err != nil {
			b.Fatal(err)
		}
		if _, err := wsutil.ReadServerBinary(c); err != nil {
			b.Fatal(err)
		}
		return c
	}, r.inspected)
}

// BenchmarkTunnelIdleMemory does the same for spliced CONNECT tunnels.
func BenchmarkTunnelIdleMemory(b *testing.B) {
	echo := startEcho(b)
	px := quietProxy(b, &proxy.Options{Policy: openPolicy()})
	benchIdleMemory(b, func(via *proxyFixture) net.Conn {
		var c net.Conn
		var br *bufio.Reader
		if via == nil {
			var err error
			if c, err = net.Dial("tcp", echo); err != nil {
				b.Fatal(err)
			}
			br = bufio.NewReader(c)
		} else {
			var resp *http.Response
			resp, c, br = via.rawRequest("CONNECT " + echo + " HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp.StatusCode != 200 {
				b.Fatal(resp.Status)
			}
		}
		// A byte each way, so the tunnel is past sniffing and spliced.
		if _, err := c.Write([]byte("x")); err != nil {
			b.Fatal(err)
		}
		if _, err := br.ReadByte(); err != nil {
			b.Fatal(err)
		}
		return c
	}, px)
}

// benchIdleMemory opens 1,000 connections with open(nil) (direct), then
// with open(via), and reports the proxy's heap and stack per connection.
func benchIdleMemory(b *testing.B, open func(via *proxyFixture) net.Conn, via *proxyFixture) {
	const n = 1000
	type usage struct{ heap, stack int64 }
	measure := func(via *proxyFixture) usage {
		runtime.GC()
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		conns := make([]net.Conn, 0, n)
		for range n {
			conns = append(conns, open(via))
		}
		time.Sleep(100 * time.Millisecond)
		runtime.GC() // twice: sync.Pool keeps buffers through one collection
		runtime.GC()
		runtime.ReadMemStats(&m1)
		for _, c := range conns {
			c.Close()
		}
		return usage{int64(m1.HeapInuse) - int64(m0.HeapInuse), int64(m1.StackInuse) - int64(m0.StackInuse)}
	}
	var direct, proxied usage
	for b.Loop() {
		direct = measure(nil)
		proxied = measure(via)
	}
	kib := func(v int64) float64 { return float64(v) / n / 1024 }
	b.ReportMetric(kib(direct.heap+direct.stack), "direct-KiB/conn")
	b.ReportMetric(kib(proxied.heap+proxied.stack), "with-proxy-KiB/conn")
	b.ReportMetric(kib(proxied.heap+proxied.stack-direct.heap-direct.stack), "proxy-KiB/conn")
	b.ReportMetric(kib(proxied.heap-direct.heap), "proxy-heap-KiB/conn")
	b.ReportMetric(kib(proxied.stack-direct.stack), "proxy-stack-KiB/conn")
}

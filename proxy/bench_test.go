package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hopscope/hopscope/proxy"
)

// measureParallel runs do from workers goroutines until n calls are done
// and returns calls per second.
func measureParallel(b *testing.B, n, workers int, do func() error) float64 {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := do(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func getOnce(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// BenchmarkForwardSmallGET: 32 concurrent keep-alive clients fetch a small
// answer directly and through the proxy in the same run; the ratio is the
// proxy's share of direct throughput.
func BenchmarkForwardSmallGET(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("hello, small world"))
	}))
	defer origin.Close()
	px := startProxy(b, nil)
	const workers = 32
	newClient := func(viaProxy bool) *http.Client {
		tr := &http.Transport{MaxIdleConnsPerHost: workers, DisableCompression: true}
		if viaProxy {
			tr.Proxy = http.ProxyURL(px.url())
		}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	direct, proxied := newClient(false), newClient(true)
	b.ReportAllocs()
	b.ResetTimer()
	directRate := measureParallel(b, b.N, workers, func() error { return getOnce(direct, origin.URL) })
	proxyRate := measureParallel(b, b.N, workers, func() error { return getOnce(proxied, origin.URL) })
	b.StopTimer()
	b.ReportMetric(directRate, "direct-req/s")
	b.ReportMetric(proxyRate, "proxy-req/s")
	b.ReportMetric(proxyRate/directRate, "ratio")
}

// BenchmarkConnectThroughput: one client downloads 10 MiB over a fresh TCP
// connection, directly and through a CONNECT tunnel, in the same run.
func BenchmarkConnectThroughput(b *testing.B) {
	const size = 10 << 20
	payload := make([]byte, 256<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for sent := 0; sent < size; sent += len(payload) {
					if _, err := c.Write(payload); err != nil {
						return
					}
				}
			}()
		}
	}()
	px := startProxy(b, &proxy.Options{Policy: openPolicy()})
	download := func(viaProxy bool) error {
		var conn net.Conn
		var r io.Reader
		var err error
		if viaProxy {
			conn, err = net.Dial("tcp", px.addr)
			if err != nil {
				return err
			}
			_, _ = io.WriteString(conn, "CONNECT "+ln.Addr().String()+" HTTP/1.1\r\nHost: x\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				conn.Close()
				return err
			}
			r = br
		} else {
			conn, err = net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			r = conn
		}
		defer conn.Close()
		n, err := io.Copy(io.Discard, r)
		if n != size {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	b.SetBytes(size)
	b.ResetTimer()
	var directTime, proxyTime time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := download(false); err != nil {
			b.Fatal(err)
		}
		directTime += time.Since(start)
		start = time.Now()
		if err := download(true); err != nil {
			b.Fatal(err)
		}
		proxyTime += time.Since(start)
	}
	b.StopTimer()
	mb := float64(size) * float64(b.N) / (1 << 20)
	b.ReportMetric(mb/directTime.Seconds(), "direct-MiB/s")
	b.ReportMetric(mb/proxyTime.Seconds(), "proxy-MiB/s")
	b.ReportMetric(directTime.Seconds()/proxyTime.Seconds(), "ratio")
}

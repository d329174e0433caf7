package proxy_test

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/hopscope/hopscope/policy"
)

// benchBump compares HTTPS requests made directly to the origin with the
// same requests through a bumping proxy, in one run, from 32 workers: the
// bumped client speaking HTTP/1.1 and, with keep-alive, HTTP/2 (as
// browsers do; all workers then share one multiplexed connection).
// keepAlive false makes every request a new TLS connection (and a new
// bumped tunnel, with the leaf from the cache).
func benchBump(b *testing.B, keepAlive bool) {
	w := newTLSWorld(b, policy.BumpRules{All: true}, hello("ok"))
	const workers = 32
	directTr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: w.originCAs, ServerName: "localhost"},
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: workers,
	}
	b.Cleanup(directTr.CloseIdleConnections)
	h1, h1Tr := w.client(b, w.clientCAs, keepAlive)
	h1Tr.TLSClientConfig.NextProtos, h1Tr.ForceAttemptHTTP2 = []string{"http/1.1"}, false
	h1Tr.MaxIdleConnsPerHost = workers
	h2, _ := w.client(b, w.clientCAs, keepAlive)
	direct := &http.Client{Transport: directTr}
	url := w.url("localhost", "/")
	// Warm the leaf cache (the first mint is BenchmarkLeafMint's business)
	// and the HTTP/2 connection.
	for _, c := range []*http.Client{h1, h2} {
		if err := getOnce(c, url); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	directRate := measureParallel(b, b.N, workers, func() error { return getOnce(direct, url) })
	h1Rate := measureParallel(b, b.N, workers, func() error { return getOnce(h1, url) })
	var h2Rate float64
	if keepAlive {
		h2Rate = measureParallel(b, b.N, workers, func() error { return getOnce(h2, url) })
	}
	b.StopTimer()
	b.ReportMetric(directRate, "direct-req/s")
	b.ReportMetric(h1Rate, "h1-req/s")
	b.ReportMetric(h1Rate/directRate, "h1-ratio")
	if keepAlive {
		b.ReportMetric(h2Rate, "h2-req/s")
		b.ReportMetric(h2Rate/directRate, "h2-ratio")
	}
}

// BenchmarkBumpKeepAlive: keep-alive HTTPS requests through a bump, HTTP/1.1
// and HTTP/2 to the client, beside the same requests made directly.
func BenchmarkBumpKeepAlive(b *testing.B) { benchBump(b, true) }

// BenchmarkBumpNewConnection: a new bumped connection per request, cached
// leaf, HTTP/1.1.
func BenchmarkBumpNewConnection(b *testing.B) { benchBump(b, false) }

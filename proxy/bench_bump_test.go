package proxy_test

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/hopscope/hopscope/policy"
)

// benchBump compares HTTPS requests made directly to the origin with the
// same requests through a bumping proxy, in one run, from 32 workers.
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
	proxied, proxyTr := w.client(b, w.clientCAs, keepAlive)
	proxyTr.MaxIdleConnsPerHost = workers
	direct := &http.Client{Transport: directTr}
	// Warm the leaf cache: the first mint is BenchmarkLeafMint's business.
	if err := getOnce(proxied, w.url("localhost", "/")); err != nil {
		b.Fatal(err)
	}
	url := w.url("localhost", "/")
	b.ReportAllocs()
	b.ResetTimer()
	directRate := measureParallel(b, b.N, workers, func() error { return getOnce(direct, url) })
	proxyRate := measureParallel(b, b.N, workers, func() error { return getOnce(proxied, url) })
	b.StopTimer()
	b.ReportMetric(directRate, "direct-req/s")
	b.ReportMetric(proxyRate, "proxy-req/s")
	b.ReportMetric(proxyRate/directRate, "ratio")
}

// BenchmarkBumpKeepAlive: keep-alive HTTPS requests through a bump.
func BenchmarkBumpKeepAlive(b *testing.B) { benchBump(b, true) }

// BenchmarkBumpNewConnection: a new bumped connection per request, cached leaf.
func BenchmarkBumpNewConnection(b *testing.B) { benchBump(b, false) }

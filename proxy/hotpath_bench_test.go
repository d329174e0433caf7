package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// BenchmarkCleanRequestHeaders is the per-request header work: hop-by-hop
// removal (including names listed in Connection), TE: trailers kept, Via.
func BenchmarkCleanRequestHeaders(b *testing.B) {
	template := http.Header{
		"Connection":          {"keep-alive, X-Custom"},
		"X-Custom":            {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic eDp5"},
		"Te":                  {"trailers"},
		"Accept":              {"*/*"},
		"User-Agent":          {"bench"},
		"Cookie":              {"a=b"},
	}
	h := make(http.Header, len(template)+1)
	via := newViaCache("hopscope")
	b.ReportAllocs()
	for b.Loop() {
		clear(h)
		for k, v := range template {
			h[k] = v
		}
		cleanRequestHeaders(h)
		via.add(h, 1, 1)
	}
}

// BenchmarkHTTPEvent is the cost of one http event at the default level,
// and of one when the level is off (nothing may be formatted then).
func BenchmarkHTTPEvent(b *testing.B) {
	rec := httpRecord{conn: connInfo{id: 42, client: "127.0.0.1:50000"}, method: "GET", url: "http://example.com/path?q=1",
		proto: "HTTP/1.1", status: 200, reqBytes: 0, respBytes: 1234, duration: 1500 * time.Microsecond}
	for _, tc := range []struct {
		name  string
		level zerolog.Level
	}{{"info", zerolog.InfoLevel}, {"off", zerolog.WarnLevel}} {
		b.Run(tc.name, func(b *testing.B) {
			e := events{log: zerolog.New(io.Discard).Level(tc.level).With().Timestamp().Logger()}
			b.ReportAllocs()
			for b.Loop() {
				e.http(rec)
			}
		})
	}
}

package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/proxy/wsframe"
)

// discardConn is a net.Conn whose writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (discardConn) Close() error                { return nil }

// BenchmarkRelayFrame is the relay's steady-state cost per 64-byte frame:
// parse, validate, unmask a copy, log the ws_message event at the default
// level (to nowhere), and pass the bytes on. It must not allocate.
func BenchmarkRelayFrame(b *testing.B) {
	for _, tc := range []struct {
		name string
		op   ws.OpCode
		log  string
	}{{"text-preview", ws.OpText, WSLogPreview}, {"binary-preview", ws.OpBinary, WSLogPreview}, {"meta", ws.OpBinary, WSLogMeta}} {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := New(&Options{WebSocket: WebSocketOptions{Log: tc.log}}, zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger())
			if err != nil {
				b.Fatal(err)
			}
			sess := &wsSession{srv: srv, url: "ws://bench/", path: "forward", start: time.Now(),
				client: &wsPeer{conn: discardConn{}}, upstream: &wsPeer{conn: discardConn{}}}
			d := sess.direction(wsframe.Client, sess.client, sess.upstream, false)
			payload := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
			frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(tc.op, true, payload)))
			const perChunk = 64
			chunk := make([]byte, 0, perChunk*len(frame))
			for range perChunk {
				chunk = append(chunk, frame...)
			}
			b.SetBytes(int64(len(chunk)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.feed(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perChunk), "ns/frame")
			allocs := testing.AllocsPerRun(100, func() { _ = d.feed(chunk) })
			b.ReportMetric(allocs/perChunk, "allocs/frame")
		})
	}
}

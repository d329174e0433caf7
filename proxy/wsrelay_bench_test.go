package proxy

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
	"github.com/hopscope/hopscope/store"
)

// discardConn is a net.Conn whose writes vanish.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (discardConn) Close() error                { return nil }

// BenchmarkRelayFrame is the relay's steady-state cost per 64-byte frame:
// parse, validate, unmask a copy, publish the message's record and pass
// the bytes on, with the event log observing at the default level (to
// nowhere; it formats on its own goroutine) in --ws-log preview and meta
// modes, and with no observer. Without an observer that wants payloads it
// must not allocate; with one, the payload copies come from a slab, one
// allocation per 16 KiB. "store" is the flow store of --ui and --har
// observing (it wants 64 KiB of every payload), without the event log.
func BenchmarkRelayFrame(b *testing.B) {
	for _, tc := range []struct {
		name string
		op   ws.OpCode
		log  string // "": no observer
		// held: a rule that never matches makes the relay hold every
		// message and ask the deciders, which do nothing.
		held bool
		// store: the flow store observes.
		store bool
	}{{"text-preview", ws.OpText, eventlog.WSLogPreview, false, false}, {"binary-preview", ws.OpBinary, eventlog.WSLogPreview, false, false},
		{"meta", ws.OpBinary, eventlog.WSLogMeta, false, false}, {"unobserved", ws.OpBinary, "", false, false},
		{"held-deciders-idle", ws.OpText, eventlog.WSLogMeta, true, false}, {"store", ws.OpText, "", false, true}} {
		b.Run(tc.name, func(b *testing.B) {
			logger := zerolog.New(io.Discard).Level(zerolog.InfoLevel).With().Timestamp().Logger()
			srv, err := New(nil, logger)
			if err != nil {
				b.Fatal(err)
			}
			if tc.log != "" {
				eventlog.Subscribe(srv.Flows(), logger, eventlog.Options{WSLog: tc.log})
			}
			if tc.store {
				store.New(store.Options{}).Attach(srv.Flows())
			}
			b.Cleanup(srv.Flows().Close)
			if tc.held {
				rules, err := policy.CompileWSRules([]policy.WSRuleSpec{{Match: policy.WSMatchSpec{Contains: "never"}, Action: policy.WSDrop}})
				if err != nil {
					b.Fatal(err)
				}
				srv.opts.WebSocket.Rules = rules
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
			cpu := cpuTime()
			for b.Loop() {
				if err := d.feed(chunk); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perChunk), "ns/frame")
			// The observer formats on its own goroutine: CPU time counts
			// its work too, and not the other processes on the machine.
			b.ReportMetric(float64((cpuTime()-cpu).Nanoseconds())/float64(b.N*perChunk), "cpu-ns/frame")
			allocs := testing.AllocsPerRun(100, func() { _ = d.feed(chunk) })
			b.ReportMetric(allocs/perChunk, "allocs/frame")
		})
	}
}

package policy

import (
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	good := []struct {
		spec  string
		check func(Fault) bool
	}{
		{"latency=100ms,jitter=20ms,from=server", func(f Fault) bool {
			return f.Latency == 100*time.Millisecond && f.Jitter == 20*time.Millisecond && f.From == "server"
		}},
		{"bandwidth=64KB/s", func(f Fault) bool { return f.BytesPerSecond == 64000 }},
		{"bandwidth=1MiB/s,from=client", func(f Fault) bool { return f.BytesPerSecond == 1<<20 && f.From == "client" }},
		{"reset-after=10000", func(f Fault) bool { return f.ResetAfter == 10000 }},
		{"ws-drop=0.25,from=client,url=wss://*/chat*", func(f Fault) bool {
			return f.Rate == 0.25 && f.URL == "wss://*/chat*" && f.Applies("client", "wss://a/chat/1") && !f.Applies("server", "wss://a/chat")
		}},
		{"ws-duplicate=50%", func(f Fault) bool { return f.Rate == 0.5 && f.IsMessageFault() }},
		{"ws-delay=250ms", func(f Fault) bool { return f.Delay == 250*time.Millisecond }},
		{"ws-close=1011@3,from=server", func(f Fault) bool { return f.CloseCode == 1011 && f.CloseAfter == 3 }},
		{"ws-stall-pings", func(f Fault) bool { return f.Kind == FaultWSStallPing && f.Applies("server", "x") }},
	}
	for _, tc := range good {
		f, err := ParseFault(tc.spec)
		if err != nil || !tc.check(f) || f.Spec != tc.spec {
			t.Errorf("ParseFault(%q) = %+v, %v", tc.spec, f, err)
		}
	}
	bad := map[string]string{
		"":                         "unknown fault",
		"explode":                  "unknown fault",
		"latency=soon":             "duration",
		"latency=-5ms":             "duration",
		"bandwidth=64KB":           "rate like",
		"bandwidth=0KB/s":          "positive",
		"reset-after=lots":         "number of bytes",
		"ws-drop=2":                "from 0 to 1",
		"ws-close=1005@1":          "CODE@N",
		"ws-close=1011":            "CODE@N",
		"ws-close=1011@0":          "CODE@N",
		"ws-stall-pings=1":         "no value",
		"latency=1ms,from=both":    "from=",
		"latency=1ms,url=ws://x/*": "ws-* faults only",
		"ws-drop=0.1,jitter=1ms":   "latency only",
		"ws-drop=0.1,colour=red":   "unknown option",
	}
	for spec, says := range bad {
		if _, err := ParseFault(spec); err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseFault(%q): %v, want an error saying %q", spec, err, says)
		}
	}
}

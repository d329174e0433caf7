package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fault kinds (--fault). Byte-level faults act on the bytes of tunnels and
// WebSockets, like toxiproxy's toxics; message-level faults act on whole
// WebSocket messages.
const (
	FaultLatency     = "latency"
	FaultBandwidth   = "bandwidth"
	FaultResetAfter  = "reset-after"
	FaultWSDrop      = "ws-drop"
	FaultWSDelay     = "ws-delay"
	FaultWSDuplicate = "ws-duplicate"
	FaultWSClose     = "ws-close"
	FaultWSStallPing = "ws-stall-pings"
)

// Fault is one parsed --fault.
type Fault struct {
	// Spec is the text as given, for events.
	Spec string
	Kind string
	// From limits the fault to bytes or messages sent by "client" or
	// "server"; empty means both.
	From string
	// URL limits message faults to WebSockets whose URL matches this glob.
	URL string

	Latency, Jitter time.Duration // latency
	BytesPerSecond  int64         // bandwidth
	ResetAfter      int64         // reset-after: bytes
	Rate            float64       // ws-drop, ws-duplicate: 0..1
	Delay           time.Duration // ws-delay
	CloseCode       uint16        // ws-close
	CloseAfter      int           // ws-close: after this many messages
}

// IsMessageFault reports whether the fault acts on WebSocket messages.
func (f Fault) IsMessageFault() bool { return strings.HasPrefix(f.Kind, "ws-") }

// Applies reports whether the fault acts on what from sends on url.
func (f Fault) Applies(from, url string) bool {
	return (f.From == "" || f.From == from) && (f.URL == "" || matchGlob(f.URL, url))
}

// ParseFault parses a --fault value: the kind with its value first, then
// options, comma-separated. Examples:
//
//	latency=100ms,jitter=20ms,from=server
//	bandwidth=64KB/s
//	reset-after=10000,from=client
//	ws-drop=0.1,from=client,url=wss://*/chat*
//	ws-close=1011@3,from=server
//	ws-stall-pings
func ParseFault(spec string) (Fault, error) {
	f := Fault{Spec: spec}
	parts := strings.Split(strings.TrimSpace(spec), ",")
	kind, value, _ := strings.Cut(strings.TrimSpace(parts[0]), "=")
	f.Kind = kind
	bad := func(format string, args ...any) (Fault, error) {
		return Fault{}, fmt.Errorf("fault %q: %s", spec, fmt.Sprintf(format, args...))
	}
	var err error
	switch kind {
	case FaultLatency:
		if f.Latency, err = positiveDuration(value); err != nil {
			return bad("latency: %v", err)
		}
	case FaultBandwidth:
		if f.BytesPerSecond, err = parseRate(value); err != nil {
			return bad("bandwidth: %v", err)
		}
	case FaultResetAfter:
		if f.ResetAfter, err = strconv.ParseInt(value, 10, 64); err != nil || f.ResetAfter < 0 {
			return bad("reset-after takes a number of bytes")
		}
	case FaultWSDrop, FaultWSDuplicate:
		if f.Rate, err = parseRateFraction(value); err != nil {
			return bad("%s: %v", kind, err)
		}
	case FaultWSDelay:
		if f.Delay, err = positiveDuration(value); err != nil {
			return bad("ws-delay: %v", err)
		}
	case FaultWSClose:
		codeText, nText, ok := strings.Cut(value, "@")
		code, err1 := strconv.Atoi(codeText)
		n, err2 := strconv.Atoi(nText)
		if !ok || err1 != nil || err2 != nil || n < 1 || !sendableCloseCode(code) {
			return bad("ws-close takes CODE@N: a close code that may be sent (1000-1003, 1007-1014, 3000-4999) and a message count >= 1, like 1011@3")
		}
		f.CloseCode, f.CloseAfter = uint16(code), n
	case FaultWSStallPing:
		if value != "" {
			return bad("ws-stall-pings takes no value")
		}
	default:
		return bad("unknown fault %q: use latency, bandwidth, reset-after, ws-drop, ws-delay, ws-duplicate, ws-close or ws-stall-pings", kind)
	}
	for _, opt := range parts[1:] {
		key, v, _ := strings.Cut(strings.TrimSpace(opt), "=")
		switch key {
		case "from":
			if v != "client" && v != "server" {
				return bad("from=%q: use client or server", v)
			}
			f.From = v
		case "url":
			if !f.IsMessageFault() {
				return bad("url= applies to ws-* faults only")
			}
			f.URL = v
		case "jitter":
			if kind != FaultLatency {
				return bad("jitter applies to latency only")
			}
			if f.Jitter, err = positiveDuration(v); err != nil {
				return bad("jitter: %v", err)
			}
		default:
			return bad("unknown option %q", key)
		}
	}
	return f, nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration like 100ms", s)
	}
	return d, nil
}

// parseRate reads 64KB/s, 1MiB/s, 512B/s, 1000/s.
func parseRate(s string) (int64, error) {
	text, ok := strings.CutSuffix(s, "/s")
	if !ok {
		return 0, fmt.Errorf("%q: give a rate like 64KB/s", s)
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(text, u.suffix); ok {
			text, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: give a positive rate like 64KB/s", s)
	}
	return n * mult, nil
}

// parseRateFraction reads 0.1 or 10%.
func parseRateFraction(s string) (float64, error) {
	text, percent := strings.CutSuffix(s, "%")
	v, err := strconv.ParseFloat(text, 64)
	if percent {
		v /= 100
	}
	if err != nil || v < 0 || v > 1 {
		return 0, fmt.Errorf("%q: give a rate from 0 to 1, or a percentage", s)
	}
	return v, nil
}

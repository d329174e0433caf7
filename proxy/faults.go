package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
)

// holdsMessages reports whether WebSocket messages must be complete before
// they are passed on: a rule or a fault may drop, change, repeat or delay
// them.
func (s *Server) holdsMessages() bool {
	if s.opts.WebSocket.Rules.Modifies() || s.opts.Interceptor != nil {
		return true
	}
	for _, f := range s.opts.Faults {
		if f.IsMessageFault() && f.Kind != policy.FaultWSClose {
			return true
		}
	}
	return false
}

// idleClock cuts a relay when neither direction has moved a byte for
// limit (--profile idle-timeout=D).
type idleClock struct {
	limit time.Duration
	last  atomic.Int64 // unix nanoseconds of the last read on either side
}

// errIdle ends a relay cut by the idle timeout.
type errIdle struct{ limit time.Duration }

func (e errIdle) Error() string {
	return fmt.Sprintf("cut after %s without traffic either way (idle-timeout), without a close frame", e.limit)
}

func newIdleClock(limit time.Duration) *idleClock {
	if limit <= 0 {
		return nil
	}
	c := &idleClock{limit: limit}
	c.touch()
	return c
}

func (c *idleClock) touch() { c.last.Store(time.Now().UnixNano()) }

// arm sets conn's read deadline to the moment the relay would be idle.
func (c *idleClock) arm(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Unix(0, c.last.Load()).Add(c.limit))
}

// expired reports whether a read deadline that fired means the relay is
// idle, or only that this direction is (the other one moved meanwhile).
func (c *idleClock) expired(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, c.last.Load())) >= c.limit
}

// connFaults are the faults that apply to one relayed connection, with
// their counters and random source. One per tunnel or WebSocket.
type connFaults struct {
	srv    *Server
	info   connInfo
	flow   flow.ID // the tunnel or WebSocket session
	target string  // host:port or URL, for events
	closer func()  // resets both connections (reset-after)

	mu  sync.Mutex
	rng *rand.Rand
	// fired remembers which byte faults already wrote their event, so
	// latency on every write logs once per connection, not per write.
	fired map[string]bool
}

func (s *Server) newConnFaults(info connInfo, id flow.ID, target string, closer func()) *connFaults {
	if len(s.opts.Faults) == 0 {
		return nil
	}
	seed := s.opts.FaultSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &connFaults{srv: s, info: info, flow: id, target: target, closer: closer,
		rng: rand.New(rand.NewPCG(seed, info.id)), fired: map[string]bool{}}
}

// chance draws a number in [0, 1) from the connection's random source.
func (c *connFaults) chance() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64()
}

func (c *connFaults) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(c.rng.Int64N(int64(2*d+1))) - d
}

// fire writes the fault event.
func (c *connFaults) fire(f policy.Fault, from, detail string, message int, once bool) {
	if once {
		c.mu.Lock()
		seen := c.fired[f.Spec+from]
		c.fired[f.Spec+from] = true
		c.mu.Unlock()
		if seen {
			return
		}
	}
	c.srv.fault(c.info, c.flow, f, from, c.target, detail, message)
}

// byteFaults wraps the writes of one direction (bytes sent by from) with
// the byte-level faults that apply to it: latency, bandwidth, reset-after.
type byteFaults struct {
	conn   *connFaults
	from   string
	faults []policy.Fault
	sent   int64
}

func (c *connFaults) forBytes(from string) *byteFaults {
	if c == nil {
		return nil
	}
	b := &byteFaults{conn: c, from: from}
	for _, f := range c.srv.opts.Faults {
		if !f.IsMessageFault() && f.Applies(from, "") {
			b.faults = append(b.faults, f)
		}
	}
	if len(b.faults) == 0 {
		return nil
	}
	return b
}

// errReset ends a relay cut by reset-after.
var errReset = errors.New("connection reset by the reset-after fault")

// write sends p through write, delayed, paced or cut as the faults say.
func (b *byteFaults) write(p []byte, write func([]byte) error) error {
	for _, f := range b.faults {
		switch f.Kind {
		case policy.FaultLatency:
			d := f.Latency + b.conn.jitter(f.Jitter)
			b.conn.fire(f, b.from, fmt.Sprintf("delaying each write by %s", f.Latency), 0, true)
			time.Sleep(d)
		case policy.FaultResetAfter:
			if b.sent+int64(len(p)) > f.ResetAfter {
				keep := max(f.ResetAfter-b.sent, 0)
				if keep > 0 {
					_ = write(p[:keep])
				}
				b.sent += keep
				b.conn.fire(f, b.from, fmt.Sprintf("reset both connections after %d bytes", f.ResetAfter), 0, false)
				b.conn.closer()
				return errReset
			}
		}
	}
	for _, f := range b.faults {
		if f.Kind == policy.FaultBandwidth {
			b.conn.fire(f, b.from, fmt.Sprintf("limiting to %d bytes/s", f.BytesPerSecond), 0, true)
			return b.paced(p, f.BytesPerSecond, write)
		}
	}
	b.sent += int64(len(p))
	return write(p)
}

// paced writes p in slices of a tenth of a second's worth of bytes.
func (b *byteFaults) paced(p []byte, rate int64, write func([]byte) error) error {
	slice := max(int(rate/10), 1)
	for len(p) > 0 {
		n := min(slice, len(p))
		start := time.Now()
		if err := write(p[:n]); err != nil {
			return err
		}
		b.sent += int64(n)
		p = p[n:]
		want := time.Duration(float64(n) / float64(rate) * float64(time.Second))
		if spent := time.Since(start); spent < want {
			time.Sleep(want - spent)
		}
	}
	return nil
}

// faultWriter is a net.Conn whose writes go through byte faults.
type faultWriter struct {
	net.Conn
	faults *byteFaults
}

func (w *faultWriter) Write(p []byte) (int, error) {
	n := 0
	err := w.faults.write(p, func(b []byte) error {
		m, err := w.Conn.Write(b)
		n += m
		return err
	})
	return n, err
}

// CloseWrite keeps half-close working through the wrapper.
func (w *faultWriter) CloseWrite() error {
	if cw, ok := w.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return w.Conn.Close()
}

// resetBoth closes both connections with a TCP reset, as a failing
// middlebox would.
func resetBoth(conns ...net.Conn) func() {
	return func() {
		for _, c := range conns {
			if tc, ok := c.(interface{ SetLinger(int) error }); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		}
	}
}

// messageFaults decide what happens to one WebSocket message.
type messageFaults struct {
	conn   *connFaults
	from   string
	faults []policy.Fault
	count  int // data messages seen from this side
}

func (c *connFaults) forMessages(from, url string) *messageFaults {
	if c == nil {
		return nil
	}
	m := &messageFaults{conn: c, from: from}
	for _, f := range c.srv.opts.Faults {
		if f.IsMessageFault() && f.Applies(from, url) {
			m.faults = append(m.faults, f)
		}
	}
	if len(m.faults) == 0 {
		return nil
	}
	return m
}

// messageVerdict is what the message faults decided.
type messageVerdict struct {
	drop, duplicate bool
	delay           time.Duration
	closeCode       uint16 // close both sides with this code after passing the message
	fault           string // the fault that decided, for ws_message
}

// decide applies the faults to a message of type op ("text", "pong", ...).
func (m *messageFaults) decide(op string, isData bool) messageVerdict {
	var v messageVerdict
	if m == nil {
		return v
	}
	if isData {
		m.count++
	}
	for _, f := range m.faults {
		switch {
		case f.Kind == policy.FaultWSStallPing && op == "pong":
			v.drop, v.fault = true, f.Kind
			m.conn.fire(f, m.from, "swallowed a pong, so the peer's heartbeat goes unanswered", m.count, false)
		case !isData:
		case f.Kind == policy.FaultWSDrop && m.conn.chance() < f.Rate:
			v.drop, v.fault = true, f.Kind
			m.conn.fire(f, m.from, fmt.Sprintf("dropped message %d", m.count), m.count, false)
		case f.Kind == policy.FaultWSDuplicate && m.conn.chance() < f.Rate:
			v.duplicate, v.fault = true, f.Kind
			m.conn.fire(f, m.from, fmt.Sprintf("sent message %d twice", m.count), m.count, false)
		case f.Kind == policy.FaultWSDelay:
			v.delay, v.fault = f.Delay, f.Kind
			m.conn.fire(f, m.from, fmt.Sprintf("delayed message %d by %s", m.count, f.Delay), m.count, false)
		case f.Kind == policy.FaultWSClose && m.count == f.CloseAfter:
			v.closeCode, v.fault = f.CloseCode, f.Kind
			m.conn.fire(f, m.from, fmt.Sprintf("closed both sides with %d after message %d", f.CloseCode, m.count), m.count, false)
		}
		if v.drop {
			break
		}
	}
	return v
}

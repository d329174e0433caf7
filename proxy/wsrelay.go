package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
)

// wsPeer is one side of a relayed WebSocket. Both directions may write to
// it (a relayed frame and a close hopscope sends), hence the lock.
type wsPeer struct {
	conn net.Conn
	mu   sync.Mutex
	// edge follows the frames written, so that a close of hopscope's own
	// never lands inside one.
	edge wsframe.Edge
	// closed is set once hopscope ended what it sends the peer: nothing
	// may follow its close frame.
	closed bool
	// boundary wakes an injection waiting for the stream to the peer to
	// be between messages; nil until one waits.
	boundary *sync.Cond
}

func (p *wsPeer) write(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errClosedByProxy
	}
	n, err := p.conn.Write(b)
	p.edge.Wrote(b[:n])
	if p.boundary != nil {
		p.boundary.Broadcast()
	}
	return err
}

// sendClose writes hopscope's close frame and ends what the peer is sent.
// A peer in the middle of a frame (a long message cut where it broke the
// protocol) gets no close frame, which it would read as payload: only the
// connection's end, which it sees as an abnormal closure (1006).
func (p *wsPeer) sendClose(frame []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.boundary != nil {
		p.boundary.Broadcast()
	}
	if p.edge.Between() {
		_, _ = p.conn.Write(frame)
	}
}

// wsSession is one relayed WebSocket.
type wsSession struct {
	srv *Server
	id  flow.ID
	// opened is the session's record as it opened; its close record
	// starts from a copy.
	opened   flow.WSSession
	seq      atomic.Uint64 // messages seen, both directions
	info     connInfo
	url      string
	path     string
	neg      negotiation
	start    time.Time
	client   *wsPeer
	upstream *wsPeer
	idle     *idleClock  // nil: no idle limit
	faults   *connFaults // nil: no --fault
	// intercept is the interceptor's decider for this session (both
	// directions), live the interceptor's handle on it; nil: none.
	intercept WSDecider
	live      *WSLive
	// swallowClient holds every byte the client sends after the upgrade
	// (the web-filter profile): the server never receives a message.
	swallowClient bool

	closeOnce sync.Once
	mu        sync.Mutex
	close     closeRecord
	// pumps relay from the client and from the server; nil until they
	// start (and the client's stays nil while it is swallowed).
	pumps [2]*pump
}

// closeRecord is how the session closed.
type closeRecord struct {
	seen   bool
	code   ws.StatusCode
	reason string
	from   string
	// endedBy and endErr say which TCP side ended first, and how, when
	// there was no close handshake.
	endedBy string
	endErr  error
}

// errClosedByProxy ends a direction after hopscope itself closed the
// connection (a rule or a violation).
var errClosedByProxy = errors.New("closed by hopscope")

// run relays both directions until both are done. Bytes the handshake
// readers already held are fed first.
func (sess *wsSession) run(clientPrefix, upstreamPrefix []byte) {
	done := make(chan struct{})
	sess.relay(nil, clientPrefix, upstreamPrefix, func() { close(done) })
	<-done
}

// relay relays both directions, each on a pump of its own that parks in
// pl (nil: none) while its side is quiet, and calls done once both have
// ended and the session's end is published.
func (sess *wsSession) relay(pl *poller, clientPrefix, upstreamPrefix []byte, done func()) {
	fromClient := sess.direction(wsframe.Client, sess.client, sess.upstream, !sess.neg.clientNoContextTakeover)
	fromServer := sess.direction(wsframe.Server, sess.upstream, sess.client, !sess.neg.serverNoContextTakeover)
	var left atomic.Int32
	left.Store(2)
	end := func(d *wsDirection, err error) {
		d.releaseHeld()
		sess.ended(d.from, err)
		if left.Add(-1) > 0 {
			return
		}
		sess.closeOnce.Do(sess.closeConns) // also when neither direction ran
		sess.publishClose(fromClient, fromServer)
		if sess.live != nil {
			sess.srv.opts.Interceptor.WebSocketClosed(sess.live)
		}
		done()
	}
	// Both pumps exist before either runs: an early end wakes both.
	sess.pumps[1] = fromServer.pump(pl, end)
	if !sess.swallowClient {
		sess.pumps[0] = fromClient.pump(pl, end)
	}
	go fromServer.start(sess.pumps[1], upstreamPrefix)
	if sess.swallowClient {
		go func() { end(fromClient, sess.swallow(fromClient, clientPrefix)) }()
		return
	}
	go fromClient.start(sess.pumps[0], clientPrefix)
}

// publishClose publishes the session's end, once both directions are done.
func (sess *wsSession) publishClose(fromClient, fromServer *wsDirection) {
	bus := sess.srv.flows
	if !bus.Active() {
		return
	}
	sess.mu.Lock()
	c := sess.close
	sess.mu.Unlock()
	rec := sess.opened
	rec.CloseHandshake = c.seen
	if c.seen {
		rec.Code, rec.Reason, rec.ClosedBy = uint16(c.code), c.reason, c.from
	} else {
		// No close handshake: the TCP connection just ended (1006).
		rec.Code, rec.ClosedBy = uint16(ws.StatusAbnormalClosure), c.endedBy
		if c.endErr != nil {
			rec.Error = c.endErr.Error()
		}
	}
	rec.Duration = time.Since(sess.start)
	rec.ClientMessages, rec.ClientBytes = fromClient.messages, fromClient.wireBytes
	rec.ServerMessages, rec.ServerBytes = fromServer.messages, fromServer.wireBytes
	bus.Publish(flow.Record{Kind: flow.KindWSClose, Session: &rec})
}

func (sess *wsSession) direction(from wsframe.Side, src, dst *wsPeer, takeover bool) *wsDirection {
	opts := sess.srv.opts.WebSocket
	d := &wsDirection{
		sess: sess,
		from: from,
		src:  src,
		dst:  dst,
		parser: wsframe.New(wsframe.Config{
			From:              from,
			Deflate:           sess.neg.deflate && !sess.neg.unknown,
			NoContextTakeover: !takeover,
			UnknownExtensions: sess.neg.unknown,
			InspectLimit:      opts.InspectLimit,
			MaxMessage:        opts.MaxMessage,
			Pool:              sess.srv.wsPool,
		}),
		hold:   sess.srv.holdsMessages(),
		out:    sess.faults.forBytes(from.String()),
		faults: sess.faults.forMessages(from.String(), sess.url),
		// A compressed message can be dropped or changed only when its
		// sender resets its compressor per message.
		canModifyCompressed: !takeover && !sess.neg.unknown,
	}
	if rules := opts.Rules; len(rules) > 0 {
		d.deciders = append(d.deciders, &ruleDecider{rules: rules})
	}
	if sess.intercept != nil {
		d.deciders = append(d.deciders, sess.intercept)
		d.holdFn = d.holdMessage
	}
	if d.faults != nil {
		d.deciders = append(d.deciders, faultDecider{faults: d.faults})
	}
	return d
}

// swallow reads and keeps nothing of what the client sends, as a filtering
// proxy that buffers the bytes after an upgrade as if they were a request
// body.
func (sess *wsSession) swallow(d *wsDirection, prefix []byte) error {
	sess.srv.profileFault(sess.info, sess.id, "web-filter", sess.url,
		"holding the client's bytes after the upgrade like a request body: the server receives no message")
	d.wireBytes += int64(len(prefix))
	n, err := copyConn(io.Discard, d.src.conn, sess.srv.buffers, sess.idle)
	d.wireBytes += n
	if err == nil {
		err = io.EOF
	}
	return err
}

// ended records how a direction ended and closes both connections: when
// either TCP side is done, so is the other, and no goroutine outlives the
// session.
func (sess *wsSession) ended(from wsframe.Side, err error) {
	sess.mu.Lock()
	if sess.close.endedBy == "" {
		sess.close.endedBy = from.String()
		var idle errIdle
		if errors.As(err, &idle) {
			sess.srv.profileFault(sess.info, sess.id, "idle-timeout", sess.url, idle.Error())
		}
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errClosedByProxy) {
			sess.close.endErr = err
		}
	}
	sess.mu.Unlock()
	sess.closeOnce.Do(sess.closeConns)
}

func (sess *wsSession) closeConns() {
	sess.client.conn.Close()
	sess.upstream.conn.Close()
	// A parked direction has no goroutine to meet its closed socket.
	sess.pumps[0].wake()
	sess.pumps[1].wake()
	if sess.live != nil {
		close(sess.live.done)
		sess.client.wake()
		sess.upstream.wake()
	}
}

// noteClose remembers the first close frame: who began the close
// handshake, with which code and reason.
func (sess *wsSession) noteClose(from string, code ws.StatusCode, reason string) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if !sess.close.seen {
		sess.close = closeRecord{seen: true, code: code, reason: reason, from: from}
	}
}

// closeBoth sends a close frame to each side (masked towards the server,
// as a client must) and records hopscope as the one that began it.
func (sess *wsSession) closeBoth(toClient, toServer ws.StatusCode, clientReason, serverReason string) {
	// Recorded before the frames go out: a peer's answering close frame
	// must not be taken for the start of the close handshake.
	sess.noteClose("proxy", toClient, clientReason)
	sess.client.sendClose(closeFrame(toClient, clientReason, false))
	sess.upstream.sendClose(closeFrame(toServer, serverReason, true))
}

// wsDirection relays one direction. It is the parser's Sink: bytes that
// pass unchanged are collected as a run of the chunk being fed and written
// in one call; held messages wait in a pooled buffer until a rule decides.
type wsDirection struct {
	sess   *wsSession
	from   wsframe.Side
	src    *wsPeer
	dst    *wsPeer
	parser *wsframe.Parser

	hold                bool // rules or faults may drop or change messages: hold each until complete
	canModifyCompressed bool
	out                 *byteFaults    // nil: bytes go out as they are
	faults              *messageFaults // nil: no message faults

	chunk            []byte
	segStart, segEnd int
	segLive          bool

	ctrl     bool      // the current frame is a control frame
	frameOff int       // offset in the chunk of the current data frame's header while it is in the unwritten run; -1 otherwise
	passed   int64     // wire bytes of the current data message passed on (or in the run)
	holding  bool      // the current data message is being held
	overflow bool      // it outgrew the hold limit and was passed on
	held     *[]byte   // wire bytes of the held data message
	ctrlHeld [131]byte // wire bytes of a held control frame (at most 6+125)
	ctrlN    int

	// deciders say what happens to each complete message, in order:
	// rules, the interceptor's breakpoints, faults.
	deciders []WSDecider
	verdict  WSVerdict     // reused for every message
	view     WSMessageView // reused for every message

	// What a direction reads while a decider holds a message (wshold.go);
	// lastEnd is the offset in the chunk just after the bytes the parser
	// gave last, -1 when they were assembled from earlier chunks.
	ahead      [][]byte
	aheadBytes int
	aheadErr   error
	scan       aheadScan
	sentAhead  int
	lastEnd    int
	holdFn     func(until <-chan struct{}) // nil: a decider's hold just waits
	writeErr   error                       // a write before the deciders failed
	cr         *chunkReader                // the pump's reader, told when a hold moved its deadline

	messages, wireBytes int64
	// slab holds the payload copies made for observers, so that copying
	// them costs an allocation per block, not per message.
	slab flow.Slab
	// arrived is when the chunk being fed was read, the time of every
	// message it completes: one clock read per chunk, not per message
	// (reading the clock is dearer than relaying a small frame). Zero
	// when nobody observes.
	arrived time.Time
}

// pump reads the direction's source and feeds each chunk to the parser.
func (d *wsDirection) pump(pl *poller, end func(*wsDirection, error)) *pump {
	cr := newChunkReader(d.src.conn, d.sess.srv.buffers, d.sess.idle)
	d.cr = cr
	p := newPump(cr, pl, d.handle, func(err error) { end(d, err) })
	// The slab's block (16 KiB) would otherwise stay with an idle session
	// for its whole life; records already published keep their copies.
	p.quiet = func() { d.slab = flow.Slab{} }
	return p
}

// start feeds the bytes the handshake reader already held, then relays.
func (d *wsDirection) start(p *pump, prefix []byte) {
	if len(prefix) > 0 {
		if err := d.handle(prefix); err != nil {
			p.end(err)
			return
		}
	}
	p.run()
}

// handle feeds a chunk, then what was read ahead while a message in it
// was held (wshold.go).
func (d *wsDirection) handle(chunk []byte) error {
	err := d.feed(chunk)
	if err == nil && d.scan.on {
		err = d.feedAhead()
	}
	return err
}

// feed parses one chunk and passes it on.
func (d *wsDirection) feed(chunk []byte) error {
	d.chunk, d.segLive, d.frameOff, d.lastEnd = chunk, false, -1, -1
	if d.sess.srv.flows.Active() {
		d.arrived = time.Now()
	}
	err := d.parser.Feed(chunk, d)
	if err != nil {
		err = d.failed(err)
	} else {
		err = d.flush()
	}
	d.chunk = nil
	return err
}

// failed ends the direction after an error from the parser or a write. A
// violation is refused: of the frame that broke the protocol nothing goes
// out that is still unwritten (the whole frame when it came in this chunk,
// else its bytes from the first invalid one on); the valid frames before
// it do go out, then both sides are closed.
func (d *wsDirection) failed(err error) error {
	// Only on the error path: errors.As makes its target escape, which
	// would cost an allocation per chunk.
	var v *wsframe.Violation
	if !errors.As(err, &v) {
		_ = d.flush() // the valid bytes before a rule's close still go out
		return err
	}
	if v.InFrame && !d.ctrl && d.frameOff >= 0 && d.segLive {
		d.passed -= int64(d.segEnd - d.frameOff)
		d.segEnd = d.frameOff
	}
	_ = d.flush()
	d.violation(v)
	return errClosedByProxy
}

// violation closes both sides: the offender gets the violation's code, the
// other side a protocol error naming who broke the protocol.
func (d *wsDirection) violation(v *wsframe.Violation) {
	reason := "hopscope: " + v.Reason
	other := fmt.Sprintf("hopscope: the %s broke the protocol", d.from)
	toClient, toServer := v.Code, ws.StatusProtocolError
	clientReason, serverReason := reason, other
	if d.from == wsframe.Server {
		toClient, toServer = ws.StatusProtocolError, v.Code
		clientReason, serverReason = other, reason
	}
	d.sess.closeBoth(toClient, toServer, clientReason, serverReason)
	passed := d.passed
	if v.InFrame && d.ctrl || !v.InFrame && !d.parser.InMessage() {
		passed = 0 // a control frame, or the header of a new message
	}
	if bus := d.sess.srv.flows; bus.Active() {
		bus.Publish(flow.Record{Kind: flow.KindWSViolation, Violation: &flow.WSViolation{
			Session: d.sess.id, Client: d.sess.info.flowClient(), Tunnel: d.sess.info.tunnelFlow,
			URL: d.sess.url, Side: flowSide(d.from), Violation: v.Reason, Code: uint16(v.Code),
			BytesPassed: passed, Time: time.Now(),
		}})
	}
}

func flowSide(s wsframe.Side) flow.Side {
	if s == wsframe.Client {
		return flow.FromClient
	}
	return flow.FromServer
}

// Header implements wsframe.Sink.
// A control frame is always held until it is complete and checked (at most
// 131 bytes), so that a bad one never reaches the other side.
func (d *wsDirection) Header(h ws.Header, raw []byte, off int) error {
	d.lastEnd = end(raw, off)
	d.ctrl = h.OpCode.IsControl()
	if d.ctrl {
		d.ctrlN = copy(d.ctrlHeld[:], raw)
		return nil
	}
	if h.OpCode != ws.OpContinuation {
		d.passed = 0
		if d.hold {
			d.holding, d.overflow = true, false
		}
	}
	if err := d.route(raw, off); err != nil {
		return err
	}
	d.frameOff = -1
	if off >= 0 && d.segLive && d.segEnd == off+len(raw) {
		d.frameOff = off
	}
	return nil
}

// Payload implements wsframe.Sink.
func (d *wsDirection) Payload(raw []byte, off int) error {
	d.lastEnd = end(raw, off)
	if d.ctrl {
		d.ctrlN += copy(d.ctrlHeld[d.ctrlN:], raw)
		return nil
	}
	return d.route(raw, off)
}

func (d *wsDirection) route(raw []byte, off int) error {
	if !d.holding || d.ctrl {
		return d.pass(raw, off)
	}
	if d.held == nil {
		d.held = d.sess.srv.wsPool.GetBytes()
	}
	if limit := d.sess.srv.opts.WebSocket.InspectLimit; len(*d.held)+len(raw) > limit {
		// Too big to hold: pass on what was held and stream the rest;
		// the message can no longer be dropped or changed.
		d.holding, d.overflow = false, true
		if err := d.writeHeld(); err != nil {
			return err
		}
		return d.pass(raw, off)
	}
	*d.held = append(*d.held, raw...)
	return nil
}

// pass forwards bytes unchanged. Bytes from the current chunk extend the
// run to be written; others are written at once, after the run.
func (d *wsDirection) pass(raw []byte, off int) error {
	if !d.ctrl {
		d.passed += int64(len(raw))
	}
	if off >= 0 && d.segLive && off == d.segEnd {
		d.segEnd += len(raw)
		return nil
	}
	if err := d.flush(); err != nil {
		return err
	}
	if off >= 0 {
		d.segStart, d.segEnd, d.segLive = off, off+len(raw), true
		return nil
	}
	return d.write(raw)
}

// write sends bytes to the other side, through the byte faults if any.
func (d *wsDirection) write(b []byte) error {
	if d.out == nil {
		return d.dst.write(b)
	}
	return d.out.write(b, d.dst.write)
}

func (d *wsDirection) flush() error {
	if !d.segLive || d.segEnd == d.segStart {
		d.segLive = false
		return nil
	}
	d.segLive = false
	if d.frameOff >= d.segStart {
		d.frameOff = -1 // written: it can no longer be taken back
	}
	return d.write(d.chunk[d.segStart:d.segEnd])
}

func (d *wsDirection) writeHeld() error {
	if d.held == nil || len(*d.held) == 0 {
		return nil
	}
	if err := d.flush(); err != nil {
		return err
	}
	d.passed += int64(len(*d.held))
	err := d.write(*d.held)
	*d.held = (*d.held)[:0]
	return err
}

func (d *wsDirection) releaseHeld() {
	if d.held != nil {
		d.sess.srv.wsPool.PutBytes(d.held)
		d.held = nil
	}
}

// end is the offset just after raw in the chunk, -1 when unknown.
func end(raw []byte, off int) int {
	if off < 0 {
		return -1
	}
	return off + len(raw)
}

// Message implements wsframe.Sink: the deciders say what happens to the
// message, the relay publishes it with their verdict and applies it.
func (d *wsDirection) Message(m *wsframe.Message) error {
	d.messages++
	d.wireBytes += m.WireLen
	if m.Op == ws.OpClose {
		d.sess.noteClose(d.from.String(), m.CloseCode, m.CloseReason)
	}
	if d.sentAhead > 0 && (m.Op == ws.OpPing || m.Op == ws.OpPong) {
		// Sent on while a message before it was held.
		d.sentAhead--
		v := &d.verdict
		*v = WSVerdict{Action: policy.WSPass, Note: "passed while a message before it was paused"}
		d.publish(m, v)
		return nil
	}
	v := d.decide(m)
	if err := d.writeErr; err != nil {
		d.writeErr = nil
		return err
	}
	d.publish(m, v)
	return d.apply(m, v)
}

// publish hands the message's record to the flow bus. It allocates
// nothing unless an observer wants payloads, and then once per slab.
func (d *wsDirection) publish(m *wsframe.Message, v *WSVerdict) {
	bus := d.sess.srv.flows
	if !bus.Active() {
		d.sess.seq.Add(1)
		return
	}
	arrived := d.arrived
	if arrived.IsZero() { // the observer came mid-chunk
		arrived = time.Now()
	}
	rec := flow.WSMessage{
		Session: d.sess.id, Client: d.sess.info.flowClient(), Tunnel: d.sess.info.tunnelFlow,
		Seq: d.sess.seq.Add(1), Time: arrived, From: flowSide(d.from), Opcode: flow.Opcode(m.Op),
		Len: m.Len, WireLen: m.WireLen, PayloadLen: m.PayloadLen, Fragments: m.Fragments,
		Compressed: m.Compressed, Truncated: m.Truncated, Action: v.Action, Rule: v.Rule, Note: v.Note,
		Actor: v.Actor,
	}
	if m.Op == ws.OpClose {
		rec.CloseCode, rec.CloseReason = uint16(m.CloseCode), m.CloseReason
	}
	if n := bus.PayloadBytes(); n > 0 {
		rec.Payload = d.slab.Copy(m.Payload, n)
		rec.Replacement = d.slab.Copy(v.Replacement, n)
	}
	bus.Publish(flow.Record{Kind: flow.KindWSMessage, Message: rec})
}

// passHeld passes on a held message, twice when duplicate is set.
func (d *wsDirection) passHeld(m *wsframe.Message, duplicate bool) error {
	if err := d.flush(); err != nil {
		return err
	}
	if m.Op.IsControl() {
		if err := d.write(d.ctrlHeld[:d.ctrlN]); err != nil {
			return err
		}
		if duplicate {
			return d.write(d.ctrlHeld[:d.ctrlN])
		}
		return nil
	}
	if !duplicate {
		return d.writeHeld()
	}
	if err := d.write(*d.held); err != nil {
		return err
	}
	return d.writeHeld()
}

// messageLen is a message's plaintext length for rules and events: its
// wire payload length when it could not be decompressed.
func messageLen(m *wsframe.Message) int64 {
	if m.Len < 0 {
		return m.PayloadLen
	}
	return m.Len
}

// dataFrame builds a single uncompressed frame (rewritten messages are sent
// uncompressed, which permessage-deflate allows message by message).
func dataFrame(op ws.OpCode, payload []byte, masked bool) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}
	if masked {
		h.Masked, h.Mask = true, ws.NewMask()
	}
	var b bytes.Buffer
	b.Grow(ws.HeaderSize(h) + len(payload))
	_ = ws.WriteHeader(&b, h)
	start := b.Len()
	b.Write(payload)
	if masked {
		ws.Cipher(b.Bytes()[start:], h.Mask, 0)
	}
	return b.Bytes()
}

func closeFrame(code ws.StatusCode, reason string, masked bool) []byte {
	for len(reason) > 123 || !utf8.ValidString(reason) {
		reason = reason[:len(reason)-1] // never cut a character in two
	}
	return dataFrame(ws.OpClose, ws.NewCloseFrameBody(code, reason), masked)
}

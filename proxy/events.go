package proxy

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
)

// EventListen is the "event" field of the start-up line. It is the one
// event the proxy writes itself; every other event is a flow record
// (package flow) that observers, the event log among them (package
// eventlog), turn into what they need.
const EventListen = "listen"

// connInfo identifies the client connection an exchange arrived on.
type connInfo struct {
	id     uint64
	client string
	// tunnel is the conn of the CONNECT tunnel an inner request came
	// through (bumped or plaintext), 0 for requests made to the proxy;
	// tunnelFlow is that tunnel's flow ID.
	tunnel     uint64
	tunnelFlow flow.ID
	bumped     bool
}

func (c connInfo) flowClient() flow.Client { return flow.Client{Conn: c.id, Addr: c.client} }

type connInfoKey struct{}

func connInfoFrom(ctx context.Context) connInfo {
	info, _ := ctx.Value(connInfoKey{}).(connInfo)
	return info
}

// Flows is the bus the proxy publishes a record to for every exchange,
// tunnel, denial, fault and WebSocket session and message. Subscribe
// before Serve to see every flow; Shutdown closes the bus once the
// traffic has ended, so observers get the last records.
func (s *Server) Flows() *flow.Bus { return s.flows }

func (s *Server) logListen(addr string, summary map[string]string, insecureUpstream bool, parent, caFingerprint string) {
	ev := s.log.Info()
	if ev == nil {
		return
	}
	dict := zerolog.Dict()
	for k, v := range summary {
		dict.Str(k, v)
	}
	ev.Str("event", EventListen).Str("addr", addr).Dict("policy", dict).
		Bool("insecure_upstream", insecureUpstream)
	if parent != "" {
		ev.Str("upstream_proxy", parent)
	}
	if caFingerprint != "" {
		ev.Str("ca_fingerprint", caFingerprint)
	}
	ev.Msg("proxy listening")
}

// Who answered an exchange (flow.Exchange.AnsweredBy).
const (
	answeredByDestination = "destination"
	answeredByProxy       = "proxy"
)

// exchangeFlow is one exchange's record while it runs. It is nil when no
// observer listened as the exchange began, and every method is a no-op
// on nil, so unobserved traffic pays nothing.
type exchangeFlow struct {
	bus *flow.Bus
	rec flow.Exchange
	// The request body may still be read by the transport's write loop
	// when the answer is complete, hence the lock on its tap.
	reqMu   sync.Mutex
	reqTap  *flow.BodyTap
	reqEOF  bool
	reqDone bool
	respTap *flow.BodyTap
	// head is when the answer's head was ready.
	head time.Time
}

// startExchange publishes the start of an exchange whose request head r
// has been read; url names its target in events.
func (s *Server) startExchange(r *http.Request, info connInfo, url string) *exchangeFlow {
	if !s.flows.Active() {
		return nil
	}
	x := &exchangeFlow{bus: s.flows, rec: flow.Exchange{
		ID: s.flows.NextID(), Client: info.flowClient(), Tunnel: info.tunnelFlow, Bumped: info.bumped,
		Method: r.Method, URL: url, Proto: r.Proto, RequestHeader: requestHead(r), Start: time.Now(),
	}}
	if n := s.flows.BodyBytes(); n > 0 {
		x.reqTap, x.respTap = flow.NewBodyTap(n), flow.NewBodyTap(n)
	}
	start := x.rec
	s.flows.Publish(flow.Record{Kind: flow.KindExchangeStart, Exchange: &start})
	return x
}

// requestHead is the request's header as the client sent it: net/http
// moves Host and Transfer-Encoding out of the map, and the proxy removes
// hop-by-hop fields from it before forwarding.
func requestHead(r *http.Request) http.Header {
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if r.Host != "" {
		h["Host"] = []string{r.Host}
	}
	if len(r.TransferEncoding) > 0 {
		h["Transfer-Encoding"] = append([]string(nil), r.TransferEncoding...)
	}
	return h
}

// id is the exchange's flow ID, 0 when it is not observed.
func (x *exchangeFlow) id() flow.ID {
	if x == nil {
		return 0
	}
	return x.rec.ID
}

// requestBody notes request body bytes as they are read.
func (x *exchangeFlow) requestBody(p []byte, eof bool) {
	if x == nil || x.reqTap == nil {
		return
	}
	x.reqMu.Lock()
	if !x.reqDone {
		_, _ = x.reqTap.Write(p)
		x.reqEOF = x.reqEOF || eof
	}
	x.reqMu.Unlock()
}

// responseHead notes that the answer's head is ready.
func (x *exchangeFlow) responseHead() {
	if x != nil && x.head.IsZero() {
		x.head = time.Now()
	}
}

// responseBody notes response body bytes as they are written.
func (x *exchangeFlow) responseBody(p []byte) {
	if x != nil {
		_, _ = x.respTap.Write(p)
	}
}

// exchangeEnd is how an exchange ended.
type exchangeEnd struct {
	status int
	// header is the answer's header as the client got it; it is copied.
	header              http.Header
	reqBytes, respBytes int64
	answeredBy          string
	err                 error
	// complete is set when the answer's body ended as it should.
	complete  bool
	webSocket flow.ID
}

// finish publishes the complete exchange.
func (x *exchangeFlow) finish(end exchangeEnd) {
	if x == nil {
		return
	}
	rec := x.rec
	rec.Status = end.status
	rec.ResponseHeader = end.header.Clone()
	x.reqMu.Lock()
	x.reqDone = true
	rec.RequestBody = x.reqTap.Body(end.reqBytes, x.reqEOF)
	x.reqMu.Unlock()
	rec.ResponseBody = x.respTap.Body(end.respBytes, end.complete)
	rec.Duration = time.Since(rec.Start)
	if !x.head.IsZero() {
		rec.FirstByte = x.head.Sub(rec.Start)
	}
	rec.AnsweredBy = end.answeredBy
	if end.err != nil {
		rec.Error = end.err.Error()
	}
	rec.WebSocket = end.webSocket
	x.bus.Publish(flow.Record{Kind: flow.KindExchange, Exchange: &rec})
}

// tunnelRecord is a tunnel's record while it runs.
type tunnelRecord struct {
	flow.Tunnel
	err error
}

// publishTunnel publishes a tunnel's opening (flow.KindTunnelOpen) or its
// end (flow.KindTunnel).
func (s *Server) publishTunnel(kind flow.Kind, rec *tunnelRecord) {
	if !s.flows.Active() {
		return
	}
	t := rec.Tunnel
	if kind == flow.KindTunnel {
		t.Duration = time.Since(t.Start)
		if rec.err != nil {
			t.Error = rec.err.Error()
		}
	}
	s.flows.Publish(flow.Record{Kind: kind, Tunnel: &t})
}

// deny publishes a refusal of the exchange or tunnel id.
func (s *Server) deny(info connInfo, id flow.ID, method, target string, pe *proxyError) {
	if !s.flows.Active() {
		return
	}
	reason := pe.Reason
	if reason == "" {
		reason = pe.Message
	}
	if id == 0 {
		id = s.flows.NextID()
	}
	s.flows.Publish(flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{
		Client: info.flowClient(), Flow: id, Method: method, Target: target,
		Rule: pe.Rule, Reason: reason, Hint: pe.Hint, Status: pe.Status, Time: time.Now(),
	}})
}

// fault publishes a fault that acted on the tunnel or session id.
func (s *Server) fault(info connInfo, id flow.ID, f policy.Fault, from, target, detail string, message int) {
	if !s.flows.Active() {
		return
	}
	s.flows.Publish(flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{
		Client: info.flowClient(), Flow: id, Fault: f.Kind, Spec: f.Spec, From: from,
		Target: target, Detail: detail, Message: message, Time: time.Now(),
	}})
}

// profileFault reports a failure a profile causes (idle-timeout, web-filter).
func (s *Server) profileFault(info connInfo, id flow.ID, kind, target, detail string) {
	s.fault(info, id, policy.Fault{Kind: kind, Spec: kind}, "", target, detail, 0)
}

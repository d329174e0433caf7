// Package metrics keeps Prometheus metrics about the traffic hopscope
// carries. It is an observer of the proxy's flow bus (package flow): every
// figure comes from a published record, none from calls in the relay, so
// the hot paths pay nothing for it beyond the record they publish anyway.
// Handler serves the figures in Prometheus's text format; the admin (UI)
// listener mounts it at /metrics, never the proxy port.
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hopscope/hopscope/flow"
)

// Metrics is a flow.Observer that turns records into Prometheus metrics.
// Create it with New, subscribe it with Subscribe, serve Handler.
type Metrics struct {
	reg *prometheus.Registry

	requests      *prometheus.CounterVec
	requestTime   prometheus.Histogram
	firstByteTime prometheus.Histogram
	httpBytes     *prometheus.CounterVec
	tunnels       *prometheus.CounterVec
	tunnelBytes   *prometheus.CounterVec
	dialTime      prometheus.Histogram
	activeTunnels prometheus.Gauge
	activeWS      prometheus.Gauge
	wsMessages    *prometheus.CounterVec
	wsViolations  *prometheus.CounterVec
	ruleHits      *prometheus.CounterVec
	faults        *prometheus.CounterVec
	upstreamErrs  *prometheus.CounterVec
	leafCache     *prometheus.CounterVec

	// Only the observer goroutine touches these (Observe is never called
	// concurrently for one subscription).
	openTunnels map[flow.ID]struct{}
	openWS      map[flow.ID]struct{}
	denied      recentIDs

	mu   sync.Mutex
	subs []*flow.Subscription
}

// Namespace prefixes every metric name.
const Namespace = "hopscope"

// New returns metrics on a registry of their own (no global state), with
// the Go runtime and process collectors beside them.
func New() *Metrics {
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		openTunnels: map[flow.ID]struct{}{},
		openWS:      map[flow.ID]struct{}{},
		denied:      newRecentIDs(4096),
	}
	f := factory{m.reg}
	m.requests = f.counterVec("http_requests_total",
		"HTTP exchanges completed, by method (other for methods RFC 9110 does not define), status code and decision: forwarded (the destination answered), denied (a policy, auth or tunnel rule refused it), error (hopscope answered for an unreachable or failing destination) or local (hopscope's own pages: info, CA, PAC).",
		"method", "code", "decision")
	m.requestTime = f.histogram("http_request_duration_seconds",
		"Time from a request's head to the end of its answer.", prometheus.DefBuckets)
	m.firstByteTime = f.histogram("http_first_byte_seconds",
		"Time from a request's head to the answer's head.", prometheus.DefBuckets)
	m.httpBytes = f.counterVec("http_body_bytes_total",
		"HTTP body bytes of completed exchanges: up (request bodies) and down (response bodies).", "direction")
	m.tunnels = f.counterVec("tunnels_total",
		"Tunnels (CONNECT and SOCKS5) by outcome: splice, bump and http for tunnels that ended after opening, denied for tunnels a rule refused, failed for destinations that could not be reached.",
		"mode")
	m.tunnelBytes = f.counterVec("tunnel_bytes_total",
		"Bytes carried by ended tunnels: up (client to destination) and down. Bumped tunnels count the client's TLS bytes.", "direction")
	m.dialTime = f.histogram("tunnel_dial_duration_seconds",
		"Time to reach a tunnel's destination (connect, or the parent proxy's CONNECT), failures included.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10})
	m.activeTunnels = f.gauge("tunnels_active", "Tunnels open now.")
	m.activeWS = f.gauge("websockets_active", "WebSocket sessions open now.")
	m.wsMessages = f.counterVec("ws_messages_total",
		"WebSocket messages and control frames, by the side that sent them, opcode and what hopscope did (pass, drop, close, rewrite).",
		"direction", "opcode", "action")
	m.wsViolations = f.counterVec("ws_violations_total",
		"WebSocket protocol violations, by the side that committed them.", "side")
	m.ruleHits = f.counterVec("rule_hits_total",
		"Rules that decided: kind policy (refusals, by rule as in deny events) or websocket (message rules, by name).",
		"kind", "rule")
	m.faults = f.counterVec("faults_total", "Injected faults (--fault, profile failures) that acted, by kind.", "fault")
	m.upstreamErrs = f.counterVec("upstream_errors_total",
		"Destinations hopscope could not reach or talk to, by RFC 9209 Proxy-Status error type (connection_refused, dns_error, tls_certificate_error, connection_timeout, ...).",
		"reason")
	m.leafCache = f.counterVec("leaf_cache_total",
		"Leaf certificates for bumped tunnels: hit (from the cache) or miss (minted).", "result")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: Namespace, Name: "metrics_records_dropped_total",
		Help: "Flow records these metrics missed because their queue was full; traffic never waits for them.",
	}, m.dropped))
	return m
}

// factory registers metrics on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

// Subscribe makes m an observer of bus. Metrics need no payloads or
// bodies, and a large queue, so that a burst does not make the gauges
// miss an open or a close.
func (m *Metrics) Subscribe(bus *flow.Bus) *flow.Subscription {
	sub := bus.Subscribe(m, flow.Options{Name: "metrics", Queue: 1 << 16})
	m.mu.Lock()
	m.subs = append(m.subs, sub)
	m.mu.Unlock()
	return sub
}

func (m *Metrics) dropped() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n uint64
	for _, s := range m.subs {
		n += s.Dropped()
	}
	return float64(n)
}

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is where the metrics live, for tests and for adding more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

var _ flow.Observer = (*Metrics)(nil)

// Observe updates the metrics from a batch of records.
func (m *Metrics) Observe(batch []flow.Record) {
	for i := range batch {
		r := &batch[i]
		switch r.Kind {
		case flow.KindExchange:
			m.exchange(r.Exchange)
		case flow.KindTunnelOpen:
			m.openTunnels[r.Tunnel.ID] = struct{}{}
			m.activeTunnels.Inc()
		case flow.KindTunnel:
			m.tunnel(r.Tunnel)
		case flow.KindDenial:
			m.denial(r.Denial)
		case flow.KindFault:
			m.faults.WithLabelValues(r.Fault.Fault).Inc()
		case flow.KindWSOpen:
			m.openWS[r.Session.ID] = struct{}{}
			m.activeWS.Inc()
		case flow.KindWSClose:
			if _, ok := m.openWS[r.Session.ID]; ok {
				delete(m.openWS, r.Session.ID)
				m.activeWS.Dec()
			}
		case flow.KindWSMessage:
			msg := &r.Message
			m.wsMessages.WithLabelValues(msg.From.String(), msg.Opcode.String(), msg.Action).Inc()
			if msg.Rule != "" {
				m.ruleHits.WithLabelValues("websocket", msg.Rule).Inc()
			}
		case flow.KindWSViolation:
			m.wsViolations.WithLabelValues(r.Violation.Side.String()).Inc()
		}
	}
}

// Decisions, the decision label of hopscope_http_requests_total.
const (
	DecisionForwarded = "forwarded"
	DecisionDenied    = "denied"
	DecisionError     = "error"
	DecisionLocal     = "local"
)

func (m *Metrics) exchange(x *flow.Exchange) {
	decision := DecisionForwarded
	if x.AnsweredBy != "destination" {
		switch {
		case m.denied.take(x.ID):
			decision = DecisionDenied
		case x.Status >= 500:
			decision = DecisionError
			if reason := proxyStatusError(x.ResponseHeader); reason != "" {
				m.upstreamErrs.WithLabelValues(reason).Inc()
			}
		default:
			decision = DecisionLocal
		}
	}
	m.requests.WithLabelValues(methodLabel(x.Method), strconv.Itoa(x.Status), decision).Inc()
	m.requestTime.Observe(x.Duration.Seconds())
	if x.FirstByte > 0 {
		m.firstByteTime.Observe(x.FirstByte.Seconds())
	}
	if x.RequestBody.Len > 0 {
		m.httpBytes.WithLabelValues("up").Add(float64(x.RequestBody.Len))
	}
	if x.ResponseBody.Len > 0 {
		m.httpBytes.WithLabelValues("down").Add(float64(x.ResponseBody.Len))
	}
}

func (m *Metrics) tunnel(t *flow.Tunnel) {
	if _, ok := m.openTunnels[t.ID]; ok {
		delete(m.openTunnels, t.ID)
		m.activeTunnels.Dec()
	}
	if t.Dial > 0 {
		m.dialTime.Observe(t.Dial.Seconds())
	}
	switch {
	case t.Status == http.StatusForbidden:
		// Refused at dial time: counted as denied by its denial record.
	case t.Status != http.StatusOK:
		m.tunnels.WithLabelValues("failed").Inc()
		if t.ErrorType != "" {
			m.upstreamErrs.WithLabelValues(t.ErrorType).Inc()
		}
	default:
		m.tunnels.WithLabelValues(t.Mode).Inc()
		if t.Mode == "bump" {
			switch t.Leaf {
			case "cached":
				m.leafCache.WithLabelValues("hit").Inc()
			case "minted":
				m.leafCache.WithLabelValues("miss").Inc()
			}
		}
	}
	m.tunnelBytes.WithLabelValues("up").Add(float64(t.BytesUp))
	m.tunnelBytes.WithLabelValues("down").Add(float64(t.BytesDown))
}

func (m *Metrics) denial(d *flow.Denial) {
	if d.Rule != "" {
		m.ruleHits.WithLabelValues("policy", d.Rule).Inc()
	}
	switch d.Method {
	case http.MethodConnect, "SOCKS5":
		m.tunnels.WithLabelValues("denied").Inc()
	}
	// The refused exchange's own record follows; remember that it was a
	// refusal. A refused tunnel has no exchange, hence a bounded memory.
	m.denied.add(d.Flow)
}

// methodLabel keeps the method label bounded: a client may send any
// token as a method, and each would be a new time series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "other"
}

// proxyStatusError is the error type of a Proxy-Status header hopscope
// wrote ("hopscope; error=dns_error; details=...").
func proxyStatusError(h map[string][]string) string {
	for _, v := range h["Proxy-Status"] {
		for _, param := range strings.Split(v, ";") {
			if val, ok := strings.CutPrefix(strings.TrimSpace(param), "error="); ok {
				return val
			}
		}
	}
	return ""
}

// recentIDs remembers the last n IDs added, so a lookup soon after needs
// no unbounded set.
type recentIDs struct {
	ring []flow.ID
	next int
	set  map[flow.ID]struct{}
}

func newRecentIDs(n int) recentIDs {
	return recentIDs{ring: make([]flow.ID, n), set: make(map[flow.ID]struct{}, n)}
}

func (r *recentIDs) add(id flow.ID) {
	if old := r.ring[r.next]; old != 0 {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}

// take reports whether id was added, and forgets it.
func (r *recentIDs) take(id flow.ID) bool {
	if _, ok := r.set[id]; !ok {
		return false
	}
	delete(r.set, id)
	return true
}

package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
)

// Options configure a Server. Pass a pointer to New; zero fields take the
// defaults documented on each field, filled in one place (withDefaults).
type Options struct {
	// Policy decides which destinations and clients are allowed.
	// nil: policy.New(), which allows CONNECT to port 443 only and every
	// destination host.
	Policy *policy.Policy

	// Credentials, when not empty, are required of every proxied request
	// (407 otherwise). nil or empty: no authentication.
	Credentials *Credentials

	// Pseudonym names this proxy in Via and Proxy-Status headers and is
	// what loop detection looks for. Default "hopscope".
	Pseudonym string

	// UpstreamProxy, when set, is a parent proxy (http://[user:pass@]host:port)
	// that every request and tunnel goes through. nil: connect directly;
	// the environment (HTTP_PROXY and friends) is never consulted.
	UpstreamProxy *url.URL

	// UpstreamTLS is the client TLS configuration for https:// destinations
	// of forwarded requests. nil: system roots, certificates verified.
	// Setting InsecureSkipVerify is dangerous: any machine on the path can
	// then read and change the traffic.
	UpstreamTLS *tls.Config

	// Resolver resolves destination names. nil: net.DefaultResolver.
	Resolver *net.Resolver

	// DialTimeout bounds connecting to a destination. Default 10s.
	DialTimeout time.Duration

	// ResponseHeaderTimeout bounds the wait for a destination's response
	// headers once the request is sent; exceeding it answers 504.
	// Default 2m, long enough for long polling. Negative: no limit.
	ResponseHeaderTimeout time.Duration

	// ReadHeaderTimeout bounds reading a client's request headers (slowloris).
	// Default 10s.
	ReadHeaderTimeout time.Duration

	// IdleTimeout closes client keep-alive connections idle this long.
	// Default 2m.
	IdleTimeout time.Duration

	// Issuer mints the certificates for bumped TLS tunnels; which tunnels
	// are bumped is Policy.Bump. nil: TLS tunnels are always spliced.
	Issuer *mitm.Issuer

	// BumpHTTP1Only offers bumped clients ALPN http/1.1 alone. false (the
	// default): h2 first, as real servers do, so a browser sees HTTP/2 as it
	// would without hopscope; the destination is spoken to in HTTP/1.1.
	BumpHTTP1Only bool

	// CA is served to clients at http://CAHost/ so they can trust it.
	// nil: no CA page.
	CA *certs.CA

	// CAHost is the host name under which the CA page is served.
	// Default "hopscope.ca".
	CAHost string

	// UI is the web UI (package ui), served at http://UIHost/ through the
	// proxy to clients on loopback only: it shows secrets (cookies,
	// authorization headers, payloads), so a client from elsewhere gets
	// 403. nil: the name answers 404 saying how to turn the UI on.
	UI http.Handler

	// UIHost is the host name under which the UI is served through the
	// proxy. Default "hopscope.ui".
	UIHost string

	// WebSocket configures the WebSocket relay.
	WebSocket WebSocketOptions

	// Persona makes hopscope look like another proxy on the wire (the
	// squid profile). The zero value is hopscope itself.
	Persona Persona

	// Upgrades says what the proxy does with Upgrade requests: UpgradeRelay
	// (default), UpgradeStripKeepAlive (squid) or UpgradeStripClose
	// (tinyproxy).
	Upgrades string

	// AllowUpgrade lists protocols that still pass with the strip modes,
	// compared case-sensitively (squid's http_upgrade_request_protocols).
	AllowUpgrade []string

	// WebFilter behaves like a filtering proxy that does not understand
	// WebSockets: it rewrites Connection: Upgrade in the 101 answer and
	// holds the client's bytes after the upgrade as if they were a body,
	// so the server never receives a message.
	WebFilter bool

	// TunnelIdleTimeout cuts tunnels and WebSockets on which neither side
	// has sent anything for this long, without a close frame, as load
	// balancers do. 0: never.
	TunnelIdleTimeout time.Duration

	// Faults are injected into tunnels and WebSockets (--fault).
	Faults []policy.Fault

	// FaultSeed makes probabilistic faults repeatable: the same seed and
	// the same sequence of connections give the same faults. 0: random.
	FaultSeed uint64

	// NoProxy lists destinations that clients should reach directly: the
	// PAC file at /proxy.pac answers DIRECT for them, as it does for
	// loopback. The proxy itself serves them like any other. nil: only
	// loopback bypasses.
	NoProxy []policy.HostPattern

	// NoProxyPlainNames makes the PAC file answer DIRECT for host names
	// without a dot too ("<local>" in --no-proxy, as on Windows).
	NoProxyPlainNames bool

	// Interceptor pauses, changes and injects WebSocket messages (package
	// intercept). nil: none, and messages are held only when rules or
	// faults need it.
	Interceptor Interceptor

	// MaxHeaderBytes caps the size of request headers (431 beyond) and of
	// response headers from destinations (502 beyond). Default 64 KiB.
	MaxHeaderBytes int
}

func (o *Options) withDefaults() Options {
	out := Options{}
	if o != nil {
		out = *o
	}
	if out.Policy == nil {
		out.Policy = policy.New()
	}
	if out.Credentials == nil {
		out.Credentials = NewCredentials()
	}
	if out.Persona.Squid {
		if out.Persona.Host == "" {
			out.Persona.Host = out.Pseudonym // squid's visible_hostname names both
		}
		if out.Persona.Host == "" {
			out.Persona.Host, _ = os.Hostname()
		}
		if out.Persona.Host == "" {
			out.Persona.Host = "localhost"
		}
		if out.Pseudonym == "" {
			out.Pseudonym = out.Persona.Host // squid's Via names its host
		}
	}
	if out.Pseudonym == "" {
		out.Pseudonym = "hopscope"
	}
	if out.UpstreamTLS == nil {
		out.UpstreamTLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if out.UpstreamTLS.ClientSessionCache == nil {
		// New connections to a destination resume their TLS session
		// instead of a full handshake (and a chain verification) each.
		out.UpstreamTLS = out.UpstreamTLS.Clone()
		out.UpstreamTLS.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	if out.DialTimeout == 0 {
		out.DialTimeout = 10 * time.Second
	}
	switch {
	case out.ResponseHeaderTimeout == 0:
		out.ResponseHeaderTimeout = 2 * time.Minute
	case out.ResponseHeaderTimeout < 0:
		out.ResponseHeaderTimeout = 0
	}
	if out.ReadHeaderTimeout == 0 {
		out.ReadHeaderTimeout = 10 * time.Second
	}
	if out.IdleTimeout == 0 {
		out.IdleTimeout = 2 * time.Minute
	}
	out.WebSocket = out.WebSocket.withDefaults()
	if out.CAHost == "" {
		out.CAHost = "hopscope.ca"
	}
	if out.UIHost == "" {
		out.UIHost = "hopscope.ui"
	}
	if out.MaxHeaderBytes == 0 {
		out.MaxHeaderBytes = 64 << 10
	}
	return out
}

// WebSocketOptions configure the WebSocket relay.
type WebSocketOptions struct {
	// Rules drop, close on, or rewrite messages. Rules that can change
	// messages make the relay hold each message until it is complete.
	Rules policy.WSRules
	// InspectLimit is how much of each message is kept for inspection,
	// rules and the payloads observers see; longer messages are relayed
	// and published as truncated. Default 1 MiB; negative: nothing kept.
	// (How much of a payload the event log shows is eventlog.Options.)
	InspectLimit int
	// MaxMessage closes a connection whose peer sends a bigger message,
	// with code 1009. 0: no limit.
	MaxMessage int64
}

func (o WebSocketOptions) withDefaults() WebSocketOptions {
	switch {
	case o.InspectLimit == 0:
		o.InspectLimit = 1 << 20
	case o.InspectLimit < 0:
		o.InspectLimit = 0
	}
	return o
}

package proxy

import (
	"net"
	"net/http"
	"strings"
)

// What the forward path does with Upgrade requests (Options.Upgrades).
const (
	// UpgradeRelay relays WebSockets frame by frame (the default).
	UpgradeRelay = ""
	// UpgradeStripKeepAlive drops Upgrade and sends Connection: keep-alive,
	// as squid 5 does by default: the origin sees an ordinary GET.
	UpgradeStripKeepAlive = "strip-keepalive"
	// UpgradeStripClose drops Upgrade and sends Connection: close on every
	// request, as tinyproxy 1.11 does.
	UpgradeStripClose = "strip-close"
)

// The releases the personas reproduce, as measured (see README), when
// Persona.Version does not name another.
const (
	squidRelease     = "5.7"
	tinyproxyRelease = "1.11.1"
)

// squidMaxAge is the Cache-Control squid 5.7 adds to every request it
// forwards: the 4320-minute maximum of the stock refresh_pattern lines.
const squidMaxAge = "max-age=259200"

// Persona makes hopscope look like another proxy product on the wire: the
// headers it adds, its answers and error pages, its status lines. What the
// product allows (ports, upgrades) is policy and set by the profiles.
type Persona struct {
	// Squid answers and marks messages as squid 5.7 does: Via with
	// "(squid/5.7)" appended to the client's Via line, X-Forwarded-For and
	// Cache-Control upstream, X-Cache, X-Cache-Lookup and Connection on
	// answers, HTTP/1.1 status lines to HTTP/1.0 clients, and squid's
	// error pages with X-Squid-Error.
	Squid bool
	// Tinyproxy answers and marks messages as tinyproxy 1.11.1 does: Via
	// "1.1 tinyproxy (tinyproxy/1.11.1)", Proxy-Authorization passed on,
	// the connection closed after an answer of known length, and its
	// CONNECT answer.
	Tinyproxy bool
	// Host is the proxy host name squid puts in Via, X-Cache and its
	// pages (its visible_hostname). Default: the pseudonym when one is
	// set, else this machine's name.
	Host string
	// Version is the release the persona names in Via, Server and its
	// pages ("6.6" for squid/6.6). Default: the release measured, squid
	// 5.7 or tinyproxy 1.11.1. Only the name changes, not the behaviour.
	Version string
}

// product is the persona's product token, "squid/5.7" or
// "tinyproxy/1.11.1".
func (p Persona) product() string {
	switch {
	case p.Squid:
		return "squid/" + cmpOr(p.Version, squidRelease)
	case p.Tinyproxy:
		return "tinyproxy/" + cmpOr(p.Version, tinyproxyRelease)
	}
	return ""
}

// release is the persona's version alone.
func (p Persona) release() string {
	_, v, _ := strings.Cut(p.product(), "/")
	return v
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// any reports whether hopscope plays another product. Such products do
// not look inside CONNECT tunnels they do not bump, so neither does the
// persona.
func (p Persona) any() bool { return p.Squid || p.Tinyproxy }

// viaName is this proxy's entry in Via: the pseudonym, with the product's
// version in parentheses for a persona.
func (s *Server) viaName() string {
	if s.opts.Persona.any() {
		return s.opts.Pseudonym + " (" + s.opts.Persona.product() + ")"
	}
	return s.opts.Pseudonym
}

// markRequest adds what this proxy adds to a request header for the next
// hop; client is the client's address.
func (s *Server) markRequest(h http.Header, major, minor int, client string) {
	if s.opts.Persona.any() {
		// Both products write one Via line: the client's entries, then
		// their own; neither passes TE on, not even "TE: trailers".
		prior := strings.Join(h["Via"], ", ")
		s.via.add(h, major, minor)
		if prior != "" {
			h["Via"] = []string{prior + ", " + h["Via"][len(h["Via"])-1]}
		}
		delete(h, "Te")
	}
	if s.opts.Persona.Squid {
		if prior := h.Get("X-Forwarded-For"); prior != "" {
			client = prior + ", " + client
		}
		h.Set("X-Forwarded-For", client)
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{squidMaxAge}
		}
		return
	}
	if !s.opts.Persona.any() {
		s.via.add(h, major, minor)
	}
}

// markResponse adds what this proxy adds to an answer for the client; r is
// the client's request.
func (s *Server) markResponse(h http.Header, major, minor int, r *http.Request) {
	if s.opts.Persona.Tinyproxy && r != nil {
		major, minor = clientProto(r) // tinyproxy's Via names the client's version
	}
	s.via.add(h, major, minor)
	if s.opts.Persona.Squid {
		s.squidMarks(h, "MISS", r)
	}
}

// squidMarks are the headers squid puts on every answer, its own pages
// included: lookup is "MISS" for forwarded answers, "NONE" for answers
// squid gave without looking in its cache. net/http replaces the
// Connection header with "close" when it closes the connection after the
// answer, as squid does.
func (s *Server) squidMarks(h http.Header, lookup string, r *http.Request) {
	h.Set("X-Cache", "MISS from "+s.opts.Persona.Host)
	port := "3128"
	if r != nil {
		if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, p, err := net.SplitHostPort(addr.String()); err == nil {
				port = p
			}
		}
	}
	h.Set("X-Cache-Lookup", lookup+" from "+s.opts.Persona.Host+":"+port)
	if _, ok := h["Connection"]; !ok { // a 101's Connection: Upgrade stays
		h.Set("Connection", "keep-alive")
	}
}

// upgradeAllowed reports whether an Upgrade request may go on as one. The
// strip modes let through only the protocols in AllowUpgrade, compared
// case-sensitively as squid's http_upgrade_request_protocols does: with
// "WebSocket" allowed, a client's "Upgrade: websocket" is still dropped.
func (s *Server) upgradeAllowed(r *http.Request) bool {
	if s.opts.Upgrades == UpgradeRelay {
		return true
	}
	for _, value := range r.Header["Upgrade"] {
		for _, proto := range strings.Split(value, ",") {
			proto = strings.TrimSpace(proto)
			for _, allowed := range s.opts.AllowUpgrade {
				if proto == allowed {
					return true
				}
			}
		}
	}
	return false
}

// upstreamConnection is the Connection header the strip modes send on
// every forwarded request.
func (s *Server) upstreamConnection(r *http.Request) {
	switch s.opts.Upgrades {
	case UpgradeStripKeepAlive:
		r.Header.Set("Connection", "keep-alive")
	case UpgradeStripClose:
		r.Close = true // net/http sends Connection: close and does not reuse
	}
}

package proxy

import (
	"fmt"
	"html"
	"io"
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

// The releases the personas reproduce, as measured (see README).
const (
	squidVersion     = "squid/5.7"
	tinyproxyVersion = "tinyproxy/1.11.1"
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
	// pages. Default: this machine's name.
	Host string
}

// any reports whether hopscope plays another product. Such products do
// not look inside CONNECT tunnels they do not bump, so neither does the
// persona.
func (p Persona) any() bool { return p.Squid || p.Tinyproxy }

// viaName is this proxy's entry in Via: the pseudonym, with the product's
// version in parentheses for a persona.
func (s *Server) viaName() string {
	switch {
	case s.opts.Persona.Squid:
		return s.opts.Pseudonym + " (" + squidVersion + ")"
	case s.opts.Persona.Tinyproxy:
		return s.opts.Pseudonym + " (" + tinyproxyVersion + ")"
	}
	return s.opts.Pseudonym
}

// markRequest adds what this proxy adds to a request header for the next
// hop; client is the client's address.
func (s *Server) markRequest(h http.Header, major, minor int, client string) {
	if s.opts.Persona.Squid {
		// squid writes one Via line: the client's entries, then its own.
		prior := strings.Join(h["Via"], ", ")
		s.via.add(h, major, minor)
		if prior != "" {
			h["Via"] = []string{prior + ", " + h["Via"][len(h["Via"])-1]}
		}
		if prior := h.Get("X-Forwarded-For"); prior != "" {
			client = prior + ", " + client
		}
		h.Set("X-Forwarded-For", client)
		// squid does not pass TE on, not even "TE: trailers".
		delete(h, "Te")
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{squidMaxAge}
		}
		return
	}
	s.via.add(h, major, minor)
}

// markResponse adds what this proxy adds to an answer for the client; r is
// the client's request.
func (s *Server) markResponse(h http.Header, major, minor int, r *http.Request) {
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

// writeSquidDenial answers a refusal as squid 5.7's stock rules do, so a
// client is tested against the real thing's bytes.
func (s *Server) writeSquidDenial(w http.ResponseWriter, r *http.Request, pe *proxyError) {
	host := s.opts.Persona.Host
	h := w.Header()
	h.Set("Server", squidVersion)
	h.Set("Mime-Version", "1.0")
	h.Set("Content-Type", "text/html;charset=utf-8")
	h.Set("X-Squid-Error", "ERR_ACCESS_DENIED 0")
	h.Set("Vary", "Accept-Language")
	h.Set("Content-Language", "en")
	s.squidMarks(h, "NONE", r)
	h.Set("Via", "1.1 "+host+" ("+squidVersion+")")
	w.WriteHeader(pe.Status)
	target := r.URL.String()
	if r.Method == http.MethodConnect {
		target = r.URL.Host
	}
	_, _ = io.WriteString(w, fmt.Sprintf(squidDeniedPage, html.EscapeString(target), html.EscapeString(host), html.EscapeString(pe.Message)))
}

// squidDeniedPage is squid 5.7's ERR_ACCESS_DENIED, shortened; the comment
// carries hopscope's own reason for the person reading the source.
const squidDeniedPage = `<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">
<html><head>
<meta type="copyright" content="Copyright (C) 1996-2022 The Squid Software Foundation and contributors">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>ERROR: The requested URL could not be retrieved</title>
</head><body id="ERR_ACCESS_DENIED">
<div id="titles">
<h1>ERROR</h1>
<h2>The requested URL could not be retrieved</h2>
</div>
<hr>
<div id="content">
<p>The following error was encountered while trying to retrieve the URL: <a href="%[1]s">%[1]s</a></p>
<blockquote id="error">
<p><b>Access Denied.</b></p>
</blockquote>
<p>Access control configuration prevents your request from being allowed at this time. Please contact your service provider if you feel this is incorrect.</p>
<p>Your cache administrator is <a href="mailto:webmaster">webmaster</a>.</p>
<br>
</div>
<hr>
<div id="footer">
<p>Generated by %[2]s (squid/5.7)</p>
<!-- ERR_ACCESS_DENIED -->
<!-- hopscope squid profile: %[3]s -->
</div>
</body></html>
`

// Package ui is hopscope's web UI: a live list of flows, exchange and
// WebSocket detail, search, HAR export and import, served from assets
// embedded in the binary (plain HTML, CSS and JavaScript: no build step,
// nothing fetched from elsewhere) over a JSON API and a Server-Sent Events
// stream of changes.
//
// The UI shows secrets (cookies, authorization headers, message payloads),
// so it guards itself like the CA key: every request must carry the random
// token printed at start-up (in the URL once, then in a SameSite=Strict
// cookie), name an expected Host (no DNS rebinding) and, when it says where
// it comes from, come from the UI's own origin (no cross-site requests). A
// UI on a non-loopback address also needs basic-auth credentials.
package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

//go:embed assets
var assets embed.FS

// cookieName holds the token after the first visit.
const cookieName = "hopscope_ui"

// Options configure a Server.
type Options struct {
	// Source is the flow store the UI shows. Required.
	Source Source
	// HAR exports and imports HAR files; nil: the HAR buttons answer 501.
	HAR HAR
	// Token is the secret every request must carry. "": a random one
	// (New makes 128 bits from crypto/rand).
	Token string
	// Hosts are the host names (without port) the UI answers to besides
	// loopback addresses and "localhost": the magic host it has through
	// the proxy, the name of a non-loopback listener. Requests naming any
	// other Host are refused, which stops DNS rebinding.
	Hosts []string
	// AnyIPHost accepts a Host that is any IP literal, for a UI listening
	// on a non-loopback address (reached as http://192.0.2.7:8081/).
	AnyIPHost bool
	// User and Password, when User is set, are required as HTTP basic
	// authentication on top of the token. Required for a UI on a
	// non-loopback address (the command refuses to start without).
	User, Password string
	// Log takes the UI's diagnostics. The zero value logs nothing.
	Log zerolog.Logger
	// Intercept is the interception engine's API (intercept.Engine's
	// Handler), served at /api/intercept/ behind the UI's guards; the
	// page's interception controls (intercept.js) use it. nil: not served,
	// and the controls stay hidden.
	Intercept http.Handler
}

// Server serves the UI. It is an http.Handler.
type Server struct {
	opts   Options
	token  string
	files  http.Handler
	mux    *http.ServeMux
	hosts  map[string]bool
	userH  [32]byte
	passH  [32]byte
	static fs.FS
	// done ends the event streams on Close, which would otherwise keep
	// an http.Server's Shutdown waiting.
	done      chan struct{}
	closeOnce sync.Once
}

// New builds the UI server.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("ui: no flow source")
	}
	if opts.Token == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("ui: making a token: %w", err)
		}
		opts.Token = base64.RawURLEncoding.EncodeToString(b)
	}
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("ui: embedded assets: %w", err)
	}
	s := &Server{opts: opts, token: opts.Token, static: static, done: make(chan struct{}), hosts: map[string]bool{"localhost": true}}
	for _, h := range opts.Hosts {
		s.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
	}
	s.userH = sha256.Sum256([]byte(opts.User))
	s.passH = sha256.Sum256([]byte(opts.Password))
	s.files = http.FileServerFS(static)
	s.mux = http.NewServeMux()
	s.routes()
	if opts.Intercept != nil {
		s.mux.Handle("/api/intercept/", http.StripPrefix("/api/intercept", opts.Intercept))
	}
	return s, nil
}

// Close ends the live event streams, so the server's listener can shut
// down; the browsers reconnect to a new one.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.done) }) }

// Token is the secret a browser needs; URL puts it in a link.
func (s *Server) Token() string { return s.token }

// URL is the link to print at start-up for a UI reached at base (for
// example "http://127.0.0.1:8081"): opening it sets the token cookie.
func (s *Server) URL(base string) string {
	return strings.TrimSuffix(base, "/") + "/?token=" + url.QueryEscape(s.token)
}

// ServeHTTP checks the request's Host, origin, credentials and token, then
// serves the page or the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !s.hostAllowed(r.Host) {
		s.deny(w, http.StatusMisdirectedRequest, fmt.Sprintf("hopscope UI: Host %q is not one this UI answers to (a DNS-rebinding guard); open the URL hopscope printed at start-up", r.Host))
		return
	}
	if !s.sameOrigin(r) {
		s.deny(w, http.StatusForbidden, "hopscope UI: cross-site request refused")
		return
	}
	if s.opts.User != "" && !s.basicAuthOK(r) {
		h.Set("WWW-Authenticate", `Basic realm="hopscope UI", charset="UTF-8"`)
		s.deny(w, http.StatusUnauthorized, "hopscope UI: credentials required (--ui-auth)")
		return
	}
	if t := r.URL.Query().Get("token"); t != "" && r.URL.Path == "/" {
		if !s.tokenOK(t) {
			s.deny(w, http.StatusUnauthorized, "hopscope UI: wrong token; open the URL hopscope printed at start-up")
			return
		}
		// Keep the token out of the address bar and history: a cookie
		// carries it from now on, and never to another site.
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if !s.authorized(r) {
		s.deny(w, http.StatusUnauthorized, "hopscope UI: this page needs the token in the URL hopscope printed at start-up (http://…/?token=…)")
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		s.files.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) deny(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, msg)
}

func (s *Server) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// authorized reports whether r carries the token: in the cookie, or as a
// bearer token for scripts.
func (s *Server) authorized(r *http.Request) bool {
	if c, err := r.Cookie(cookieName); err == nil && s.tokenOK(c.Value) {
		return true
	}
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenOK(auth) {
		return true
	}
	return false
}

func (s *Server) basicAuthOK(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	uh, ph := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
	return subtle.ConstantTimeCompare(uh[:], s.userH[:])&subtle.ConstantTimeCompare(ph[:], s.passH[:]) == 1
}

// hostAllowed accepts loopback addresses, localhost and the configured
// names. A page on evil.example whose name was rebound to 127.0.0.1 still
// sends Host: evil.example, and is refused.
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return addr.Unmap().IsLoopback() || s.opts.AnyIPHost
	}
	return s.hosts[host]
}

// sameOrigin refuses requests a browser marks as coming from another site:
// an Origin that is not this UI's, or Sec-Fetch-Site cross-site. Requests
// that say nothing (curl, scripts) pass; they still need the token.
func (s *Server) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

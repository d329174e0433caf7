package proxy

import (
	"net/http"
	"net/netip"
)

// serveUI serves the web UI at http://hopscope.ui/ (Options.UIHost)
// through the proxy, for a browser that uses hopscope as its proxy. Only
// clients on loopback get it: the UI shows every secret that crossed the
// proxy. The name is never forwarded upstream.
func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	addr, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !addr.Addr().Unmap().IsLoopback() {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("hopscope serves its web UI only to clients on this machine (loopback).\n"))
		return
	}
	if s.opts.UI == nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("hopscope's web UI is off. Start hopscope with --ui 127.0.0.1:8081 and open the URL it prints.\n"))
		return
	}
	s.opts.UI.ServeHTTP(w, r)
}

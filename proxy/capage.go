package proxy

import (
	"fmt"
	"html"
	"net/http"
)

// serveCAPage serves the CA certificate and how to trust it, at
// http://hopscope.ca/ (Options.CAHost) through the proxy, as mitmproxy's
// mitm.it does: a person on a phone or a fresh VM can fetch it without a
// file transfer.
func (s *Server) serveCAPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if s.opts.CA == nil {
		// The name must never reach a real host of that name.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, "hopscope has no CA yet. Create one with `hopscope ca init` (or start hopscope with --mitm), then fetch http://%s/ again.\n", s.opts.CAHost)
		return
	}
	switch r.URL.Path {
	case "/ca.pem":
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Content-Disposition", `attachment; filename="hopscope-ca.pem"`)
		_, _ = w.Write(s.opts.CA.CertPEM)
	case "/ca.crt", "/ca.der":
		w.Header().Set("Content-Type", "application/x-x509-ca-cert")
		w.Header().Set("Content-Disposition", `attachment; filename="hopscope-ca.crt"`)
		_, _ = w.Write(s.opts.CA.DER())
	case "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprintf(w, caPage, html.EscapeString(s.opts.CA.Cert.Subject.CommonName), s.opts.CA.Fingerprint())
	default:
		http.NotFound(w, r)
	}
}

const caPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>hopscope CA</title></head>
<body>
<h1>Trust hopscope's CA</h1>
<p>This proxy reads HTTPS traffic with its own certificate authority, <b>%s</b>,
SHA-256 fingerprint <code>%s</code>. Trust it only on machines you test with.</p>
<p>Download: <a href="/ca.pem">ca.pem</a> (PEM) or <a href="/ca.crt">ca.crt</a> (DER).</p>
<h2>Linux</h2>
<pre>hopscope ca install        # system store, Chromium/Firefox (NSS) and Java
# or by hand (Debian, Ubuntu):
sudo cp ca.pem /usr/local/share/ca-certificates/hopscope.crt && sudo update-ca-certificates</pre>
<h2>macOS</h2>
<pre>hopscope ca install
# or: sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ca.pem</pre>
<h2>Windows</h2>
<pre>hopscope ca install
# or: certutil -addstore -f ROOT ca.crt</pre>
<h2>Firefox</h2>
<p>Settings, Privacy &amp; Security, Certificates, View Certificates, Authorities, Import ca.pem.</p>
<h2>Android, iOS</h2>
<p>Open ca.crt here and install it as a CA certificate (Android: Settings, Security, Encryption &amp;
credentials; iOS: Settings, General, VPN &amp; Device Management, then enable full trust in About,
Certificate Trust Settings).</p>
<h2>Programs</h2>
<pre>curl --cacert ca.pem ...     SSL_CERT_FILE=ca.pem ...     NODE_EXTRA_CA_CERTS=ca.pem ...
REQUESTS_CA_BUNDLE=ca.pem ...</pre>
</body></html>
`

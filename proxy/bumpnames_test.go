package proxy_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/certs"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// namesWorld is a bumping proxy in front of HTTPS origins whose
// certificates, from their own private root, carry the names a test
// chooses.
type namesWorld struct {
	px        *proxyFixture
	ca        *certs.CA
	originCA  *certs.CA
	clientCAs *x509.CertPool
}

func newNamesWorld(t *testing.T) *namesWorld {
	t.Helper()
	caDir := filepath.Join(t.TempDir(), "ca")
	ca, _, err := certs.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(filepath.Join(caDir, certs.CertFile))
	if err != nil {
		t.Fatal(err)
	}
	w := &namesWorld{ca: ca, clientCAs: x509.NewCertPool()}
	w.clientCAs.AppendCertsFromPEM(pemBytes)
	if w.originCA, err = certs.Create(t.TempDir(), false); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(w.originCA.Cert)
	pol := openPolicy()
	pol.Bump = policy.BumpRules{All: true}
	w.px = startProxy(t, &proxy.Options{Policy: pol, Issuer: mitm.NewIssuer(ca, mitm.IssuerOptions{}), CA: ca,
		UpstreamTLS: &tls.Config{RootCAs: roots}})
	return w
}

// origin starts an HTTPS origin whose leaf has cn and the given names and
// answers with body; it returns its port.
func (w *namesWorld) origin(t *testing.T, cn string, dns []string, ips []net.IP, body string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: dns, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, w.originCA.Cert, key.Public(), w.originCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(hello(body))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

// get sends one GET through a bumped CONNECT to target, with conf for the
// client's TLS, and returns the leaf the client saw and the body.
func (w *namesWorld) get(t *testing.T, target string, conf *tls.Config) (*x509.Certificate, string, error) {
	t.Helper()
	conn, br := connectThrough(t, w.px, target)
	if br.Buffered() > 0 {
		t.Fatal("bytes after the 200")
	}
	tc := tls.Client(conn, conf)
	if err := tc.Handshake(); err != nil {
		return nil, "", err
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return leaf, "", err
	}
	return leaf, readBody(t, resp), nil
}

// verifyAs checks the peer's chain against roots for name, as Node.js does
// with the name "localhost" when a connection to an IP has no servername.
func verifyAs(roots *x509.CertPool, name string) *tls.Config {
	return &tls.Config{
		InsecureSkipVerify: true, // verified below, for a name of our choosing
		VerifyConnection: func(cs tls.ConnectionState) error {
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
			return err
		},
	}
}

// The bump's leaf carries every name of the destination's certificate, DNS
// and IP, and its common name, besides the requested one: a client that
// checks any of them accepts it.
func TestBumpLeafCarriesUpstreamNames(t *testing.T) {
	w := newNamesWorld(t)
	port := w.origin(t, "origin.example", []string{"localhost", "app.example", "*.api.example"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, "named")
	leaf, body, err := w.get(t, net.JoinHostPort("localhost", port), &tls.Config{RootCAs: w.clientCAs, ServerName: "localhost"})
	if err != nil || body != "named" {
		t.Fatalf("GET through the bump: %q %v", body, err)
	}
	for _, name := range []string{"localhost", "app.example", "*.api.example", "origin.example"} {
		if !slices.Contains(leaf.DNSNames, name) {
			t.Errorf("leaf DNS names %q lack %q", leaf.DNSNames, name)
		}
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, "127.0.0.1") || !slices.Contains(ips, "::1") {
		t.Errorf("leaf IP addresses %q", ips)
	}
	if leaf.Subject.CommonName != "origin.example" || leaf.CheckSignatureFrom(w.ca.Cert) != nil {
		t.Errorf("leaf CN %q, issuer %v", leaf.Subject.CommonName, leaf.Issuer)
	}
	for _, name := range []string{"app.example", "x.api.example"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("a client checking %s: %v", name, err)
		}
	}
	if e := w.px.waitEvent("tunnel", nil); e.str("leaf_names") != "upstream" {
		t.Errorf("tunnel event %v, want leaf_names upstream", e)
	}
}

// A client that reaches an IP-only target and checks the name "localhost"
// (Node.js with ws and https-proxy-agent, which sends no SNI for an IP)
// accepts the bump's leaf when the destination's certificate names
// localhost.
func TestBumpIPTargetVerifiedAsLocalhost(t *testing.T) {
	w := newNamesWorld(t)
	port := w.origin(t, "", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, "node ok")
	leaf, body, err := w.get(t, net.JoinHostPort("127.0.0.1", port), verifyAs(w.clientCAs, "localhost"))
	if err != nil || body != "node ok" {
		t.Fatalf("a client verifying localhost on 127.0.0.1: %q %v (leaf names %v %v)", body, err, leafNames(leaf), leafIPs(leaf))
	}
}

func leafNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	return c.DNSNames
}

func leafIPs(c *x509.Certificate) []net.IP {
	if c == nil {
		return nil
	}
	return c.IPAddresses
}

// Two destinations behind one address, with different certificates, get
// different leaves, though the client asked for the same name.
func TestBumpLeafCacheKeepsUpstreamsApart(t *testing.T) {
	w := newNamesWorld(t)
	portA := w.origin(t, "", []string{"a.example"}, []net.IP{net.ParseIP("127.0.0.1")}, "A")
	portB := w.origin(t, "", []string{"b.example"}, []net.IP{net.ParseIP("127.0.0.1")}, "B")
	for _, tc := range []struct{ port, name, body string }{{portA, "a.example", "A"}, {portB, "b.example", "B"}, {portA, "a.example", "A"}} {
		leaf, body, err := w.get(t, net.JoinHostPort("127.0.0.1", tc.port), verifyAs(w.clientCAs, tc.name))
		if err != nil || body != tc.body {
			t.Fatalf("port %s, checking %s: %q %v (leaf names %v)", tc.port, tc.name, body, err, leafNames(leaf))
		}
	}
}

// When the destination cannot be asked first (here its certificate is not
// trusted), the leaf is minted from the requested name alone, the tunnel
// event says why, and the request itself gets the usual 502 page.
func TestBumpLeafFallsBackToTheRequestedName(t *testing.T) {
	w := newNamesWorld(t)
	other, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	w.originCA = other // the proxy does not trust this root
	port := w.origin(t, "", []string{"localhost", "app.example"}, nil, "never")
	leaf, _, err := w.get(t, net.JoinHostPort("localhost", port), &tls.Config{RootCAs: w.clientCAs, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake with the fallback leaf: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("fallback leaf names %q, want just localhost", leaf.DNSNames)
	}
	e := w.px.waitEvent("tunnel", nil)
	if e.str("leaf_names") != "requested" || !strings.Contains(e.str("leaf_note"), "certificate") {
		t.Errorf("tunnel event %v, want leaf_names requested and a note naming the certificate problem", e)
	}
}

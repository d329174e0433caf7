// Package mitm owns hopscope's TLS: it mints leaf certificates from the
// local CA for the hosts it bumps, caches them, and builds the tls.Configs
// for both sides of a bumped connection.
package mitm

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/hopscope/hopscope/certs"
)

// MaxLeafValidity is the longest validity browsers accept for a leaf
// certificate (CA/Browser Forum baseline requirements).
const MaxLeafValidity = 397 * 24 * time.Hour

// renewBefore keeps a cached leaf from being served in its last hour, so a
// handshake never gets a certificate that expires under it.
const renewBefore = time.Hour

// IssuerOptions tune an Issuer. The zero value is the default.
type IssuerOptions struct {
	// CacheSize bounds the number of cached leaves. Default 1024.
	CacheSize int
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Issuer mints leaf certificates signed by the CA. Each name is minted once
// even when many handshakes ask for it at the same moment (singleflight),
// and kept in a bounded LRU cache that never serves an expired leaf.
type Issuer struct {
	ca    *certs.CA
	now   func() time.Time
	max   int
	group singleflight.Group

	mu    sync.Mutex
	lru   *list.List // of *cacheEntry, most recent first
	index map[string]*list.Element

	minted atomic.Uint64
	// ticketKey encrypts the session tickets of every bumped connection,
	// so that a client's next connection resumes instead of making a
	// full handshake (each connection has a tls.Config of its own, whose
	// automatic keys would be its own too). It lives in memory only.
	ticketKey [32]byte
}

type cacheEntry struct {
	key  string
	cert *tls.Certificate
}

// Bounds on the names copied from an upstream certificate: enough for the
// largest multi-domain certificates in use, small enough that a hostile
// destination cannot make hopscope mint a huge leaf.
const (
	maxCopiedDNSNames = 100
	maxCopiedIPs      = 20
)

// NewIssuer returns an Issuer for ca.
func NewIssuer(ca *certs.CA, opts IssuerOptions) *Issuer {
	if opts.CacheSize <= 0 {
		opts.CacheSize = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	i := &Issuer{ca: ca, now: opts.Now, max: opts.CacheSize, lru: list.New(), index: map[string]*list.Element{}}
	_, _ = rand.Read(i.ticketKey[:]) // crypto/rand.Read never fails
	return i
}

// Minted returns how many leaves this issuer has minted.
func (i *Issuer) Minted() uint64 { return i.minted.Load() }

// Certificate returns a leaf for name (a host name or an IP literal), and
// whether it was minted for this call rather than taken from the cache.
func (i *Issuer) Certificate(name string) (cert *tls.Certificate, minted bool, err error) {
	return i.CertificateLike(name, nil)
}

// CertificateLike returns a leaf for name that also carries the names of
// upstream, the destination's own leaf (nil: name alone): its DNS and IP
// subject alternative names (bounded in count) and its common name, as
// mitmproxy's upstream_cert does. A client then accepts the leaf for any
// name the destination's certificate would pass for, such as Node.js
// checking "localhost" on a connection to 127.0.0.1. The cache key holds
// the upstream leaf's fingerprint, so two destinations behind one name or
// address never share a leaf.
func (i *Issuer) CertificateLike(name string, upstream *x509.Certificate) (cert *tls.Certificate, minted bool, err error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return nil, false, fmt.Errorf("minting a leaf certificate: no host name")
	}
	key := name
	if upstream != nil {
		sum := sha256.Sum256(upstream.Raw)
		key = name + " like " + hex.EncodeToString(sum[:])
	}
	if cert := i.cached(key); cert != nil {
		return cert, false, nil
	}
	// Only the caller whose function ran minted; singleflight's "shared"
	// is true for that caller too when others waited on it.
	v, err, _ := i.group.Do(key, func() (any, error) {
		if cert := i.cached(key); cert != nil {
			return cert, nil // minted by a call that finished just before
		}
		cert, err := i.mint(name, upstream)
		if err != nil {
			return nil, err
		}
		i.store(key, cert)
		minted = true
		return cert, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*tls.Certificate), minted, nil
}

func (i *Issuer) cached(name string) *tls.Certificate {
	i.mu.Lock()
	defer i.mu.Unlock()
	el, ok := i.index[name]
	if !ok {
		return nil
	}
	entry := el.Value.(*cacheEntry)
	if i.now().Add(renewBefore).After(entry.cert.Leaf.NotAfter) {
		i.lru.Remove(el)
		delete(i.index, name)
		return nil
	}
	i.lru.MoveToFront(el)
	return entry.cert
}

func (i *Issuer) store(name string, cert *tls.Certificate) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if el, ok := i.index[name]; ok {
		el.Value.(*cacheEntry).cert = cert
		i.lru.MoveToFront(el)
		return
	}
	i.index[name] = i.lru.PushFront(&cacheEntry{key: name, cert: cert})
	for i.lru.Len() > i.max {
		oldest := i.lru.Back()
		i.lru.Remove(oldest)
		delete(i.index, oldest.Value.(*cacheEntry).key)
	}
}

// mint signs a new ECDSA P-256 leaf for name and the names of upstream
// (may be nil). P-256 keys take microseconds where goproxy's RSA-2048
// leaves take tens of milliseconds.
func (i *Issuer) mint(name string, upstream *x509.Certificate) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: generating the key: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: serial: %w", name, err)
	}
	now := i.now()
	notAfter := now.Add(MaxLeafValidity)
	if caEnd := i.ca.Cert.NotAfter; notAfter.After(caEnd) {
		notAfter = caEnd
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"hopscope"}, CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		AuthorityKeyId:        i.ca.Cert.SubjectKeyId,
	}
	addLeafNames(tmpl, name)
	if upstream != nil {
		if cn := upstream.Subject.CommonName; cn != "" {
			tmpl.Subject.CommonName = cn
			if validDNSName(cn) {
				addLeafNames(tmpl, strings.ToLower(cn))
			}
		}
		for _, n := range upstream.DNSNames {
			if len(tmpl.DNSNames) < maxCopiedDNSNames && validDNSName(n) {
				addLeafNames(tmpl, strings.ToLower(n))
			}
		}
		for _, ip := range upstream.IPAddresses {
			if len(tmpl.IPAddresses) < maxCopiedIPs {
				addLeafNames(tmpl, ip.String())
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.ca.Cert, key.Public(), i.ca.Key)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: signing: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("minting a leaf for %s: parsing: %w", name, err)
	}
	i.minted.Add(1)
	return &tls.Certificate{
		Certificate: [][]byte{der, i.ca.Cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// addLeafNames adds name (a host name or an IP literal) to the leaf's
// subject alternative names, once.
func addLeafNames(tmpl *x509.Certificate, name string) {
	if ip := net.ParseIP(strings.Trim(name, "[]")); ip != nil {
		for _, have := range tmpl.IPAddresses {
			if have.Equal(ip) {
				return
			}
		}
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		return
	}
	for _, have := range tmpl.DNSNames {
		if have == name {
			return
		}
	}
	tmpl.DNSNames = append(tmpl.DNSNames, name)
}

// validDNSName accepts what may stand in a DNS SAN: labels of letters,
// digits, hyphens and underscores, optionally a leading wildcard label.
// Anything else in a copied name (a CN such as "Example Corp") is left out.
func validDNSName(n string) bool {
	n = strings.TrimPrefix(n, "*.")
	if n == "" || len(n) > 253 {
		return false
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// LeafSource says where a handshake's certificate came from, for events.
type LeafSource struct {
	// Minted is true when the leaf was minted for this handshake.
	Minted bool
	// Name is the name the leaf was issued for.
	Name string
	// Upstream is set when the leaf also carries the names of the
	// destination's certificate; UpstreamErr says why it does not, when
	// the destination could not be asked first.
	Upstream    bool
	UpstreamErr error
}

// UpstreamLeaf connects to the destination for a client's handshake and
// returns the destination's verified leaf; serverName is the client's SNI
// (empty when it sent none).
type UpstreamLeaf func(serverName string) (*x509.Certificate, error)

// BumpConfig is ServerConfig for a bumped connection whose destination
// can be asked first: the leaf copies the names of the certificate
// upstream returns, and is minted from the requested name alone when
// upstream fails (src records which).
func (i *Issuer) BumpConfig(fallbackHost string, src *LeafSource, upstream UpstreamLeaf) *tls.Config {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = fallbackHost
			}
			var like *x509.Certificate
			var err error
			if upstream != nil {
				like, err = upstream(hello.ServerName)
			}
			cert, minted, mintErr := i.CertificateLike(name, like)
			if src != nil {
				src.Minted, src.Name, src.Upstream, src.UpstreamErr = minted, name, like != nil, err
			}
			return cert, mintErr
		},
	}
	conf.SetSessionTicketKeys([][32]byte{i.ticketKey})
	return conf
}

// ServerConfig returns the client-facing TLS configuration for one bumped
// connection to fallbackHost (the CONNECT host, used when the client sends
// no SNI), with leaves minted from the requested name alone. It offers
// only ALPN http/1.1: hopscope inspects HTTP/1.1, and WebSockets need it.
// The handshake records the leaf it used in src.
func (i *Issuer) ServerConfig(fallbackHost string, src *LeafSource) *tls.Config {
	return i.BumpConfig(fallbackHost, src, nil)
}

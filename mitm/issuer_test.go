package mitm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopscope/hopscope/certs"
)

func testCA(t testing.TB) *certs.CA {
	t.Helper()
	ca, err := certs.Create(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestLeafChainsToCA(t *testing.T) {
	ca := testCA(t)
	iss := NewIssuer(ca, IssuerOptions{})
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"example.com", "Sub.Example.COM.", "127.0.0.1", "::1"} {
		cert, minted, err := iss.Certificate(name)
		if err != nil || !minted {
			t.Fatalf("%s: minted %v, %v", name, minted, err)
		}
		leaf := cert.Leaf
		verifyName := name
		if ip := net.ParseIP(name); ip == nil {
			verifyName = "sub.example.com"
			if name == "example.com" {
				verifyName = name
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: verifyName}); err != nil {
			t.Errorf("%s: leaf does not verify against the CA: %v", name, err)
		}
		if ip := net.ParseIP(name); ip != nil && (len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(ip) || len(leaf.DNSNames) != 0) {
			t.Errorf("%s: want one IP SAN, got IPs %v names %v", name, leaf.IPAddresses, leaf.DNSNames)
		}
		if leaf.NotAfter.Sub(leaf.NotBefore) > MaxLeafValidity+time.Hour {
			t.Errorf("%s: validity %v exceeds 397 days", name, leaf.NotAfter.Sub(leaf.NotBefore))
		}
		if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s: leaf key %T, want ECDSA P-256", name, leaf.PublicKey)
		}
		if len(cert.Certificate) != 2 {
			t.Errorf("%s: chain has %d certificates, want leaf and CA", name, len(cert.Certificate))
		}
	}
}

func TestConcurrentFirstHandshakesMintOnce(t *testing.T) {
	iss := NewIssuer(testCA(t), IssuerOptions{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	mintedCalls := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, minted, err := iss.Certificate("busy.example")
			if err != nil {
				t.Error(err)
			}
			if minted {
				mu.Lock()
				mintedCalls++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if iss.Minted() != 1 || mintedCalls != 1 {
		t.Errorf("minted %d leaves (%d calls say minted), want 1", iss.Minted(), mintedCalls)
	}
	if _, minted, _ := iss.Certificate("BUSY.example."); minted {
		t.Error("the same name in another spelling was minted again")
	}
}

func TestCacheIsBoundedAndNeverServesExpired(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	iss := NewIssuer(testCA(t), IssuerOptions{CacheSize: 2, Now: clock})
	for _, n := range []string{"a.test", "b.test", "c.test"} {
		if _, _, err := iss.Certificate(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, minted, _ := iss.Certificate("c.test"); minted {
		t.Error("most recent entry was evicted")
	}
	if _, minted, _ := iss.Certificate("a.test"); !minted {
		t.Error("the cache holds more than its size: the oldest entry was still there")
	}
	first, _, _ := iss.Certificate("c.test")
	now = first.Leaf.NotAfter.Add(-30 * time.Minute) // within the renewal margin
	second, minted, err := iss.Certificate("c.test")
	if err != nil || !minted || second == first {
		t.Errorf("an expiring leaf was served from the cache (minted %v, %v)", minted, err)
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := testCA(t)
	now := ca.Cert.NotAfter.Add(-48 * time.Hour)
	iss := NewIssuer(ca, IssuerOptions{Now: func() time.Time { return now }})
	cert, _, err := iss.Certificate("late.example")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Leaf.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("leaf ends %v, after the CA's %v", cert.Leaf.NotAfter, ca.Cert.NotAfter)
	}
}

func TestNoName(t *testing.T) {
	if _, _, err := NewIssuer(testCA(t), IssuerOptions{}).Certificate(""); err == nil {
		t.Error("minted a leaf for no name")
	}
}

func TestUpstreamConfig(t *testing.T) {
	if _, err := UpstreamConfig([]byte("garbage"), false); err == nil {
		t.Error("accepted a roots file without certificates")
	}
	conf, err := UpstreamConfig(testCA(t).CertPEM, false)
	if err != nil || conf.RootCAs == nil || conf.InsecureSkipVerify {
		t.Errorf("conf %+v err %v", conf, err)
	}
}

// BenchmarkLeafCached is the per-handshake cost once a host's leaf exists.
func BenchmarkLeafCached(b *testing.B) {
	iss := NewIssuer(testCA(b), IssuerOptions{})
	_, _, _ = iss.Certificate("cached.example")
	b.ReportAllocs()
	for b.Loop() {
		if _, minted, _ := iss.Certificate("cached.example"); minted {
			b.Fatal("minted")
		}
	}
}

// BenchmarkLeafMint is the first-handshake cost for a new host.
func BenchmarkLeafMint(b *testing.B) {
	iss := NewIssuer(testCA(b), IssuerOptions{CacheSize: 1})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, _, err := iss.Certificate(fmt.Sprintf("h%d.example", i)); err != nil {
			b.Fatal(err)
		}
	}
}

// A leaf minted like an upstream certificate takes its names within
// bounds, leaves out a common name that is no host name, and is cached
// per upstream certificate.
func TestCertificateLikeUpstream(t *testing.T) {
	iss := NewIssuer(testCA(t), IssuerOptions{})
	var dns []string
	for i := range 500 {
		dns = append(dns, fmt.Sprintf("h%d.example", i))
	}
	var ips []net.IP
	for i := range 50 {
		ips = append(ips, net.IPv4(10, 0, 0, byte(i)))
	}
	upstream := &x509.Certificate{Raw: []byte("upstream one"), DNSNames: append(dns, "bad name!", "LOCALHOST")}
	upstream.Subject.CommonName = "Example Corp"
	upstream.IPAddresses = ips
	cert, minted, err := iss.CertificateLike("127.0.0.1", upstream)
	if err != nil || !minted {
		t.Fatal(minted, err)
	}
	leaf := cert.Leaf
	if len(leaf.DNSNames) != maxCopiedDNSNames || len(leaf.IPAddresses) != maxCopiedIPs {
		t.Errorf("%d DNS names and %d IPs, want at most %d and %d", len(leaf.DNSNames), len(leaf.IPAddresses), maxCopiedDNSNames, maxCopiedIPs)
	}
	if !leaf.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || leaf.Subject.CommonName != "Example Corp" {
		t.Errorf("leaf IPs start %v, CN %q", leaf.IPAddresses[0], leaf.Subject.CommonName)
	}
	for _, n := range leaf.DNSNames {
		if n == "Example Corp" || n == "bad name!" {
			t.Errorf("copied %q as a DNS name", n)
		}
	}
	if again, minted, _ := iss.CertificateLike("127.0.0.1", upstream); minted || again != cert {
		t.Error("the same upstream certificate minted again")
	}
	other := &x509.Certificate{Raw: []byte("upstream two"), DNSNames: []string{"other.example"}}
	if o, minted, _ := iss.CertificateLike("127.0.0.1", other); !minted || o == cert {
		t.Error("another upstream certificate behind the same address got the cached leaf")
	}
}

// A destination's certificate may carry names that cannot stand in a
// SAN: empty, a lone dot or wildcard, an empty or 64-byte label, a space,
// a byte that is no letter, two wildcards. The leaf is minted all the
// same, for the requested name, with what can be copied and none of these.
func TestCertificateLikeMalformedUpstreamNames(t *testing.T) {
	iss := NewIssuer(testCA(t), IssuerOptions{})
	for _, tc := range []struct {
		name   string
		cn     string
		dns    []string
		wantCN string
		copied []string // DNS names the leaf carries besides the requested one
	}{
		{"common name a host name", "WWW.example", nil, "WWW.example", []string{"www.example"}},
		{"common name no host name", "Example Corp", nil, "Example Corp", nil},
		{"odd SANs", "", []string{"", ".", "a..b", "trailing.dot.", "*", "*.*.example", "sp ace.example", "t\xffx.example",
			strings.Repeat("a", 64) + ".example", "*.ok.example"}, "site.example", []string{"*.ok.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upstream := &x509.Certificate{Raw: []byte(tc.name), DNSNames: tc.dns}
			upstream.Subject.CommonName = tc.cn
			cert, _, err := iss.CertificateLike("site.example", upstream)
			if err != nil {
				t.Fatalf("minting like the upstream certificate: %v", err)
			}
			leaf := cert.Leaf
			if leaf.Subject.CommonName != tc.wantCN {
				t.Errorf("leaf CN %q, want %q", leaf.Subject.CommonName, tc.wantCN)
			}
			if err := leaf.VerifyHostname("site.example"); err != nil {
				t.Errorf("the leaf does not pass for the requested name: %v", err)
			}
			if want := append([]string{"site.example"}, tc.copied...); !slices.Equal(leaf.DNSNames, want) {
				t.Errorf("leaf DNS names %q, want %q", leaf.DNSNames, want)
			}
		})
	}
}

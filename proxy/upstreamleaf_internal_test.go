package proxy

import (
	"crypto/x509"
	"fmt"
	"testing"
	"time"
)

// A destination's leaf is remembered for a few minutes, never past its own
// expiry, and the memory is bounded.
func TestUpstreamLeavesRemembered(t *testing.T) {
	var c upstreamLeaves
	now := time.Now()
	leaf := &x509.Certificate{NotAfter: now.Add(time.Hour)}
	c.put("a:443", leaf, now)
	if c.get("a:443", now.Add(time.Minute)) != leaf {
		t.Error("a leaf seen a minute ago is forgotten")
	}
	if c.get("a:443", now.Add(upstreamLeafTTL+time.Second)) != nil {
		t.Error("a leaf seen long ago is still used")
	}
	if c.get("b:443", now) != nil {
		t.Error("another destination got the leaf")
	}
	c.put("old:443", &x509.Certificate{NotAfter: now.Add(time.Second)}, now)
	if c.get("old:443", now.Add(2*time.Second)) != nil {
		t.Error("an expired leaf is still used")
	}
	for i := range upstreamLeafsMax + 10 {
		c.put(fmt.Sprintf("h%d:443", i), leaf, now)
	}
	if n := len(c.seen); n > upstreamLeafsMax {
		t.Errorf("%d leaves remembered, limit %d", n, upstreamLeafsMax)
	}
}

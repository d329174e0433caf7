package flow

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
)

func TestBodyTapKeepsTheFirstBytesAndHashesAll(t *testing.T) {
	body := bytes.Repeat([]byte("abcdefghij"), 1000)
	sum := sha256.Sum256(body)
	cases := []struct {
		name      string
		limit     int
		complete  bool
		wantData  string
		wantTrunc bool
		wantSum   string
	}{
		{"capped", 4, true, "abcd", true, hex.EncodeToString(sum[:])},
		{"whole", 1 << 20, true, string(body), false, hex.EncodeToString(sum[:])},
		{"cut short has no digest", 4, false, "abcd", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tap := NewBodyTap(tc.limit)
			for chunk := range slices.Chunk(body, 777) {
				_, _ = tap.Write(chunk)
			}
			b := tap.Body(int64(len(body)), tc.complete)
			if string(b.Data) != tc.wantData || b.Len != int64(len(body)) || b.Truncated != tc.wantTrunc || b.SHA256 != tc.wantSum {
				t.Errorf("body %q… (%d kept), len %d, truncated %v, sha256 %q", b.Data[:min(8, len(b.Data))], len(b.Data), b.Len, b.Truncated, b.SHA256)
			}
		})
	}
	if tap := NewBodyTap(0); tap != nil {
		t.Fatal("a tap with no room must be nil")
	}
	var none *BodyTap
	_, _ = none.Write(body)
	if b := none.Body(5, true); b.Data != nil || b.Len != 5 || b.SHA256 != "" {
		t.Errorf("nil tap body %+v", b)
	}
}

func TestSlabCopiesAreIndependentAndCapped(t *testing.T) {
	var s Slab
	a := s.Copy([]byte("hello"), 3)
	b := s.Copy([]byte("world"), 10)
	if string(a) != "hel" || string(b) != "world" {
		t.Fatalf("copies %q %q", a, b)
	}
	a = append(a, 'X') // must not run into b
	if string(b) != "world" || string(a) != "helX" {
		t.Errorf("an append to one copy changed another: %q %q", a, b)
	}
	big := bytes.Repeat([]byte("z"), 4<<10)
	if c := s.Copy(big, len(big)); len(c) != len(big) || &c[0] == &s.block[:1][0] {
		t.Errorf("large copy of %d bytes", len(c))
	}
	if s.Copy(nil, 10) != nil || s.Copy([]byte("x"), 0) != nil {
		t.Error("nothing to copy must give nil")
	}
	allocs := testing.AllocsPerRun(1000, func() { _ = s.Copy(big[:64], 256) })
	if allocs >= 1 {
		t.Errorf("%.2f allocations per small copy, want far below 1", allocs)
	}
}

package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The table runs every selected case on both sides and reports rates; the
// figures themselves are the command's business, not a test's.
func TestRunReportsEachCase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts origins and proxies")
	}
	var progress bytes.Buffer
	cases := []string{"small-get", "connect-10MiB", "https-keepalive-bumped", "ws-echo-64B-x100"}
	results, err := Run(context.Background(), Options{Rounds: 1, RoundTime: 200 * time.Millisecond, Cases: cases, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cases) {
		t.Fatalf("%d rows for %d cases", len(results), len(cases))
	}
	for i, r := range results {
		if r.Case != cases[i] || r.Direct <= 0 || r.Proxy <= 0 || r.Ratio <= 0 || r.ProxyP50 <= 0 || r.Note != "" {
			t.Errorf("row %+v", r)
		}
	}
	var table bytes.Buffer
	Format(&table, results)
	for _, c := range cases {
		if !strings.Contains(table.String(), c) || !strings.Contains(progress.String(), c) {
			t.Errorf("%s missing from the table or the progress", c)
		}
	}
}

// An external proxy that refuses a case is reported per case, not fatal.
func TestExternalProxyFailureIsPerCase(t *testing.T) {
	results, err := Run(context.Background(), Options{Proxy: "127.0.0.1:1", Rounds: 1, RoundTime: 100 * time.Millisecond,
		Cases: []string{"connect-10MiB", "idle-ws-memory"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(results[0].Note, "failed:") || results[1].Note != "in-process only" {
		t.Errorf("results %+v", results)
	}
}

func TestMedianAndPercentile(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median %v", m)
	}
	d := []time.Duration{5, 1, 4, 2, 3}
	if p := percentile(d, 50); p != 3 {
		t.Errorf("p50 %v", p)
	}
	if p := percentile(d, 99); p != 5 {
		t.Errorf("p99 %v", p)
	}
	if median(nil) != 0 || percentile(nil, 50) != 0 {
		t.Error("empty inputs")
	}
}

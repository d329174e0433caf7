package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// startHopscope runs an inspecting hopscope in this process, as a compared
// target: the cases and the table are the subject here, not the figures.
func startHopscope(t *testing.T) Target {
	t.Helper()
	pol := policy.New()
	pol.ConnectPorts = policy.MustParsePortSet("*")
	srv, err := proxy.New(&proxy.Options{Policy: pol}, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return Target{Name: "hs", Addr: ln.Addr().String()}
}

// Every WebSocket route, a memory case and a plain case run against a
// compared proxy and fill one row each, with a ratio, latencies and the
// memory figure; the table names every case and target.
func TestRunComparesEachCase(t *testing.T) {
	hs := startHopscope(t)
	var progress bytes.Buffer
	cases := []string{"idle-ws-rss", "ws-forward-64B-x1", "ws-tunnel-64B-x1", "wss-tunnel-64B-x100", "connect-10MiB"}
	rep, err := Run(context.Background(), Options{Compare: []Target{hs}, Rounds: 1, RoundTime: 50 * time.Millisecond,
		IdleConns: 3, IdleSettle: 50 * time.Millisecond, Cases: cases, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(cases) || len(rep.Targets) != 1 || rep.Targets[0] != "hs" {
		t.Fatalf("report %+v", rep)
	}
	for i, r := range rep.Rows {
		c := r.Cells[0]
		if r.Case != cases[i] || c.Note != "" || c.Value == 0 {
			t.Errorf("row %+v", r)
		}
		if !r.Memory && (r.Direct.Value <= 0 || c.Ratio <= 0 || c.P50 <= 0 || c.P99 < c.P50 || c.CPU < 0) {
			t.Errorf("rate row %+v", r)
		}
	}
	var table bytes.Buffer
	Format(&table, rep)
	for _, c := range append(cases, "hs") {
		if !strings.Contains(table.String(), c) || !strings.Contains(progress.String(), c) {
			t.Errorf("%s missing from the table or the progress:\n%s\n%s", c, table.String(), progress.String())
		}
	}
}

// A proxy that is not there fails its cells, with the reason, and the
// run goes on.
func TestUnreachableTargetFailsPerCell(t *testing.T) {
	rep, err := Run(context.Background(), Options{Compare: []Target{{Name: "gone", Addr: "127.0.0.1:1", PID: os.Getpid()}},
		Rounds: 1, RoundTime: 50 * time.Millisecond, IdleConns: 2, IdleSettle: time.Millisecond, Cases: []string{"ws-forward-64B-x1", "idle-tunnel-rss"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Rows {
		if !strings.HasPrefix(r.Cells[0].Note, "failed:") {
			t.Errorf("row %+v", r)
		}
	}
	for _, r := range rep.Rows {
		if !r.Memory && r.Direct.Value <= 0 {
			t.Errorf("direct side not measured: %+v", r)
		}
	}
}

// The memory cases find a proxy's process by the socket it listens on.
func TestListenerPID(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, err := listenerPID(ln.Addr().String())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if pid != os.Getpid() {
		t.Errorf("pid %d, want %d", pid, os.Getpid())
	}
	if _, err := listenerPID("127.0.0.1:1"); err == nil {
		t.Error("found a process for a port nobody listens on")
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

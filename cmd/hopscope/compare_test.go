package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hopscope/hopscope/config"
)

// A proxy compared with the same profile matches on every probe; with
// another profile the table shows the differences and the command fails.
func TestCompareCommand(t *testing.T) {
	cfg, err := config.Parse([]string{"--listen", "127.0.0.1:0", "--profile", "squid"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := startInProcess(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	var out bytes.Buffer
	if err := run(context.Background(), []string{"compare", "--real", addr, "--profile", "squid", "--probes", "get,via-existing,origin-refused,connect-other-port"}, &out, io.Discard); err != nil {
		t.Fatalf("hopscope compared with itself: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "4 of 4 probes match") {
		t.Errorf("table does not say every probe matched:\n%s", out.String())
	}

	out.Reset()
	err = run(context.Background(), []string{"compare", "--real", addr, "--profile", "tinyproxy", "--probes", "get,connect-other-port"}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "probes differ") {
		t.Errorf("squid compared with the tinyproxy profile: err = %v, want probes differ", err)
	}
	if !strings.Contains(out.String(), "== connect-other-port") || !strings.Contains(out.String(), "403 Forbidden") {
		t.Errorf("table lacks the side-by-side diff of the CONNECT probe:\n%s", out.String())
	}
}

func TestCompareNeedsReal(t *testing.T) {
	err := run(context.Background(), []string{"compare", "--profile", "squid"}, io.Discard, io.Discard)
	var usage config.UsageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "--real") {
		t.Fatalf("err = %v, want a usage error naming --real", err)
	}
}

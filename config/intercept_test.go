package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/intercept"
)

// Breakpoints come from --config or a --ws-breakpoints file; either turns
// interception on, and a bad one stops the start naming it.
func TestInterceptOptions(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "hopscope.yaml")
	if err := os.WriteFile(conf, []byte("intercept-timeout: 5s\nwebsocket:\n  breakpoints:\n    - name: orders\n      match: {from: client, json_path: op, json_equals: order}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]string{"--config", conf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts, on, err := cfg.InterceptOptions()
	if err != nil || !on || opts.Timeout != 5*time.Second || len(opts.Breakpoints) != 1 || opts.Breakpoints[0].Match.JSONPath != "op" {
		t.Fatalf("from --config: %+v on=%v err=%v", opts, on, err)
	}

	file := filepath.Join(dir, "breaks.yaml")
	if err := os.WriteFile(file, []byte("- match: {contains: secret}\n- match: {type: binary}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ = Parse([]string{"--ws-breakpoints", file}, nil)
	if opts, on, err = cfg.InterceptOptions(); err != nil || !on || len(opts.Breakpoints) != 2 || opts.Timeout <= 0 {
		t.Fatalf("from --ws-breakpoints: %+v on=%v err=%v", opts, on, err)
	}

	cfg, _ = Parse(nil, nil)
	if opts, on, _ = cfg.InterceptOptions(); on || opts.Timeout != intercept.DefaultTimeout {
		t.Errorf("by default: on=%v timeout=%v, want off and %v", on, opts.Timeout, intercept.DefaultTimeout)
	}
	// --help shows the default that applies, not 0s.
	var help strings.Builder
	if _, err := Parse([]string{"--help"}, &help); err == nil || !strings.Contains(help.String(), "nobody acted on it; negative: wait until the session ends; 0: the default (default 1m0s)") {
		t.Errorf("--help does not show the intercept timeout's default:\n%s", help.String())
	}
	cfg, _ = Parse([]string{"--intercept"}, nil)
	if _, on, _ = cfg.InterceptOptions(); !on {
		t.Error("--intercept did not turn it on")
	}
	cfg, _ = Parse([]string{"--http-breakpoint", "*/api/*"}, nil)
	if opts, on, _ = cfg.InterceptOptions(); !on || len(opts.HTTPBreakpoints) != 1 || opts.HTTPBreakpoints[0].URL != "*/api/*" {
		t.Errorf("--http-breakpoint: %+v on=%v", opts.HTTPBreakpoints, on)
	}

	if err := os.WriteFile(file, []byte("- match: {regex: '('}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _ = Parse([]string{"--ws-breakpoints", file}, nil)
	if _, _, err = cfg.InterceptOptions(); err == nil || !strings.Contains(err.Error(), "regex") {
		t.Fatalf("bad breakpoint: %v", err)
	}
}

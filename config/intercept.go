package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hopscope/hopscope/intercept"
)

// interceptConfig holds the settings of the interception engine: whether
// it runs, its breakpoints and how long a paused message waits.
type interceptConfig struct {
	Intercept        bool          `yaml:"intercept"`
	InterceptTimeout time.Duration `yaml:"intercept-timeout"`
	WSBreakpoints    string        `yaml:"ws-breakpoints"`
	// HTTPBreakpoints pause HTTP requests or answers (--config only, or
	// --http-breakpoint for a URL glob at the request stage).
	HTTPBreakpoints []intercept.HTTPBreakpointSpec `yaml:"http-breakpoints"`
	httpBreakURLs   []string
}

func addInterceptFlags(fs *flag.FlagSet, cfg *Config) {
	fs.BoolVar(&cfg.Intercept, "intercept", cfg.Intercept, "run the interception engine (breakpoints, edit, inject; its API is in the web UI): messages are then held until complete and both sides compress each on its own")
	fs.DurationVar(&cfg.InterceptTimeout, "intercept-timeout", cfg.InterceptTimeout, "forward a paused message unchanged after `duration` nobody acted on it; negative: wait until the session ends; 0: the default")
	fs.Var(&listFlag{values: &cfg.httpBreakURLs}, "http-breakpoint", "pause HTTP requests whose URL matches `glob` before they go upstream (repeatable); implies --intercept")
	fs.StringVar(&cfg.WSBreakpoints, "ws-breakpoints", cfg.WSBreakpoints, "YAML `file` with a list of WebSocket breakpoints ({name, match} in the ws-rules vocabulary; replaces websocket.breakpoints of --config); implies --intercept")
}

// InterceptOptions says whether the interception engine runs, and with
// which breakpoints (websocket.breakpoints of --config, or --ws-breakpoints).
func (cfg Config) InterceptOptions() (intercept.Options, bool, error) {
	specs := cfg.WebSocket.Breakpoints
	if cfg.WSBreakpoints != "" {
		data, err := os.ReadFile(cfg.WSBreakpoints)
		if err != nil {
			return intercept.Options{}, false, fmt.Errorf("--ws-breakpoints: %w", err)
		}
		specs = nil
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&specs); err != nil && !errors.Is(err, io.EOF) {
			return intercept.Options{}, false, fmt.Errorf("--ws-breakpoints %s: %s", cfg.WSBreakpoints, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	opts := intercept.Options{Timeout: cfg.InterceptTimeout, Breakpoints: specs, HTTPBreakpoints: cfg.HTTPBreakpoints}
	for _, glob := range cfg.httpBreakURLs {
		opts.HTTPBreakpoints = append(opts.HTTPBreakpoints, intercept.HTTPBreakpointSpec{URL: glob})
	}
	if cfg.InterceptTimeout == 0 {
		opts.Timeout = intercept.DefaultTimeout
	}
	on := cfg.Intercept || len(specs) > 0 || len(opts.HTTPBreakpoints) > 0
	if on {
		// Compile now, so that a bad breakpoint stops the start.
		if _, err := intercept.New(opts); err != nil {
			return opts, on, UsageError{Msg: err.Error()}
		}
	}
	return opts, on, nil
}

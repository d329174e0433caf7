package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hopscope/hopscope/eventlog"
	"github.com/hopscope/hopscope/intercept"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// wsConfig is the websocket section of --config.
type wsConfig struct {
	Rules []policy.WSRuleSpec `yaml:"rules"`
	// Breakpoints pause messages for a person (the interception engine).
	Breakpoints []intercept.BreakpointSpec `yaml:"breakpoints"`
}

// ruleSource remembers where rules came from, so an error can name the
// file and line of the rule at fault.
type ruleSource struct {
	file  string
	lines []int
}

// ruleLines finds the line of each element of the sequence at path (keys)
// in a YAML document.
func ruleLines(data []byte, path ...string) []int {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	node := doc.Content[0]
	for _, key := range path {
		if node.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			if node.Content[i].Value == key {
				next = node.Content[i+1]
			}
		}
		if next == nil {
			return nil
		}
		node = next
	}
	if node.Kind != yaml.SequenceNode {
		return nil
	}
	lines := make([]int, len(node.Content))
	for i, n := range node.Content {
		lines[i] = n.Line
	}
	return lines
}

// loadRulesFile reads a --ws-rules file: a YAML list of rules.
func loadRulesFile(path string) ([]policy.WSRuleSpec, ruleSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, ruleSource{}, fmt.Errorf("--ws-rules: %w", err)
	}
	var specs []policy.WSRuleSpec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&specs); err != nil && !errors.Is(err, io.EOF) {
		return nil, ruleSource{}, fmt.Errorf("--ws-rules %s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return specs, ruleSource{file: path, lines: ruleLines(data)}, nil
}

// compileRules compiles rules, naming the file and line of a bad one.
func compileRules(specs []policy.WSRuleSpec, src ruleSource) (policy.WSRules, error) {
	rules, err := policy.CompileWSRules(specs)
	var re *policy.WSRuleError
	if errors.As(err, &re) {
		where := src.file
		if where == "" {
			where = "websocket rules"
		}
		if re.Index < len(src.lines) {
			where += ":" + strconv.Itoa(src.lines[re.Index])
		}
		return nil, fmt.Errorf("%s: websocket rule %d: %w", where, re.Index+1, re.Err)
	}
	return rules, err
}

// EventLogOptions turns the settings into the event log's options
// (--ws-log, --ws-preview; full mode shows what --ws-inspect-limit keeps).
func (cfg Config) EventLogOptions() (eventlog.Options, error) {
	opts := eventlog.Options{WSLog: cfg.WSLog, Preview: cfg.WSPreview, FullBytes: int(cfg.WSInspectLimit)}
	switch cfg.WSLog {
	case eventlog.WSLogOff, eventlog.WSLogMeta, eventlog.WSLogPreview, eventlog.WSLogFull:
	default:
		return opts, UsageError{Msg: fmt.Sprintf("--ws-log %q: use off, meta, preview or full", cfg.WSLog)}
	}
	if cfg.WSPreview < 0 {
		return opts, UsageError{Msg: "--ws-preview must not be negative"}
	}
	return opts, nil
}

// webSocketOptions builds the relay settings. It checks the event log's
// settings too, so that a bad --ws-log stops the start like any flag.
func (cfg Config) webSocketOptions() (proxy.WebSocketOptions, error) {
	opts := proxy.WebSocketOptions{
		InspectLimit: int(cfg.WSInspectLimit),
		MaxMessage:   int64(cfg.WSMaxMessage),
	}
	if cfg.WSInspectLimit == 0 {
		opts.InspectLimit = -1 // 0 on the command line means keep nothing
	}
	if _, err := cfg.EventLogOptions(); err != nil {
		return opts, err
	}
	specs, src := cfg.WebSocket.Rules, cfg.wsRuleSource
	if cfg.WSRules != "" {
		var err error
		if specs, src, err = loadRulesFile(cfg.WSRules); err != nil {
			return opts, err
		}
	}
	rules, err := compileRules(specs, src)
	if err != nil {
		return opts, err
	}
	opts.Rules = rules
	return opts, nil
}

// byteSize is a size flag: 1048576, 1MiB, 64KiB, 10MB, 512B.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// UnmarshalYAML accepts the same forms in --config.
func (b *byteSize) UnmarshalYAML(node *yaml.Node) error {
	n, err := parseByteSize(node.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", node.Line, err)
	}
	*b = byteSize(n)
	return nil
}

func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	text := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(text, u.suffix) {
			text, mult = strings.TrimSpace(strings.TrimSuffix(text, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: give bytes, or a number with KiB, MiB, GiB, KB, MB or GB", s)
	}
	return n * mult, nil
}

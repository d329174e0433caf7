package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// WebSocket rule actions.
const (
	WSPass    = "pass"
	WSDrop    = "drop"
	WSClose   = "close"
	WSRewrite = "rewrite"
	// WSInject marks a message hopscope sent of its own (an interceptor's
	// user); no rule has it.
	WSInject = "inject"
)

// WSRuleSpec is a WebSocket rule as written in YAML (websocket.rules in
// --config, or a --ws-rules file).
type WSRuleSpec struct {
	// Name labels the rule in events; default "rules[N]".
	Name   string      `yaml:"name"`
	Match  WSMatchSpec `yaml:"match"`
	Action string      `yaml:"action"`
	// Code and Reason are the close frame a close action sends; default
	// 1008 (policy violation).
	Code    int            `yaml:"code"`
	Reason  string         `yaml:"reason"`
	Replace *WSReplaceSpec `yaml:"replace"`
}

// WSMatchSpec selects messages. Every field given must match; an empty
// match selects every message.
type WSMatchSpec struct {
	From     string `yaml:"from" json:"from,omitempty"`         // client or server
	Type     string `yaml:"type" json:"type,omitempty"`         // text, binary, ping, pong or close
	URL      string `yaml:"url" json:"url,omitempty"`           // glob over the full URL: * any run, ? one character
	Contains string `yaml:"contains" json:"contains,omitempty"` // substring of the payload
	Regex    string `yaml:"regex" json:"regex,omitempty"`       // Go regular expression over the payload
	MinLen   *int64 `yaml:"min_len" json:"min_len,omitempty"`   // payload bytes, after decompression
	MaxLen   *int64 `yaml:"max_len" json:"max_len,omitempty"`
	// JSONPath selects a JSON payload that has a value at this path:
	// dot-separated object keys and array indexes ("data.items.0.id").
	JSONPath string `yaml:"json_path" json:"json_path,omitempty"`
	// JSONEquals, with JSONPath, also requires the value there: a string's
	// text, or any other value as JSON ("42", "true", "null").
	JSONEquals *string `yaml:"json_equals" json:"json_equals,omitempty"`
}

// WSReplaceSpec is what a rewrite action does to the payload.
type WSReplaceSpec struct {
	Regex string `yaml:"regex"`
	With  string `yaml:"with"` // may refer to groups: $1, ${name}
}

// WSRule is a compiled rule.
type WSRule struct {
	Name     string
	Action   string
	Code     uint16
	Reason   string
	from     string
	typ      string
	url      string
	contains []byte
	regex    *regexp.Regexp
	minLen   int64
	maxLen   int64
	replace  *regexp.Regexp
	with     []byte
	jsonPath []string
	jsonEq   *string
}

// WSRules are the rules in order; the first that matches decides.
type WSRules []WSRule

// WSMessage is what rules look at.
type WSMessage struct {
	From string // client or server
	Type string // text, binary, ping, pong, close
	URL  string
	// Payload is the plaintext, possibly only its start (Truncated).
	Payload   []byte
	Len       int64
	Truncated bool
}

// WSRuleError says which rule (0-based Index) did not compile, so that a
// caller can point at its line in a file.
type WSRuleError struct {
	Index int
	Err   error
}

func (e *WSRuleError) Error() string { return fmt.Sprintf("rule %d: %v", e.Index+1, e.Err) }

func (e *WSRuleError) Unwrap() error { return e.Err }

// CompileWSRules checks and compiles rules; an error is a *WSRuleError.
func CompileWSRules(specs []WSRuleSpec) (WSRules, error) {
	rules := make(WSRules, 0, len(specs))
	for i, spec := range specs {
		r, err := compileWSRule(spec)
		if err != nil {
			return nil, &WSRuleError{Index: i, Err: err}
		}
		if r.Name == "" {
			r.Name = fmt.Sprintf("rules[%d]", i)
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// CompileWSRule compiles one rule.
func CompileWSRule(spec WSRuleSpec) (WSRule, error) { return compileWSRule(spec) }

func compileWSRule(spec WSRuleSpec) (WSRule, error) {
	m := spec.Match
	r := WSRule{Name: spec.Name, Action: spec.Action, Reason: spec.Reason, from: m.From, typ: m.Type, url: m.URL,
		contains: []byte(m.Contains), minLen: -1, maxLen: -1}
	switch m.From {
	case "", "client", "server":
	default:
		return r, fmt.Errorf("match.from %q: use client or server", m.From)
	}
	switch m.Type {
	case "", "text", "binary", "ping", "pong", "close":
	default:
		return r, fmt.Errorf("match.type %q: use text, binary, ping, pong or close", m.Type)
	}
	if m.Regex != "" {
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return r, fmt.Errorf("match.regex: %w", err)
		}
		r.regex = re
	}
	if m.JSONPath != "" {
		r.jsonPath = strings.Split(m.JSONPath, ".")
		for _, key := range r.jsonPath {
			if key == "" {
				return r, fmt.Errorf("match.json_path %q has an empty key", m.JSONPath)
			}
		}
		r.jsonEq = m.JSONEquals
	} else if m.JSONEquals != nil {
		return r, fmt.Errorf("match.json_equals needs match.json_path")
	}
	if m.MinLen != nil {
		if *m.MinLen < 0 {
			return r, fmt.Errorf("match.min_len %d is negative", *m.MinLen)
		}
		r.minLen = *m.MinLen
	}
	if m.MaxLen != nil {
		if *m.MaxLen < 0 || (m.MinLen != nil && *m.MaxLen < *m.MinLen) {
			return r, fmt.Errorf("match.max_len %d is negative or below min_len", *m.MaxLen)
		}
		r.maxLen = *m.MaxLen
	}
	switch spec.Action {
	case WSPass, WSDrop:
	case WSClose:
		r.Code = 1008
		if spec.Code != 0 {
			if !sendableCloseCode(spec.Code) {
				return r, fmt.Errorf("code %d cannot be sent in a close frame (use 1000-1003, 1007-1014 or 3000-4999)", spec.Code)
			}
			r.Code = uint16(spec.Code)
		}
		if len(spec.Reason) > 123 {
			return r, fmt.Errorf("reason has %d bytes; a close frame holds at most 123", len(spec.Reason))
		}
	case WSRewrite:
		if spec.Replace == nil || spec.Replace.Regex == "" {
			return r, fmt.Errorf("action rewrite needs replace: {regex: ..., with: ...}")
		}
		re, err := regexp.Compile(spec.Replace.Regex)
		if err != nil {
			return r, fmt.Errorf("replace.regex: %w", err)
		}
		r.replace, r.with = re, []byte(spec.Replace.With)
		if m.Type == "ping" || m.Type == "pong" || m.Type == "close" {
			return r, fmt.Errorf("rewrite applies to text and binary messages, not %s", m.Type)
		}
	case "":
		return r, fmt.Errorf("no action: use pass, drop, close or rewrite")
	default:
		return r, fmt.Errorf("action %q: use pass, drop, close or rewrite", spec.Action)
	}
	if spec.Action != WSClose && (spec.Code != 0 || spec.Reason != "") {
		return r, fmt.Errorf("code and reason belong to action close")
	}
	if spec.Action != WSRewrite && spec.Replace != nil {
		return r, fmt.Errorf("replace belongs to action rewrite")
	}
	return r, nil
}

func sendableCloseCode(c int) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}

// Modifies reports whether any rule can hold back or change a message,
// which means messages must be complete before they are passed on.
func (rs WSRules) Modifies() bool {
	for _, r := range rs {
		if r.Action != WSPass {
			return true
		}
	}
	return false
}

// Match returns the first rule that matches m, or nil.
func (rs WSRules) Match(m WSMessage) *WSRule {
	for i := range rs {
		if rs[i].matches(m) {
			return &rs[i]
		}
	}
	return nil
}

func (r *WSRule) matches(m WSMessage) bool {
	switch {
	case r.from != "" && r.from != m.From,
		r.typ != "" && r.typ != m.Type,
		r.minLen >= 0 && m.Len < r.minLen,
		r.maxLen >= 0 && m.Len > r.maxLen,
		r.url != "" && !matchGlob(r.url, m.URL),
		len(r.contains) > 0 && !bytes.Contains(m.Payload, r.contains),
		r.regex != nil && !r.regex.Match(m.Payload),
		r.jsonPath != nil && (m.Truncated || !matchJSON(m.Payload, r.jsonPath, r.jsonEq)):
		return false
	}
	return true
}

// matchJSON reports whether payload is JSON with a value at path (equal
// to want, when given).
func matchJSON(payload []byte, path []string, want *string) bool {
	var v any
	if json.Unmarshal(payload, &v) != nil {
		return false
	}
	for _, key := range path {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[key]
			if !ok {
				return false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(node) {
				return false
			}
			v = node[i]
		default:
			return false
		}
	}
	if want == nil {
		return true
	}
	if s, ok := v.(string); ok {
		return s == *want
	}
	text, err := json.Marshal(v)
	return err == nil && string(text) == *want
}

// Rewrite applies a rewrite rule to a payload.
func (r *WSRule) Rewrite(payload []byte) []byte {
	if r.replace == nil {
		return payload
	}
	return r.replace.ReplaceAll(payload, r.with)
}

// matchGlob matches s against a pattern where * stands for any run of
// characters (slashes included) and ? for exactly one.
func matchGlob(pattern, s string) bool {
	star, starS := -1, 0
	p, i := 0, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, starS = p, i
			p++
		case star >= 0:
			p = star + 1
			starS++
			i = starS
		default:
			return false
		}
	}
	return strings.Trim(pattern[p:], "*") == ""
}

// MatchGlob matches s against a pattern where * stands for any run of
// characters (slashes included) and ? for exactly one, as rules' url
// fields do.
func MatchGlob(pattern, s string) bool { return matchGlob(pattern, s) }

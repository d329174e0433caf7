package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// PortSet is a set of TCP ports written as a comma-separated list of ports
// and ranges ("443,8443,9000-9100") or "*" for every port. The zero value
// contains no port.
type PortSet struct {
	any    bool
	ranges []portRange
	text   string
}

type portRange struct{ lo, hi uint16 }

// ParsePortSet parses a port list such as "443", "443,8443", "9000-9100" or "*".
func ParsePortSet(s string) (PortSet, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return PortSet{}, fmt.Errorf("empty port list: give ports like 443,8443, a range like 9000-9100, or *")
	}
	if s == "*" {
		return PortSet{any: true, text: "*"}, nil
	}
	var set PortSet
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := parsePort(lo)
		if err != nil {
			return PortSet{}, fmt.Errorf("port list %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = parsePort(hi); err != nil {
				return PortSet{}, fmt.Errorf("port list %q: %w", s, err)
			}
			if last < first {
				return PortSet{}, fmt.Errorf("port list %q: range %s ends before it starts", s, item)
			}
		}
		set.ranges = append(set.ranges, portRange{first, last})
	}
	set.text = s
	return set, nil
}

// MustParsePortSet is ParsePortSet for constants known to be valid; it
// panics on error.
func MustParsePortSet(s string) PortSet {
	set, err := ParsePortSet(s)
	if err != nil {
		panic(err)
	}
	return set
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint16(n), nil
}

// Contains reports whether port is in the set.
func (p PortSet) Contains(port uint16) bool {
	if p.any {
		return true
	}
	for _, r := range p.ranges {
		if port >= r.lo && port <= r.hi {
			return true
		}
	}
	return false
}

// IsZero reports whether the set is the zero value (no list given).
func (p PortSet) IsZero() bool { return p.text == "" }

// SquidSafePorts is squid's stock Safe_ports list.
const SquidSafePorts = "80,21,443,70,210,1025-65535,280,488,591,777"

// String returns the list as it was written.
func (p PortSet) String() string { return p.text }

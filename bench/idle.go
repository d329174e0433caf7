package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// idleRSS opens Options.IdleConns sessions through t, each having carried
// one round trip, lets them sit, and returns the growth of the proxy
// process's resident memory per session in KiB.
func idleRSS(ctx context.Context, e *env, t *target, open func(*env, *target) (io.Closer, error)) (float64, []time.Duration, error) {
	pid := t.PID
	if pid == 0 {
		var err error
		if pid, err = listenerPID(t.Addr); err != nil {
			return 0, nil, err
		}
	}
	// Let the previous case's sessions finish dying first.
	time.Sleep(300 * time.Millisecond)
	before, err := rssKiB(pid)
	if err != nil {
		return 0, nil, err
	}
	n := e.opts.IdleConns
	conns := make([]io.Closer, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		c, err := open(e, t)
		if err != nil {
			return 0, nil, fmt.Errorf("session %d of %d: %w", len(conns)+1, n, err)
		}
		conns = append(conns, c)
	}
	// Idle means idle for a while: a proxy may hand what quiet sessions
	// no longer need back to the system (hopscope parks them after 0.25 s).
	time.Sleep(e.opts.IdleSettle)
	after, err := rssKiB(pid)
	if err != nil {
		return 0, nil, err
	}
	return float64(after-before) / float64(n), nil, nil
}

func openIdleWS(route wsRoute) func(*env, *target) (io.Closer, error) {
	return func(e *env, t *target) (io.Closer, error) {
		c, err := e.dialWS(t, route, 1)
		if err != nil {
			return nil, err
		}
		_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.echo(); err != nil {
			c.Close()
			return nil, err
		}
		_ = c.conn.SetDeadline(time.Time{})
		return c, nil
	}
}

// openIdleTunnel opens a CONNECT tunnel to the TCP echo and sends a byte
// through it and back (the client speaks first, so the tunnel is spliced).
func openIdleTunnel(e *env, t *target) (io.Closer, error) {
	c, err := connectVia(t.Addr, e.tcpEcho.Addr().String())
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err = c.Write([]byte("x")); err == nil {
		_, err = io.ReadFull(c, make([]byte, 1))
	}
	_ = c.SetDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// rssKiB is a process's resident set size.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the proxy's RSS (Linux /proc only): %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// cpuOf is the CPU time target t's process has used so far, -1 when
// unknown (direct, or no /proc).
func (e *env) cpuOf(t *target) time.Duration {
	if t == nil {
		return -1
	}
	if t.PID == 0 {
		pid, err := listenerPID(t.Addr)
		if err != nil {
			return -1
		}
		t.PID = pid
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", t.PID))
	if err != nil {
		return -1
	}
	// The command name may hold spaces; fields count from after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// listenerPID finds the process listening on addr (a loopback host:port)
// through /proc: the socket's inode in /proc/net/tcp, then the process
// holding it.
func listenerPID(addr string) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, err
	}
	ip := net.ParseIP(host)
	var inodes []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			laddr, lport, _ := strings.Cut(f[1], ":")
			if p, _ := strconv.ParseUint(lport, 16, 16); p != port {
				continue
			}
			if ip == nil || ip.IsUnspecified() || procIPMatches(laddr, ip) {
				inodes = append(inodes, "socket:["+f[9]+"]")
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("%w (%s)", errNoProcess, addr)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		link, err := os.Readlink(fd)
		if err != nil {
			continue
		}
		for _, in := range inodes {
			if link == in {
				pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%w (%s; is it another user's?)", errNoProcess, addr)
}

// procIPMatches compares /proc/net/tcp's hex address (little-endian words)
// with ip; an unspecified listener (0.0.0.0, ::) matches every address.
func procIPMatches(hexAddr string, ip net.IP) bool {
	raw := make([]byte, len(hexAddr)/2)
	for i := range raw {
		v, err := strconv.ParseUint(hexAddr[2*i:2*i+2], 16, 8)
		if err != nil {
			return false
		}
		raw[i] = byte(v)
	}
	for i := 0; i+4 <= len(raw); i += 4 { // each 32-bit word is little-endian
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	got := net.IP(raw)
	return got.IsUnspecified() || got.Equal(ip)
}

//go:build linux

package proxy

import (
	"errors"
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
)

// poller waits for bytes on the sockets of parked pumps, all of them in
// one epoll set that is itself waited on through Go's netpoller, so no
// thread blocks. A parked socket stays in Go's netpoller too; the epoll
// set only says when to give its pump a goroutine again.
type poller struct {
	mu     sync.Mutex
	file   *os.File // the epoll fd, nil until the first park
	epfd   int
	parked map[uint64]*pump
	next   uint64
	closed bool
	done   chan struct{} // closed when the wait loop ends
	quiet  time.Duration // how long a pump waits itself before parking

	// A burst of sessions going quiet leaves their goroutine stacks
	// free but still resident; the runtime would return them only after
	// its next collection, which an idle proxy does not run for two
	// minutes. So once enough pumps have parked and the parking has
	// settled, the poller hands free memory back (debug.FreeOSMemory),
	// at most once per releaseEvery.
	sinceRelease int
	release      *time.Timer
	lastRelease  time.Time
}

const (
	releaseAfterParks = 64
	releaseDelay      = time.Second
	releaseEvery      = 10 * time.Second
)

func newPoller() *poller { return &poller{parked: map[uint64]*pump{}, quiet: quietAfter} }

func (pl *poller) quietAfter() time.Duration { return pl.quiet }

// park registers p's socket and reports true when p is parked; false
// means p must read on (the socket is already closed, or no epoll).
func (pl *poller) park(p *pump) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed || (pl.file == nil && !pl.start()) {
		return false
	}
	pl.next++
	token := pl.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd: int32(token), Pad: int32(token >> 32)}
	var addErr error
	if err := p.cr.parkRaw.Control(func(fd uintptr) {
		addErr = syscall.EpollCtl(pl.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || addErr != nil {
		return false
	}
	p.token = token
	pl.parked[token] = p
	pl.sinceRelease++
	if pl.sinceRelease >= releaseAfterParks && pl.release == nil {
		wait := max(releaseDelay, time.Until(pl.lastRelease.Add(releaseEvery)))
		pl.release = time.AfterFunc(wait, pl.releaseMemory)
	}
	return true
}

// releaseMemory returns the memory freed by parked pumps to the system.
func (pl *poller) releaseMemory() {
	debug.FreeOSMemory()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.sinceRelease, pl.release, pl.lastRelease = 0, nil, time.Now()
}

// start opens the epoll set and its wait loop; pl.mu is held.
func (pl *poller) start() bool {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return false
	}
	pl.epfd, pl.file, pl.done = epfd, os.NewFile(uintptr(epfd), "epoll"), make(chan struct{})
	rc, err := pl.file.SyscallConn()
	if err != nil {
		pl.file.Close()
		pl.file = nil
		return false
	}
	go pl.loop(rc)
	return true
}

func (pl *poller) loop(rc syscall.RawConn) {
	defer close(pl.done)
	events := make([]syscall.EpollEvent, 64)
	ready := make([]*pump, 0, 64)
	for {
		var n int
		var waitErr error
		err := rc.Read(func(fd uintptr) bool {
			n, waitErr = syscall.EpollWait(int(fd), events, 0)
			return !(n == 0 && waitErr == nil) && !errors.Is(waitErr, syscall.EINTR)
		})
		if err != nil || waitErr != nil {
			return // closed
		}
		ready = ready[:0]
		pl.mu.Lock()
		for _, ev := range events[:n] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if p, ok := pl.parked[token]; ok {
				delete(pl.parked, token)
				pl.unregister(p)
				ready = append(ready, p)
			}
		}
		pl.mu.Unlock()
		for _, p := range ready {
			go p.run()
		}
	}
}

// unregister takes p's socket out of the epoll set; pl.mu is held. A
// socket closed meanwhile has left the set by itself.
func (pl *poller) unregister(p *pump) {
	_ = p.cr.parkRaw.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(pl.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// wake runs p again if it is parked.
func (pl *poller) wake(p *pump) {
	pl.mu.Lock()
	_, ok := pl.parked[p.token]
	if ok {
		delete(pl.parked, p.token)
		pl.unregister(p)
	}
	pl.mu.Unlock()
	if ok {
		go p.run()
	}
}

// wakeAll runs every parked pump again (their sockets were closed).
func (pl *poller) wakeAll() {
	pl.mu.Lock()
	var all []*pump
	for token, p := range pl.parked {
		delete(pl.parked, token)
		pl.unregister(p)
		all = append(all, p)
	}
	pl.mu.Unlock()
	for _, p := range all {
		go p.run()
	}
}

// close wakes every parked pump and ends the wait loop; later parks fail.
func (pl *poller) close() {
	pl.mu.Lock()
	pl.closed = true
	file, done := pl.file, pl.done
	if pl.release != nil {
		pl.release.Stop()
		pl.release = nil
	}
	pl.mu.Unlock()
	pl.wakeAll()
	if file != nil {
		file.Close()
		<-done
	}
}

// parked counts the pumps waiting in the poller, for tests.
func (pl *poller) parkedCount() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.parked)
}

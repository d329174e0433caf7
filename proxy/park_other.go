//go:build !linux

package proxy

import "time"

// poller is a no-op where there is no epoll: a relay's goroutine waits
// for its socket itself.
type poller struct{}

func newPoller() *poller                     { return &poller{} }
func (pl *poller) park(*pump) bool           { return false }
func (pl *poller) wake(*pump)                {}
func (pl *poller) wakeAll()                  {}
func (pl *poller) close()                    {}
func (pl *poller) parkedCount() int          { return 0 }
func (pl *poller) quietAfter() time.Duration { return 0 }

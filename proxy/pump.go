package proxy

import (
	"errors"
	"time"
)

// quietAfter is how long a relay direction waits for bytes on its own
// goroutine before handing the wait to the server's poller (where the
// platform has one) and letting the goroutine go: an idle WebSocket or
// tunnel then costs no goroutine stack. A session that talks pays one
// read deadline per period (not per read); one that talks less often
// than this pays a park and a wake (two epoll_ctl calls and a new
// goroutine, a few microseconds) per message. Measured with hopscope
// bench, 500 idle ws:// sessions: 27.7 KiB of RSS each without parking,
// 21.3 parking after 1 s (the sessions' stacks were all alive while they
// opened), 5.6 parking after 250 ms.
const quietAfter = 250 * time.Millisecond

// errQuiet is chunkReader.next's answer when nothing arrived for the
// quiet period and the caller may park.
var errQuiet = errors.New("no bytes for the quiet period")

// pump moves one direction of a relay: it reads its source chunk by chunk
// and hands each chunk to handle until an error, then calls end once.
// While the source is quiet the pump may be parked: no goroutine runs it
// until the poller sees bytes (or the end of the stream), and then a new
// goroutine carries on.
type pump struct {
	cr     *chunkReader
	handle func(chunk []byte) error
	end    func(err error)
	park   *poller // nil: the goroutine waits itself
	token  uint64  // the pump's key in the poller while parked
	// quiet, if set, runs on the pump's goroutine when its source has
	// gone quiet, before it parks: the place to let go of what an idle
	// session need not keep.
	quiet func()
}

func newPump(cr *chunkReader, park *poller, handle func([]byte) error, end func(error)) *pump {
	p := &pump{cr: cr, handle: handle, end: end, park: park}
	if park != nil && cr.canPark() {
		cr.quiet = park.quietAfter()
	}
	return p
}

// run relays until the pump ends or parks.
func (p *pump) run() {
	for {
		chunk, err := p.cr.next()
		if errors.Is(err, errQuiet) {
			if p.quiet != nil {
				p.quiet()
			}
			if p.park.park(p) {
				return // the poller runs p again when the source wakes
			}
			continue
		}
		if err != nil {
			p.end(err)
			return
		}
		err = p.handle(chunk)
		p.cr.release()
		if err != nil {
			p.end(err)
			return
		}
	}
}

// wake runs a parked pump again at once, as its connection was closed
// under it: the read meets the closed socket and the pump ends.
func (p *pump) wake() {
	if p != nil && p.park != nil {
		p.park.wake(p)
	}
}

package proxy

import (
	"fmt"
	"time"

	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
)

// WSMessageView is a complete WebSocket message (or control frame) as a
// decider sees it. It is valid only during Decide: the relay reuses it,
// and Payload is the parser's buffer.
type WSMessageView struct {
	Session flow.ID
	URL     string
	From    flow.Side
	Op      flow.Opcode
	// Payload is the start of the plaintext (after inflation), at most
	// --ws-inspect-limit bytes.
	Payload []byte
	// Len is the plaintext length, -1 when it could not be inflated.
	Len        int64
	Truncated  bool
	Compressed bool
	// Held is set when the relay still holds the whole message: it can be
	// dropped, delayed, repeated or paused. A message larger than
	// --ws-inspect-limit was streamed and is only reported.
	Held bool
	// Modifiable is set when the message can also be replaced: held,
	// wholly inspected, and not compressed by a sender that keeps its
	// compression context (the receiver's history would break).
	Modifiable bool
	// Hold, when set, is how a decider waits for a person: it returns
	// once until is closed (or the session ends), and meanwhile the
	// direction reads on, passing its peer's pings and pongs while later
	// messages wait in order. nil: block some other way.
	Hold func(until <-chan struct{})
}

// WSVerdict is what the deciders say about one message. The relay starts
// each message with Action pass and asks the deciders in order until one
// settles something other than pass.
type WSVerdict struct {
	// Action is policy.WSPass, WSDrop, WSRewrite or WSClose.
	Action string
	// Rule names the rule or breakpoint that matched; Note says why an
	// action could not be applied, or which fault or person acted.
	Rule, Note string
	// Actor says who decided: "rule", "fault", "person", "timeout"; ""
	// when nothing acted.
	Actor string
	// Replacement is sent instead of the message for WSRewrite, as one
	// uncompressed frame of ReplacementOp (0: the message's own opcode).
	Replacement   []byte
	ReplacementOp flow.Opcode
	// Code and Reason are the close frame WSClose sends both sides.
	Code   uint16
	Reason string
	// Delay holds a passed message back that long; Duplicate sends it
	// twice.
	Delay     time.Duration
	Duplicate bool
	// CloseAfter closes both sides with this code (and CloseAfterReason)
	// once the message has passed; 0: no.
	CloseAfter       uint16
	CloseAfterReason string
}

// WSDecider decides about messages. A relay direction asks each of its
// deciders in turn; Decide may block (a breakpoint waits for a person),
// which holds back that direction only. Decide must not keep m or its
// payload after it returns.
type WSDecider interface {
	Decide(m *WSMessageView, v *WSVerdict)
}

// decide runs the deciders and bounds their verdict by what the relay can
// still do with the message.
func (d *wsDirection) decide(m *wsframe.Message) *WSVerdict {
	v := &d.verdict
	*v = WSVerdict{Action: policy.WSPass}
	if len(d.deciders) == 0 {
		return v
	}
	if d.sess.intercept != nil {
		// A breakpoint may hold this direction for a while: what went
		// before the message must not wait with it.
		if err := d.flush(); err != nil {
			d.writeErr = err // Message ends the direction with it
			return v
		}
	}
	held := m.Op.IsControl() || d.hold && !d.overflow
	view := &d.view
	*view = WSMessageView{
		Session: d.sess.id, URL: d.sess.url, From: flowSide(d.from), Op: flow.Opcode(m.Op),
		Payload: m.Payload, Len: messageLen(m), Truncated: m.Truncated, Compressed: m.Compressed,
		Held:       held,
		Modifiable: held && !m.Truncated && (!m.Compressed || d.canModifyCompressed),
		Hold:       d.holdFn,
	}
	for _, dec := range d.deciders {
		dec.Decide(view, v)
		d.bound(m, held, v)
		if v.Action != policy.WSPass {
			break
		}
	}
	return v
}

// bound turns what cannot be done with the message into a pass, saying
// why.
func (d *wsDirection) bound(m *wsframe.Message, held bool, v *WSVerdict) {
	switch {
	case v.Action == policy.WSPass:
	case !held:
		v.Note = fmt.Sprintf("passed: larger than --ws-inspect-limit (%d bytes), so it was streamed before the %s could act", d.sess.srv.opts.WebSocket.InspectLimit, actorName(v.Actor))
		v.Action, v.Replacement = policy.WSPass, nil
	case m.Compressed && !d.canModifyCompressed && v.Action != policy.WSClose:
		v.Note = "passed: the sender keeps compression context, so dropping or changing a message would corrupt the ones after it"
		v.Action, v.Replacement = policy.WSPass, nil
	case v.Action == policy.WSRewrite && m.Truncated:
		v.Note = "passed: only part of the message could be inspected, so it cannot be rewritten"
		v.Action, v.Replacement = policy.WSPass, nil
	}
	if !held {
		v.Delay, v.Duplicate = 0, false
	}
}

func actorName(actor string) string {
	if actor == "" {
		return "rule"
	}
	return actor
}

// apply carries out the verdict: the held message goes out (late, twice),
// is dropped, replaced, or the connection closes.
func (d *wsDirection) apply(m *wsframe.Message, v *WSVerdict) error {
	if !m.Op.IsControl() {
		// The data message is done. A control frame between fragments
		// must leave the message being held alone.
		defer func() {
			d.holding = false
			if d.held != nil {
				*d.held = (*d.held)[:0]
			}
		}()
	}
	switch v.Action {
	case policy.WSDrop:
		return nil
	case policy.WSRewrite:
		if err := d.flush(); err != nil {
			return err
		}
		op := m.Op
		if v.ReplacementOp != 0 {
			op = ws.OpCode(v.ReplacementOp)
		}
		return d.write(dataFrame(op, v.Replacement, d.from == wsframe.Client))
	case policy.WSClose:
		if err := d.flush(); err != nil {
			return err
		}
		code := ws.StatusCode(v.Code)
		d.sess.closeBoth(code, code, v.Reason, v.Reason)
		return errClosedByProxy
	}
	if m.Op.IsControl() || d.hold && !d.overflow {
		if v.Delay > 0 {
			if err := d.flush(); err != nil {
				return err
			}
			time.Sleep(v.Delay)
		}
		if err := d.passHeld(m, v.Duplicate); err != nil {
			return err
		}
	}
	if v.CloseAfter != 0 {
		if err := d.flush(); err != nil {
			return err
		}
		code := ws.StatusCode(v.CloseAfter)
		d.sess.closeBoth(code, code, v.CloseAfterReason, v.CloseAfterReason)
		return errClosedByProxy
	}
	return nil
}

// ruleDecider applies the WebSocket rules (--ws-rules): the first rule
// that matches decides.
type ruleDecider struct {
	rules policy.WSRules
}

// Decide implements WSDecider.
func (r *ruleDecider) Decide(m *WSMessageView, v *WSVerdict) {
	rule := r.rules.Match(policy.WSMessage{
		From: m.From.String(), Type: m.Op.String(), URL: m.URL,
		Payload: m.Payload, Len: m.Len, Truncated: m.Truncated,
	})
	if rule == nil {
		return
	}
	v.Rule = rule.Name
	if rule.Action == policy.WSPass {
		return
	}
	v.Action, v.Actor = rule.Action, "rule"
	switch rule.Action {
	case policy.WSRewrite:
		if m.Modifiable {
			v.Replacement = rule.Rewrite(m.Payload)
		}
	case policy.WSClose:
		v.Code, v.Reason = rule.Code, rule.Reason
	}
}

// faultDecider applies the message faults (--fault ws-drop, ...).
type faultDecider struct {
	faults *messageFaults
}

// Decide implements WSDecider.
func (f faultDecider) Decide(m *WSMessageView, v *WSVerdict) {
	verdict := f.faults.decide(m.Op.String(), !m.Op.Control())
	switch {
	case verdict.drop:
		v.Action, v.Actor, v.Note = policy.WSDrop, "fault", "fault "+verdict.fault
	case verdict.duplicate || verdict.delay > 0:
		v.Duplicate, v.Delay = verdict.duplicate, verdict.delay
	}
	if verdict.closeCode != 0 {
		v.CloseAfter, v.CloseAfterReason = verdict.closeCode, "hopscope fault "+verdict.fault
	}
}

package har

// Payload decodes a message's data as it was written: text as is, other
// opcodes base64 (Chrome's way). ok is false for data that does not decode.
func (m *Message) Payload() (payload []byte, ok bool) { return decodeData(m.Opcode, m.Data) }

// Delivered is the payload the receiving side got: the replacement of a
// rewritten message, nil and false for one hopscope dropped (or that does
// not decode).
func (m *Message) Delivered() ([]byte, bool) {
	if m.X != nil {
		switch m.X.Action {
		case "drop":
			return nil, false
		case "rewrite":
			if m.X.Replacement != "" {
				return decodeData(m.Opcode, m.X.Replacement)
			}
		}
	}
	return m.Payload()
}

package decision

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Hand-written JSON encoding for the two documents written once per
// decision (the answer and the decision-log line): no reflection, no
// allocation beyond the output buffer. Everything else uses encoding/json.

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does (control characters, quote, backslash, and invalid UTF-8 as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript; escape
		// them as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendField(b []byte, name string) []byte {
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendStringField(b []byte, name, v string) []byte {
	return appendJSONString(appendField(b, name), v)
}

// AppendDecision appends d as its JSON document (the same fields and order
// as encoding/json would write for Decision).
func AppendDecision(b []byte, d *Decision) []byte {
	b = append(b, '{')
	b = appendStringField(b, "decisionId", d.DecisionID)
	b = strconv.AppendBool(appendField(append(b, ','), "allow"), d.Allow)
	b = strconv.AppendInt(appendField(append(b, ','), "status"), int64(d.Status), 10)
	b = appendStringField(append(b, ','), "code", d.Code)
	b = appendStringField(append(b, ','), "message", d.Message)
	b = appendStringField(append(b, ','), "permission", d.Permission)
	b = appendStringField(append(b, ','), "endpoint", d.Endpoint)
	b = appendStringField(append(b, ','), "contentId", d.ContentID)
	b = appendStringField(append(b, ','), "keyId", d.KeyID)
	v := &d.Visibility
	b = append(appendField(append(b, ','), "visibility"), '{')
	b = strconv.AppendBool(appendField(b, "published"), v.Published)
	b = strconv.AppendBool(appendField(append(b, ','), "drafts"), v.Drafts)
	b = strconv.AppendBool(appendField(append(b, ','), "closed"), v.Closed)
	b = strconv.AppendBool(appendField(append(b, ','), "draftKey"), v.DraftKey)
	b = appendStringField(append(b, ','), "filterOn", v.FilterOn)
	b = append(b, '}')
	b = appendStringField(append(b, ','), "policyRevision", d.PolicyRevision)
	return append(b, '}')
}

// appendDecisionEntry appends one decision-log line (with its newline).
func appendDecisionEntry(b []byte, e *DecisionEntry) []byte {
	b = append(b, '{')
	// RFC 3339 has nothing to escape: appended in place, no string.
	b = append(e.Time.UTC().AppendFormat(append(appendField(b, "time"), '"'), time.RFC3339Nano), '"')
	b = appendStringField(append(b, ','), "decisionId", e.DecisionID)
	b = appendStringField(append(b, ','), "service", e.Service)
	b = appendStringField(append(b, ','), "keyId", e.KeyID)
	b = appendStringField(append(b, ','), "api", e.API)
	b = appendStringField(append(b, ','), "method", e.Method)
	b = appendStringField(append(b, ','), "path", e.Path)
	b = strconv.AppendBool(appendField(append(b, ','), "allow"), e.Allow)
	b = strconv.AppendInt(appendField(append(b, ','), "status"), int64(e.Status), 10)
	b = appendStringField(append(b, ','), "code", e.Code)
	b = appendStringField(append(b, ','), "message", e.Message)
	b = appendStringField(append(b, ','), "policyRevision", e.PolicyRevision)
	b = strconv.AppendFloat(appendField(append(b, ','), "latencyMicros"), float64(e.Latency.Nanoseconds())/1e3, 'f', 3, 64)
	b = appendStringField(append(b, ','), "endpoint", e.Endpoint)
	b = appendStringField(append(b, ','), "permission", e.Permission)
	if e.KeyRevision != 0 {
		b = strconv.AppendUint(appendField(append(b, ','), "keyRevision"), e.KeyRevision, 10)
	}
	b = appendQuery(appendField(append(b, ','), "query"), e.Query)
	if e.ClientIP != "" {
		b = appendStringField(append(b, ','), "clientIp", e.ClientIP)
	}
	if e.Truncated {
		b = strconv.AppendBool(appendField(append(b, ','), "truncated"), true)
	}
	if e.NotAsked {
		b = strconv.AppendBool(appendField(append(b, ','), "notAsked"), true)
	}
	if l := e.Legacy; l != nil {
		b = append(appendField(append(b, ','), "legacy"), '{')
		b = strconv.AppendBool(appendField(b, "microcmsKey"), l.MicrocmsKey)
		b = append(appendField(append(b, ','), "headers"), '[')
		for i, h := range l.Headers {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendStringField(append(b, '{'), "header", h.Header)
			b = appendStringField(append(b, ','), "keyId", h.KeyID)
			if h.KeyRevision != 0 {
				b = strconv.AppendUint(appendField(append(b, ','), "keyRevision"), h.KeyRevision, 10)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
		b = appendStringField(append(b, ','), "keyHeader", l.KeyHeader)
		b = append(b, '}')
	}
	if o := e.Shadow; o != nil {
		b = append(appendField(append(b, ','), "shadow"), '{')
		b = appendStringField(b, "revision", o.Revision)
		b = strconv.AppendBool(appendField(append(b, ','), "allow"), o.Allow)
		b = strconv.AppendInt(appendField(append(b, ','), "status"), int64(o.Status), 10)
		b = appendStringField(append(b, ','), "code", o.Code)
		b = appendStringField(append(b, ','), "message", o.Message)
		if o.KeyHeader != "" {
			b = appendStringField(append(b, ','), "keyHeader", o.KeyHeader)
		}
		if o.Error != "" {
			b = appendStringField(append(b, ','), "error", o.Error)
		}
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}

// appendQuery writes the query as the policy input has it: an object of
// the first value of each parameter, redacted parameters' values replaced.
func appendQuery(b []byte, q [][2]string) []byte {
	b = append(b, '{')
	first := true
outer:
	for i, kv := range q {
		for _, prev := range q[:i] {
			if prev[0] == kv[0] {
				continue outer
			}
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		v := kv[1]
		if redactedQueryParam(kv[0]) {
			v = RedactedValue
		}
		b = append(appendJSONString(b, kv[0]), ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Log formats of -log-format.
const (
	logFormatText = "text" // slog's key=value lines, the default
	logFormatJSON = "json" // one JSON object per line
)

// newLogger is the logger of every role, writing to w: -log-format picks
// the handler, -log-level its level. A record logged with a request's
// context (InfoContext(ctx, ...)) carries that request's ID, so that code
// serving a request needs no logger of its own to say which request it
// logs for. When w is a logBuffer, a warning or an error is written out
// at once, with every line before it.
func newLogger(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case logFormatText:
		h = slog.NewTextHandler(w, opts)
	case logFormatJSON:
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("-log-format: %q is not text or json", format)
	}
	buf, _ := w.(*logBuffer)
	access := &accessLines{w: w, json: format == logFormatJSON, on: level <= slog.LevelInfo}
	return slog.New(requestIDHandler{Handler: h, access: access, buf: buf}), nil
}

// requestIDHandler adds the request ID of the context a record is logged
// with (requestIDFrom) as attrRequestID; records logged without one pass
// unchanged. It is safe for concurrent use if its Handler is.
type requestIDHandler struct {
	slog.Handler
	// access writes the access line in the format of Handler, to the same
	// output; nil on derived loggers (With, WithGroup), whose lines carry
	// attributes of their own.
	access *accessLines
	// buf is the logBuffer the lines go to, flushed after a warning or an
	// error; nil when the output is written directly.
	buf *logBuffer
}

// Handle adds the request ID, then hands the record on. The record is
// the logger's own copy, made for this call, so adding to it is safe.
func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestIDFrom(ctx); id != "" {
		r.AddAttrs(slog.String(attrRequestID, id))
	}
	err := h.Handler.Handle(ctx, r)
	if h.buf != nil && r.Level >= slog.LevelWarn {
		h.buf.Flush()
	}
	return err
}

// WithAttrs keeps the request ID on loggers derived with With.
func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{Handler: h.Handler.WithAttrs(attrs), buf: h.buf}
}

// WithGroup keeps the request ID on loggers derived with WithGroup.
func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{Handler: h.Handler.WithGroup(name), buf: h.buf}
}

// msgAccess is the message of the access line, one per finished REST
// request: operators filter on msg="request".
const msgAccess = "request"

// logAccess writes the access line of a finished REST request at info:
// what was asked (method, route pattern, never the path with its names),
// the answer (status, bytes, duration), by whom (client ID and address)
// and its request ID. Bodies, query strings and credentials never reach
// it; -log-level=warn leaves the access lines out. A logger of newLogger
// formats the line itself (accessLines), the same bytes slog would write
// at a fraction of the cost; any other logger goes through slog.
func (s *restServer) logAccess(rec requestRecord) {
	if h, ok := s.log.Handler().(requestIDHandler); ok && h.access != nil {
		at := rec.End
		if at.IsZero() {
			at = time.Now()
		}
		h.access.write(rec, at)
		return
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, msgAccess,
		slog.String(attrMethod, rec.Method),
		slog.String(attrRoute, rec.Route),
		slog.Int(attrStatus, rec.Status),
		slog.Int64(attrBytes, rec.Bytes),
		slog.Float64(attrDurationMS, durationMS(rec.Duration)),
		slog.String(attrClient, rec.Principal),
		slog.String(attrAddr, rec.Client),
		slog.String(attrRequestID, rec.RequestID))
}

// durationMS is d in milliseconds, to the microsecond.
func durationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// accessLines writes access lines to a log's output without slog: the
// line of logAccess, byte for byte what slog's text or JSON handler writes
// for it (TestAccessLineAsSlog), without slog's per-record work (the
// caller's PC, the attribute slice, the handler's lock). It is safe for
// concurrent use if w is: each line is one Write, as slog's are.
type accessLines struct {
	w    io.Writer
	json bool
	// on is false when the logger's level leaves info out.
	on bool
}

// accessLineBufs recycles the lines' buffers.
var accessLineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// write writes rec's access line, logged at now.
func (a *accessLines) write(rec requestRecord, now time.Time) {
	if !a.on {
		return
	}
	bp := accessLineBufs.Get().(*[]byte)
	var b []byte
	if a.json {
		b = appendAccessJSON((*bp)[:0], rec, now)
	} else {
		b = appendAccessText((*bp)[:0], rec, now)
	}
	a.w.Write(b)
	*bp = b
	accessLineBufs.Put(bp)
}

// appendAccessText appends rec's line in slog's text format.
func appendAccessText(b []byte, rec requestRecord, now time.Time) []byte {
	b = append(b, "time="...)
	b = appendLogTime(b, now, false)
	b = append(b, " level=INFO msg="+msgAccess+" "+attrMethod+"="...)
	b = appendTextString(b, rec.Method)
	b = append(b, " "+attrRoute+"="...)
	if rec.Route == patternGetEntity {
		b = append(b, textGetEntity...)
	} else {
		b = appendTextString(b, rec.Route)
	}
	b = append(b, " "+attrStatus+"="...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, " "+attrBytes+"="...)
	b = strconv.AppendInt(b, rec.Bytes, 10)
	b = append(b, " "+attrDurationMS+"="...)
	b = appendDurationMS(b, rec.Duration, 'g')
	b = append(b, " "+attrClient+"="...)
	b = appendTextString(b, rec.Principal)
	b = append(b, " "+attrAddr+"="...)
	b = appendTextString(b, rec.Client)
	b = append(b, " "+attrRequestID+"="...)
	b = appendTextString(b, rec.RequestID)
	return append(b, '\n')
}

// textGetEntity is patternGetEntity, the route of most access lines, as
// the text format writes it (quoted: it holds a space).
var textGetEntity = strconv.Quote(patternGetEntity)

// appendAccessJSON appends rec's line in slog's JSON format. The duration
// is written as encoding/json writes a float64 in the range a duration in
// milliseconds to the microsecond can take (0 or 0.001 to 1e16): in 'f'
// format.
func appendAccessJSON(b []byte, rec requestRecord, now time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = appendLogTime(b, now, true)
	b = append(b, `","level":"INFO","msg":"`+msgAccess+`","`+attrMethod+`":`...)
	b = appendJSONString(b, rec.Method)
	b = append(b, `,"`+attrRoute+`":`...)
	b = appendJSONString(b, rec.Route)
	b = append(b, `,"`+attrStatus+`":`...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, `,"`+attrBytes+`":`...)
	b = strconv.AppendInt(b, rec.Bytes, 10)
	b = append(b, `,"`+attrDurationMS+`":`...)
	b = appendDurationMS(b, rec.Duration, 'f')
	b = append(b, `,"`+attrClient+`":`...)
	b = appendJSONString(b, rec.Principal)
	b = append(b, `,"`+attrAddr+`":`...)
	b = appendJSONString(b, rec.Client)
	b = append(b, `,"`+attrRequestID+`":`...)
	b = appendJSONString(b, rec.RequestID)
	return append(b, "}\n"...)
}

// appendDurationMS appends durationMS(d) as strconv.AppendFloat(b, ms,
// format, -1, 64) does, format 'g' (slog's text) or 'f' (its JSON). Below
// 10^6 ms both write the milliseconds to the microsecond in plain decimal,
// which is done here without the float conversion; the rest goes to
// strconv (TestAppendDurationMS).
func appendDurationMS(b []byte, d time.Duration, format byte) []byte {
	us := d.Microseconds()
	if us < 0 || us >= 1e9 {
		return strconv.AppendFloat(b, durationMS(d), format, -1, 64)
	}
	b = strconv.AppendInt(b, us/1000, 10)
	if frac := int(us % 1000); frac != 0 {
		b = appendFraction(b, frac, 3, true)
	}
	return b
}

// logSecond is the text of one second of the log's clock, so that the
// access lines of a second format their date and zone once.
type logSecond struct {
	unix int64
	loc  *time.Location
	// date is "2006-01-02T15:04:05", zone "Z" or "+01:00".
	date, zone string
}

// lastLogSecond is the logSecond of the latest access line.
var lastLogSecond atomic.Pointer[logSecond]

// appendLogTime appends t as slog writes a record's time: in the text
// format to the millisecond (2006-01-02T15:04:05.000Z07:00), in the JSON
// format as time.RFC3339Nano.
func appendLogTime(b []byte, t time.Time, rfc3339Nano bool) []byte {
	sec := lastLogSecond.Load()
	if sec == nil || sec.unix != t.Unix() || sec.loc != t.Location() {
		sec = &logSecond{unix: t.Unix(), loc: t.Location(), date: t.Format("2006-01-02T15:04:05"), zone: t.Format("Z07:00")}
		lastLogSecond.Store(sec)
	}
	b = append(b, sec.date...)
	ns := t.Nanosecond()
	switch {
	case !rfc3339Nano:
		b = appendFraction(b, ns/1e6, 3, false)
	case ns != 0:
		b = appendFraction(b, ns, 9, true)
	}
	return append(b, sec.zone...)
}

// appendFraction appends '.' and v in digits decimal digits, trailing
// zeros dropped when trim is set.
func appendFraction(b []byte, v, digits int, trim bool) []byte {
	var d [9]byte
	for i := digits - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	n := digits
	for trim && n > 0 && d[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, d[:n]...)
}

// appendTextString appends s as slog's text format writes a value: as it
// is, or Go-quoted when it is empty or holds a space, '=', '"', a control
// character or a rune that is not printable.
func appendTextString(b []byte, s string) []byte {
	if !textNeedsQuoting(s) {
		return append(b, s...)
	}
	if !printableASCII(s) {
		return strconv.AppendQuote(b, s)
	}
	// What strconv.AppendQuote writes for printable ASCII, without its
	// rune decoding: every access line quotes its route ("GET /x").
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// printableASCII reports whether s is only printable ASCII characters,
// space included.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// textNeedsQuoting reports whether slog's text format quotes s.
func textNeedsQuoting(s string) bool {
	if s == "" {
		return true
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == ' ' || c == '=' || c == '"' || c < 0x20 {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendJSONString appends s as a JSON string the way slog's JSON handler
// does: '"' and '\\' escaped, control characters as \n, \r, \t or \u00XX,
// invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped, HTML left alone.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, `\n`...)
			case c == '\r':
				b = append(b, `\r`...)
			case c == '\t':
				b = append(b, `\t`...)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

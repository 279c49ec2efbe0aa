package message

import (
	"strconv"
	"unicode/utf8"
)

// Encoder writes Yunxin lines. Its scratch buffer is reused between lines, so
// one Encoder per goroutine keeps encoding free of allocations.
type Encoder struct {
	scratch []byte
}

// AppendLine appends m's Yunxin line (without a newline) to dst. The output is
// byte-for-byte deterministic: one fixed key order per kind, following the
// document's examples, UTF-8 written as is. m must be valid (see Validate).
//
// Key orders:
//
//	p2p text               ext, clientType, createTime, msgid, from, to, body
//	p2p image/audio/video/file
//	                       ext, clientType, createTime, msgid, from, to, attach
//	p2p location/custom    attach, clientType, createTime, ext, msgid, from, to
//	team text              ext, createTime, clientType, msgid, accid, body, tid
//	team 1/2/3/4/6/100     ext, createTime, clientType, msgid, accid, attach, tid
//	team 101–106, 108      accid2, createTime, clientType, msgid, accid, tid
//	team 107               createTime, clientType, tinfo, msgid, accid, tid
//	team 109, 110          createTime, clientType, msgid, accid, tid
func (e *Encoder) AppendLine(dst []byte, m *Message) []byte {
	dst = append(dst, `{"data":{`...)
	if m.Scene == Team {
		dst = e.appendTeam(dst, m)
	} else {
		dst = e.appendP2P(dst, m)
	}
	dst = append(dst, `},"type":`...)
	dst = strconv.AppendInt(dst, int64(m.Type), 10)
	return append(dst, '}')
}

func (e *Encoder) appendP2P(dst []byte, m *Message) []byte {
	switch m.Type {
	case TypeLocation, TypeCustom:
		dst = append(dst, `"attach":`...)
		dst = e.appendAttach(dst, m.Attach)
		dst = appendClientTypeString(append(dst, ','), m.ClientType)
		dst = appendCreateTime(append(dst, ','), m.CreateTime)
		dst = appendKeyString(dst, `,"ext":`, m.Ext)
		dst = appendMsgID(append(dst, ','), m.MsgID)
		dst = appendKeyString(dst, `,"from":`, m.From)
		return appendKeyString(dst, `,"to":`, m.To)
	}
	dst = appendKeyString(dst, `"ext":`, m.Ext)
	dst = appendClientTypeString(append(dst, ','), m.ClientType)
	dst = appendCreateTime(append(dst, ','), m.CreateTime)
	dst = appendMsgID(append(dst, ','), m.MsgID)
	dst = appendKeyString(dst, `,"from":`, m.From)
	dst = appendKeyString(dst, `,"to":`, m.To)
	if m.Type == TypeText {
		return appendKeyString(dst, `,"body":`, m.Body)
	}
	dst = append(dst, `,"attach":`...)
	return e.appendAttach(dst, m.Attach)
}

func (e *Encoder) appendTeam(dst []byte, m *Message) []byte {
	switch {
	case m.Type == TypeTeamUpdate:
		dst = appendCreateTime(dst, m.CreateTime)
		dst = appendClientTypeNumber(append(dst, ','), m.ClientType)
		dst = append(dst, `,"tinfo":`...)
		dst = appendTInfo(dst, &m.TInfo, m.TID)
	case m.Type.HasAccid2():
		dst = appendKeyString(dst, `"accid2":`, m.Accid2)
		dst = appendCreateTime(append(dst, ','), m.CreateTime)
		dst = appendClientTypeNumber(append(dst, ','), m.ClientType)
	case m.Type.IsNotification(): // 109, 110
		dst = appendCreateTime(dst, m.CreateTime)
		dst = appendClientTypeNumber(append(dst, ','), m.ClientType)
	default:
		dst = appendKeyString(dst, `"ext":`, m.Ext)
		dst = appendCreateTime(append(dst, ','), m.CreateTime)
		dst = appendClientTypeNumber(append(dst, ','), m.ClientType)
		dst = appendMsgID(append(dst, ','), m.MsgID)
		dst = appendKeyString(dst, `,"accid":`, m.From)
		if m.Type == TypeText {
			dst = appendKeyString(dst, `,"body":`, m.Body)
		} else {
			dst = append(dst, `,"attach":`...)
			dst = e.appendAttach(dst, m.Attach)
		}
		dst = append(dst, `,"tid":`...)
		return strconv.AppendInt(dst, m.TID, 10)
	}
	dst = appendMsgID(append(dst, ','), m.MsgID)
	dst = appendKeyString(dst, `,"accid":`, m.From)
	dst = append(dst, `,"tid":`...)
	return strconv.AppendInt(dst, m.TID, 10)
}

// appendAttach writes a media attach as a JSON string holding the object, and
// a custom attach as the object itself (or a string).
func (e *Encoder) appendAttach(dst []byte, a Attachment) []byte {
	if c, ok := a.(*CustomData); ok {
		if c.Object != nil {
			return append(dst, c.Object...)
		}
		return appendString(dst, c.String)
	}
	e.scratch = AttachJSON(e.scratch[:0], a)
	return appendStringBytes(dst, e.scratch)
}

// AttachJSON appends the attach object of a (for media, the text that the line
// carries as a JSON string; for custom, the object or the JSON string).
func AttachJSON(dst []byte, a Attachment) []byte {
	if a == nil {
		return dst
	}
	return a.appendJSON(dst)
}

func (a *Image) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = appendOptInt(dst, `"h":`, a.H)
	dst = appendKeyString(sep(dst), `"ext":`, a.Ext)
	dst = appendOptInt(append(dst, ','), `"size":`, a.Size)
	dst = appendOptInt(sep(dst), `"w":`, a.W)
	dst = appendOptString(sep(dst), `"name":`, a.Name)
	dst = appendOptString(sep(dst), `"md5":`, a.MD5)
	dst = appendKeyString(sep(dst), `"url":`, a.URL)
	return append(dst, '}')
}

func (a *Audio) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = appendOptInt(dst, `"size":`, a.Size)
	dst = appendKeyString(sep(dst), `"ext":`, a.Ext)
	dst = appendOptInt(append(dst, ','), `"dur":`, a.Dur)
	dst = appendOptString(sep(dst), `"md5":`, a.MD5)
	dst = appendKeyString(sep(dst), `"url":`, a.URL)
	return append(dst, '}')
}

func (a *Video) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = appendOptInt(dst, `"h":`, a.H)
	dst = appendOptInt(sep(dst), `"w":`, a.W)
	dst = appendOptInt(sep(dst), `"size":`, a.Size)
	dst = appendKeyString(sep(dst), `"ext":`, a.Ext)
	dst = appendOptInt(append(dst, ','), `"dur":`, a.Dur)
	dst = appendOptString(sep(dst), `"name":`, a.Name)
	dst = appendOptString(sep(dst), `"md5":`, a.MD5)
	dst = appendKeyString(sep(dst), `"url":`, a.URL)
	return append(dst, '}')
}

func (a *File) appendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	dst = appendOptInt(dst, `"size":`, a.Size)
	dst = appendKeyString(sep(dst), `"ext":`, a.Ext)
	dst = appendOptString(append(dst, ','), `"name":`, a.Name)
	dst = appendOptString(sep(dst), `"md5":`, a.MD5)
	dst = appendKeyString(sep(dst), `"url":`, a.URL)
	return append(dst, '}')
}

func (a *Location) appendJSON(dst []byte) []byte {
	dst = appendKeyString(append(dst, '{'), `"lng":`, a.Lng)
	dst = appendKeyString(dst, `,"title":`, a.Title)
	dst = appendKeyString(dst, `,"lat":`, a.Lat)
	return append(dst, '}')
}

func (a *CustomData) appendJSON(dst []byte) []byte {
	if a.Object != nil {
		return append(dst, a.Object...)
	}
	return appendString(dst, a.String)
}

func (a *Image) urls() []*string      { return []*string{&a.URL} }
func (a *Audio) urls() []*string      { return []*string{&a.URL} }
func (a *Video) urls() []*string      { return []*string{&a.URL} }
func (a *File) urls() []*string       { return []*string{&a.URL} }
func (a *Location) urls() []*string   { return nil }
func (a *CustomData) urls() []*string { return nil }

// sep appends a comma unless dst ends an object opening or already a comma,
// so optional keys can be left out without stray commas.
func sep(dst []byte) []byte {
	if n := len(dst); n > 0 && (dst[n-1] == '{' || dst[n-1] == ',') {
		return dst
	}
	return append(dst, ',')
}

func appendOptInt(dst []byte, key string, v int64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, key...)
	return strconv.AppendInt(dst, v, 10)
}

func appendOptString(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendKeyString(dst, key, v)
}

func appendKeyString(dst []byte, key, v string) []byte {
	return appendString(append(dst, key...), v)
}

func appendMsgID(dst []byte, id int64) []byte {
	dst = append(dst, `"msgid":`...)
	return strconv.AppendInt(dst, id, 10)
}

func appendCreateTime(dst []byte, ms int64) []byte {
	dst = append(dst, `"createTime":`...)
	return strconv.AppendInt(dst, ms, 10)
}

func appendClientTypeString(dst []byte, c ClientType) []byte {
	dst = append(dst, `"clientType":"`...)
	dst = strconv.AppendInt(dst, int64(c), 10)
	return append(dst, '"')
}

func appendClientTypeNumber(dst []byte, c ClientType) []byte {
	dst = append(dst, `"clientType":`...)
	return strconv.AppendInt(dst, int64(c), 10)
}

func appendTInfo(dst []byte, t *TInfo, tid int64) []byte {
	dst = appendTInfoKeys(append(dst, '{'), t)
	if t.Len() > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"tid":`...)
	dst = strconv.AppendInt(dst, tid, 10)
	return append(dst, '}')
}

// appendTInfoKeys appends the keys 14–24 present in t, in ascending order,
// comma-separated, with their documented value types.
func appendTInfoKeys(dst []byte, t *TInfo) []byte {
	first := true
	for k := 14; k <= 24; k++ {
		if !t.Has(k) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = strconv.AppendInt(dst, int64(k), 10)
		dst = append(dst, `":`...)
		if tinfoIsInt(k) {
			dst = strconv.AppendInt(dst, t.Int(k), 10)
		} else {
			dst = appendString(dst, t.String(k))
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, everything else (Chinese included) written as UTF-8.
// Invalid UTF-8 becomes U+FFFD (Validate refuses it before it gets here).
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		default:
			dst = append(dst, `\u00`...)
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func appendStringBytes(dst, b []byte) []byte {
	// The conversion does not allocate: the compiler passes the bytes through.
	return appendString(dst, unsafeString(b))
}

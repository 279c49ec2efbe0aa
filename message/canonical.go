package message

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The canonical message is what imbridge makes durable and stores: every
// source fact needed to render the line again with other maps (the provider
// group id, the original media URLs, tinfo, the source ids). This file holds
// its binary form (the spool's records) and the helpers rendering needs.

// MediaURL returns the media URL of an image, audio, video or file attach.
func MediaURL(a Attachment) (string, bool) {
	if a == nil {
		return "", false
	}
	if u := a.urls(); len(u) > 0 && *u[0] != "" {
		return *u[0], true
	}
	return "", false
}

// WithMediaURL returns a copy of a whose media URL is url; a itself is not
// changed. Attachments without a URL are returned as they are.
func WithMediaURL(a Attachment, url string) Attachment {
	switch v := a.(type) {
	case *Image:
		c := *v
		c.URL = url
		return &c
	case *Audio:
		c := *v
		c.URL = url
		return &c
	case *Video:
		c := *v
		c.URL = url
		return &c
	case *File:
		c := *v
		c.URL = url
		return &c
	}
	return a
}

// AttachColumn is what the store's attach column holds: the attach object as
// JSON text (media and custom objects), or a custom string payload as it is.
func AttachColumn(dst []byte, a Attachment) []byte {
	if c, ok := a.(*CustomData); ok && c.Object == nil {
		return append(dst, c.String...)
	}
	return AttachJSON(dst, a)
}

// AttachFromColumn is the inverse of AttachColumn for a message of type t.
func AttachFromColumn(t Type, s string) (Attachment, error) {
	switch {
	case s == "" && (t == TypeText || t.IsNotification()):
		return nil, nil
	case t == TypeCustom:
		return CustomFromString(s), nil
	}
	return DecodeAttach(t, []byte(s))
}

// TInfoColumn appends the tinfo keys 14–24 as a JSON object (no "tid": the
// line's tid is added when rendering). Empty tinfo appends nothing.
func TInfoColumn(dst []byte, t *TInfo) []byte {
	if t.Len() == 0 {
		return dst
	}
	return append(appendTInfoKeys(append(dst, '{'), t), '}')
}

// TInfoFromColumn is the inverse of TInfoColumn.
func TInfoFromColumn(s string) (TInfo, error) {
	var t TInfo
	if s == "" {
		return t, nil
	}
	err := t.decodeKeys([]byte(s), 0, false)
	return t, err
}

const canonicalVersion = 1

// ErrBadBinary is returned when a binary message cannot be decoded.
var ErrBadBinary = errors.New("bad binary message")

// Attachment kinds in the binary form.
const (
	binNoAttach byte = iota
	binImage
	binAudio
	binVideo
	binLocation
	binFile
	binCustomObject
	binCustomString
)

// AppendBinary appends m's binary form (the spool's record of it) to dst.
func (m *Message) AppendBinary(dst []byte) []byte {
	dst = append(dst, canonicalVersion, byte(m.Scene))
	dst = binary.AppendUvarint(dst, uint64(m.Type))
	dst = binary.AppendVarint(dst, m.MsgID)
	dst = binary.AppendVarint(dst, m.TID)
	dst = binary.AppendVarint(dst, m.CreateTime)
	dst = binary.AppendUvarint(dst, uint64(m.ClientType))
	for _, s := range [...]string{m.Source, m.SourceID, m.RecallKey, m.GroupID, m.From, m.To, m.Accid2, m.Body, m.Ext} {
		dst = appendBinString(dst, s)
	}
	switch a := m.Attach.(type) {
	case nil:
		dst = append(dst, binNoAttach)
	case *Image:
		dst = append(dst, binImage)
		dst = appendBinStrings(dst, a.Name, a.MD5, a.URL, a.Ext)
		dst = appendBinInts(dst, a.W, a.H, a.Size)
	case *Audio:
		dst = append(dst, binAudio)
		dst = appendBinStrings(dst, a.MD5, a.URL, a.Ext)
		dst = appendBinInts(dst, a.Dur, a.Size)
	case *Video:
		dst = append(dst, binVideo)
		dst = appendBinStrings(dst, a.Name, a.MD5, a.URL, a.Ext)
		dst = appendBinInts(dst, a.Dur, a.W, a.H, a.Size)
	case *Location:
		dst = append(dst, binLocation)
		dst = appendBinStrings(dst, a.Title, a.Lng, a.Lat)
	case *File:
		dst = append(dst, binFile)
		dst = appendBinStrings(dst, a.Name, a.MD5, a.URL, a.Ext)
		dst = appendBinInts(dst, a.Size)
	case *CustomData:
		if a.Object != nil {
			dst = append(dst, binCustomObject)
			dst = appendBinString(dst, string(a.Object))
		} else {
			dst = append(dst, binCustomString)
			dst = appendBinString(dst, a.String)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(m.TInfo.set))
	for k := 14; k <= 24; k++ {
		if !m.TInfo.Has(k) {
			continue
		}
		if tinfoIsInt(k) {
			dst = binary.AppendVarint(dst, m.TInfo.Int(k))
		} else {
			dst = appendBinString(dst, m.TInfo.String(k))
		}
	}
	return dst
}

// BinarySizeHint is about how many bytes AppendBinary appends.
func (m *Message) BinarySizeHint() int {
	n := 64 + len(m.Source) + len(m.SourceID) + len(m.RecallKey) + len(m.GroupID) + len(m.From) + len(m.To) +
		len(m.Accid2) + len(m.Body) + len(m.Ext)
	switch a := m.Attach.(type) {
	case *Image:
		n += 48 + len(a.Name) + len(a.MD5) + len(a.URL) + len(a.Ext)
	case *Audio:
		n += 48 + len(a.MD5) + len(a.URL) + len(a.Ext)
	case *Video:
		n += 48 + len(a.Name) + len(a.MD5) + len(a.URL) + len(a.Ext)
	case *Location:
		n += 16 + len(a.Title) + len(a.Lng) + len(a.Lat)
	case *File:
		n += 32 + len(a.Name) + len(a.MD5) + len(a.URL) + len(a.Ext)
	case *CustomData:
		n += 8 + len(a.Object) + len(a.String)
	}
	if m.TInfo.Len() > 0 {
		for k := 14; k <= 24; k++ {
			n += 10 + len(m.TInfo.str[k-14])
		}
	}
	return n
}

// UnmarshalBinary decodes what AppendBinary wrote. Strings are copied, so b
// may be reused afterwards.
func (m *Message) UnmarshalBinary(b []byte) error {
	r := binReader{b: b}
	if v := r.byte(); v != canonicalVersion {
		return fmt.Errorf("%w: version %d", ErrBadBinary, v)
	}
	*m = Message{}
	m.Scene = Scene(r.byte())
	m.Type = Type(r.uvarint())
	m.MsgID = r.varint()
	m.TID = r.varint()
	m.CreateTime = r.varint()
	m.ClientType = ClientType(r.uvarint())
	for _, p := range [...]*string{&m.Source, &m.SourceID, &m.RecallKey, &m.GroupID, &m.From, &m.To, &m.Accid2, &m.Body, &m.Ext} {
		*p = r.str()
	}
	switch kind := r.byte(); kind {
	case binNoAttach:
	case binImage:
		a := &Image{}
		r.strs(&a.Name, &a.MD5, &a.URL, &a.Ext)
		r.ints(&a.W, &a.H, &a.Size)
		m.Attach = a
	case binAudio:
		a := &Audio{}
		r.strs(&a.MD5, &a.URL, &a.Ext)
		r.ints(&a.Dur, &a.Size)
		m.Attach = a
	case binVideo:
		a := &Video{}
		r.strs(&a.Name, &a.MD5, &a.URL, &a.Ext)
		r.ints(&a.Dur, &a.W, &a.H, &a.Size)
		m.Attach = a
	case binLocation:
		a := &Location{}
		r.strs(&a.Title, &a.Lng, &a.Lat)
		m.Attach = a
	case binFile:
		a := &File{}
		r.strs(&a.Name, &a.MD5, &a.URL, &a.Ext)
		r.ints(&a.Size)
		m.Attach = a
	case binCustomObject:
		m.Attach = &CustomData{Object: []byte(r.str())}
	case binCustomString:
		m.Attach = &CustomData{String: r.str()}
	default:
		r.fail()
	}
	set := r.uvarint()
	if set >= 1<<11 {
		r.fail()
	}
	for k := 14; k <= 24 && r.err == nil; k++ {
		if set&(1<<(k-14)) == 0 {
			continue
		}
		if tinfoIsInt(k) {
			m.TInfo.SetInt(k, r.varint())
		} else {
			m.TInfo.SetString(k, r.str())
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadBinary, len(r.b))
	}
	return nil
}

func appendBinString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBinStrings(dst []byte, ss ...string) []byte {
	for _, s := range ss {
		dst = appendBinString(dst, s)
	}
	return dst
}

func appendBinInts(dst []byte, vs ...int64) []byte {
	for _, v := range vs {
		dst = binary.AppendVarint(dst, v)
	}
	return dst
}

type binReader struct {
	b   []byte
	err error
}

func (r *binReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed", ErrBadBinary)
	}
	r.b = nil
}

func (r *binReader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) str() string {
	n := r.uvarint()
	if r.err != nil || uint64(len(r.b)) < n {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *binReader) strs(ps ...*string) {
	for _, p := range ps {
		*p = r.str()
	}
}

func (r *binReader) ints(ps ...*int64) {
	for _, p := range ps {
		*p = r.varint()
	}
}

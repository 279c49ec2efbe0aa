package message

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// FieldError names the field of a line that is wrong and why.
type FieldError struct {
	Field string // e.g. data.tid
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Bounds on createTime: epoch milliseconds between 2000-01-01 and 2100-01-01.
// Anything outside is almost surely seconds or microseconds.
const (
	minCreateTime = 946684800000
	maxCreateTime = 4102444800000
)

// MaxFieldBytes bounds account names and similar identifiers.
const MaxFieldBytes = 1024

// Validate checks m against the documented line format; the error is a
// *FieldError naming the first problem.
func (m *Message) Validate() error {
	if !m.Type.Known() {
		return fieldErr("type", "%d is not a documented type (0 text, 1 image, 2 audio, 3 video, 4 location, 6 file, 100 custom, 101–110 team notifications)", m.Type)
	}
	switch m.Scene {
	case P2P:
		if m.Type.IsNotification() {
			return fieldErr("type", "%d is a team notification; it needs data.tid and data.accid, not from/to", m.Type)
		}
		if err := checkAccount("data.from", m.From); err != nil {
			return err
		}
		if err := checkAccount("data.to", m.To); err != nil {
			return err
		}
		if m.TID != 0 || m.Accid2 != "" || m.GroupID != "" {
			return fieldErr("data", "p2p messages carry from/to, not tid/accid2/group id")
		}
	case Team:
		if err := checkAccount("data.accid", m.From); err != nil {
			return err
		}
		switch {
		case m.GroupID != "" && m.TID != 0:
			return fieldErr("data.tid", "a provider group message carries its group id; the team map gives its tid")
		case m.GroupID != "":
			if err := checkAccount("group id", m.GroupID); err != nil {
				return err
			}
		case m.TID <= 0:
			return fieldErr("data.tid", "required for team messages (a positive Yunxin team id)")
		}
		if m.To != "" {
			return fieldErr("data.to", "not allowed in team messages (use tid)")
		}
	default:
		return fieldErr("data", "neither p2p (from, to) nor team (accid, tid)")
	}
	if m.MsgID < 0 {
		return fieldErr("data.msgid", "must not be negative")
	}
	if m.CreateTime < minCreateTime || m.CreateTime >= maxCreateTime {
		return fieldErr("data.createTime", "%d is not epoch milliseconds between 2000 and 2100", m.CreateTime)
	}
	if !m.ClientType.Valid() {
		return fieldErr("data.clientType", "%d is not one of 1 AOS, 2 iOS, 4 PC, 8 WINPHONE, 16 WEB, 32 REST, 64 MAC", m.ClientType)
	}
	if !utf8.ValidString(m.Ext) {
		return fieldErr("data.ext", "is not valid UTF-8")
	}
	if m.Type.IsNotification() {
		return m.validateNotification()
	}
	if m.Accid2 != "" || m.TInfo.Len() > 0 {
		return fieldErr("data", "accid2 and tinfo belong to team notifications only")
	}
	if m.Type == TypeText {
		if m.Attach != nil {
			return fieldErr("data.attach", "not allowed for type 0 (text)")
		}
		if m.Body == "" {
			return fieldErr("data.body", "required for type 0 (text)")
		}
		if !utf8.ValidString(m.Body) {
			return fieldErr("data.body", "is not valid UTF-8")
		}
		return nil
	}
	if m.Body != "" {
		return fieldErr("data.body", "only text messages (type 0) carry a body")
	}
	return validateAttach(m.Type, m.Attach)
}

func (m *Message) validateNotification() error {
	if m.Body != "" || m.Attach != nil || m.Ext != "" {
		return fieldErr("data", "type %d carries no body, attach or ext", m.Type)
	}
	if m.Type.HasAccid2() {
		if err := checkAccount("data.accid2", m.Accid2); err != nil {
			return fmt.Errorf("%w (type %d names the member acted on)", err, m.Type)
		}
	} else if m.Accid2 != "" {
		return fieldErr("data.accid2", "not allowed for type %d", m.Type)
	}
	if m.Type == TypeTeamUpdate {
		if m.TInfo.Len() == 0 {
			return fieldErr("data.tinfo", "type 107 needs at least one of the keys 14–24")
		}
		for k := 14; k <= 24; k++ {
			if !m.TInfo.Has(k) {
				continue
			}
			if tinfoIsInt(k) {
				if v := m.TInfo.Int(k); v < 0 || v > tinfoMax(k) {
					return fieldErr(fmt.Sprintf("data.tinfo.%d", k), "%d is not a documented value (0–%d)", v, tinfoMax(k))
				}
			} else if !utf8.ValidString(m.TInfo.String(k)) {
				return fieldErr(fmt.Sprintf("data.tinfo.%d", k), "is not valid UTF-8")
			}
		}
	} else if m.TInfo.Len() > 0 {
		return fieldErr("data.tinfo", "only type 107 carries tinfo")
	}
	return nil
}

func checkAccount(field, v string) error {
	switch {
	case v == "":
		return fieldErr(field, "required")
	case len(v) > MaxFieldBytes:
		return fieldErr(field, "longer than %d bytes", MaxFieldBytes)
	case !utf8.ValidString(v):
		return fieldErr(field, "is not valid UTF-8")
	case strings.TrimSpace(v) != v:
		return fieldErr(field, "has leading or trailing spaces")
	}
	return nil
}

func validateAttach(t Type, a Attachment) error {
	if a == nil {
		return fieldErr("data.attach", "required for type %d", t)
	}
	var strs []string
	var nums []int64
	url := ""
	switch x := a.(type) {
	case *Image:
		if t != TypeImage {
			return typeMismatch(t, "image")
		}
		strs, nums, url = []string{x.Name, x.MD5, x.Ext}, []int64{x.W, x.H, x.Size}, x.URL
	case *Audio:
		if t != TypeAudio {
			return typeMismatch(t, "audio")
		}
		strs, nums, url = []string{x.MD5, x.Ext}, []int64{x.Dur, x.Size}, x.URL
	case *Video:
		if t != TypeVideo {
			return typeMismatch(t, "video")
		}
		strs, nums, url = []string{x.Name, x.MD5, x.Ext}, []int64{x.Dur, x.W, x.H, x.Size}, x.URL
	case *File:
		if t != TypeFile {
			return typeMismatch(t, "file")
		}
		strs, nums, url = []string{x.Name, x.MD5, x.Ext}, []int64{x.Size}, x.URL
	case *Location:
		if t != TypeLocation {
			return typeMismatch(t, "location")
		}
		if err := checkDecimal("data.attach.lng", x.Lng, 180); err != nil {
			return err
		}
		if err := checkDecimal("data.attach.lat", x.Lat, 90); err != nil {
			return err
		}
		if !utf8.ValidString(x.Title) {
			return fieldErr("data.attach.title", "is not valid UTF-8")
		}
		return nil
	case *CustomData:
		if t != TypeCustom {
			return typeMismatch(t, "custom")
		}
		if x.Object == nil && !utf8.ValidString(x.String) {
			return fieldErr("data.attach", "is not valid UTF-8")
		}
		return nil
	default:
		return fieldErr("data.attach", "unsupported attachment %T", a)
	}
	if url == "" {
		return fieldErr("data.attach.url", "required for type %d", t)
	}
	strs = append(strs, url)
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return fieldErr("data.attach", "has a field that is not valid UTF-8")
		}
	}
	for _, n := range nums {
		if n < 0 {
			return fieldErr("data.attach", "sizes, dimensions and durations must not be negative")
		}
	}
	return nil
}

func typeMismatch(t Type, kind string) error {
	return fieldErr("data.attach", "a %s attachment does not fit type %d", kind, t)
}

// checkDecimal verifies a coordinate written as a decimal string.
func checkDecimal(field, s string, limit float64) error {
	if s == "" {
		return fieldErr(field, "required")
	}
	v, ok := parseDecimal(s)
	if !ok {
		return fieldErr(field, "%q is not a decimal number", s)
	}
	if v < -limit || v > limit {
		return fieldErr(field, "%s is out of range ±%g", s, limit)
	}
	return nil
}

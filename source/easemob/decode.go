package easemob

import (
	"encoding/json"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// Decode maps one callback body to canonical messages, recalls and ignored
// events. It does not check the signature (see Verify). A malformed body is a
// 400 *source.Error naming the field, and then the batch is empty.
func Decode(body []byte) (source.Batch, error) {
	o, err := parseBody(body)
	if err != nil {
		return source.Batch{}, err
	}
	b, err := decodeCallback(o)
	if err != nil {
		return source.Batch{}, err
	}
	return b, nil
}

// DecodeHistory maps one record of Easemob's hourly history files (GET
// /{org}/{app}/chatmessages/{yyyyMMddHH}, one JSON message per line) with
// the same per-kind code as the callbacks: the same message gets the same
// SourceID, msgid and createTime whichever way it arrives. Records carry no
// signature.
func DecodeHistory(record []byte) (source.Batch, error) {
	o, err := parseBody(record)
	if err != nil {
		return source.Batch{}, err
	}
	var b source.Batch
	chatType, err := o.str("chat_type", "")
	if err != nil {
		return source.Batch{}, err
	}
	switch chatType {
	case "chat", "groupchat", "chatroom":
	default:
		b.Ignore(ignoredChatType(chatType))
		return b, nil
	}
	b, err = decodeChat(o, chatType, true)
	if err != nil {
		return source.Batch{}, err
	}
	return b, nil
}

func decodeCallback(o obj) (source.Batch, error) {
	var b source.Batch
	event, err := o.str("event", "")
	if err != nil {
		return b, err
	}
	if event == "group_op_event" {
		return decodeGroupOp(o)
	}
	chatType, err := o.str("chat_type", "")
	if err != nil {
		return b, err
	}
	switch chatType {
	case "chat", "groupchat", "chatroom":
		return decodeChat(o, chatType, false)
	case "recall":
		return decodeRecall(o)
	case "":
		switch {
		case event != "":
			b.Ignore("unknown_event")
		case o.has("status") && o.has("reason"):
			b.Ignore("user_status") // login, logout, replaced
		default:
			b.Ignore("unknown_event")
		}
		return b, nil
	}
	b.Ignore(ignoredChatType(chatType))
	return b, nil
}

// ignoredChatType is the fixed reason an event of chat_type t is not stored
// under: known kinds by name, anything else as unknown_chat_type (never the
// provider's text: reasons are metric labels).
func ignoredChatType(t string) string {
	switch t {
	case "read_ack", "delivery_ack", "channel_ack", "edit", "notify", "roster":
		return t
	case "muc":
		return "muc_legacy"
	}
	return "unknown_chat_type"
}

// decodeChat maps a message of chat_type chat, groupchat or chatroom.
// history says where the sender and the receiver are: a callback's top-level
// from/to/group_id, a history record's payload.from/payload.to (its top-level
// from/to are documented as internal).
func decodeChat(o obj, chatType string, history bool) (source.Batch, error) {
	var b source.Batch
	payload, ok, err := o.object("payload")
	if err != nil {
		return b, err
	}
	if !ok {
		return b, source.BadRequest("payload: required for chat_type %s (the message)", chatType)
	}
	pType, err := payload.str("type", "")
	if err != nil {
		return b, err
	}
	contentType, err := o.str("content_type", "")
	if err != nil {
		return b, err
	}
	if chatType == "chatroom" || pType == "chatroom" || strings.HasPrefix(contentType, "chat:room:") {
		b.Ignore("chatroom") // Yunxin teams do not cover chat rooms
		return b, nil
	}
	id, err := o.id("msg_id")
	if err != nil {
		return b, err
	}
	if id == "" {
		return b, source.BadRequest("msg_id: required (the message id)")
	}
	ts, err := o.requiredTimestamp()
	if err != nil {
		return b, err
	}
	pick := func(first obj, firstKey string, then obj, thenKey string) (string, string, error) {
		v, err := first.id(firstKey)
		if err != nil || v != "" {
			return v, first.field(firstKey), err
		}
		v, err = then.id(thenKey)
		return v, then.field(thenKey), err
	}
	top, pl := o, payload
	if history {
		top, pl = payload, o // payload first
	}
	from, fromField, err := pick(top, "from", pl, "from")
	if err != nil {
		return b, err
	}
	if from == "" {
		return b, source.BadRequest("%s: required (the sender)", fromField)
	}
	base := message.Message{
		Source:     Name,
		CreateTime: ts,
		From:       from,
		ClientType: source.DefaultClientType,
	}
	if chatType == "chat" {
		to, toField, err := pick(top, "to", pl, "to")
		if err != nil {
			return b, err
		}
		if to == "" {
			return b, source.BadRequest("%s: required (the receiver)", toField)
		}
		base.Scene, base.To = message.P2P, to
	} else {
		var group string
		if history {
			group, _, err = pick(payload, "to", o, "group_id")
		} else {
			group, _, err = pick(o, "group_id", o, "to")
		}
		if err != nil {
			return b, err
		}
		if group == "" {
			if history {
				return b, source.BadRequest("payload.to: required (the group id)")
			}
			return b, source.BadRequest("group_id: required (the group id; to is taken when group_id is absent)")
		}
		base.Scene, base.GroupID = message.Team, group
	}
	if base.Ext, err = payload.ext("ext"); err != nil {
		return b, err
	}
	bodies, err := payload.array("bodies")
	if err != nil {
		return b, err
	}
	if len(bodies) == 0 {
		b.Ignore("empty_message")
		return b, nil
	}
	for i, raw := range bodies {
		m := base
		m.SourceID = id
		if i > 0 {
			m.SourceID = id + "#" + strconv.Itoa(i)
			m.RecallKey = id
		}
		m.MsgID = message.MsgID(Name, m.SourceID)
		ignored, err := setContent(&m, raw, payload.field("bodies["+strconv.Itoa(i)+"]"))
		if err != nil {
			return source.Batch{}, err
		}
		if ignored != "" {
			b.Ignore(ignored)
			continue
		}
		if err := m.Validate(); err != nil {
			return source.Batch{}, source.BadRequest("message %s: %v", id, err)
		}
		b.Messages = append(b.Messages, m)
	}
	return b, nil
}

// setContent maps one element of payload.bodies onto m (type, body or
// attach), or says why it is not stored. Content with no faithful Yunxin
// form becomes a custom (100) line whose attach is the original body object.
func setContent(m *message.Message, raw json.RawMessage, where string) (ignored string, err error) {
	body, err := parseObj(raw, where)
	if err != nil {
		return "", err
	}
	typ, err := body.str("type", "")
	if err != nil {
		return "", err
	}
	subType, err := body.str("subType", "")
	if err != nil {
		return "", err
	}
	if subType == "sub_combine" || typ == "combine" {
		typ = "combine"
	}
	switch typ {
	case "txt":
		msg, err := body.str("msg", "")
		if err != nil {
			return "", err
		}
		if msg == "" {
			return "empty_text", nil
		}
		m.Type, m.Body = message.TypeText, msg
		return "", nil
	case "cmd":
		return "cmd", nil // commands (透传消息) carry no chat content
	case "img", "audio", "video", "file", "loc":
		a, err := attachment(body, typ)
		if err != nil {
			return "", err
		}
		m.Type, m.Attach = a.typ, a.attach
		if a.attach != nil && m.Validate() == nil {
			return "", nil
		}
		// Not representable (no url, coordinates out of range…): keep it whole.
	}
	// custom, combine (merged records), unknown and future types, and media
	// that did not fit: a custom line keeping the original body object.
	obj, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return "", source.BadRequest("%s: %v", where, err)
	}
	m.Type, m.Body, m.Attach = message.TypeCustom, "", &message.CustomData{Object: obj}
	return "", nil
}

type mapped struct {
	typ    message.Type
	attach message.Attachment // nil: not representable
}

// attachment maps a media or location body (§1.7 of the provider notes).
func attachment(b obj, typ string) (mapped, error) {
	var (
		name, u string
		size    int64
		err     error
	)
	if typ != "loc" {
		if name, err = b.str("filename", ""); err != nil {
			return mapped{}, err
		}
		if u, err = b.str("url", ""); err != nil {
			return mapped{}, err
		}
		if size, _, err = b.integer("file_length"); err != nil {
			return mapped{}, err
		}
	}
	ext := extOf(name, u)
	w, h, err := dimensions(b)
	if err != nil {
		return mapped{}, err
	}
	dur, err := durationMS(b)
	if err != nil {
		return mapped{}, err
	}
	switch typ {
	case "img":
		return mapped{message.TypeImage, &message.Image{Name: name, URL: u, Ext: ext, W: w, H: h, Size: size}}, nil
	case "audio":
		return mapped{message.TypeAudio, &message.Audio{URL: u, Ext: ext, Dur: dur, Size: size}}, nil
	case "video":
		// size is the thumbnail's, the only dimensions Easemob gives.
		return mapped{message.TypeVideo, &message.Video{Name: name, URL: u, Ext: ext, Dur: dur, W: w, H: h, Size: size}}, nil
	case "file":
		return mapped{message.TypeFile, &message.File{Name: name, URL: u, Ext: ext, Size: size}}, nil
	}
	addr, err := b.str("addr", "")
	if err != nil {
		return mapped{}, err
	}
	lat, okLat, err := b.decimal("lat")
	if err != nil {
		return mapped{}, err
	}
	lng, okLng, err := b.decimal("lng")
	if err != nil {
		return mapped{}, err
	}
	if !okLat || !okLng {
		return mapped{message.TypeLocation, nil}, nil
	}
	return mapped{message.TypeLocation, &message.Location{Title: addr, Lng: lng, Lat: lat}}, nil
}

// dimensions reads size {width, height} (0 when absent).
func dimensions(b obj) (w, h int64, err error) {
	size, ok, err := b.object("size")
	if err != nil || !ok {
		return 0, 0, err
	}
	if w, _, err = size.integer("width"); err != nil {
		return 0, 0, err
	}
	h, _, err = size.integer("height")
	return w, h, err
}

// durationMS reads length (seconds, possibly fractional) as milliseconds.
func durationMS(b obj) (int64, error) {
	s, ok, err := b.decimal("length")
	if err != nil || !ok {
		return 0, err
	}
	f, _ := strconv.ParseFloat(s, 64)
	if f < 0 || f > 1e9 || math.IsNaN(f) {
		return 0, source.BadRequest("%s: %s is not a duration in seconds", b.field("length"), s)
	}
	return int64(math.Round(f * 1000)), nil
}

// extOf is the file extension of filename, else of the URL's last path
// segment (Easemob's chatfiles URLs usually have none): 1–8 letters or
// digits after the last dot, lower-cased; "" when there is none.
func extOf(filename, rawURL string) string {
	if e := suffix(filename); e != "" {
		return e
	}
	if u, err := url.Parse(rawURL); err == nil {
		return suffix(path.Base(u.Path))
	}
	return ""
}

func suffix(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return ""
	}
	e := name[i+1:]
	if len(e) > 8 {
		return ""
	}
	for j := 0; j < len(e); j++ {
		c := e[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return strings.ToLower(e)
}

// decodeRecall maps chat_type "recall": the recalled message is recall_id
// (payload.ack_message_id when absent), the recall event's own id msg_id.
func decodeRecall(o obj) (source.Batch, error) {
	var b source.Batch
	key, err := o.id("recall_id")
	if err != nil {
		return b, err
	}
	if key == "" {
		payload, ok, err := o.object("payload")
		if err != nil {
			return b, err
		}
		if ok {
			if key, err = payload.id("ack_message_id"); err != nil {
				return b, err
			}
		}
	}
	if key == "" {
		return b, source.BadRequest("recall_id: required (the id of the recalled message)")
	}
	id, err := o.id("msg_id")
	if err != nil {
		return b, err
	}
	from, err := o.str("from", "")
	if err != nil {
		return b, err
	}
	ts, err := o.requiredTimestamp()
	if err != nil {
		return b, err
	}
	r := message.Recall{Source: Name, Key: key, ID: id, Operator: from, Time: ts}
	if err := r.Validate(); err != nil {
		return b, source.BadRequest("recall: %v", err)
	}
	b.Recalls = append(b.Recalls, r)
	return b, nil
}

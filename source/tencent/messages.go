package tencent

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// sendMsg is the body of C2C.CallbackAfterSendMsg and
// Group.CallbackAfterSendMsg, and a record of the history files (which name
// the time MsgTimestamp and the platform MsgFromPlatform).
type sendMsg struct {
	FromAccount     string            `json:"From_Account"`
	ToAccount       string            `json:"To_Account"`
	GroupID         string            `json:"GroupId"`
	Type            string            `json:"Type"`
	TopicID         string            `json:"TopicId"`
	MsgSeq          flexInt           `json:"MsgSeq"`
	MsgTime         flexInt           `json:"MsgTime"`
	MsgTimestamp    flexInt           `json:"MsgTimestamp"`
	MsgKey          string            `json:"MsgKey"`
	SendMsgResult   flexInt           `json:"SendMsgResult"`
	OnlineOnlyFlag  flexInt           `json:"OnlineOnlyFlag"`
	MsgBody         []json.RawMessage `json:"MsgBody"`
	CloudCustomData json.RawMessage   `json:"CloudCustomData"`
	MsgFromPlatform string            `json:"MsgFromPlatform"`
}

// seconds is the message's time in seconds (MsgTime in callbacks,
// MsgTimestamp in history files).
func (s *sendMsg) seconds() (int64, error) {
	t := s.MsgTime
	if !t.set {
		t = s.MsgTimestamp
	}
	if !t.set {
		return 0, source.BadRequest("MsgTime is required (the message's time in seconds)")
	}
	return secondsToMillis(t.v), nil
}

func (d *decoder) c2cMessage() error {
	var s sendMsg
	if err := unmarshal(d.body, &s); err != nil {
		return err
	}
	return d.c2c(&s, true)
}

// c2c maps one C2C message; callback says whether it came by callback (whose
// failed sends are skipped).
func (d *decoder) c2c(s *sendMsg, callback bool) error {
	if err := require("From_Account", s.FromAccount, "To_Account", s.ToAccount, "MsgKey", s.MsgKey); err != nil {
		return err
	}
	ms, err := s.seconds()
	if err != nil {
		return err
	}
	if callback && d.skip(s) {
		return nil
	}
	ext, err := extOf(s.CloudCustomData)
	if err != nil {
		return err
	}
	return d.lines(record{scene: message.P2P, from: s.FromAccount, to: s.ToAccount, key: s.MsgKey,
		createTime: ms, client: d.client, ext: ext, elems: s.MsgBody})
}

func (d *decoder) groupMessage() error {
	var s sendMsg
	if err := unmarshal(d.body, &s); err != nil {
		return err
	}
	return d.group(&s, true)
}

func (d *decoder) group(s *sendMsg, callback bool) error {
	if s.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	if err := require("GroupId", s.GroupID, "From_Account", s.FromAccount); err != nil {
		return err
	}
	if !s.MsgSeq.set {
		return source.BadRequest("MsgSeq is required (with GroupId it names the message)")
	}
	ms, err := s.seconds()
	if err != nil {
		return err
	}
	if callback && d.skip(s) {
		return nil
	}
	ext, err := extOf(s.CloudCustomData)
	if err != nil {
		return err
	}
	group := groupOf(s.GroupID, s.TopicID)
	return d.lines(record{scene: message.Team, from: s.FromAccount, group: group, key: groupKey(group, s.MsgSeq.v),
		createTime: ms, client: d.client, ext: ext, elems: s.MsgBody})
}

// skip counts callbacks that carry no message to keep: failed sends (the
// callback fires on failures too). Online-only messages (OnlineOnlyFlag 1)
// are kept: Tencent's own examples of ordinary text carry the flag, and a
// typing indicator kept as a line is far cheaper than a message lost.
func (d *decoder) skip(s *sendMsg) bool {
	if s.SendMsgResult.set && s.SendMsgResult.v != 0 {
		d.b.Ignore("send_failed")
		return true
	}
	return false
}

// groupOf is the group a message belongs to: a community topic (whose MsgSeq
// is counted per topic; its id already holds the group's) or the group.
func groupOf(groupID, topicID string) string {
	if topicID != "" {
		return topicID
	}
	return groupID
}

// groupKey names a group message: "GroupId:MsgSeq", the pair group recalls
// and the history files carry.
func groupKey(group string, seq int64) string { return group + ":" + strconv.FormatInt(seq, 10) }

// secondsToMillis multiplies by 1000; a value that cannot be a time becomes
// -1 (refused by validation) instead of overflowing.
func secondsToMillis(s int64) int64 {
	if s < 0 || s > math.MaxInt64/1000 {
		return -1
	}
	return s * 1000
}

// extOf is the line's ext from CloudCustomData: the string as sent ("" for
// none, blank or an empty object); a string holding a JSON object or array,
// or one sent unquoted, becomes its compact JSON text (message.CanonicalJSON:
// key order and number literals kept).
func extOf(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", source.BadRequest("CloudCustomData: %v", err)
		}
		t := strings.TrimSpace(s)
		if t == "" || t == "{}" {
			return "", nil
		}
		if t[0] == '{' || t[0] == '[' {
			if b, err := message.CanonicalJSON(nil, []byte(t)); err == nil {
				if string(b) == "{}" {
					return "", nil
				}
				return string(b), nil
			}
		}
		return s, nil
	case '{', '[':
		b, err := message.CanonicalJSON(nil, raw)
		if err != nil {
			return "", source.BadRequest("CloudCustomData: %v", err)
		}
		if string(b) == "{}" {
			return "", nil
		}
		return string(b), nil
	}
	return "", source.BadRequest("CloudCustomData: must be a string, not %s", raw)
}

// record is one source message, from a callback or a history file.
type record struct {
	scene      message.Scene
	from, to   string
	group      string
	key        string // C2C MsgKey or "GroupId:MsgSeq": element 0's SourceID, every element's recall key
	createTime int64
	client     message.ClientType
	ext        string
	elems      []json.RawMessage
}

// lines adds one line per MsgBody element: element 0 keeps the key as
// SourceID, element i ≥ 1 gets key + "#" + i; all are recalled by the key.
func (d *decoder) lines(r record) error {
	if len(r.elems) == 0 {
		d.b.Ignore("empty_msg_body")
		return nil
	}
	for i, raw := range r.elems {
		id := r.key
		if i > 0 {
			id += "#" + strconv.Itoa(i)
		}
		m := message.Message{Source: Name, SourceID: id, MsgID: message.MsgID(Name, id), Scene: r.scene,
			From: r.from, To: r.to, GroupID: r.group, CreateTime: r.createTime, ClientType: r.client, Ext: r.ext}
		if i > 0 {
			m.RecallKey = r.key
		}
		what := "MsgBody[" + strconv.Itoa(i) + "]"
		if err := element(&m, raw, what); err != nil {
			return err
		}
		if m.Type != message.TypeCustom && m.Validate() != nil {
			// No faithful Yunxin form (no text, a coordinate out of range…):
			// keep the element itself as a custom line.
			if err := keep(&m, raw, what); err != nil {
				return err
			}
		}
		if err := d.add(m, what); err != nil {
			return err
		}
	}
	return nil
}

// The element types of MsgBody.
const (
	ElemText     = "TIMTextElem"
	ElemFace     = "TIMFaceElem"
	ElemLocation = "TIMLocationElem"
	ElemCustom   = "TIMCustomElem"
	ElemSound    = "TIMSoundElem"
	ElemImage    = "TIMImageElem"
	ElemFile     = "TIMFileElem"
	ElemVideo    = "TIMVideoFileElem"
	ElemRelay    = "TIMRelayElem"
)

// element fills m's type, body and attach from one MsgBody element.
func element(m *message.Message, raw json.RawMessage, what string) error {
	var e struct {
		MsgType    string          `json:"MsgType"`
		MsgContent json.RawMessage `json:"MsgContent"`
	}
	if err := unmarshalAt(what, raw, &e); err != nil {
		return err
	}
	content := bytes.TrimSpace(e.MsgContent)
	if len(content) == 0 || string(content) == "null" {
		content = []byte("{}")
	}
	if content[0] != '{' {
		return source.BadRequest("%s.MsgContent: must be an object", what)
	}
	at := what + ".MsgContent"
	switch e.MsgType {
	case ElemText:
		var c struct {
			Text string `json:"Text"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		m.Type, m.Body = message.TypeText, c.Text
	case ElemLocation:
		var c struct {
			Desc      string          `json:"Desc"`
			Latitude  json.RawMessage `json:"Latitude"`
			Longitude json.RawMessage `json:"Longitude"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		lat, err := decimalText(at+".Latitude", c.Latitude)
		if err != nil {
			return err
		}
		lng, err := decimalText(at+".Longitude", c.Longitude)
		if err != nil {
			return err
		}
		m.Type, m.Attach = message.TypeLocation, &message.Location{Title: c.Desc, Lat: lat, Lng: lng}
	case ElemCustom:
		var c struct {
			Data json.RawMessage `json:"Data"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		a, err := customData(at+".Data", c.Data)
		if err != nil {
			return err
		}
		m.Type, m.Attach = message.TypeCustom, a
	case ElemSound:
		var c struct {
			URL    string  `json:"Url"`
			Size   flexInt `json:"Size"`
			Second flexInt `json:"Second"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		if c.URL == "" {
			return keep(m, raw, what) // 2.x/3.x SDK: UUID only
		}
		m.Type, m.Attach = message.TypeAudio, &message.Audio{URL: c.URL, Ext: extFromURL(c.URL), Dur: secondsToMillis(c.Second.v), Size: c.Size.v}
	case ElemImage:
		var c struct {
			ImageFormat    flexInt `json:"ImageFormat"`
			ImageInfoArray []struct {
				Type   flexInt `json:"Type"`
				Size   flexInt `json:"Size"`
				Width  flexInt `json:"Width"`
				Height flexInt `json:"Height"`
				URL    string  `json:"URL"`
			} `json:"ImageInfoArray"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		best := -1
		for i, info := range c.ImageInfoArray {
			if info.URL != "" && (best < 0 || imageRank(info.Type.v) < imageRank(c.ImageInfoArray[best].Type.v)) {
				best = i
			}
		}
		if best < 0 {
			return keep(m, raw, what)
		}
		info := c.ImageInfoArray[best]
		m.Type, m.Attach = message.TypeImage, &message.Image{URL: info.URL, Ext: imageExt(c.ImageFormat.v, info.URL),
			W: info.Width.v, H: info.Height.v, Size: info.Size.v}
	case ElemFile:
		var c struct {
			URL      string  `json:"Url"`
			FileSize flexInt `json:"FileSize"`
			FileName string  `json:"FileName"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		if c.URL == "" {
			return keep(m, raw, what)
		}
		name := baseName(c.FileName)
		ext := extOf1(path.Ext(name))
		if ext == "" {
			ext = extFromURL(c.URL)
		}
		m.Type, m.Attach = message.TypeFile, &message.File{Name: name, URL: c.URL, Ext: ext, Size: c.FileSize.v}
	case ElemVideo:
		var c struct {
			VideoURL    string  `json:"VideoUrl"`
			VideoSize   flexInt `json:"VideoSize"`
			VideoSecond flexInt `json:"VideoSecond"`
			VideoFormat string  `json:"VideoFormat"`
			ThumbWidth  flexInt `json:"ThumbWidth"`
			ThumbHeight flexInt `json:"ThumbHeight"`
		}
		if err := unmarshalAt(at, content, &c); err != nil {
			return err
		}
		if c.VideoURL == "" {
			return keep(m, raw, what)
		}
		ext := extOf1(c.VideoFormat)
		if ext == "" {
			ext = extFromURL(c.VideoURL)
		}
		m.Type, m.Attach = message.TypeVideo, &message.Video{URL: c.VideoURL, Ext: ext, Dur: secondsToMillis(c.VideoSecond.v),
			W: c.ThumbWidth.v, H: c.ThumbHeight.v, Size: c.VideoSize.v}
	default: // TIMFaceElem, TIMRelayElem and any element type imbridge does not know
		return keep(m, raw, what)
	}
	return nil
}

// keep makes m a custom line whose attach is the element itself,
// {"MsgType":…,"MsgContent":{…}} in compact form.
func keep(m *message.Message, raw json.RawMessage, what string) error {
	obj, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return source.BadRequest("%s: %v", what, err)
	}
	m.Type, m.Body, m.Attach = message.TypeCustom, "", &message.CustomData{Object: obj}
	return nil
}

// customData is the attach of a TIMCustomElem: Data, a JSON object kept as an
// object, any other text as a string.
func customData(what string, raw json.RawMessage) (*message.CustomData, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return &message.CustomData{}, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, source.BadRequest("%s: %v", what, err)
		}
		return message.CustomFromString(s), nil
	}
	b, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return nil, source.BadRequest("%s: %v", what, err)
	}
	if raw[0] == '{' {
		return &message.CustomData{Object: b}, nil
	}
	return &message.CustomData{String: string(b)}, nil
}

// decimalText is a coordinate as the line writes it: the JSON number's
// literal text, or the text of a string.
func decimalText(what string, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil // refused by validation: the element is kept as custom
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", source.BadRequest("%s: %v", what, err)
		}
		return strings.TrimSpace(s), nil
	}
	if raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') {
		return string(raw), nil
	}
	return "", source.BadRequest("%s: must be a number", what)
}

// imageRank orders ImageInfoArray entries: the original (Type 1) first, then
// large (2), thumbnail (3), anything else.
func imageRank(t int64) int {
	if t >= 1 && t <= 3 {
		return int(t)
	}
	return 4
}

// imageExt is the ext of ImageFormat (1 jpg, 2 gif, 3 png, 4 bmp), else of
// the URL's file name, else "".
func imageExt(format int64, u string) string {
	switch format {
	case 1:
		return "jpg"
	case 2:
		return "gif"
	case 3:
		return "png"
	case 4:
		return "bmp"
	}
	return extFromURL(u)
}

// extFromURL is the extension of the URL path's last segment ("" when it has
// none that looks like one).
func extFromURL(u string) string {
	p := u
	if parsed, err := url.Parse(u); err == nil {
		p = parsed.Path
	} else if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return extOf1(path.Ext(path.Base(p)))
}

// extOf1 normalizes an extension (".MOV", "mp4"): lower case, no dot; ""
// unless it is 1–8 letters or digits.
func extOf1(e string) string {
	e = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), "."))
	if e == "" || len(e) > 8 {
		return ""
	}
	for i := 0; i < len(e); i++ {
		if c := e[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return e
}

// baseName is the file name of a FileName that may be a full local path or
// file URL ("file:///private/var/…/trim.B75D.MOV").
func baseName(name string) string {
	name = strings.TrimSpace(name)
	if rest, ok := strings.CutPrefix(name, "file://"); ok {
		name = rest
		if u, err := url.PathUnescape(rest); err == nil {
			name = u
		}
	}
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// unmarshalAt decodes an object of the body at path what; type errors name
// the field under what.
func unmarshalAt(what string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			te.Field = what + "." + te.Field
			return source.BadRequest("%s", jsonError(te))
		}
		return source.BadRequest("%s: %s", what, jsonError(err))
	}
	return nil
}

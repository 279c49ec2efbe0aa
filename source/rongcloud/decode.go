package rongcloud

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// envelope is one RongCloud message, from a routing callback or a history
// log record: what every kind shares.
type envelope struct {
	from, to   string // fromUserId; toUserId (p2p: the receiver, group: the group id)
	objectName string
	content    string // the content JSON text (an app's custom payload may be any text)
	hasContent bool
	scene      message.Scene
	time       int64  // msgTimestamp, epoch ms
	uid        string // msgUID
	platform   string // source: iOS, Android, Websocket, MiniProgram, PC, Server
	targeted   []string
}

// Decode turns one routing callback body (the form) into a batch: one
// message, several team notification lines (RC:GrpNtf), one recall
// (RC:RcCmd), or one ignored event. Every error is a 400 *source.Error and
// comes with an empty batch.
func Decode(body []byte) (source.Batch, error) {
	form, err := parseForm(body)
	if err != nil {
		return source.Batch{}, err
	}
	get := func(k string) string {
		if v := form[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	channel := get("channelType")
	if channel == "" {
		return source.Batch{}, source.BadRequest("channelType: required (PERSON, GROUP, …); is the body complete?")
	}
	var e envelope
	var ignore string
	if e.scene, ignore = channelOf(channel); ignore != "" {
		var b source.Batch
		b.Ignore(ignore)
		return b, nil
	}
	e.from, e.to, e.objectName, e.uid, e.platform = get("fromUserId"), get("toUserId"), get("objectName"), get("msgUID"), get("source")
	e.content, e.hasContent = get("content"), len(form["content"]) > 0
	for _, v := range form["groupUserIds"] {
		e.targeted = append(e.targeted, parseIDList(v)...)
	}
	for _, f := range []struct{ key, v string }{{"fromUserId", e.from}, {"toUserId", e.to}, {"objectName", e.objectName}, {"msgUID", e.uid}} {
		if f.v == "" {
			return source.Batch{}, source.BadRequest("%s: required; is the body complete?", f.key)
		}
	}
	if e.time, err = epochMillis("msgTimestamp", get("msgTimestamp")); err != nil {
		return source.Batch{}, err
	}
	return e.decode()
}

// DecodeHistoryRecord decodes one record (one JSON line) of RongCloud's
// hourly history log through the same mapping as the callbacks: appId,
// fromUserId, targetId, targetType (1 PERSON, 3 GROUP, …), GroupId,
// classname (the objectName), content (an object, or a string holding it),
// timestamp (ms), msgUID, source. The record layout is UNCONFIRMED (one
// third-party sample); the group id is GroupId when set, else targetId.
func DecodeHistoryRecord(line []byte) (source.Batch, error) {
	line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("\ufeff")))
	if !utf8.Valid(line) {
		return source.Batch{}, source.BadRequest("history record: not valid UTF-8")
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(line, &rec); err != nil || rec == nil {
		return source.Batch{}, source.BadRequest("history record: not a JSON object: %v", jsonErr(err))
	}
	f := fields{kind: "history record", m: rec}
	var e envelope
	var err error
	channel, err := f.text("targetType")
	if err != nil {
		return source.Batch{}, err
	}
	if channel == "" {
		return source.Batch{}, source.BadRequest("history record: targetType required")
	}
	var ignore string
	if e.scene, ignore = channelOf(channel); ignore != "" {
		var b source.Batch
		b.Ignore(ignore)
		return b, nil
	}
	strs := []struct {
		key string
		dst *string
	}{{"fromUserId", &e.from}, {"targetId", &e.to}, {"classname", &e.objectName}, {"msgUID", &e.uid}, {"source", &e.platform}}
	for _, s := range strs {
		if *s.dst, err = f.str(s.key); err != nil {
			return source.Batch{}, err
		}
	}
	group, err := f.str("GroupId")
	if err != nil {
		return source.Batch{}, err
	}
	if e.scene == message.Team && group != "" {
		e.to = group
	}
	for _, s := range strs[:4] {
		if *s.dst == "" {
			return source.Batch{}, source.BadRequest("history record: %s required", s.key)
		}
	}
	ts, err := f.text("timestamp")
	if err != nil {
		return source.Batch{}, err
	}
	if e.time, err = epochMillis("timestamp", ts); err != nil {
		return source.Batch{}, err
	}
	if raw, ok := rec["content"]; ok && kindOf(raw) != 'n' {
		e.hasContent = true
		if kindOf(raw) == '"' {
			if err := json.Unmarshal(raw, &e.content); err != nil {
				return source.Batch{}, source.BadRequest("history record: content: %v", jsonErr(err))
			}
		} else {
			e.content = string(raw)
		}
	}
	return e.decode()
}

// Ignored object names and the reason each is counted under.
var ignoredKinds = map[string]string{
	"RC:ReadNtf":       "read_receipt",
	"RC:RRReqMsg":      "read_receipt",
	"RC:RRRspMsg":      "read_receipt",
	"RC:SRSMsg":        "read_sync",
	"RC:TypSts":        "typing",
	"RC:CmdMsg":        "command",
	"RC:CmdNtf":        "command",
	"RC:PSCmd":         "command",
	"RC:InfoNtf":       "info_notification",
	"RC:ProfileNtf":    "profile_notification",
	"RC:ContactNtf":    "contact_notification",
	"RC:RcNtf":         "recall_notification",
	"RC:MsgExMsg":      "message_expansion",
	"RC:ChrmKVNotiMsg": "chatroom",
	"RC:VCInvite":      "call_signal",
	"RC:VCRinging":     "call_signal",
	"RC:VCAccept":      "call_signal",
	"RC:VCHangup":      "call_signal",
	"RC:VCModifyMedia": "call_signal",
	"RC:VCModifyMem":   "call_signal",
	"RC:VCSummary":     "call_summary",
	"RC:CsChaR":        "customer_service",
	"RC:CSCha":         "customer_service",
	"RC:CsEva":         "customer_service",
	"RC:CsContact":     "customer_service",
	"RC:CsHs":          "customer_service",
	"RC:CsHsR":         "customer_service",
	"RC:CsSp":          "customer_service",
	"RC:CsEnd":         "customer_service",
	"RC:CsUpdate":      "customer_service",
}

// decode maps the envelope by its objectName and validates the result.
func (e *envelope) decode() (source.Batch, error) {
	var b source.Batch
	var err error
	on := e.objectName
	switch {
	case on == "RC:TxtMsg":
		err = e.add(&b, e.text)
	case on == "RC:ImgMsg":
		err = e.add(&b, e.image)
	case on == "RC:GIFMsg":
		err = e.add(&b, e.gif)
	case on == "RC:HQVCMsg":
		err = e.add(&b, e.hqVoice)
	case on == "RC:SightMsg":
		err = e.add(&b, e.sight)
	case on == "RC:FileMsg":
		err = e.add(&b, e.file)
	case on == "RC:LBSMsg":
		err = e.add(&b, e.location)
	case on == "RC:RcCmd":
		err = e.recall(&b)
	case on == "RC:GrpNtf":
		err = e.groupNotification(&b)
	case ignoredKinds[on] != "":
		b.Ignore(ignoredKinds[on])
	case strings.HasPrefix(on, "RC:") && strings.HasSuffix(on, "Ntf"):
		b.Ignore("notification")
	case strings.HasPrefix(on, "RC:") && strings.HasSuffix(on, "Cmd"):
		b.Ignore("command")
	default: // RC:VcMsg, RC:ImgTextMsg, RC:ReferenceMsg, RC:CombineMsg, other RC: content, the app's own kinds
		err = e.add(&b, e.custom)
	}
	if err != nil {
		return source.Batch{}, err
	}
	for i := range b.Messages {
		if err := b.Messages[i].Validate(); err != nil {
			return source.Batch{}, source.BadRequest("msgUID %s (%s): %v", e.uid, on, err)
		}
	}
	for i := range b.Recalls {
		if err := b.Recalls[i].Validate(); err != nil {
			return source.Batch{}, source.BadRequest("msgUID %s (%s): %v", e.uid, on, err)
		}
	}
	return b, nil
}

func (e *envelope) add(b *source.Batch, kind func() (message.Message, error)) error {
	m, err := kind()
	if err != nil {
		return err
	}
	b.Messages = append(b.Messages, m)
	return nil
}

// base is the message of type t every kind starts from.
func (e *envelope) base(t message.Type) message.Message {
	m := message.Message{
		Source:     Name,
		SourceID:   e.uid,
		MsgID:      message.MsgID(Name, e.uid),
		Scene:      e.scene,
		Type:       t,
		From:       e.from,
		CreateTime: e.time,
		ClientType: ClientType(e.platform),
	}
	if e.scene == message.Team {
		m.GroupID = e.to
	} else {
		m.To = e.to
	}
	return m
}

// object parses the content as the JSON object RongCloud's built-in kinds
// carry.
func (e *envelope) object() (fields, error) {
	f := fields{kind: "content of " + e.objectName}
	if !e.hasContent {
		return f, source.BadRequest("msgUID %s: content: required for %s; is the body complete?", e.uid, e.objectName)
	}
	if err := json.Unmarshal([]byte(e.content), &f.m); err != nil || f.m == nil {
		return f, source.BadRequest("msgUID %s: content of %s is not a JSON object: %v", e.uid, e.objectName, jsonErr(err))
	}
	return f, nil
}

func (e *envelope) text() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	body, err := f.str("content")
	if err != nil {
		return message.Message{}, err
	}
	if body == "" { // a Yunxin text line needs a body
		return e.custom()
	}
	m := e.base(message.TypeText)
	m.Body = body
	m.Ext, err = f.ext()
	return m, err
}

func (e *envelope) image() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	var a message.Image
	if a.URL, err = f.str("imageUri"); err != nil {
		return message.Message{}, err
	}
	if a.Name, err = f.str("name"); err != nil {
		return message.Message{}, err
	}
	if a.URL == "" {
		return e.custom()
	}
	a.Ext = extOf(a.URL, a.Name)
	return e.media(message.TypeImage, &a, f)
}

func (e *envelope) gif() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	a := message.Image{Ext: "gif"}
	if a.URL, err = f.str("remoteUrl"); err != nil {
		return message.Message{}, err
	}
	if a.Name, err = f.str("name"); err != nil {
		return message.Message{}, err
	}
	if a.URL == "" {
		return e.custom()
	}
	for _, n := range []struct {
		key string
		dst *int64
	}{{"gifDataSize", &a.Size}, {"width", &a.W}, {"height", &a.H}} {
		if *n.dst, err = f.count(n.key); err != nil {
			return message.Message{}, err
		}
	}
	return e.media(message.TypeImage, &a, f)
}

func (e *envelope) hqVoice() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	var a message.Audio
	if a.URL, err = f.str("remoteUrl"); err != nil {
		return message.Message{}, err
	}
	if a.URL == "" {
		return e.custom()
	}
	if a.Dur, err = f.seconds("duration"); err != nil {
		return message.Message{}, err
	}
	if a.Ext = extOf(a.URL); a.Ext == "" {
		a.Ext = "aac" // RongCloud's HQ voice is AAC
	}
	return e.media(message.TypeAudio, &a, f)
}

func (e *envelope) sight() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	var a message.Video
	if a.URL, err = f.str("sightUrl"); err != nil {
		return message.Message{}, err
	}
	if a.Name, err = f.str("name"); err != nil {
		return message.Message{}, err
	}
	if a.URL == "" {
		return e.custom()
	}
	if a.Dur, err = f.seconds("duration"); err != nil {
		return message.Message{}, err
	}
	if a.Size, err = f.count("size"); err != nil {
		return message.Message{}, err
	}
	if a.Ext = extOf(a.Name, a.URL); a.Ext == "" {
		a.Ext = "mp4" // the SDKs record sights as MP4
	}
	return e.media(message.TypeVideo, &a, f)
}

func (e *envelope) file() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	var a message.File
	if a.URL, err = f.str("fileUrl"); err != nil {
		return message.Message{}, err
	}
	if a.Name, err = f.str("name"); err != nil {
		return message.Message{}, err
	}
	if a.URL == "" {
		return e.custom()
	}
	if a.Size, err = f.count("size"); err != nil {
		return message.Message{}, err
	}
	typ, err := f.str("type")
	if err != nil {
		return message.Message{}, err
	}
	if a.Ext = cleanExt(typ); a.Ext == "" {
		a.Ext = extOf(a.Name, a.URL)
	}
	return e.media(message.TypeFile, &a, f)
}

func (e *envelope) location() (message.Message, error) {
	f, err := e.object()
	if err != nil {
		return message.Message{}, err
	}
	var a message.Location
	if a.Title, err = f.str("poi"); err != nil {
		return message.Message{}, err
	}
	if a.Lat, err = f.decimal("latitude", 90); err != nil {
		return message.Message{}, err
	}
	if a.Lng, err = f.decimal("longitude", 180); err != nil {
		return message.Message{}, err
	}
	if a.Lat == "" || a.Lng == "" {
		return e.custom()
	}
	return e.media(message.TypeLocation, &a, f)
}

func (e *envelope) media(t message.Type, a message.Attachment, f fields) (message.Message, error) {
	m := e.base(t)
	m.Attach = a
	var err error
	m.Ext, err = f.ext()
	return m, err
}

// custom keeps a kind with no faithful Yunxin form as a type 100 line whose
// attach is {"objectName":…,"content":…}: the content object as sent (an
// app's own kind may send any text, kept as a JSON string when it is not
// JSON). The content's "extra" becomes ext.
func (e *envelope) custom() (message.Message, error) {
	builtin := strings.HasPrefix(e.objectName, "RC:")
	var content []byte
	var f fields
	var err error
	trimmed := strings.TrimSpace(e.content)
	switch {
	case builtin || strings.HasPrefix(trimmed, "{"):
		if f, err = e.object(); err != nil {
			return message.Message{}, err
		}
		content, err = message.CanonicalJSON(nil, []byte(trimmed))
	case strings.HasPrefix(trimmed, "["): // an app's JSON array: must be whole
		if content, err = message.CanonicalJSON(nil, []byte(trimmed)); err != nil {
			return message.Message{}, source.BadRequest("msgUID %s: content of %s is not valid JSON: %v", e.uid, e.objectName, err)
		}
	default: // an app's own payload in any text form
		content, err = json.Marshal(e.content)
	}
	if err != nil {
		return message.Message{}, source.BadRequest("msgUID %s: content of %s: %v", e.uid, e.objectName, err)
	}
	name, _ := json.Marshal(e.objectName)
	raw := make([]byte, 0, len(name)+len(content)+28)
	raw = append(append(append(raw, `{"objectName":`...), name...), `,"content":`...)
	raw = append(append(raw, content...), '}')
	obj, err := message.CanonicalJSON(nil, raw)
	if err != nil {
		return message.Message{}, source.BadRequest("msgUID %s: content of %s: %v", e.uid, e.objectName, err)
	}
	m := e.base(message.TypeCustom)
	m.Attach = &message.CustomData{Object: obj}
	if f.m != nil {
		if m.Ext, err = f.ext(); err != nil {
			return message.Message{}, err
		}
	}
	return m, nil
}

// recall maps RC:RcCmd, RongCloud's recall command: its content names the
// recalled message by messageUId (the msgUID it was routed with).
func (e *envelope) recall(b *source.Batch) error {
	f, err := e.object()
	if err != nil {
		return err
	}
	key, err := f.str("messageUId")
	if err != nil {
		return err
	}
	if key == "" {
		return source.BadRequest("msgUID %s: content of RC:RcCmd: messageUId (the recalled message) required", e.uid)
	}
	b.Recalls = append(b.Recalls, message.Recall{Source: Name, Key: key, ID: e.uid, Operator: e.from, Time: e.time})
	return nil
}

// groupNotification maps RC:GrpNtf, the group notification an app server
// sends (operatorUserId, operation, data, message): Add → 101, Kicked → 102,
// Quit → 109, Dismiss → 110, Transfer → 108, one line per member acted on;
// Create, Rename, Bulletin and other operations are counted and ignored.
func (e *envelope) groupNotification(b *source.Batch) error {
	if e.scene != message.Team {
		b.Ignore("grpntf_not_group")
		return nil
	}
	f, err := e.object()
	if err != nil {
		return err
	}
	operator, err := f.str("operatorUserId")
	if err != nil {
		return err
	}
	if operator == "" {
		operator = e.from
	}
	operation, err := f.str("operation")
	if err != nil {
		return err
	}
	data, err := f.data()
	if err != nil {
		return err
	}
	targets, err := data.ids("targetUserIds")
	if err != nil {
		return err
	}
	// line adds the notification about the member at index i of the
	// provider's list: element 0 keeps msgUID, the others get msgUID#i.
	line := func(i int, t message.Type, accid, accid2 string) {
		m := e.base(t)
		m.From, m.Accid2 = accid, accid2
		if i > 0 {
			m.SourceID = e.uid + "#" + strconv.Itoa(i)
			m.MsgID = message.MsgID(Name, m.SourceID)
			m.RecallKey = e.uid
		}
		b.Messages = append(b.Messages, m)
	}
	switch strings.ToLower(operation) {
	case "add":
		if len(targets) == 0 {
			b.Ignore("grpntf_incomplete")
		}
		for _, t := range targets {
			line(t.index, message.TypeTeamInvite, t.id, operator)
		}
	case "kicked":
		if len(targets) == 0 {
			b.Ignore("grpntf_incomplete")
		}
		for _, t := range targets {
			line(t.index, message.TypeTeamKick, operator, t.id)
		}
	case "quit":
		if len(targets) == 0 {
			targets = []indexedID{{0, operator}}
		}
		for _, t := range targets {
			line(t.index, message.TypeTeamLeave, t.id, "")
		}
	case "dismiss":
		line(0, message.TypeTeamDismiss, operator, "")
	case "transfer":
		newOwner, err := data.str("newCreatorId")
		if err != nil {
			return err
		}
		oldOwner, err := data.str("oldCreatorId")
		if err != nil {
			return err
		}
		if oldOwner == "" {
			oldOwner = operator
		}
		if newOwner == "" {
			b.Ignore("grpntf_incomplete")
			return nil
		}
		line(0, message.TypeTeamTransfer, oldOwner, newOwner)
	case "create":
		b.Ignore("grpntf_create")
	case "rename":
		b.Ignore("grpntf_rename")
	case "bulletin":
		b.Ignore("grpntf_bulletin")
	default:
		b.Ignore("grpntf_other")
	}
	return nil
}

// channelOf maps channelType (a name, or the SDK's ConversationType number
// as the history log writes it) to a scene, or to the reason it is ignored.
func channelOf(v string) (message.Scene, string) {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "PERSON", "1":
		return message.P2P, ""
	case "GROUP", "3":
		return message.Team, ""
	case "PERSONS", "2":
		return 0, "discussion"
	case "TEMPGROUP", "CHATROOM", "4":
		return 0, "chatroom"
	case "CUSTOMERSERVICE", "5":
		return 0, "customer_service"
	case "NOTIFY", "SYSTEM", "6":
		return 0, "system"
	case "MC", "MP", "APPSERVICE", "PUBLICSERVICE", "7", "8":
		return 0, "public_service"
	case "ULTRAGROUP", "ULTRA_GROUP", "ULTRA", "10":
		return 0, "ultragroup"
	}
	return 0, "other_channel"
}

// ClientType maps the routing field source to Yunxin's clientType: iOS 2,
// Android 1, Websocket (the Web SDK) 16, MiniProgram 16 (the mini-program
// SDK is the Web SDK over a WebSocket), PC 4, Server 32; anything else
// (empty for other channels, or a platform RongCloud adds later) is
// source.DefaultClientType (REST).
func ClientType(platform string) message.ClientType {
	switch strings.ToLower(strings.TrimSpace(platform)) {
	case "ios":
		return message.IOS
	case "android":
		return message.Android
	case "websocket", "web", "miniprogram":
		return message.Web
	case "pc":
		return message.PC
	case "server":
		return message.REST
	}
	return source.DefaultClientType
}

// parseForm reads an application/x-www-form-urlencoded body. Pairs are split
// on '&' only (a literal ';' is data, unlike net/url), '+' is a space, and a
// broken %-escape or a value that is not UTF-8 is a 400.
func parseForm(body []byte) (map[string][]string, error) {
	s := strings.TrimRight(string(body), "\r\n")
	if strings.TrimSpace(s) == "" {
		return nil, source.BadRequest("empty body: RongCloud posts a form (fromUserId, toUserId, objectName, content, channelType, msgTimestamp, msgUID…)")
	}
	out := map[string][]string{}
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, source.BadRequest("the body is not a valid form: key %q: %v", clip(k), err)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, source.BadRequest("the body is not a valid form: field %q: %v (is the body complete?)", clip(key), err)
		}
		if !utf8.ValidString(key) || !utf8.ValidString(val) {
			return nil, source.BadRequest("the body is not a valid form: field %q is not UTF-8", clip(key))
		}
		out[key] = append(out[key], val)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// epochMillis reads a required epoch-millisecond timestamp.
func epochMillis(key, v string) (int64, error) {
	if v == "" {
		return 0, source.BadRequest("%s: required (epoch milliseconds); is the body complete?", key)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 946684800000 || n >= 4102444800000 {
		return 0, source.BadRequest("%s: %q is not epoch milliseconds between 2000 and 2100", key, clip(v))
	}
	return n, nil
}

// parseIDList reads a list of user ids leniently: a JSON array of strings or
// numbers ("[543,567]", `["a","b"]`), or comma-separated text.
func parseIDList(v string) []string {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	var raw []json.RawMessage
	if json.Unmarshal([]byte(v), &raw) == nil {
		var out []string
		for _, r := range raw {
			if s := idText(r); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	var out []string
	for _, p := range strings.Split(strings.Trim(v, "[]"), ",") {
		if p = strings.Trim(strings.TrimSpace(p), `"'`); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// idText is a JSON string's value or a number's literal text; "" otherwise.
func idText(raw json.RawMessage) string {
	switch kindOf(raw) {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return strings.TrimSpace(s)
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return strings.TrimSpace(string(raw))
	}
	return ""
}

func kindOf(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func jsonErr(err error) string {
	if err == nil {
		return "null"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

package yunxin

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// Team notification ids (attach "id" of a TEAM / SUPER_TEAM NOTIFICATION,
// 会话类型消息抄送 "attach 字段中 ID 字段的释义").
const (
	notifyInvite       = 0  // TEAM_INVITE: data.ids pulled in by fromAccount
	notifyKick         = 1  // TEAM_KICK: fromAccount removed data.ids
	notifyLeave        = 2  // TEAM_LEAVE: fromAccount left
	notifyUpdate       = 3  // TEAM_UPDATE: fromAccount changed data.tinfo
	notifyDismiss      = 4  // TEAM_DISMISS: fromAccount dismissed the team
	notifyApplyPass    = 5  // TEAM_APPLY_PASS: data.id joined, fromAccount let them in
	notifyTransfer     = 6  // TEAM_OWNER_TRANSFER: fromAccount gave the team to data.id
	notifyAddManager   = 7  // TEAM_ADD_MANAGER: fromAccount made data.ids managers
	notifyDelManager   = 8  // TEAM_REMOVE_MANAGER
	notifyInviteAccept = 9  // TEAM_INVITE_ACCEPT: fromAccount joined, invited by data.id
	notifyMute         = 10 // TEAM_MUTE_TLIST: fromAccount (un)muted data.ids, data.mute 1 = muted
)

// superTeamNotify maps the super team ids 401–411 to the team ones.
var superTeamNotify = map[int64]int64{
	401: notifyInvite, 402: notifyKick, 403: notifyLeave, 404: notifyUpdate, 405: notifyDismiss,
	406: notifyTransfer, 407: notifyAddManager, 408: notifyDelManager, 409: notifyMute,
	410: notifyApplyPass, 411: notifyInviteAccept,
}

// decodeTeamNotification maps a team NOTIFICATION (attach {"id": N, "data":
// {...}}) to team notification lines 101–110, one per member acted on. m
// holds the header (ids, team, time, client type). Line i ≥ 1 of one
// notification gets SourceID msgidServer + "#" + i (i = position in
// data.ids) and RecallKey msgidServer.
func decodeTeamNotification(b *source.Batch, f fields, m message.Message) error {
	obj, err := attachObject(f["attach"])
	if err != nil {
		return err
	}
	if obj == nil {
		return source.BadRequest("attach: required for NOTIFICATION messages (the team operation)")
	}
	var att struct {
		ID   json.RawMessage `json:"id"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(obj, &att); err != nil {
		return source.BadRequest("attach: %v", cleanJSONError(err))
	}
	id, ok := looseInt(att.ID)
	if !ok {
		return source.BadRequest("attach.id: %s (the team operation: an integer)", orMissing(att.ID))
	}
	if t, ok := superTeamNotify[id]; ok {
		id = t
	}
	data := fields{}
	if d, err := attachObject(att.Data); err != nil {
		return source.BadRequest("attach.data: must be an object")
	} else if d != nil {
		if err := json.Unmarshal(d, &data); err != nil {
			return source.BadRequest("attach.data: %v", cleanJSONError(err))
		}
	}

	base := m
	src := m.SourceID
	add := func(i int, t message.Type, accid, accid2 string) *message.Message {
		n := base
		n.Type, n.From, n.Accid2 = t, accid, accid2
		if i > 0 {
			n.SourceID = src + "#" + strconv.Itoa(i)
			n.RecallKey = src
			n.MsgID = message.MsgID(Name, n.SourceID)
		}
		b.Messages = append(b.Messages, n)
		return &b.Messages[len(b.Messages)-1]
	}
	members := func() ([]string, error) {
		ids, err := idList(data["ids"])
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, source.BadRequest("attach.data.ids: required for team notification %d (the members acted on)", id)
		}
		return ids, nil
	}
	op := m.From
	switch id {
	case notifyInvite, notifyKick, notifyAddManager, notifyDelManager, notifyMute:
		ids, err := members()
		if err != nil {
			return err
		}
		t := map[int64]message.Type{notifyKick: message.TypeTeamKick, notifyAddManager: message.TypeTeamAddManager,
			notifyDelManager: message.TypeTeamRemoveManager}[id]
		if id == notifyMute {
			t = message.TypeTeamUnmute
			if mute, _ := looseInt(data["mute"]); mute == 1 {
				t = message.TypeTeamMute
			}
		}
		for i, member := range ids {
			if id == notifyInvite {
				add(i, message.TypeTeamInvite, member, op) // 101: accid joined, accid2 pulled them in
			} else {
				add(i, t, op, member)
			}
		}
	case notifyLeave:
		add(0, message.TypeTeamLeave, op, "")
	case notifyDismiss:
		add(0, message.TypeTeamDismiss, op, "")
	case notifyApplyPass:
		joined, err := data.str("id")
		if err != nil {
			return source.BadRequest("attach.data.%v", err)
		}
		if joined == "" {
			joined = op // joined without approval: fromAccount is the applicant
		}
		add(0, message.TypeTeamInvite, joined, op)
	case notifyInviteAccept:
		inviter, err := data.str("id")
		if err != nil {
			return source.BadRequest("attach.data.%v", err)
		}
		if inviter == "" {
			inviter = op
		}
		add(0, message.TypeTeamInvite, op, inviter)
	case notifyTransfer:
		owner, err := data.str("id")
		if err != nil {
			return source.BadRequest("attach.data.%v", err)
		}
		if owner == "" {
			return source.BadRequest("attach.data.id: required for team notification 6 (the new owner)")
		}
		add(0, message.TypeTeamTransfer, op, owner)
	case notifyUpdate:
		ti, err := tinfo(data["tinfo"])
		if err != nil {
			return err
		}
		if ti.Len() == 0 {
			b.Ignore("team_update_unmapped") // e.g. only the name (key 3) changed: no line key for it
			return nil
		}
		add(0, message.TypeTeamUpdate, op, "").TInfo = ti
	default:
		b.Ignore("team_notification_unknown")
	}
	return nil
}

// tinfo reads the keys 14–24 of data.tinfo (the team fields that changed, by
// Yunxin's own numeric keys, which are the line's): int keys (16, 17, 21–24)
// from strings or numbers, string keys (14, 15, 18, 19, 20) as given — 15,
// the announcement, is Yunxin's JSON array text and stays that string. Other
// keys (1 tid, 3 name, 10–12 times, …) have no line key and are dropped.
func tinfo(raw json.RawMessage) (message.TInfo, error) {
	var t message.TInfo
	obj, err := attachObject(raw)
	if err != nil || obj == nil {
		if err != nil {
			err = source.BadRequest("attach.data.tinfo: must be an object")
		}
		return t, err
	}
	var in map[string]json.RawMessage
	if err := json.Unmarshal(obj, &in); err != nil {
		return t, source.BadRequest("attach.data.tinfo: %v", cleanJSONError(err))
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key, err := strconv.Atoi(k)
		if err != nil || key < 14 || key > 24 || strconv.Itoa(key) != k {
			continue
		}
		v := in[k]
		switch key {
		case message.TInfoIntro, message.TInfoAnnouncement, message.TInfoCustom, message.TInfoServerCustom, message.TInfoIcon:
			s, err := textValue(v)
			if err != nil {
				return t, source.BadRequest("attach.data.tinfo.%s: %v", k, err)
			}
			t.SetString(key, s)
		default:
			if kind(v) == 'n' {
				continue
			}
			n, ok := looseInt(v)
			if !ok {
				return t, source.BadRequest("attach.data.tinfo.%s: %s is not an integer", k, v)
			}
			t.SetInt(key, n)
		}
	}
	return t, nil
}

// textValue is a string value as is, null as "", anything else as its
// compact JSON text.
func textValue(v json.RawMessage) (string, error) {
	switch kind(v) {
	case 'n':
		return "", nil
	case '"':
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	}
	b, err := message.CanonicalJSON(nil, v)
	return string(b), err
}

// idList reads data.ids: a JSON array of accounts (strings, or numbers kept
// as written), or a string holding one.
func idList(raw json.RawMessage) ([]string, error) {
	switch kind(raw) {
	case 0, 'n':
		return nil, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || kind([]byte(s)) != '[' {
			return nil, source.BadRequest("attach.data.ids: must be an array of accounts")
		}
		raw = json.RawMessage(s)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, source.BadRequest("attach.data.ids: must be an array of accounts")
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		switch kind(it) {
		case '"':
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return nil, source.BadRequest("attach.data.ids[%d]: %v", i, cleanJSONError(err))
			}
			out = append(out, s)
		case '{', '[', 'n', 't', 'f':
			return nil, source.BadRequest("attach.data.ids[%d]: must be an account (a string)", i)
		default:
			out = append(out, strings.TrimSpace(string(it)))
		}
	}
	return out, nil
}

// looseInt reads an integer given as a number, a string of digits, or a
// boolean (true 1, false 0).
func looseInt(raw json.RawMessage) (int64, bool) {
	s := strings.TrimSpace(string(raw))
	switch kind(raw) {
	case 0, 'n', '{', '[':
		return 0, false
	case 't':
		return 1, s == "true"
	case 'f':
		return 0, s == "false"
	case '"':
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		s = strings.TrimSpace(s)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func orMissing(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "required"
	}
	return string(raw) + " is not a team notification id"
}

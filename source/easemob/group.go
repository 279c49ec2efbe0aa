package easemob

import (
	"strconv"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// groupOp is one group_op_event: {id, type GROUP|CHATROOM, operation,
// operator, timestamp, payload{type, …}}.
type groupOp struct {
	group, operation, kind, operator string
	ts                               int64
	payload                          obj
}

// decodeGroupOp maps a group operation event to team notifications 101–110
// (see the README appendix for the table). Operations and payload types are checked
// strictly, as Easemob asks: anything not in the table is ignored and
// counted, never guessed.
func decodeGroupOp(o obj) (source.Batch, error) {
	var b source.Batch
	typ, err := o.str("type", "")
	if err != nil {
		return b, err
	}
	switch typ {
	case "CHATROOM":
		b.Ignore("chatroom")
		return b, nil
	case "GROUP":
	default:
		b.Ignore("unknown_group_op")
		return b, nil
	}
	var ev groupOp
	if ev.operation, err = o.str("operation", ""); err != nil {
		return b, err
	}
	if ev.payload, _, err = o.object("payload"); err != nil {
		return b, err
	}
	if ev.kind, err = ev.payload.str("type", ""); err != nil {
		return b, err
	}
	if ev.group, err = o.id("id"); err != nil {
		return b, err
	}
	if ev.operator, err = o.str("operator", ""); err != nil {
		return b, err
	}

	// What each operation becomes; ignored ones need no further fields.
	var (
		t       message.Type
		listKey string // the payload list holding the members acted on
	)
	switch ev.operation + "/" + ev.kind {
	case "JOIN/DIRECT", "JOIN/INVITE", "JOIN/APPLY":
		t, listKey = message.TypeTeamInvite, "member"
	case "LEAVE/QUIT":
		t, listKey = message.TypeTeamLeave, "member"
	case "LEAVE/KICK", "LEAVE/BLOCK":
		t, listKey = message.TypeTeamKick, "member"
	case "LEAVE/DELETE":
		b.Ignore("group_dismiss_leave") // the DELETE event gives the 110
		return b, nil
	case "DELETE/":
		t = message.TypeTeamDismiss
	case "UPDATE/INFO", "UPDATE/ANNOUNCEMENT", "UPDATE/MUTE":
		t = message.TypeTeamUpdate
	case "UPDATE/OWNER":
		t = message.TypeTeamTransfer
	case "ADMIN/ADD":
		t, listKey = message.TypeTeamAddManager, "admin"
	case "ADMIN/REMOVE":
		t, listKey = message.TypeTeamRemoveManager, "admin"
	case "MUTE/ADD":
		t, listKey = message.TypeTeamMute, "member"
	case "MUTE/REMOVE":
		t, listKey = message.TypeTeamUnmute, "member"
	case "UPDATE/DISABLE":
		b.Ignore("group_disable")
		return b, nil
	case "BLOCK/ADD", "BLOCK/REMOVE":
		b.Ignore("group_blocklist")
		return b, nil
	case "WHITE/ADD", "WHITE/REMOVE":
		b.Ignore("group_allowlist")
		return b, nil
	case "CREATE/":
		b.Ignore("group_create") // members pulled in at creation come as JOIN/DIRECT
		return b, nil
	default:
		b.Ignore("unknown_group_op")
		return b, nil
	}
	if ev.group == "" {
		return b, source.BadRequest("id: required (the group id)")
	}
	if ev.ts, err = o.requiredTimestamp(); err != nil {
		return b, err
	}
	needOperator := t != message.TypeTeamLeave && t != message.TypeTeamTransfer
	if needOperator && ev.operator == "" {
		return b, source.BadRequest("operator: required for %s %s", ev.operation, ev.kind)
	}

	if listKey != "" {
		members, err := ev.payload.strings(listKey)
		if err != nil {
			return b, err
		}
		for _, member := range members {
			if member == "" {
				return source.Batch{}, source.BadRequest("%s: has an empty user id", ev.payload.field(listKey))
			}
			m := ev.line(t, member)
			switch t {
			case message.TypeTeamInvite: // member joined, pulled in by operator
				m.From, m.Accid2 = member, ev.operator
			case message.TypeTeamLeave: // member left
				m.From = member
			default: // operator acted on member
				m.From, m.Accid2 = ev.operator, member
			}
			b.Messages = append(b.Messages, m)
		}
		if len(b.Messages) == 0 {
			b.Ignore("group_op_empty")
			return b, nil
		}
		return ev.validate(b)
	}

	m := ev.line(t, "")
	m.From = ev.operator
	switch t {
	case message.TypeTeamTransfer:
		owner, err := ev.payload.str("owner", "")
		if err != nil {
			return b, err
		}
		newOwner, err := ev.payload.str("new_owner", "")
		if err != nil {
			return b, err
		}
		if owner != "" {
			m.From = owner
		}
		if m.From == "" {
			return b, source.BadRequest("%s: required (the previous owner)", ev.payload.field("owner"))
		}
		if newOwner == "" {
			return b, source.BadRequest("%s: required (the new owner)", ev.payload.field("new_owner"))
		}
		m.Accid2 = newOwner
	case message.TypeTeamUpdate:
		reason, err := ev.tinfo(&m.TInfo)
		if err != nil {
			return b, err
		}
		if reason != "" {
			b.Ignore(reason)
			return b, nil
		}
	}
	b.Messages = append(b.Messages, m)
	return ev.validate(b)
}

// line is a notification of type t about member ("" when none) with its
// deterministic SourceID: "<operation>:<payload type>:<group>:<timestamp>"
// plus ":<member>" for per-member lines. A retried or re-sent event (and the
// same event under another callback rule) gets the same ids.
func (ev *groupOp) line(t message.Type, member string) message.Message {
	id := ev.operation + ":" + ev.kind + ":" + ev.group + ":" + strconv.FormatInt(ev.ts, 10)
	if member != "" {
		id += ":" + member
	}
	return message.Message{
		Source:     Name,
		SourceID:   id,
		MsgID:      message.MsgID(Name, id),
		Scene:      message.Team,
		Type:       t,
		GroupID:    ev.group,
		CreateTime: ev.ts,
		ClientType: source.DefaultClientType,
	}
}

// tinfo fills the 107 tinfo of an UPDATE; reason is set when nothing of the
// change has a tinfo key.
func (ev *groupOp) tinfo(ti *message.TInfo) (reason string, err error) {
	p := ev.payload
	switch ev.kind {
	case "ANNOUNCEMENT": // absent: the announcement was deleted
		a, err := p.str("announcement", "")
		if err != nil {
			return "", err
		}
		ti.SetString(message.TInfoAnnouncement, a)
	case "MUTE": // mute-all switched on or off
		muted, ok, err := p.boolean("mute")
		if err != nil {
			return "", err
		}
		if !ok {
			return "", source.BadRequest("%s: required (true or false)", p.field("mute"))
		}
		ti.SetInt(message.TInfoMute, boolInt(muted))
	case "INFO":
		// info is the group's whole state after the change (Easemob does
		// not say which field changed): every field with a tinfo key is
		// written with its current value.
		info, ok, err := p.object("info")
		if err != nil {
			return "", err
		}
		if !ok {
			return "", source.BadRequest("%s: required for UPDATE INFO", p.field("info"))
		}
		for _, f := range []struct {
			key   string
			tinfo int
		}{{"description", message.TInfoIntro}, {"custom", message.TInfoCustom}, {"avatar", message.TInfoIcon}} {
			if !info.has(f.key) {
				continue
			}
			v, err := info.str(f.key, "")
			if err != nil {
				return "", err
			}
			ti.SetString(f.tinfo, v)
		}
		// invite_need_confirm true: the invitee must agree (21 = 0).
		if v, ok, err := info.boolean("invite_need_confirm"); err != nil {
			return "", err
		} else if ok {
			ti.SetInt(message.TInfoBeInviteMode, 1-boolInt(v))
		}
		// allow_user_invites true: every member may invite (22 = 1).
		if v, ok, err := info.boolean("allow_user_invites"); err != nil {
			return "", err
		} else if ok {
			ti.SetInt(message.TInfoInviteMode, boolInt(v))
		}
		if ti.Len() == 0 {
			if info.has("title") {
				return "group_title", nil // a group name has no tinfo key
			}
			return "group_info_unmapped", nil
		}
	}
	return "", nil
}

func (ev *groupOp) validate(b source.Batch) (source.Batch, error) {
	for i := range b.Messages {
		if err := b.Messages[i].Validate(); err != nil {
			return source.Batch{}, source.BadRequest("group_op_event %s %s: %v", ev.operation, ev.kind, err)
		}
	}
	return b, nil
}

func boolInt(v bool) int64 {
	if v {
		return 1
	}
	return 0
}

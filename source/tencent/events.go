package tencent

import (
	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

type member struct {
	Account string `json:"Member_Account"`
}

// notification is a team notification line of group with the event's
// identity: SourceID "<kind>:<group>:<EventTime or body hash>[:<member>]".
func (d *decoder) notification(t message.Type, kind, group string, at flexInt, from, accid2, who string) message.Message {
	id := kind + ":" + group + ":" + d.eventStamp(at)
	if who != "" {
		id += ":" + who
	}
	return message.Message{Source: Name, SourceID: id, MsgID: message.MsgID(Name, id), Scene: message.Team, Type: t,
		From: from, Accid2: accid2, GroupID: group, CreateTime: d.eventTime(at), CreateTimeIsReceipt: !at.set || at.v == 0,
		ClientType: d.client}
}

// memberJoin: Group.CallbackAfterNewMemberJoin → 101 per member, accid = the
// member, accid2 = Operator_Account (the member itself when no operator is
// named, e.g. a free join).
func (d *decoder) memberJoin() error {
	var e struct {
		GroupID       string   `json:"GroupId"`
		Type          string   `json:"Type"`
		Operator      string   `json:"Operator_Account"`
		NewMemberList []member `json:"NewMemberList"`
		EventTime     flexInt  `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if e.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	if err := require("GroupId", e.GroupID); err != nil {
		return err
	}
	if len(e.NewMemberList) == 0 {
		d.b.Ignore("empty_member_list")
		return nil
	}
	for _, mb := range e.NewMemberList {
		if err := require("NewMemberList[].Member_Account", mb.Account); err != nil {
			return err
		}
		op := e.Operator
		if op == "" {
			op = mb.Account
		}
		if err := d.add(d.notification(message.TypeTeamInvite, "join", e.GroupID, e.EventTime, mb.Account, op, mb.Account), "NewMemberList"); err != nil {
			return err
		}
	}
	return nil
}

// memberExit: Group.CallbackAfterMemberExit, Kicked → 102 per member (accid
// = Operator_Account, accid2 = the member), Quit → 109 per member (accid =
// the member); other ExitTypes are ignored.
func (d *decoder) memberExit() error {
	var e struct {
		GroupID        string   `json:"GroupId"`
		Type           string   `json:"Type"`
		ExitType       string   `json:"ExitType"`
		Operator       string   `json:"Operator_Account"`
		ExitMemberList []member `json:"ExitMemberList"`
		EventTime      flexInt  `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if e.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	if err := require("GroupId", e.GroupID); err != nil {
		return err
	}
	var t message.Type
	var kind string
	switch e.ExitType {
	case "Kicked":
		t, kind = message.TypeTeamKick, "kick"
		if err := require("Operator_Account", e.Operator); err != nil {
			return err
		}
	case "Quit":
		t, kind = message.TypeTeamLeave, "quit"
	default:
		d.b.Ignore("member_exit_other")
		return nil
	}
	if len(e.ExitMemberList) == 0 {
		d.b.Ignore("empty_member_list")
		return nil
	}
	for _, mb := range e.ExitMemberList {
		if err := require("ExitMemberList[].Member_Account", mb.Account); err != nil {
			return err
		}
		m := d.notification(t, kind, e.GroupID, e.EventTime, mb.Account, "", mb.Account)
		if t == message.TypeTeamKick {
			m.From, m.Accid2 = e.Operator, mb.Account
		}
		if err := d.add(m, "ExitMemberList"); err != nil {
			return err
		}
	}
	return nil
}

// groupInfoChanged: Group.CallbackAfterGroupInfoChanged → one 107 by
// Operator_Account with tinfo 14 (Introduction), 15 (Notification), 20
// (FaceUrl) for the fields present. Name has no tinfo key: a change of the
// name alone is ignored ("group_name_only"), one of other fields only
// (UserDefinedDataList…) too ("group_info_other").
func (d *decoder) groupInfoChanged() error {
	var e struct {
		GroupID      string  `json:"GroupId"`
		Type         string  `json:"Type"`
		Operator     string  `json:"Operator_Account"`
		Name         *string `json:"Name"`
		Introduction *string `json:"Introduction"`
		Notification *string `json:"Notification"`
		FaceURL      *string `json:"FaceUrl"`
		EventTime    flexInt `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if e.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	if err := require("GroupId", e.GroupID); err != nil {
		return err
	}
	var ti message.TInfo
	for _, f := range []struct {
		key int
		v   *string
	}{{message.TInfoIntro, e.Introduction}, {message.TInfoAnnouncement, e.Notification}, {message.TInfoIcon, e.FaceURL}} {
		if f.v != nil {
			ti.SetString(f.key, *f.v)
		}
	}
	if ti.Len() == 0 {
		if e.Name != nil {
			d.b.Ignore("group_name_only")
		} else {
			d.b.Ignore("group_info_other")
		}
		return nil
	}
	if err := require("Operator_Account", e.Operator); err != nil {
		return err
	}
	m := d.notification(message.TypeTeamUpdate, "info", e.GroupID, e.EventTime, e.Operator, "", "")
	m.TInfo = ti
	return d.add(m, "group info")
}

// groupDestroyed: Group.CallbackAfterGroupDestroyed → 110 by Owner_Account
// (Operator_Account when no owner is named).
func (d *decoder) groupDestroyed() error {
	var e struct {
		GroupID   string  `json:"GroupId"`
		Type      string  `json:"Type"`
		Owner     string  `json:"Owner_Account"`
		Operator  string  `json:"Operator_Account"`
		EventTime flexInt `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if e.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	by := e.Owner
	if by == "" {
		by = e.Operator
	}
	if err := require("GroupId", e.GroupID, "Owner_Account", by); err != nil {
		return err
	}
	return d.add(d.notification(message.TypeTeamDismiss, "destroy", e.GroupID, e.EventTime, by, "", ""), "group destroyed")
}

// c2cRecall: C2C.CallbackAfterMsgWithDraw → a recall of the message whose
// MsgKey it names, by From_Account.
func (d *decoder) c2cRecall() error {
	var e struct {
		From      string  `json:"From_Account"`
		MsgKey    string  `json:"MsgKey"`
		EventTime flexInt `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if err := require("MsgKey", e.MsgKey); err != nil {
		return err
	}
	return d.addRecall(message.Recall{Source: Name, Key: e.MsgKey, Operator: e.From, Time: d.eventTime(e.EventTime)})
}

// groupRecall: Group.CallbackAfterRecallMsg → one recall per MsgSeqList
// entry, key "GroupId:MsgSeq" (the topic's id for a community topic).
func (d *decoder) groupRecall() error {
	var e struct {
		GroupID    string `json:"GroupId"`
		TopicID    string `json:"TopicId"`
		Type       string `json:"Type"`
		Operator   string `json:"Operator_Account"`
		MsgSeqList []struct {
			MsgSeq flexInt `json:"MsgSeq"`
		} `json:"MsgSeqList"`
		EventTime flexInt `json:"EventTime"`
	}
	if err := unmarshal(d.body, &e); err != nil {
		return err
	}
	if e.Type == groupTypeAVChatRoom {
		d.b.Ignore("avchatroom")
		return nil
	}
	if err := require("GroupId", e.GroupID); err != nil {
		return err
	}
	if len(e.MsgSeqList) == 0 {
		d.b.Ignore("empty_recall")
		return nil
	}
	group := groupOf(e.GroupID, e.TopicID)
	for _, s := range e.MsgSeqList {
		if !s.MsgSeq.set {
			return source.BadRequest("MsgSeqList[].MsgSeq is required")
		}
		if err := d.addRecall(message.Recall{Source: Name, Key: groupKey(group, s.MsgSeq.v), Operator: e.Operator, Time: d.eventTime(e.EventTime)}); err != nil {
			return err
		}
	}
	return nil
}

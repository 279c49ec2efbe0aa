// Package message is imbridge's domain: the canonical message, modelled on the
// Yunxin migration line (消息体格式介绍 in the Yunxin migration document), its
// validation, its exact encoder, the native line decoder, and the
// deterministic msgid. Every source decoder produces a Message; ingest, pull,
// export and import all speak it.
package message

// Scene is p2p (单聊) or team (群聊).
type Scene uint8

// The scenes.
const (
	P2P Scene = iota + 1
	Team
)

func (s Scene) String() string {
	switch s {
	case P2P:
		return "p2p"
	case Team:
		return "team"
	}
	return "unknown"
}

// Type is the line's "type".
type Type int

// The documented types.
const (
	TypeText     Type = 0
	TypeImage    Type = 1
	TypeAudio    Type = 2
	TypeVideo    Type = 3
	TypeLocation Type = 4
	TypeFile     Type = 6
	TypeCustom   Type = 100

	// Team notifications (群操作通知消息).
	TypeTeamInvite        Type = 101 // accid (the member who joined) was pulled in by accid2
	TypeTeamKick          Type = 102 // accid kicked accid2
	TypeTeamMute          Type = 103 // accid muted accid2
	TypeTeamUnmute        Type = 104 // accid unmuted accid2
	TypeTeamAddManager    Type = 105 // accid made accid2 a manager
	TypeTeamRemoveManager Type = 106 // accid removed accid2 as manager
	TypeTeamUpdate        Type = 107 // accid changed team info (tinfo)
	TypeTeamTransfer      Type = 108 // accid transferred the team to accid2
	TypeTeamLeave         Type = 109 // accid left
	TypeTeamDismiss       Type = 110 // accid dismissed the team
)

// IsNotification reports whether t is a team notification (101–110).
func (t Type) IsNotification() bool { return t >= TypeTeamInvite && t <= TypeTeamDismiss }

// HasAccid2 reports whether notifications of type t name a second member.
func (t Type) HasAccid2() bool {
	return (t >= TypeTeamInvite && t <= TypeTeamRemoveManager) || t == TypeTeamTransfer
}

// Known reports whether t is a documented type.
func (t Type) Known() bool {
	switch t {
	case TypeText, TypeImage, TypeAudio, TypeVideo, TypeLocation, TypeFile, TypeCustom:
		return true
	}
	return t.IsNotification()
}

// ClientType is the documented client enum (客户端类型).
type ClientType int

// The documented client types.
const (
	Android  ClientType = 1
	IOS      ClientType = 2
	PC       ClientType = 4
	WinPhone ClientType = 8
	Web      ClientType = 16
	REST     ClientType = 32
	Mac      ClientType = 64
)

// Valid reports whether c is one of the documented values.
func (c ClientType) Valid() bool {
	switch c {
	case Android, IOS, PC, WinPhone, Web, REST, Mac:
		return true
	}
	return false
}

// Message is one chat message or team notification, as a Yunxin line carries
// it. Source and SourceID say where it came from; they are not part of the
// line but decide MsgID (see MsgID) and de-duplication.
type Message struct {
	Source   string // native, easemob, tencent, rongcloud, yunxin, or an import name
	SourceID string // the provider's own message id
	// RecallKey is how a recall names this message when that is not SourceID
	// (Tencent: the C2C MsgKey, or group id + MsgSeq); several lines made from
	// one source message share it. Empty means SourceID.
	RecallKey string
	// GroupID is the provider's group id of a team message (Tencent @TGS#…,
	// Easemob and RongCloud group ids). It is never a Yunxin tid: the team
	// map turns it into TID when the line is rendered, and until a mapping
	// exists the message is held. Empty for the native source, whose TID is
	// already Yunxin's.
	GroupID string

	Scene      Scene
	Type       Type
	MsgID      int64
	From       string // p2p "from"; team "accid"
	To         string // p2p "to"
	TID        int64  // team "tid" (0 when GroupID is set: the team map decides it)
	CreateTime int64  // epoch milliseconds
	// CreateTimeIsReceipt: the provider's event carries no time (some
	// Tencent group events), so CreateTime is when imbridge received it. A
	// retry then has another CreateTime: such a message is de-duplicated on
	// its source id alone (its Identity has CreateTime 0).
	CreateTimeIsReceipt bool
	ClientType          ClientType

	Body   string     // type 0
	Attach Attachment // types 1, 2, 3, 4, 6, 100
	Ext    string     // types 0–100; "" when the source has none

	Accid2 string // 101–106, 108
	TInfo  TInfo  // 107
}

// Attachment is a typed "attach": *Image, *Audio, *Video, *Location, *File or
// *CustomData.
type Attachment interface {
	// appendJSON appends the attach object (not yet string-escaped).
	appendJSON(dst []byte) []byte
	// urls lists the media URL fields, for URL rewriting.
	urls() []*string
}

// Image is the attach of type 1. Zero numbers are unknown and left out.
type Image struct {
	Name, MD5, URL, Ext string
	W, H, Size          int64
}

// Audio is the attach of type 2. Dur is milliseconds.
type Audio struct {
	MD5, URL, Ext string
	Dur, Size     int64
}

// Video is the attach of type 3. Dur is milliseconds.
type Video struct {
	Name, MD5, URL, Ext string
	Dur, W, H, Size     int64
}

// Location is the attach of type 4. Lng and Lat are decimal strings, as the
// document writes them.
type Location struct {
	Title, Lng, Lat string
}

// File is the attach of type 6.
type File struct {
	Name, MD5, URL, Ext string
	Size                int64
}

// CustomData is the attach of type 100: a JSON object (kept in canonical
// compact form, keys in their original order) or a plain string.
type CustomData struct {
	Object []byte // canonical JSON object; nil when the payload is a string
	String string
}

// TInfo is the "tinfo" of type 107: keys 14–24 with their documented types.
type TInfo struct {
	set uint16 // bit k-14 set when key k is present
	str [11]string
	num [11]int64
}

// TInfo keys and their documented value types.
const (
	TInfoIntro          = 14 // string 群介绍
	TInfoAnnouncement   = 15 // string 群公告
	TInfoJoinMode       = 16 // int 入群权限 0 free, 1 apply, 2 forbidden
	TInfoMute           = 17 // int 群状态 0 normal, 1 muted
	TInfoCustom         = 18 // string 第三方扩展字段
	TInfoServerCustom   = 19 // string 第三方服务器扩展字段
	TInfoIcon           = 20 // string 群 icon
	TInfoBeInviteMode   = 21 // int 0 needs consent, 1 not
	TInfoInviteMode     = 22 // int 0 managers, 1 everyone
	TInfoUpdateInfoMode = 23 // int 0 managers, 1 everyone
	TInfoUpdateCustom   = 24 // int 0 managers, 1 everyone
)

// tinfoIsInt reports whether key k holds an int (else a string).
func tinfoIsInt(k int) bool {
	switch k {
	case TInfoJoinMode, TInfoMute, TInfoBeInviteMode, TInfoInviteMode, TInfoUpdateInfoMode, TInfoUpdateCustom:
		return true
	}
	return false
}

// tinfoMax is the largest documented value of each int key.
func tinfoMax(k int) int64 {
	if k == TInfoJoinMode {
		return 2
	}
	return 1
}

// SetString sets a string key (14, 15, 18, 19, 20).
func (t *TInfo) SetString(key int, v string) {
	t.set |= 1 << (key - 14)
	t.str[key-14] = v
}

// SetInt sets an int key (16, 17, 21–24).
func (t *TInfo) SetInt(key int, v int64) {
	t.set |= 1 << (key - 14)
	t.num[key-14] = v
}

// Has reports whether key is present.
func (t *TInfo) Has(key int) bool { return key >= 14 && key <= 24 && t.set&(1<<(key-14)) != 0 }

// String returns a string key's value.
func (t *TInfo) String(key int) string { return t.str[key-14] }

// Int returns an int key's value.
func (t *TInfo) Int(key int) int64 { return t.num[key-14] }

// Len is the number of keys 14–24 present.
func (t *TInfo) Len() int {
	n := 0
	for k := 14; k <= 24; k++ {
		if t.Has(k) {
			n++
		}
	}
	return n
}

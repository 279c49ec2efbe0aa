package tencent

import (
	"bytes"
	"strings"
	"time"

	"github.com/imbridge/imbridge/source"
)

// DecodeHistory decodes one message record of Tencent's hourly history files
// (v4/open_msg_svc/get_history; the file's layout around the records is
// UNCONFIRMED and left to the importer). chatType is the file's ChatType,
// "C2C" or "Group"; groupID names the group of a group record that carries no
// GroupId of its own. Records go through the same per-element mapping as the
// callbacks and get the same SourceIDs (C2C MsgKey, group "GroupId:MsgSeq")
// and createTimes (MsgTimestamp × 1000), so a message that arrived by
// callback and is imported again is the same message. clientType comes from
// MsgFromPlatform. A trailing comma after the record is allowed.
func DecodeHistory(chatType, groupID string, rec []byte) (source.Batch, error) {
	var b source.Batch
	rec = bytes.TrimSuffix(bytes.TrimSpace(rec), []byte(","))
	rec = bytes.TrimPrefix(rec, []byte("\ufeff"))
	if len(rec) == 0 || rec[0] != '{' {
		return b, source.BadRequest("a history record must be a JSON object")
	}
	var s sendMsg
	if err := unmarshal(rec, &s); err != nil {
		return b, err
	}
	d := decoder{b: &b, body: rec, client: ClientType(s.MsgFromPlatform), now: time.Now()}
	var err error
	switch {
	case strings.EqualFold(chatType, "C2C"):
		err = d.c2c(&s, false)
	case strings.EqualFold(chatType, "Group"):
		if s.GroupID == "" {
			s.GroupID = groupID
		}
		err = d.group(&s, false)
	default:
		err = source.BadRequest("history ChatType %s: want C2C or Group", quote(chatType))
	}
	if err != nil {
		return source.Batch{}, err
	}
	return b, nil
}

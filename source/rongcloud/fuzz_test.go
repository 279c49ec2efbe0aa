package rongcloud

import (
	"errors"
	"net/http"
	"testing"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// seeds is one routed body per kind, shaped as RongCloud documents them.
func seeds() []string {
	return []string{
		`fromUserId=123&toUserId=456&objectName=RC%3ATxtMsg&content=%7B"content"%3A"hello"%7D&channelType=PERSON&msgTimestamp=1408710653491&msgUID=596E-P5PG-4FS2-7OJK&groupUserIds=[543,567]`,
		msg("PERSON", "RC:TxtMsg", `{"content":"你好","extra":"{\"k\":1}","mentionedInfo":{"type":2,"userIdList":["u2"]}}`, "source", "iOS", "sensitiveType", "0"),
		msg("GROUP", "RC:TxtMsg", `{"content":"hi"}`, "source", "Android", "groupUserIds", "[543,567]"),
		msg("PERSON", "RC:ImgMsg", `{"content":"/9j/4AAQ","imageUri":"https://x.example/a.jpg","extra":""}`, "source", "Websocket"),
		msg("PERSON", "RC:GIFMsg", `{"gifDataSize":12345,"remoteUrl":"https://x.example/g","width":200,"height":200}`),
		msg("GROUP", "RC:HQVCMsg", `{"remoteUrl":"https://x.example/v","duration":7}`, "source", "PC"),
		msg("PERSON", "RC:VcMsg", `{"content":"IyFBTVIK","duration":3}`),
		msg("PERSON", "RC:SightMsg", `{"sightUrl":"https://x.example/s.mp4","content":"/9j/","duration":10,"size":"123456","name":"x.mp4"}`),
		msg("PERSON", "RC:FileMsg", `{"name":"a.pdf","size":"12345","type":"pdf","fileUrl":"https://x.example/f"}`),
		msg("PERSON", "RC:LBSMsg", `{"content":"/9j/","latitude":39.9,"longitude":116.3,"poi":"addr"}`),
		msg("PERSON", "RC:ImgTextMsg", `{"title":"t","content":"c","imageUri":"https://x.example/i","url":"https://x.example"}`),
		msg("PERSON", "RC:ReferenceMsg", `{"content":"reply","referMsgUserId":"u","referMsg":{"content":"o"},"objName":"RC:TxtMsg"}`),
		msg("GROUP", "RC:CombineMsg", `{"remoteUrl":"https://x.example/c.html","conversationType":1,"nameList":["a"],"summaryList":["s"]}`),
		msg("PERSON", "App:Card", `{"a":1}`),
		msg("PERSON", "App:Plain", `plain text`),
		msg("PERSON", "RC:RcCmd", `{"messageUId":"5H6P-CGC6-44QR-VB3R","conversationType":1,"targetId":"u2","sentTime":1408710600000}`),
		msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Add","data":{"targetUserIds":["u2","u3"]}}`),
		msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Kicked","data":"{\"targetUserIds\":[\"u4\"]}"}`),
		msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Quit","data":{"targetUserIds":["u1"]}}`),
		msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Dismiss","data":{}}`),
		msg("GROUP", "RC:GrpNtf", `{"operatorUserId":"u1","operation":"Transfer","data":{"oldCreatorId":"u1","newCreatorId":"u2"}}`),
		msg("PERSON", "RC:ReadNtf", `{"lastMessageSendTime":1408710653491,"type":1}`),
		msg("PERSON", "RC:TypSts", `{"typingContentType":"RC:TxtMsg"}`),
		msg("TEMPGROUP", "RC:TxtMsg", `{"content":"room"}`),
		"", "channelType=PERSON", "a=%zz",
	}
}

// FuzzDecode: any body is either a batch of valid messages and recalls (or
// ignored events), or a 400 *source.Error with an empty batch; never a
// panic.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkBatch(t, Decode, body)
	})
}

// FuzzDecodeHistoryRecord: the same property for history log records.
func FuzzDecodeHistoryRecord(f *testing.F) {
	for _, s := range []string{
		`{"appId":"a","fromUserId":"23","targetId":"24","targetType":1,"GroupId":"","classname":"RC:ImgMsg","content":{"content":"/9j/","imageUri":"https://x.example/a.png"},"dateTime":"2022-01-21 15:40:28.920","timestamp":1642750828920,"msgUID":"BUFE-A62U-32C4-01I2","source":"Websocket","isSensitiveWord":"false"}`,
		`{"fromUserId":"u1","targetId":"g1","targetType":3,"GroupId":"g1","classname":"RC:GrpNtf","content":"{\"operatorUserId\":\"u1\",\"operation\":\"Add\",\"data\":{\"targetUserIds\":[\"u2\"]}}","timestamp":"1642750828920","msgUID":"X"}`,
		`{"fromUserId":"u1","targetId":"u2","targetType":1,"classname":"RC:RcCmd","content":{"messageUId":"Y"},"timestamp":1642750828920,"msgUID":"X"}`,
		`{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkBatch(t, DecodeHistoryRecord, line)
	})
}

func checkBatch(t *testing.T, decode func([]byte) (source.Batch, error), in []byte) {
	b, err := decode(in)
	if err != nil {
		var se *source.Error
		if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
			t.Fatalf("error %v is not a 400 *source.Error", err)
		}
		if len(b.Messages)+len(b.Recalls)+len(b.Ignored) != 0 {
			t.Fatalf("error %v came with a batch %+v", err, b)
		}
		return
	}
	if len(b.Messages)+len(b.Recalls)+len(b.Ignored) == 0 {
		t.Fatal("no error and an empty batch: the event was dropped silently")
	}
	for i := range b.Messages {
		m := &b.Messages[i]
		if err := m.Validate(); err != nil {
			t.Fatalf("invalid message accepted: %v (%+v)", err, m)
		}
		if m.Source != Name || m.SourceID == "" || m.MsgID != message.MsgID(Name, m.SourceID) || m.TID != 0 {
			t.Fatalf("message ids: %+v", m)
		}
		if m.Scene == message.Team && m.GroupID == "" {
			t.Fatalf("team message without a group id: %+v", m)
		}
	}
	for i := range b.Recalls {
		if err := b.Recalls[i].Validate(); err != nil || b.Recalls[i].Source != Name {
			t.Fatalf("invalid recall accepted: %v (%+v)", err, b.Recalls[i])
		}
	}
}

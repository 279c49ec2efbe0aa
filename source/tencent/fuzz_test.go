package tencent

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// seeds are one body per kind, shaped as Tencent documents them.
var seeds = []string{
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"jared","To_Account":"Jonh","MsgSeq":48374,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126","MsgId":"144115233406643804-1727580296-4026038328","OnlineOnlyFlag":1,"SendMsgResult":0,"ErrorInfo":"send msg succeed","UnreadMsgNum":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data"}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMFaceElem","MsgContent":{"Index":1,"Data":"content"}},{"MsgType":"TIMLocationElem","MsgContent":{"Desc":"someinfo","Latitude":29.3406,"Longitude":116.7749}},{"MsgType":"TIMCustomElem","MsgContent":{"Data":"{\"a\":1}","Desc":"notification","Ext":"url","Sound":"dingdong.aiff"}}]}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMSoundElem","MsgContent":{"Url":"https://x/a.m4a","UUID":"1053D4B3","Size":62351,"Second":1,"Download_Flag":2}},{"MsgType":"TIMSoundElem","MsgContent":{"UUID":"1053D4B3","Size":62351,"Second":1}}]}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMImageElem","MsgContent":{"UUID":"1853095_D6104","ImageFormat":1,"ImageInfoArray":[{"Type":1,"Size":1853095,"Width":2448,"Height":3264,"URL":"http://xxx/0"},{"Type":2,"Size":2565240,"Width":0,"Height":0,"URL":"http://xxx/720"},{"Type":3,"Size":12535,"Width":0,"Height":0,"URL":"http://xxx/198"}]}}]}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMFileElem","MsgContent":{"Url":"https://x/f","UUID":"1053D4B3","FileSize":1773552,"FileName":"file:///private/var/Application/tmp/trim.B75D.MOV","Download_Flag":2}}]}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMVideoFileElem","MsgContent":{"VideoUrl":"https://x/v","VideoUUID":"5da3","VideoSize":1194603,"VideoSecond":5,"VideoFormat":"mp4","VideoDownloadFlag":2,"ThumbUrl":"https://x/t","ThumbUUID":"6eda","ThumbSize":13907,"ThumbWidth":720,"ThumbHeight":1280,"ThumbFormat":"JPG","ThumbDownloadFlag":2}}]}`,
	`{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgTime":1557481126,"MsgKey":"k","MsgBody":[{"MsgType":"TIMRelayElem","MsgContent":{"Title":"t","MsgNum":2,"CompatibleText":"c","AbstractList":["a"],"JsonMsgKey":"j"}}]}`,
	`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","Operator_Account":"admin","Random":123456,"MsgSeq":123,"MsgTime":1490686222,"OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data","EventTime":"1670574414123"}`,
	`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#2J4SZEAEL","Type":"Public","From_Account":"jared","MsgSeq":124,"MsgTime":1490686222,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`,
	`{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#2J4SZEAEL","Type":"Public","JoinType":"Apply","Operator_Account":"leckie","NewMemberList":[{"Member_Account":"jared"},{"Member_Account":"tommy"}]}`,
	`{"CallbackCommand":"Group.CallbackAfterMemberExit","GroupId":"@TGS#2J4SZEAEL","Type":"Public","ExitType":"Kicked","Operator_Account":"leckie","ExitMemberList":[{"Member_Account":"jared"}],"EventTime":"1670574414123"}`,
	`{"CallbackCommand":"Group.CallbackAfterMemberExit","GroupId":"@TGS#2J4SZEAEL","Type":"Public","ExitType":"Quit","Operator_Account":"jared","ExitMemberList":[{"Member_Account":"jared"}],"EventTime":1670574414123}`,
	`{"CallbackCommand":"Group.CallbackAfterGroupInfoChanged","GroupId":"@TGS#2J4SZEAEL","Type":"Public","Operator_Account":"leckie","Notification":"NewNotification","EventTime":"1670574414123"}`,
	`{"CallbackCommand":"Group.CallbackAfterGroupDestroyed","GroupId":"@TGS#2J4SZEAEL","Type":"Public","Owner_Account":"leckie","Name":"MyFirstGroup","MemberList":[{"Member_Account":"leckie"},{"Member_Account":"peter"},{"Member_Account":"bob"}],"EventTime":"1670574414123"}`,
	`{"CallbackCommand":"C2C.CallbackAfterMsgWithDraw","From_Account":"jared","To_Account":"Jonh","MsgKey":"48374_2837546_1557481126","UnreadMsgNum":7}`,
	`{"CallbackCommand":"Group.CallbackAfterRecallMsg","Operator_Account":"admin","Type":"Community","GroupId":"1213456","MsgSeqList":[{"MsgSeq":130}],"TopicId":"@TGS#_@TGS#cQVLVHIM62CJ@TOPIC#_TestTopic","EventTime":"1670574414123"}`,
	`{"CallbackCommand":"State.StateChange","EventTime":1670574414123,"Info":{"Action":"Login","To_Account":"x","Reason":"Register"}}`,
	`{"From_Account":"a","To_Account":"b","MsgRandom":2,"MsgSeq":1,"MsgTimestamp":1700000000,"MsgFromPlatform":"Android","ClientIP":"1.2.3.4","MsgKey":"1_2_1700000000","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]},`,
}

// FuzzDecode: no input panics; what Decode or DecodeHistory accepts is valid
// and identified as this source's; what they refuse is a 400 with nothing kept.
func FuzzDecode(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s), "iOS")
	}
	f.Fuzz(func(t *testing.T, body []byte, platform string) {
		check := func(what string, b source.Batch, err error) {
			if err != nil {
				var se *source.Error
				if !errors.As(err, &se) || se.Status != http.StatusBadRequest {
					t.Fatalf("%s: error %v is not a 400", what, err)
				}
				if len(b.Messages)+len(b.Recalls)+len(b.Ignored) != 0 {
					t.Fatalf("%s: a refused body kept %+v", what, b)
				}
				return
			}
			for i := range b.Messages {
				m := &b.Messages[i]
				if err := m.Validate(); err != nil {
					t.Fatalf("%s: accepted an invalid message %+v: %v", what, m, err)
				}
				if m.Source != Name || m.SourceID == "" || m.MsgID != message.MsgID(Name, m.SourceID) || (m.Scene == message.Team && (m.GroupID == "" || m.TID != 0)) {
					t.Fatalf("%s: identity of %+v", what, m)
				}
				var enc message.Encoder
				_ = enc.AppendLine(nil, m)
			}
			for i := range b.Recalls {
				if err := b.Recalls[i].Validate(); err != nil || b.Recalls[i].Source != Name {
					t.Fatalf("%s: recall %+v: %v", what, b.Recalls[i], err)
				}
			}
		}
		b, err := Decode(body, url.Values{"OptPlatform": {platform}}, now)
		check("Decode", b, err)
		b, err = DecodeHistory("C2C", "", body)
		check("DecodeHistory C2C", b, err)
		b, err = DecodeHistory("Group", "@TGS#1", body)
		check("DecodeHistory Group", b, err)
	})
}

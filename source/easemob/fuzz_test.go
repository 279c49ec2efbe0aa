package easemob_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/imbridge/imbridge/source"
	"github.com/imbridge/imbridge/source/easemob"
)

// FuzzDecode: any body is either a batch whose every message and recall is
// valid, or a 400 *source.Error with nothing else; never a panic. The same
// holds for history records, and Verify never panics either.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{pText, pImage, pImage2, pAudio, pVideo, pFile, pLoc, pLocStr, pCustom, pMerged, pUnkn, pNoURL, pBadLoc, pExtStr, pTwo} {
		f.Add([]byte(chat("chat", p)))
		f.Add([]byte(chat("groupchat", p)))
	}
	for _, s := range []string{
		groupOp("JOIN", "@ppAdmin", `{"member":["tst01","tst02"],"type":"DIRECT"}`),
		groupOp("LEAVE", "tst", `{"member":["tst"],"type":"QUIT"}`),
		groupOp("LEAVE", "tst", `{"member":["tst01"],"type":"KICK"}`),
		groupOp("LEAVE", "@ppAdmin", `{"member":["wzy"],"type":"DELETE"}`),
		groupOp("DELETE", "@ppAdmin", ""),
		groupOp("UPDATE", "@ppAdmin", `{"type":"INFO","info":{"description":"描述","avatar":"https://x","title":"t","invite_need_confirm":"true","allow_user_invites":"false"}}`),
		groupOp("UPDATE", "tst", `{"type":"ANNOUNCEMENT","announcement":"公告"}`),
		groupOp("UPDATE", "@ppAdmin", `{"owner":"tst","new_owner":"tst01","type":"OWNER"}`),
		groupOp("ADMIN", "tst01", `{"admin":["tst028"],"type":"ADD"}`),
		groupOp("MUTE", "@ppAdmin", `{"member":["tst01"],"expire_timestamp":1729585614955,"type":"ADD"}`),
		groupOp("UPDATE", "@ppAdmin", `{"mute":true,"type":"MUTE"}`),
		groupOp("BLOCK", "tst", `{"member":["tst02"],"type":"ADD"}`),
		`{"chat_type":"recall","callId":"a_966475585536657404","security":"ea7a","payload":{"ext":{},"ack_message_id":"966475220900644860","bodies":[]},"from":"tst","recall_id":"966475220900644860","to":"170908972023810","eventType":"chat","msg_id":"966475585536657404","timestamp":1642589932646}`,
		`{"chat_type":"read_ack","callId":"a_1","security":"b","payload":{"ack_message_id":"9"},"from":"a","to":"b","msg_id":"1","timestamp":1642589932646}`,
		fmt.Sprintf(`{"msg_id":"5I02W-XX-8278a","timestamp":%d,"direction":"outgoing","chat_type":"groupchat","payload":{"bodies":[{"msg":"hi","type":"txt"}],"ext":{},"from":"a","to":"g1"}}`, ts),
		"", "{", "[]", "null", `{"chat_type":"chat"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		_ = easemob.Verify(body, secret, time.UnixMilli(ts), time.Minute)
		for _, decode := range []func([]byte) (source.Batch, error){easemob.Decode, easemob.DecodeHistory} {
			b, err := decode(body)
			if err != nil {
				var se *source.Error
				if !errors.As(err, &se) || se.Status != 400 {
					t.Fatalf("error %v is not a 400 *source.Error", err)
				}
				if len(b.Messages)+len(b.Recalls)+len(b.Ignored) != 0 {
					t.Fatalf("error with a non-empty batch %+v", b)
				}
				continue
			}
			if len(b.Messages)+len(b.Recalls)+len(b.Ignored) == 0 {
				t.Fatal("no error and nothing decoded, ignored or recalled")
			}
			for _, m := range b.Messages {
				if err := m.Validate(); err != nil {
					t.Fatalf("invalid message accepted: %v\n%+v", err, m)
				}
				if m.Source != easemob.Name || m.SourceID == "" {
					t.Fatalf("message without source ids: %+v", m)
				}
			}
			for _, r := range b.Recalls {
				if err := r.Validate(); err != nil {
					t.Fatalf("invalid recall accepted: %v", err)
				}
			}
		}
	})
}

package tencent_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source/tencent"
)

// The documented Group.CallbackAfterNewMemberJoin example (providers.md §2.8)
// carries no EventTime. The same callback delivered twice (Tencent's
// "retry on timeout", or a replay) must be the same Yunxin message: same
// msgid AND same createTime (注1's identity), so that the retry is
// de-duplicated by ingest and overwritten by Yunxin. Today createTime is the
// receipt time while the SourceID/msgid come from a hash of the body: the
// retry gets the same msgid with another createTime, i.e. a second, distinct
// 101 line in Yunxin.
func TestRegressEventWithoutEventTimeIsStableAcrossRetries(t *testing.T) {
	body := []byte(`{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#2J4SZEAEL","Type":"Public",
 "JoinType":"Apply","Operator_Account":"leckie","NewMemberList":[{"Member_Account":"jared"},{"Member_Account":"tommy"}]}`)
	q := url.Values{"CallbackCommand": {tencent.CmdNewMemberJoin}}
	first, err := tencent.Decode(body, q, time.UnixMilli(1700000000000))
	if err != nil {
		t.Fatal(err)
	}
	retry, err := tencent.Decode(body, q, time.UnixMilli(1700000002500)) // 2.5 s later
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Messages) != 2 || len(retry.Messages) != 2 {
		t.Fatalf("got %d and %d lines, want 2 each", len(first.Messages), len(retry.Messages))
	}
	for i := range first.Messages {
		a, b := &first.Messages[i], &retry.Messages[i]
		if a.MsgID != b.MsgID {
			t.Fatalf("msgid differs between deliveries: %d vs %d", a.MsgID, b.MsgID)
		}
		if a.Identity() != b.Identity() || a.Identity().DedupKey(tencent.Name) != b.Identity().DedupKey(tencent.Name) {
			t.Errorf("line %d: same msgid %d but createTime %d vs %d: the retry is stored and served as a second %v notification",
				i, a.MsgID, a.CreateTime, b.CreateTime, message.TypeTeamInvite)
		}
	}
}

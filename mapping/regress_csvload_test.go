package mapping_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/store"
)

// TestRegressTeamConflictCountsMessagesNotCopies: the refusal of a team
// mapping change names how many messages were rendered under the old tid;
// a message re-issued (here: its image URL got a mapping) is one message,
// however many copies of it are stored.
func TestRegressTeamConflictCountsMessagesNotCopies(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	img := message.Message{SourceID: "ti-1", GroupID: "@TGS#9", Scene: message.Team, Type: message.TypeImage,
		MsgID: message.MsgID("tencent", "ti-1"), From: "a", CreateTime: 1700000000000, ClientType: message.IOS,
		Attach: &message.Image{URL: "https://old/t1.jpg", Ext: "jpg"}}
	r.ingest(t, "tencent", img)
	waitFor(t, "the held row", func() bool { return len(r.rows(t, "ti-1")) == 1 })
	for _, step := range []struct {
		what string
		put  func() (uint64, error)
		rows int
	}{
		{"team mapping releases it", func() (uint64, error) {
			return r.st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#9", TID: 77}})
		}, 2},
		{"URL mapping re-issues it", func() (uint64, error) {
			return r.st.PutURLMappings(ctx, []store.URLMapping{{Old: "https://old/t1.jpg", New: "https://nim/t1.jpg"}})
		}, 3},
	} {
		v, err := step.put()
		if err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
		waitFor(t, step.what, func() bool { return r.ri.Done() >= v && len(r.rows(t, "ti-1")) == step.rows })
	}
	_, err := r.st.PutTeamMappings(ctx, []store.TeamMapping{{Source: "tencent", GroupID: "@TGS#9", TID: 78}})
	if !errors.Is(err, store.ErrMappingConflict) || !strings.Contains(err.Error(), "(1 messages rendered under it") {
		t.Fatalf("remapping: %v\nwant a conflict counting 1 message (two rendered copies of one message)", err)
	}
}

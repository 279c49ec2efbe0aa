package message

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// canonicalSamples are every document example plus the provider-only facts
// (group id, recall key, tinfo without a tid) the line does not carry.
func canonicalSamples(tb testing.TB) []Message {
	tb.Helper()
	var out []Message
	for _, ex := range loadExamples(tb) {
		m, err := DecodeLine([]byte(ex.line))
		if err != nil {
			tb.Fatalf("%s: %v", ex.name, err)
		}
		out = append(out, m)
	}
	group := Message{Source: "tencent", SourceID: "144115198244471585_1", RecallKey: "@TGS#1ABC/77",
		GroupID: "@TGS#1ABC", Scene: Team, Type: TypeTeamUpdate, MsgID: MsgID("tencent", "x"), From: "op",
		CreateTime: 1600000000000, ClientType: Android}
	group.TInfo.SetString(TInfoIntro, "介绍")
	group.TInfo.SetInt(TInfoMute, 1)
	out = append(out, group)
	img := Message{Source: "easemob", SourceID: "9911", GroupID: "g1", Scene: Team, Type: TypeImage, MsgID: 9911,
		From: "a", CreateTime: 1600000000000, ClientType: IOS, Ext: `{"k":"v"}`,
		Attach: &Image{Name: "n.jpg", URL: "https://old/n.jpg", Ext: "jpg", W: 1, H: 2, Size: 3}}
	return append(out, img, Message{Source: "rongcloud", SourceID: "596E-P5PG", Scene: P2P, Type: TypeCustom, MsgID: 1,
		From: "a", To: "b", CreateTime: 1600000000000, ClientType: Web, Attach: CustomFromString("plain")})
}

func TestBinaryRoundTripsEveryKind(t *testing.T) {
	for _, m := range canonicalSamples(t) {
		b := m.AppendBinary(nil)
		if len(b) > m.BinarySizeHint() {
			t.Errorf("%v type %d: %d bytes, hint %d", m.Scene, m.Type, len(b), m.BinarySizeHint())
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("type %d: %v", m.Type, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("type %d round trip:\n got %#v\nwant %#v", m.Type, got, m)
		}
	}
}

func TestColumnsRoundTripEveryAttachAndTInfo(t *testing.T) {
	for _, m := range canonicalSamples(t) {
		a, err := AttachFromColumn(m.Type, string(AttachColumn(nil, m.Attach)))
		if err != nil {
			t.Fatalf("type %d attach: %v", m.Type, err)
		}
		if !reflect.DeepEqual(a, m.Attach) {
			t.Errorf("type %d attach: got %#v want %#v", m.Type, a, m.Attach)
		}
		ti, err := TInfoFromColumn(string(TInfoColumn(nil, &m.TInfo)))
		if err != nil || ti != m.TInfo {
			t.Errorf("type %d tinfo: got %#v (%v) want %#v", m.Type, ti, err, m.TInfo)
		}
	}
}

func TestWithMediaURLLeavesTheOriginal(t *testing.T) {
	orig := &Image{URL: "https://old/a.jpg", Ext: "jpg"}
	mapped := WithMediaURL(orig, "https://new/a.jpg")
	if u, _ := MediaURL(mapped); u != "https://new/a.jpg" || orig.URL != "https://old/a.jpg" {
		t.Fatalf("mapped %q, original now %q", u, orig.URL)
	}
	if _, ok := MediaURL(&Location{Lng: "1", Lat: "2"}); ok {
		t.Fatal("a location has no media URL")
	}
}

func TestValidateProviderGroupMessages(t *testing.T) {
	base := Message{Scene: Team, Type: TypeText, Body: "hi", From: "a", CreateTime: 1600000000000, ClientType: Web}
	for _, test := range []struct {
		name    string
		groupID string
		tid     int64
		ok      bool
	}{
		{"native tid", "", 7, true},
		{"provider group, tid from the map later", "@TGS#1", 0, true},
		{"both", "@TGS#1", 7, false},
		{"neither", "", 0, false},
	} {
		m := base
		m.GroupID, m.TID = test.groupID, test.tid
		if err := m.Validate(); (err == nil) != test.ok {
			t.Errorf("%s: Validate = %v", test.name, err)
		}
	}
}

// FuzzUnmarshalBinary: a damaged record is an ErrBadBinary, never a panic,
// and whatever decodes encodes back to the same bytes.
func FuzzUnmarshalBinary(f *testing.F) {
	for _, m := range canonicalSamples(f) {
		f.Add(m.AppendBinary(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{canonicalVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrBadBinary) {
				t.Fatalf("error %v is not ErrBadBinary", err)
			}
			return
		}
		if again := m.AppendBinary(nil); !bytes.Equal(again, b) && m.TInfo.set < 1<<11 {
			var m2 Message
			if err := m2.UnmarshalBinary(again); err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("re-encoding changed the message: %v", err)
			}
		}
	})
}

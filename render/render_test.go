package render_test

import (
	"testing"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/render"
)

// maps is a fixed team and URL map.
type maps struct {
	teams map[string]int64
	urls  map[string]string
}

func (m maps) TID(source, group string) (int64, bool) {
	t, ok := m.teams[source+"/"+group]
	return t, ok
}
func (m maps) URL(old string) (string, bool) { u, ok := m.urls[old]; return u, ok }

func TestLine(t *testing.T) {
	current := maps{
		teams: map[string]int64{"tencent/@TGS#1": 900},
		urls:  map[string]string{"https://old/a.jpg": "https://nim/a.jpg"},
	}
	image := func(m message.Message) message.Message {
		m.Type, m.Body = message.TypeImage, ""
		m.Attach = &message.Image{URL: "https://old/a.jpg", Ext: "jpg"}
		return m
	}
	p2p := message.Message{Source: "native", Scene: message.P2P, Type: message.TypeText, MsgID: 1, From: "a", To: "b",
		CreateTime: 1600000000000, ClientType: message.IOS, Body: "hi"}
	native := message.Message{Source: "native", Scene: message.Team, Type: message.TypeText, MsgID: 2, From: "a", TID: 7,
		CreateTime: 1600000000000, ClientType: message.Web, Body: "hi"}
	group := native
	group.Source, group.TID, group.GroupID = "tencent", 0, "@TGS#1"
	unmapped := group
	unmapped.GroupID = "@TGS#2"
	update := group
	update.Type, update.Body = message.TypeTeamUpdate, ""
	update.TInfo.SetString(message.TInfoIntro, "新")
	otherSource := group
	otherSource.Source = "easemob"

	for _, test := range []struct {
		name string
		m    message.Message
		want string
		out  render.Outcome
	}{
		{"p2p text is the line as is", p2p,
			`{"data":{"ext":"","clientType":"2","createTime":1600000000000,"msgid":1,"from":"a","to":"b","body":"hi"},"type":0}`,
			render.Outcome{}},
		{"native tid is not mapped", native,
			`{"data":{"ext":"","createTime":1600000000000,"clientType":16,"msgid":2,"accid":"a","body":"hi","tid":7},"type":0}`,
			render.Outcome{TID: 7}},
		{"provider group gets its mapped tid", group,
			`{"data":{"ext":"","createTime":1600000000000,"clientType":16,"msgid":2,"accid":"a","body":"hi","tid":900},"type":0}`,
			render.Outcome{TID: 900}},
		{"tinfo carries the mapped tid too", update,
			`{"data":{"createTime":1600000000000,"clientType":16,"tinfo":{"14":"新","tid":900},"msgid":2,"accid":"a","tid":900},"type":107}`,
			render.Outcome{TID: 900}},
		{"an unmapped group is held", unmapped, "", render.Outcome{Held: true}},
		{"the team map is per source", otherSource, "", render.Outcome{Held: true}},
		{"a mapped media URL is replaced", image(p2p),
			`{"data":{"ext":"","clientType":"2","createTime":1600000000000,"msgid":1,"from":"a","to":"b","attach":"{\"ext\":\"jpg\",\"url\":\"https://nim/a.jpg\"}"},"type":1}`,
			render.Outcome{MediaURL: "https://old/a.jpg", URLMapped: true}},
		{"without a mapping the old URL stays", image(p2p),
			`{"data":{"ext":"","clientType":"2","createTime":1600000000000,"msgid":1,"from":"a","to":"b","attach":"{\"ext\":\"jpg\",\"url\":\"https://old/a.jpg\"}"},"type":1}`,
			render.Outcome{MediaURL: "https://old/a.jpg"}},
	} {
		t.Run(test.name, func(t *testing.T) {
			var maps render.Maps = current
			if test.name == "without a mapping the old URL stays" {
				maps = render.NoMaps{}
			}
			var enc message.Encoder
			before := test.m
			got, out := render.Line([]byte("prefix"), &enc, &test.m, maps)
			if string(got) != "prefix"+test.want {
				t.Errorf("line\n got %s\nwant prefix%s", got, test.want)
			}
			if out != test.out {
				t.Errorf("outcome %+v, want %+v", out, test.out)
			}
			if u, _ := message.MediaURL(test.m.Attach); u != "" && u != "https://old/a.jpg" || test.m.TID != before.TID {
				t.Error("rendering changed the canonical message")
			}
		})
	}
}

package ingest_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/imbridge/imbridge/ingest"
	"github.com/imbridge/imbridge/message"
)

func TestWireRoundTrip(t *testing.T) {
	img := text("2", 2)
	img.Type, img.Body = message.TypeImage, ""
	img.Attach = &message.Image{Name: "a.jpg", MD5: "m", URL: "https://old/a.jpg", Ext: "jpg", W: 1, H: 2, Size: 3}
	team := text("3", 3)
	team.Scene, team.To, team.GroupID = message.Team, "", "@TGS#1"
	for _, test := range []struct {
		name    string
		msgs    []message.Message
		recalls []message.Recall
	}{
		{"empty", nil, nil},
		{"messages", []message.Message{text("1", 1), img, team}, nil},
		{"recalls only", nil, []message.Recall{{Source: "tencent", Key: "k", Operator: "a", Time: 5}}},
		{"both", []message.Message{text("1", 1)}, []message.Recall{{Source: "tencent", Key: "k", ID: "r", Operator: "a", Time: 5}}},
	} {
		t.Run(test.name, func(t *testing.T) {
			b := ingest.AppendWire(nil, test.msgs, test.recalls)
			msgs, recalls, err := ingest.DecodeWire(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(test.msgs) || len(recalls) != len(test.recalls) {
				t.Fatalf("decoded %d messages, %d recalls; want %d, %d", len(msgs), len(recalls), len(test.msgs), len(test.recalls))
			}
			for i := range msgs {
				if !reflect.DeepEqual(msgs[i], test.msgs[i]) {
					t.Errorf("message %d: %+v, want %+v", i, msgs[i], test.msgs[i])
				}
			}
			for i := range recalls {
				if recalls[i] != test.recalls[i] {
					t.Errorf("recall %d: %+v, want %+v", i, recalls[i], test.recalls[i])
				}
			}
		})
	}
}

func TestWireRefusesBadBatches(t *testing.T) {
	good := ingest.AppendWire(nil, []message.Message{text("1", 1)}, []message.Recall{{Source: "s", Key: "k", Time: 1}})
	recallFirst := ingest.AppendWire(nil, nil, []message.Recall{{Source: "s", Key: "k", Time: 1}})
	recallFirst = append(recallFirst, good[4:]...)
	for _, test := range []struct {
		name string
		body []byte
	}{
		{"no magic", []byte("{\"msgid\":1}")},
		{"truncated", good[:len(good)-3]},
		{"unknown kind", append(append([]byte{}, good...), 9, 0)},
		{"length past the end", append(append([]byte{}, good...), 1, 0xff, 0x01)},
		{"message after a recall", recallFirst},
		{"message body garbage", append([]byte("IMB1"), 1, 2, 0xff, 0xff)},
	} {
		t.Run(test.name, func(t *testing.T) {
			if _, _, err := ingest.DecodeWire(test.body); !errors.Is(err, ingest.ErrBadWire) {
				t.Fatalf("err = %v, want ErrBadWire", err)
			}
		})
	}
}

// FuzzDecodeWire: the admin import route decodes bodies from the network;
// whatever it accepts encodes back to the same batch.
func FuzzDecodeWire(f *testing.F) {
	f.Add(ingest.AppendWire(nil, []message.Message{text("1", 1)}, []message.Recall{{Source: "s", Key: "k", Time: 1}}))
	f.Add([]byte("IMB1"))
	f.Add([]byte("IMB1\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, recalls, err := ingest.DecodeWire(b)
		if err != nil {
			return
		}
		again, _, err := ingest.DecodeWire(ingest.AppendWire(nil, msgs, recalls))
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-encoding an accepted batch: %v (%d of %d messages)", err, len(again), len(msgs))
		}
	})
}

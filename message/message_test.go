package message

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

type example struct{ name, line string }

func loadExamples(tb testing.TB) []example {
	tb.Helper()
	f, err := os.Open("testdata/examples.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []example
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, body, ok := strings.Cut(line, "\t")
		if !ok {
			tb.Fatalf("bad example line %q", line)
		}
		out = append(out, example{name, body})
	}
	return out
}

// normalize turns a line into plain JSON values with the types imbridge
// writes: createTime a number, clientType a string in p2p and a number in
// team, media attach an object (it travels as a JSON string), tinfo's int
// keys numbers.
func normalize(tb testing.TB, line string) map[string]any {
	tb.Helper()
	var v map[string]any
	dec := json.NewDecoder(strings.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("%s: %v", line, err)
	}
	data := v["data"].(map[string]any)
	asNumber := func(x any) json.Number {
		switch t := x.(type) {
		case string:
			return json.Number(t)
		case json.Number:
			return t
		}
		tb.Fatalf("not a number: %v", x)
		return ""
	}
	data["createTime"] = asNumber(data["createTime"])
	if _, team := data["tid"]; team {
		data["clientType"] = asNumber(data["clientType"])
	} else {
		data["clientType"] = string(asNumber(data["clientType"]))
	}
	if s, ok := data["attach"].(string); ok && strings.HasPrefix(s, "{") {
		var obj map[string]any
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		if err := d.Decode(&obj); err != nil {
			tb.Fatalf("attach %s: %v", s, err)
		}
		data["attach"] = obj
	}
	if ti, ok := data["tinfo"].(map[string]any); ok {
		for k, x := range ti {
			if k != "14" && k != "15" && k != "18" && k != "19" && k != "20" {
				ti[k] = asNumber(x)
			}
		}
	}
	return v
}

// byteIdentical are the examples the document already writes in imbridge's
// normalized form; the others differ only in the types normalize converts
// (and, for the custom example, whitespace).
var notByteIdentical = map[string]string{
	"p2p_location":       "the document quotes createTime",
	"p2p_custom":         "the document quotes createTime and puts spaces after colons",
	"team_107_join_mode": `the document writes tinfo "16" (an int key) as "0"`,
}

func TestDocumentExamples(t *testing.T) {
	var enc Encoder
	examples := loadExamples(t)
	if len(examples) != 21 {
		t.Fatalf("%d examples, the document has 21", len(examples))
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			m, err := DecodeLine([]byte(ex.line))
			if err != nil {
				t.Fatalf("DecodeLine: %v", err)
			}
			got := string(enc.AppendLine(nil, &m))
			golden := filepath.Join("testdata", "golden", ex.name+".line")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./message -update)", err)
			}
			if got+"\n" != string(want) {
				t.Errorf("line differs from %s\n got: %s\nwant: %s", golden, got, want)
			}
			if !reflect.DeepEqual(normalize(t, got), normalize(t, ex.line)) {
				t.Errorf("not equal as JSON to the document's example\n got: %s\n doc: %s", got, ex.line)
			}
			if why, ok := notByteIdentical[ex.name]; !ok && got != ex.line {
				t.Errorf("not byte-identical to the document\n got: %s\n doc: %s", got, ex.line)
			} else if ok && got == ex.line {
				t.Errorf("byte-identical, but listed as differing because %s", why)
			}
			// Re-decoding the output gives the same message and the same bytes.
			m2, err := DecodeLine([]byte(got))
			if err != nil {
				t.Fatalf("output does not decode: %v", err)
			}
			if again := string(enc.AppendLine(nil, &m2)); again != got {
				t.Errorf("not stable:\n%s\n%s", got, again)
			}
		})
	}
}

func TestNotificationRoles(t *testing.T) {
	for _, test := range []struct {
		line          string
		accid, accid2 string
	}{
		// 101 "B 被 A 拉进群": accid is the member who joined (B), accid2 who pulled them in (A).
		{`{"data":{"accid2":"aaa","createTime":1511513944871,"clientType":16,"msgid":3,"accid":"bbb","tid":1},"type":101}`, "bbb", "aaa"},
		// 102 "A 把 B 踢出群": accid is the operator (A), accid2 the member acted on (B).
		{`{"data":{"accid2":"bbb","createTime":1511513944871,"clientType":16,"msgid":4,"accid":"aaa","tid":1},"type":102}`, "aaa", "bbb"},
	} {
		m, err := DecodeLine([]byte(test.line))
		if err != nil {
			t.Fatal(err)
		}
		if m.From != test.accid || m.Accid2 != test.accid2 {
			t.Errorf("type %d: accid=%q accid2=%q, want %q %q", m.Type, m.From, m.Accid2, test.accid, test.accid2)
		}
	}
}

func TestChineseIsUnescaped(t *testing.T) {
	m := Message{Scene: P2P, Type: TypeText, MsgID: 1, From: "aaa", To: "bbb", CreateTime: 1513685265481,
		ClientType: IOS, Body: "测试 \"quoted\"\n<b>&", Ext: "扩展"}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	var enc Encoder
	got := string(enc.AppendLine(nil, &m))
	want := `{"data":{"ext":"扩展","clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb","body":"测试 \"quoted\"\n<b>&"},"type":0}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestEncodeEveryKind(t *testing.T) {
	base := func(scene Scene, typ Type) Message {
		m := Message{Scene: scene, Type: typ, MsgID: 42, From: "aaa", CreateTime: 1600000000000, ClientType: Web}
		if scene == P2P {
			m.To = "bbb"
		} else {
			m.TID = 7
		}
		return m
	}
	with := func(m Message, f func(*Message)) Message { f(&m); return m }
	for _, test := range []struct {
		name string
		m    Message
		want string
	}{
		{"p2p file with name and md5", with(base(P2P, TypeFile), func(m *Message) {
			m.Attach = &File{Name: "a.pdf", MD5: "abc", URL: "https://x/a.pdf", Ext: "pdf", Size: 10}
		}), `{"data":{"ext":"","clientType":"16","createTime":1600000000000,"msgid":42,"from":"aaa","to":"bbb","attach":"{\"size\":10,\"ext\":\"pdf\",\"name\":\"a.pdf\",\"md5\":\"abc\",\"url\":\"https://x/a.pdf\"}"},"type":6}`},
		{"team video", with(base(Team, TypeVideo), func(m *Message) {
			m.Attach = &Video{URL: "https://x/v.mp4", Ext: "mp4", Dur: 5000, W: 720, H: 1280, Size: 99}
		}), `{"data":{"ext":"","createTime":1600000000000,"clientType":16,"msgid":42,"accid":"aaa","attach":"{\"h\":1280,\"w\":720,\"size\":99,\"ext\":\"mp4\",\"dur\":5000,\"url\":\"https://x/v.mp4\"}","tid":7},"type":3}`},
		{"image with unknown size", with(base(P2P, TypeImage), func(m *Message) {
			m.Attach = &Image{URL: "https://x/i", Ext: ""}
		}), `{"data":{"ext":"","clientType":"16","createTime":1600000000000,"msgid":42,"from":"aaa","to":"bbb","attach":"{\"ext\":\"\",\"url\":\"https://x/i\"}"},"type":1}`},
		{"team location", with(base(Team, TypeLocation), func(m *Message) {
			m.Attach = &Location{Title: "北京", Lng: "116.3", Lat: "39.9"}
		}), `{"data":{"ext":"","createTime":1600000000000,"clientType":16,"msgid":42,"accid":"aaa","attach":"{\"lng\":\"116.3\",\"title\":\"北京\",\"lat\":\"39.9\"}","tid":7},"type":4}`},
		{"custom string", with(base(P2P, TypeCustom), func(m *Message) {
			m.Attach = CustomFromString("plain text")
		}), `{"data":{"attach":"plain text","clientType":"16","createTime":1600000000000,"ext":"","msgid":42,"from":"aaa","to":"bbb"},"type":100}`},
		{"custom object from a string", with(base(Team, TypeCustom), func(m *Message) {
			m.Attach = CustomFromString(`{"b": 1, "a": "\u6d4b"}`)
		}), `{"data":{"ext":"","createTime":1600000000000,"clientType":16,"msgid":42,"accid":"aaa","attach":{"b":1,"a":"测"},"tid":7},"type":100}`},
		{"tinfo in key order with ints", with(base(Team, TypeTeamUpdate), func(m *Message) {
			m.TInfo.SetString(TInfoIcon, "https://x/icon")
			m.TInfo.SetInt(TInfoJoinMode, 2)
			m.TInfo.SetString(TInfoIntro, "介绍")
		}), `{"data":{"createTime":1600000000000,"clientType":16,"tinfo":{"14":"介绍","16":2,"20":"https://x/icon","tid":7},"msgid":42,"accid":"aaa","tid":7},"type":107}`},
	} {
		t.Run(test.name, func(t *testing.T) {
			if err := test.m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			var enc Encoder
			if got := string(enc.AppendLine(nil, &test.m)); got != test.want {
				t.Errorf("got  %s\nwant %s", got, test.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	const p2p = `"clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb"`
	const team = `"clientType":16,"createTime":1513685265481,"msgid":1,"accid":"aaa","tid":1`
	for _, test := range []struct {
		name, line, want string
	}{
		{"not json", `{"data":`, "line: "},
		{"no data", `{"type":0}`, "data: required"},
		{"no type", `{"data":{` + p2p + `,"body":"x"}}`, "type: required"},
		{"unknown type", `{"data":{` + p2p + `,"body":"x"},"type":5}`, "type: 5 is not a documented type"},
		{"unknown field", `{"data":{` + p2p + `,"body":"x","nick":"n"},"type":0}`, `data: unknown field "nick"`},
		{"team without tid", `{"data":{"clientType":16,"createTime":1513685265481,"msgid":1,"accid":"aaa","body":"x"},"type":0}`, "data.tid: required for team messages"},
		{"tid zero", `{"data":{"clientType":16,"createTime":1513685265481,"msgid":1,"accid":"aaa","tid":0,"body":"x"},"type":0}`, "data.tid: required for team messages"},
		{"p2p without to", `{"data":{"clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","body":"x"},"type":0}`, "data.to: required"},
		{"empty from", `{"data":{"clientType":"2","createTime":1513685265481,"msgid":1,"from":"","to":"b","body":"x"},"type":0}`, "data.from: required"},
		{"seconds", `{"data":{"clientType":"2","createTime":1513685265,"msgid":1,"from":"a","to":"b","body":"x"},"type":0}`, "data.createTime: 1513685265 is not epoch milliseconds"},
		{"float msgid", `{"data":{"clientType":"2","createTime":1513685265481,"msgid":1.5,"from":"a","to":"b","body":"x"},"type":0}`, "data.msgid: 1.5 is not an integer"},
		{"msgid too big", `{"data":{"clientType":"2","createTime":1513685265481,"msgid":9223372036854775808,"from":"a","to":"b","body":"x"},"type":0}`, "data.msgid:"},
		{"negative msgid", `{"data":{"clientType":"2","createTime":1513685265481,"msgid":-1,"from":"a","to":"b","body":"x"},"type":0}`, "data.msgid: must not be negative"},
		{"client type", `{"data":{"clientType":"3","createTime":1513685265481,"msgid":1,"from":"a","to":"b","body":"x"},"type":0}`, "data.clientType: 3 is not one of"},
		{"no client type", `{"data":{"createTime":1513685265481,"msgid":1,"from":"a","to":"b","body":"x"},"type":0}`, "data.clientType: required"},
		{"empty body", `{"data":{` + p2p + `,"body":""},"type":0}`, "data.body: required for type 0"},
		{"text with attach", `{"data":{` + p2p + `,"body":"x","attach":"{}"},"type":0}`, "data.attach: not allowed for type 0"},
		{"image without attach", `{"data":{` + p2p + `},"type":1}`, "data.attach: required for type 1"},
		{"image without url", `{"data":{` + p2p + `,"attach":"{\"w\":1}"},"type":1}`, "data.attach.url: required for type 1"},
		{"audio with w", `{"data":{` + p2p + `,"attach":{"url":"u","w":1}},"type":2}`, `data.attach.w: not a field of type 2`},
		{"attach garbage", `{"data":{` + p2p + `,"attach":"not json"},"type":1}`, "data.attach: must be a JSON object"},
		{"attach unknown key", `{"data":{` + p2p + `,"attach":{"url":"u","colour":1}},"type":1}`, `data.attach: unknown field "colour"`},
		{"bad size", `{"data":{` + p2p + `,"attach":{"url":"u","size":"big"}},"type":6}`, `data.attach.size: "big" is not an integer`},
		{"location lat", `{"data":{` + p2p + `,"attach":{"title":"t","lng":"116.6","lat":"north"}},"type":4}`, "data.attach.lat:"},
		{"location range", `{"data":{` + p2p + `,"attach":{"title":"t","lng":"216.6","lat":"1"}},"type":4}`, "data.attach.lng: 216.6 is out of range"},
		{"p2p notification", `{"data":{` + p2p + `},"type":101}`, "type: 101 is a team notification"},
		{"101 without accid2", `{"data":{` + team + `},"type":101}`, "data.accid2: required"},
		{"109 with accid2", `{"data":{` + team + `,"accid2":"b"},"type":109}`, "data.accid2: not allowed for type 109"},
		{"notification with ext", `{"data":{` + team + `,"accid2":"b","ext":"x"},"type":102}`, "data: type 102 carries no body, attach or ext"},
		{"107 without tinfo", `{"data":{` + team + `},"type":107}`, "data.tinfo: type 107 needs"},
		{"tinfo undocumented key", `{"data":{` + team + `,"tinfo":{"30":"x","tid":1}},"type":107}`, `data.tinfo: key "30" is not documented`},
		{"tinfo tid mismatch", `{"data":{` + team + `,"tinfo":{"14":"x","tid":2}},"type":107}`, "data.tinfo.tid: 2 differs from data.tid 1"},
		{"tinfo without tid", `{"data":{` + team + `,"tinfo":{"14":"x"}},"type":107}`, "data.tinfo.tid: required"},
		{"tinfo int as text", `{"data":{` + team + `,"tinfo":{"16":"open","tid":1}},"type":107}`, `data.tinfo.16: "open" is not an integer`},
		{"tinfo out of range", `{"data":{` + team + `,"tinfo":{"17":5,"tid":1}},"type":107}`, "data.tinfo.17: 5 is not a documented value"},
		{"tinfo string as int", `{"data":{` + team + `,"tinfo":{"14":5,"tid":1}},"type":107}`, "data.tinfo.14: 5 is not a string"},
		{"tinfo on 102", `{"data":{` + team + `,"accid2":"b","tinfo":{"14":"x","tid":1}},"type":102}`, "data.tinfo: only type 107"},
		{"from in team", `{"data":{` + team + `,"from":"x","body":"b"},"type":0}`, "data.from: not allowed in team messages"},
		{"bad utf8", "{\"data\":{" + p2p + ",\"body\":\"\xff\"},\"type\":0}", "line: is not valid UTF-8"},
		{"trailing", `{"data":{` + p2p + `,"body":"x"},"type":0} {}`, "line: trailing data"},
	} {
		t.Run(test.name, func(t *testing.T) {
			m, err := DecodeLine([]byte(test.line))
			if err == nil {
				t.Fatalf("decoded %+v, want error %q", m, test.want)
			}
			if !strings.HasPrefix(err.Error(), test.want) {
				t.Errorf("error %q, want prefix %q", err, test.want)
			}
		})
	}
}

func TestMsgID(t *testing.T) {
	for _, test := range []struct {
		source, id string
		want       int64
	}{
		{"easemob", "966475585536657404", 966475585536657404},
		{"native", "0", 0},
		{"native", "9223372036854775807", 9223372036854775807},
	} {
		if got := MsgID(test.source, test.id); got != test.want {
			t.Errorf("MsgID(%q, %q) = %d, want %d", test.source, test.id, got, test.want)
		}
	}
	hashed := []struct{ source, id string }{
		{"rongcloud", "596E-P5PG-4FS2-7OJK"},
		{"easemob", "5I02W-XX-8278a"},
		{"easemob", "0123"},                // leading zero: not canonical, so hashed
		{"easemob", "9223372036854775808"}, // past 63 bits
		{"easemob", "-5"},
		{"easemob", ""},
	}
	seen := map[int64]string{}
	for _, h := range hashed {
		v := MsgID(h.source, h.id)
		if v < 0 {
			t.Errorf("MsgID(%q, %q) = %d is negative", h.source, h.id, v)
		}
		if v != MsgID(h.source, h.id) {
			t.Errorf("MsgID(%q, %q) is not stable", h.source, h.id)
		}
		if prev, dup := seen[v]; dup {
			t.Errorf("MsgID collision between %s and %s", prev, h.id)
		}
		seen[v] = h.id
	}
	if MsgID("rongcloud", "X") == MsgID("easemob", "X") {
		t.Error("the source is not part of the hash")
	}
	// Pinned values: changing the hash would change msgids already delivered.
	if got := MsgID("rongcloud", "596E-P5PG-4FS2-7OJK"); got != pinnedRongID {
		t.Errorf("MsgID(rongcloud, 596E-P5PG-4FS2-7OJK) = %d, was %d: msgids must never change", got, pinnedRongID)
	}
}

func TestDedupKey(t *testing.T) {
	a := Identity{Scene: P2P, MsgID: 1, From: "ab", To: "c", CreateTime: 5}
	b := Identity{Scene: P2P, MsgID: 1, From: "a", To: "bc", CreateTime: 5}
	if a.DedupKey("native") == b.DedupKey("native") {
		t.Error("field boundaries are not part of the key")
	}
	if a.DedupKey("native") == a.DedupKey("easemob") {
		t.Error("source is not part of the key")
	}
	if a.DedupKey("native") != a.DedupKey("native") {
		t.Error("key is not stable")
	}
}

func TestCanonicalJSON(t *testing.T) {
	for in, want := range map[string]string{
		`{ "b" : [1, 2.50, {"x":null}], "a":"\u6d4b\t" }`: `{"b":[1,2.50,{"x":null}],"a":"测\t"}`,
		`"<&>"`: `"<&>"`,
		`true`:  `true`,
	} {
		got, err := CanonicalJSON(nil, []byte(in))
		if err != nil || string(got) != want {
			t.Errorf("CanonicalJSON(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{`{"a":}`, `{"a":1} x`, ``, `[1,`} {
		if _, err := CanonicalJSON(nil, []byte(in)); err == nil {
			t.Errorf("CanonicalJSON(%q) succeeded", in)
		}
	}
}

func FuzzDecodeLine(f *testing.F) {
	for _, ex := range loadExamples(f) {
		f.Add([]byte(ex.line))
	}
	for _, s := range []string{`{}`, `[]`, `{"data":{},"type":0}`, `{"data":{"attach":"{\"x\":1}"},"type":1}`,
		`{"data":{"clientType":16,"createTime":1511513944871,"msgid":9,"accid":"a","tid":1,"tinfo":{"16":"1","tid":"1"}},"type":107}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := DecodeLine(raw)
		shared, serr := DecodeLineShared(bytes.Clone(raw))
		if !reflect.DeepEqual(shared, m) || (serr == nil) != (err == nil) {
			t.Fatalf("DecodeLineShared differs from DecodeLine:\n%+v, %v\n%+v, %v", shared, serr, m, err)
		}
		if err != nil {
			if !reflect.DeepEqual(m, Message{}) {
				t.Fatalf("error %v returned a partial message %+v", err, m)
			}
			return
		}
		var enc Encoder
		line := enc.AppendLine(nil, &m)
		if !json.Valid(line) {
			t.Fatalf("encoded line is not JSON: %s", line)
		}
		m2, err := DecodeLine(line)
		if err != nil {
			t.Fatalf("encoded line %s does not decode: %v", line, err)
		}
		if again := enc.AppendLine(nil, &m2); !bytes.Equal(again, line) {
			t.Fatalf("encoding is not stable:\n%s\n%s", line, again)
		}
	})
}

func BenchmarkAppendLineText(b *testing.B) {
	benchmarkAppendLine(b, `{"data":{"ext":"ext..","clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb","body":"测试一条比较长的中文消息 with some ASCII too"},"type":0}`)
}

func BenchmarkAppendLineImage(b *testing.B) { benchmarkAppendLine(b, loadExamples(b)[1].line) }

// benchmarkAppendLine encodes the message of line into a reused buffer.
func benchmarkAppendLine(b *testing.B, line string) {
	m, err := DecodeLine([]byte(line))
	if err != nil {
		b.Fatal(err)
	}
	var enc Encoder
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.AppendLine(buf[:0], &m)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecodeLine(b *testing.B) {
	raw := []byte(loadExamples(b)[0].line)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeLine(raw); err != nil {
			b.Fatal(err)
		}
	}
}

const pinnedRongID = 3610646686410390146

// FuzzDecoderAgreesWithReference checks the scanner-based decoder against the
// encoding/json one it replaced: it may refuse more (field names are matched
// exactly, duplicate keys are refused) but never accepts a line the reference
// refuses, nor decodes one differently.
func FuzzDecoderAgreesWithReference(f *testing.F) {
	for _, ex := range loadExamples(f) {
		f.Add([]byte(ex.line))
	}
	for _, s := range []string{`{"data":{"clientType":"2","createTime":1513685265481,"msgid":1,"from":"a\u00e9\ud83d\ude00","to":"b","body":"x\"\\\/\b\f\n\r\t"},"type":0}`,
		`{"type":0,"data":{"ext":{"k":[1,2.5e3,true,null]},"clientType":2,"createTime":"1513685265481","msgid":"7","from":"a","to":"b","body":"x"}}`,
		`{"data":{"from":null,"clientType":"2","createTime":1513685265481,"msgid":1,"to":"b","body":"x"},"type":0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := DecodeLine(raw)
		if err != nil {
			return
		}
		want, refErr := decodeLineReference(raw)
		if refErr != nil {
			t.Fatalf("accepted a line the reference refuses (%v): %q", refErr, raw)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded differently:\n got %+v\nwant %+v", got, want)
		}
	})
}

func BenchmarkDecodeLineReference(b *testing.B) {
	raw := []byte(loadExamples(b)[0].line)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeLineReference(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// DecodeLineShared's strings point into the line (no copy per field);
// DecodeLine's do not, so a caller that reuses its buffer stays safe.
func TestDecodeLineSharedPointsIntoTheLine(t *testing.T) {
	raw := []byte(`{"data":{"ext":"","clientType":"2","createTime":1513685265481,"msgid":1,"from":"aaa","to":"bbb","body":"测试"},"type":0}`)
	inside := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		lo := uintptr(unsafe.Pointer(&raw[0]))
		return p >= lo && p < lo+uintptr(len(raw))
	}
	shared, err := DecodeLineShared(raw)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := DecodeLine(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(shared, copied) {
		t.Fatalf("shared %+v, copied %+v", shared, copied)
	}
	for _, tc := range []struct {
		name           string
		shared, copied string
	}{{"from", shared.From, copied.From}, {"to", shared.To, copied.To}, {"body", shared.Body, copied.Body}} {
		if !inside(tc.shared) {
			t.Errorf("DecodeLineShared copied %s", tc.name)
		}
		if inside(tc.copied) {
			t.Errorf("DecodeLine shares %s with the line", tc.name)
		}
	}
}

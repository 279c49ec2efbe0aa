package tencent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/imbridge/imbridge/message"
	"github.com/imbridge/imbridge/source"
)

// The callback commands imbridge turns into lines or recalls.
const (
	CmdC2CSendMsg       = "C2C.CallbackAfterSendMsg"
	CmdGroupSendMsg     = "Group.CallbackAfterSendMsg"
	CmdNewMemberJoin    = "Group.CallbackAfterNewMemberJoin"
	CmdMemberExit       = "Group.CallbackAfterMemberExit"
	CmdGroupInfoChanged = "Group.CallbackAfterGroupInfoChanged"
	CmdGroupDestroyed   = "Group.CallbackAfterGroupDestroyed"
	CmdC2CMsgWithDraw   = "C2C.CallbackAfterMsgWithDraw"
	CmdGroupRecallMsg   = "Group.CallbackAfterRecallMsg"
	cmdGroupCreated     = "Group.CallbackAfterCreateGroup"
	cmdGroupFull        = "Group.CallbackAfterGroupFull"
	cmdStateChange      = "State.StateChange"
	groupTypeAVChatRoom = "AVChatRoom"
)

// Decode turns one Tencent IM callback body into a batch. params is the
// callback URL's query: CallbackCommand (also repeated in the body; when both
// are present they must agree) and OptPlatform (the line's clientType). now is
// the receipt time, the createTime of events that carry no EventTime.
//
// A malformed body (not a JSON object, a field of the wrong type, a required
// field missing, a line that cannot be valid) is a *source.Error 400 and
// nothing of it is kept. A well-formed command that carries no chat content
// is counted in Ignored, never refused.
func Decode(body []byte, params url.Values, now time.Time) (source.Batch, error) {
	var b source.Batch
	body = bytes.TrimPrefix(bytes.TrimSpace(body), []byte("\ufeff"))
	if len(body) == 0 {
		return b, source.BadRequest("empty body: Tencent IM callbacks are one JSON object")
	}
	if body[0] != '{' {
		return b, source.BadRequest("the body must be a JSON object")
	}
	var head struct {
		CallbackCommand *string `json:"CallbackCommand"`
	}
	if err := unmarshal(body, &head); err != nil {
		return b, err
	}
	cmd := params.Get("CallbackCommand")
	if head.CallbackCommand != nil && *head.CallbackCommand != "" {
		if cmd != "" && cmd != *head.CallbackCommand {
			return b, source.BadRequest("CallbackCommand %s in the query and %s in the body differ", quote(cmd), quote(*head.CallbackCommand))
		}
		cmd = *head.CallbackCommand
	}
	if cmd == "" {
		return b, source.BadRequest("CallbackCommand is missing from both the query and the body")
	}
	d := decoder{b: &b, body: body, client: ClientType(params.Get("OptPlatform")), now: now}
	var err error
	switch cmd {
	case CmdC2CSendMsg:
		err = d.c2cMessage()
	case CmdGroupSendMsg:
		err = d.groupMessage()
	case CmdNewMemberJoin:
		err = d.memberJoin()
	case CmdMemberExit:
		err = d.memberExit()
	case CmdGroupInfoChanged:
		err = d.groupInfoChanged()
	case CmdGroupDestroyed:
		err = d.groupDestroyed()
	case CmdC2CMsgWithDraw:
		err = d.c2cRecall()
	case CmdGroupRecallMsg:
		err = d.groupRecall()
	default:
		b.Ignore(ignoredCommand(cmd))
	}
	if err != nil {
		return source.Batch{}, err
	}
	return b, nil
}

// ignoredCommand is the Ignored reason of a command imbridge does not turn
// into lines: fixed strings only (they are metric labels).
func ignoredCommand(cmd string) string {
	switch {
	case cmd == cmdGroupCreated:
		return "group_created"
	case cmd == cmdGroupFull:
		return "group_full"
	case cmd == cmdStateChange:
		return "state_change"
	case strings.HasPrefix(cmd, "Sns."):
		return "sns"
	case strings.Contains(cmd, ".CallbackBefore"):
		return "before_callback"
	case strings.HasPrefix(cmd, "C2C."):
		return "c2c_other"
	case strings.HasPrefix(cmd, "Group."):
		return "group_other"
	}
	return "unhandled_command"
}

// ClientType maps Tencent's OptPlatform (callbacks) or MsgFromPlatform
// (history files) to the Yunxin clientType: Android 1; iOS, IOS, iPad 2;
// Windows 4; Web 16; RESTAPI 32; Mac, macOS 64; anything else (Unknown, empty,
// mini programs…) source.DefaultClientType. Case is ignored.
func ClientType(platform string) message.ClientType {
	switch strings.ToLower(strings.TrimSpace(platform)) {
	case "android":
		return message.Android
	case "ios", "ipad":
		return message.IOS
	case "windows":
		return message.PC
	case "web":
		return message.Web
	case "restapi":
		return message.REST
	case "mac", "macos":
		return message.Mac
	}
	return source.DefaultClientType
}

// decoder is one body being decoded.
type decoder struct {
	b      *source.Batch
	body   []byte
	client message.ClientType
	now    time.Time
}

// unmarshal decodes a JSON object into v; errors are 400s naming the field.
func unmarshal(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return source.BadRequest("%s", jsonError(err))
	}
	return nil
}

func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := kindName(te.Type)
		if te.Field != "" {
			return fmt.Sprintf("%s: must be %s, not a JSON %s", te.Field, want, te.Value)
		}
		return fmt.Sprintf("must be %s, not a JSON %s", want, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("the body is not valid JSON (at byte %d): %s", se.Offset, strings.TrimPrefix(err.Error(), "json: "))
	}
	return "the body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

func kindName(t reflect.Type) string {
	if t == nil {
		return "of the documented type"
	}
	if t == reflect.TypeOf(flexInt{}) {
		return "an integer (or a string of digits)"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64:
		return "an integer"
	}
	return "of the documented type"
}

// flexInt is an integer Tencent sends as a JSON number or, in some examples
// (EventTime), as a string of digits. null or absent is unset.
type flexInt struct {
	v   int64
	set bool
}

func (f *flexInt) UnmarshalJSON(raw []byte) error {
	s := string(raw)
	if s == "null" {
		return nil
	}
	what := "number " + s
	if len(s) > 0 && s[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		what = "string"
		s = strings.TrimSpace(s)
		if s == "" {
			return nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeOf(flexInt{})}
	}
	f.v, f.set = v, true
	return nil
}

// eventTime is the createTime of an event: EventTime (ms) when sent, else
// the receipt time.
func (d *decoder) eventTime(t flexInt) int64 {
	if t.set && t.v != 0 {
		return t.v
	}
	return d.now.UnixMilli()
}

// eventStamp names an event in its lines' SourceIDs: its EventTime, or, when
// it has none, a hash of the body (the same body always gives the same ids).
func (d *decoder) eventStamp(t flexInt) string {
	if t.set && t.v != 0 {
		return strconv.FormatInt(t.v, 10)
	}
	sum := sha256.Sum256(d.body)
	return "b" + hex.EncodeToString(sum[:8])
}

// require refuses a missing required string field.
func require(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			return source.BadRequest("%s is required", fields[i])
		}
	}
	return nil
}

// add validates m and adds it to the batch; an invalid line is a 400.
func (d *decoder) add(m message.Message, what string) error {
	if err := m.Validate(); err != nil {
		return source.BadRequest("%s: %v", what, err)
	}
	d.b.Messages = append(d.b.Messages, m)
	return nil
}

func (d *decoder) addRecall(r message.Recall) error {
	if err := r.Validate(); err != nil {
		return source.BadRequest("%v", err)
	}
	d.b.Recalls = append(d.b.Recalls, r)
	return nil
}

package message

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
	"strconv"
)

// MsgID is the deterministic Yunxin msgid of a source message. A source id
// that is a canonical decimal (no sign, no leading zeros) fitting in 63 bits
// is used as is; any other id maps to the first 8 bytes of
// SHA-256(source + ":" + id), big-endian, with the top bit cleared. The same
// source message therefore gets the same msgid across retries, restarts,
// re-imports, exports and pulls.
func MsgID(source, id string) int64 {
	if v, ok := canonicalDecimal(id); ok {
		return v
	}
	sum := sha256.Sum256([]byte(source + ":" + id))
	return int64(binary.BigEndian.Uint64(sum[:8]) &^ (1 << 63))
}

func canonicalDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

// Identity is what Yunxin's overwrite rule (注1) compares: two lines with the
// same msgid, from, to/tid and createTime are the same message.
type Identity struct {
	Scene      Scene
	MsgID      int64
	From       string
	To         string // p2p
	TID        int64  // team, native source
	GroupID    string // team, provider sources: the group id before the team map
	CreateTime int64
}

// Identity returns m's identity.
func (m *Message) Identity() Identity {
	id := Identity{Scene: m.Scene, MsgID: m.MsgID, From: m.From, To: m.To, TID: m.TID, GroupID: m.GroupID, CreateTime: m.CreateTime}
	if m.CreateTimeIsReceipt {
		id.CreateTime = 0 // a retry arrives at another time: the source id decides
	}
	return id
}

// DedupKey is the 128-bit key under which a source's message is remembered
// for de-duplication: the source plus the identity.
type DedupKey [16]byte

// DedupKey returns the key of identity id delivered by source.
func (id Identity) DedupKey(source string) DedupKey {
	h := fnv.New128a()
	var buf [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	num := func(v int64) {
		binary.BigEndian.PutUint64(buf[:], uint64(v))
		h.Write(buf[:])
	}
	write(source)
	num(int64(id.Scene))
	num(id.MsgID)
	write(id.From)
	write(id.To)
	num(id.TID)
	num(id.CreateTime)
	if id.GroupID != "" { // only then, so keys of native messages stay what they were
		write(id.GroupID)
	}
	var k DedupKey
	h.Sum(k[:0])
	return k
}

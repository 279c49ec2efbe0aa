// Package render is the one place a canonical message becomes the Yunxin line
// that leaves imbridge (pull responses and export files): the message plus
// the current maps — provider group ids become Yunxin tids through the team
// map, media URLs become uploaded Yunxin URLs through the URL map.
package render

import "github.com/imbridge/imbridge/message"

// Maps is what rendering needs of the team and URL maps.
type Maps interface {
	// TID returns the Yunxin tid of a provider's group; false while the
	// group has no mapping.
	TID(source, groupID string) (int64, bool)
	// URL returns the Yunxin URL that replaces an old media URL; false
	// while the URL has no mapping.
	URL(old string) (string, bool)
}

// NoMaps has no mappings at all.
type NoMaps struct{}

// TID implements Maps.
func (NoMaps) TID(string, string) (int64, bool) { return 0, false }

// URL implements Maps.
func (NoMaps) URL(string) (string, bool) { return "", false }

// Outcome says how a message was rendered.
type Outcome struct {
	// Held: a team message whose provider group has no mapping yet. No line
	// was written; the message waits for its mapping.
	Held bool
	// TID is the line's tid (mapped for provider groups), 0 for p2p.
	TID int64
	// MediaURL is the message's original media URL ("" when it has none) and
	// URLMapped whether the line carries its mapped replacement instead.
	MediaURL  string
	URLMapped bool
}

// Line appends the line of m under maps to dst. m is not changed. When the
// message is held, dst is returned as it was.
func Line(dst []byte, enc *message.Encoder, m *message.Message, maps Maps) ([]byte, Outcome) {
	var out Outcome
	view := *m
	mediaURL, hasMedia := message.MediaURL(m.Attach)
	out.MediaURL = mediaURL // also for a held message: it is on the upload list all the same
	if m.Scene == message.Team {
		out.TID = m.TID
		if m.GroupID != "" {
			tid, ok := maps.TID(m.Source, m.GroupID)
			if !ok {
				out.Held = true
				return dst, out
			}
			out.TID, view.TID = tid, tid
		}
	}
	if hasMedia {
		if mapped, ok := maps.URL(mediaURL); ok {
			view.Attach = message.WithMediaURL(m.Attach, mapped)
			out.URLMapped = true
		}
	}
	return enc.AppendLine(dst, &view), out
}

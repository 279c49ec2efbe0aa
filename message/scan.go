package message

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// scanner reads JSON from a byte slice without reflection. DecodeLine uses
// it for the line's two levels (the envelope and data), which every ingested
// message crosses; attach, ext and tinfo values are handed on as raw spans.
type scanner struct {
	b []byte
	i int
	// shared lets strings without escapes point into b instead of being
	// copied (DecodeLineShared: b never changes afterwards).
	shared bool
}

var errEOF = errors.New("unexpected end of JSON")

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) fail(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

// peek returns the next significant byte, or 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.i >= len(s.b) {
			return errEOF
		}
		return s.fail("expected %q, found %q", c, s.b[s.i])
	}
	s.i++
	return nil
}

// object calls field for each key of the object that starts here; field must
// consume the value. Duplicate keys are refused.
func (s *scanner) object(field func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	var seen [16]string
	n := 0
	for {
		if s.peek() != '"' {
			return s.fail("expected a string key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		for _, k := range seen[:min(n, len(seen))] {
			if k == key {
				return fmt.Errorf("duplicate field %q", key)
			}
		}
		if n < len(seen) {
			seen[n] = key
		}
		n++
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		case 0:
			return errEOF
		default:
			return s.fail("expected ',' or '}'")
		}
	}
}

// str reads a JSON string at the current position.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.fail("expected a string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			var v string
			switch {
			case s.i == start:
			case s.shared:
				v = unsafe.String(&s.b[start], s.i-start)
			default:
				v = string(s.b[start:s.i])
			}
			s.i++
			return v, nil
		case c == '\\':
			return s.strSlow(start)
		case c < 0x20:
			return "", s.fail("control character in string")
		}
		s.i++
	}
	return "", errEOF
}

// unquoteJSON sets *dst to the JSON string raw, as json.Unmarshal does
// (its errors included) but without reflection for the common case: a
// string with valid UTF-8 (json.Unmarshal turns invalid bytes into U+FFFD,
// so those go to it).
func unquoteJSON(raw []byte, dst *string) error {
	s := scanner{b: raw}
	if v, err := s.str(); err == nil && utf8.ValidString(v) {
		if s.ws(); s.i == len(raw) {
			*dst = v
			return nil
		}
	}
	return json.Unmarshal(raw, dst)
}

// strSlow decodes a string with escapes, as encoding/json does (a lone
// surrogate becomes U+FFFD).
func (s *scanner) strSlow(start int) (string, error) {
	out := append([]byte(nil), s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return string(out), nil
		case c < 0x20:
			return "", s.fail("control character in string")
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			return "", errEOF
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					save := s.i
					s.i += 2
					if low, ok := s.hex4(); ok {
						if dec := utf16.DecodeRune(r, low); dec != utf8.RuneError {
							r2 = dec
						} else {
							s.i = save
						}
					} else {
						return "", s.fail("bad \\u escape")
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", s.fail("bad escape \\%c", e)
		}
	}
	return "", errEOF
}

func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.b[s.i:s.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	s.i += 4
	return rune(v), true
}

// raw skips one value (validating its syntax) and returns its bytes.
func (s *scanner) raw() ([]byte, error) {
	s.ws()
	start := s.i
	if err := s.skip(0); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

const maxDepth = 1000

func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deeply")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(func(string) error { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			case 0:
				return errEOF
			default:
				return s.fail("expected ',' or ']'")
			}
		}
	case c == '"':
		// Validate escapes without building the string.
		s.i++
		for s.i < len(s.b) {
			switch ch := s.b[s.i]; {
			case ch == '"':
				s.i++
				return nil
			case ch == '\\':
				if s.i+1 >= len(s.b) {
					return errEOF
				}
				switch s.b[s.i+1] {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
					s.i += 2
				case 'u':
					s.i += 2
					if _, ok := s.hex4(); !ok {
						return s.fail("bad \\u escape")
					}
				default:
					return s.fail("bad escape")
				}
			case ch < 0x20:
				return s.fail("control character in string")
			default:
				s.i++
			}
		}
		return errEOF
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == 0:
		return errEOF
	default:
		return s.fail("unexpected %q", c)
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.fail("invalid literal")
	}
	s.i += len(lit)
	return nil
}

// number validates the JSON number grammar.
func (s *scanner) number() error {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return s.fail("invalid number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return s.fail("invalid number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return s.fail("invalid number")
		}
	}
	return nil
}

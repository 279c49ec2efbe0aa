package message

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unsafe"
)

// CanonicalJSON appends raw re-encoded compactly: keys keep their order,
// strings are written as UTF-8 with only the escapes JSON requires, numbers
// keep their literal text. The same input always gives the same bytes.
func CanonicalJSON(dst, raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	out, err := canonicalValue(dst, dec)
	if err != nil {
		return dst, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return dst, errors.New("trailing data after the JSON value")
	}
	return out, nil
}

func canonicalValue(dst []byte, dec *json.Decoder) ([]byte, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return dst, errors.New("unexpected end of JSON")
		}
		return dst, err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			dst = append(dst, '{')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					dst = append(dst, ',')
				}
				k, err := dec.Token()
				if err != nil {
					return dst, err
				}
				key, ok := k.(string)
				if !ok {
					return dst, errors.New("object key is not a string")
				}
				dst = append(appendString(dst, key), ':')
				if dst, err = canonicalValue(dst, dec); err != nil {
					return dst, err
				}
			}
			if _, err := dec.Token(); err != nil {
				return dst, err
			}
			return append(dst, '}'), nil
		case '[':
			dst = append(dst, '[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					dst = append(dst, ',')
				}
				if dst, err = canonicalValue(dst, dec); err != nil {
					return dst, err
				}
			}
			if _, err := dec.Token(); err != nil {
				return dst, err
			}
			return append(dst, ']'), nil
		}
		return dst, fmt.Errorf("unexpected %q", v)
	case string:
		return appendString(dst, v), nil
	case json.Number:
		return append(dst, v...), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case nil:
		return append(dst, "null"...), nil
	}
	return dst, fmt.Errorf("unexpected token %v", tok)
}

// jsonKind is the first significant byte of a raw JSON value.
func jsonKind(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// parseInt reads a JSON integer given as a number or as a string of digits.
// Fractions, exponents and signs other than a leading minus are refused.
func parseInt(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = bytes.TrimSpace(raw[1 : len(raw)-1])
	}
	if len(raw) == 0 || raw[0] == '+' {
		return 0, false
	}
	v, err := strconv.ParseInt(unsafeString(raw), 10, 64)
	return v, err == nil
}

// parseDecimal reads a plain decimal such as -116.655294 (no exponent).
func parseDecimal(s string) (float64, bool) {
	t := strings.TrimPrefix(s, "-")
	if t == "" || t[0] == '.' || strings.HasSuffix(t, ".") {
		return 0, false
	}
	dot := false
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

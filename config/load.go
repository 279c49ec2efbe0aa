package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable name.
const EnvPrefix = "IMBRIDGE_"

// Error is a configuration problem tied to one key. Its message names the key
// as the operator set it: the environment variable, or the key and file.
type Error struct {
	Key string // e.g. IMBRIDGE_LISTEN or "listen (imbridge.yaml)"
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// Loaded is a configuration together with where each value came from.
type Loaded struct {
	Config
	origin map[string]string // key path → name shown in errors
}

// field is one leaf of Config, reached by reflection.
type field struct {
	path   string // data_dir, sources.native.token
	env    string // IMBRIDGE_DATA_DIR
	secret bool
	help   string
	v      reflect.Value
}

// fields lists the leaves of *c in declaration order.
func fields(c *Config) []field {
	var out []field
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name := strings.Split(sf.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeOf(time.Time{}) {
				walk(fv, path)
				continue
			}
			out = append(out, field{
				path:   path,
				env:    EnvName(path),
				secret: sf.Tag.Get("secret") == "true",
				help:   sf.Tag.Get("help"),
				v:      fv,
			})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// EnvName is the environment variable that sets the key at path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Load starts from Default, overlays the YAML file at path (when path is not
// empty), then the environment read through getenv, and validates the result.
// The returned error is an *Error naming the offending key, or a file error.
func Load(getenv func(string) string, path string) (Loaded, error) {
	l := Loaded{Config: Default(), origin: map[string]string{}}
	fs := fields(&l.Config)
	byPath := make(map[string]field, len(fs))
	for _, f := range fs {
		byPath[f.path] = f
	}
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return l, fmt.Errorf("config file: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			return l, fmt.Errorf("config file %s: %w", path, err)
		}
		vals := map[string]*yaml.Node{}
		if len(doc.Content) > 0 {
			if err := flatten(doc.Content[0], "", vals); err != nil {
				return l, fmt.Errorf("config file %s: %w", path, err)
			}
		}
		base := filepath.Base(path)
		for key, node := range vals {
			f, ok := byPath[key]
			if !ok {
				return l, &Error{Key: key + " (" + base + ")", Msg: "unknown key; see `imbridge serve --help` for the keys"}
			}
			name := key + " (" + base + ")"
			l.origin[key] = name
			if err := setNode(f, node); err != nil {
				return l, &Error{Key: name, Msg: err.Error()}
			}
		}
	}
	for _, f := range fs {
		s := getenv(f.env)
		if s == "" {
			continue
		}
		l.origin[f.path] = f.env
		if err := setString(f, s); err != nil {
			return l, &Error{Key: f.env, Msg: err.Error()}
		}
	}
	if err := l.validate(); err != nil {
		return l, err
	}
	return l, nil
}

// flatten records every leaf of a YAML mapping under its dotted path.
func flatten(n *yaml.Node, prefix string, out map[string]*yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		if prefix == "" {
			if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
				return nil // empty file
			}
			return errors.New("the top level must be a mapping of keys")
		}
		out[prefix] = n
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := n.Content[i].Value
		if prefix != "" {
			key = prefix + "." + key
		}
		if err := flatten(n.Content[i+1], key, out); err != nil {
			return err
		}
	}
	return nil
}

func setNode(f field, n *yaml.Node) error {
	if f.v.Kind() == reflect.Slice {
		switch n.Kind {
		case yaml.SequenceNode:
			var list []string
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					return errors.New("list items must be plain values")
				}
				list = append(list, c.Value)
			}
			f.v.Set(reflect.ValueOf(list))
			return nil
		case yaml.ScalarNode:
			return setString(f, n.Value)
		}
		return errors.New("must be a list")
	}
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a plain value, not a list or mapping")
	}
	if n.Tag == "!!null" {
		return nil
	}
	return setString(f, n.Value)
}

// setString parses s into the field according to its type.
func setString(f field, s string) error {
	s = strings.TrimSpace(s)
	switch p := f.v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean (true or false)", s)
		}
		*p = b
	case *int64:
		n, err := ParseBytes(s)
		if err != nil {
			return err
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 24h, 90m)", s)
		}
		*p = d
	case *time.Time:
		if s == "" {
			*p = time.Time{}
			return nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("%q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05+08:00)", s)
		}
		*p = t
	case *[]string:
		var list []string
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				list = append(list, part)
			}
		}
		*p = list
	default:
		return fmt.Errorf("unsupported field type %s", f.v.Type())
	}
	return nil
}

// ParseBytes reads a size: a plain number of bytes or one with a unit
// (KiB, MiB, GiB, TiB, or KB, MB, GB, TB as powers of 1000).
func ParseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or with KiB, MiB, GiB)", s)
	}
	return n * mult, nil
}

// Name is how an error should name the key at path: the environment variable
// or file key that set it, or the environment name when it was a default.
func (l Loaded) Name(path string) string {
	if n, ok := l.origin[path]; ok {
		return n
	}
	return EnvName(path)
}

// Dump returns every key with its effective value, secrets masked, in
// declaration order, for logging at start-up.
func (l Loaded) Dump() []any {
	c := l.Config
	var out []any
	for _, f := range fields(&c) {
		v := f.v.Interface()
		switch x := v.(type) {
		case time.Time:
			if x.IsZero() {
				v = ""
			} else {
				v = x.Format(time.RFC3339)
			}
		case time.Duration:
			v = x.String()
		}
		if f.secret && !f.v.IsZero() {
			v = "***"
		}
		out = append(out, f.path, v)
	}
	return out
}

// Keys describes every key for --help output: the key, its environment name
// and what it means.
func Keys() string {
	c := Default()
	var b strings.Builder
	for _, f := range fields(&c) {
		fmt.Fprintf(&b, "  %-28s %-36s %s\n", f.path, f.env, f.help)
	}
	return b.String()
}

func joinPath(a, b string) string { return filepath.Join(a, b) }

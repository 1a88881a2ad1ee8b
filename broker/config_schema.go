package broker

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2/unstable"
)

// The schema of a configuration document: the keys and value kinds of the
// document type, derived from its toml tags. The decoder (config_decode.go)
// checks every key and value against it, so that an unknown key or a value
// of the wrong kind is reported with its line and in TOML's words, never
// in Go's.

// kind is what a key's value must be.
type kind int

const (
	kindString kind = iota
	kindInteger
	kindBoolean
	kindDuration // a string time.ParseDuration accepts
	kindStrings  // an array of strings
	kindIntegers // an array of integers
	kindTable    // a table with the keys of a struct
	kindTables   // a table of tables by name, e.g. [tenants.NAME]
)

// field is the schema of one key's value.
type field struct {
	kind   kind
	fields map[string]*field // the keys of a kindTable
	elem   *field            // what every name of a kindTables holds
	index  []int             // the Go field within its table's struct
}

// expected says, in TOML's words, what a value of f must be.
func (f *field) expected() string {
	switch f.kind {
	case kindString:
		return "a string"
	case kindInteger:
		return "an integer"
	case kindBoolean:
		return "a boolean"
	case kindDuration:
		return `a duration string such as "5m"`
	case kindStrings:
		return "an array of strings"
	case kindIntegers:
		return "an array of integers"
	}
	return "a table"
}

func (f *field) isTable() bool { return f.kind == kindTable || f.kind == kindTables }

// child is the schema of key within table f, or nil for an unknown key.
func (f *field) child(key string) *field {
	if f.kind == kindTables {
		return f.elem
	}
	return f.fields[key]
}

var durationType = reflect.TypeFor[duration]()

// documentSchema is the schema of the document type, built once.
var documentSchema = sync.OnceValue(func() *field { return schemaOf(reflect.TypeFor[document]()) })

// schemaOf derives the schema of a decode target type. Types the document
// does not use are a programming error and panic when the schema is built,
// which every test that parses a configuration does.
func schemaOf(t reflect.Type) *field {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return &field{kind: kindDuration}
	}
	switch t.Kind() {
	case reflect.String:
		return &field{kind: kindString}
	case reflect.Int, reflect.Int64:
		return &field{kind: kindInteger}
	case reflect.Bool:
		return &field{kind: kindBoolean}
	case reflect.Slice:
		switch schemaOf(t.Elem()).kind {
		case kindString:
			return &field{kind: kindStrings}
		case kindInteger:
			return &field{kind: kindIntegers}
		}
	case reflect.Map:
		// Entries are pointers, so that the decoder fills them in place.
		if t.Key().Kind() == reflect.String && t.Elem().Kind() == reflect.Pointer {
			if elem := schemaOf(t.Elem()); elem.kind == kindTable {
				return &field{kind: kindTables, elem: elem}
			}
		}
	case reflect.Struct:
		f := &field{kind: kindTable, fields: map[string]*field{}}
		addFields(f, t, nil)
		return f
	}
	panic(fmt.Sprintf("broker: configuration schema: unsupported type %s", t))
}

// addFields adds the tagged fields of struct type t, at index within the
// table's struct, to f; an untagged embedded struct (AccessLists) adds its
// own fields.
func addFields(f *field, t reflect.Type, index []int) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		switch {
		case sf.Anonymous && tag == "":
			addFields(f, sf.Type, join(index, i))
		case !sf.IsExported() || tag == "-":
		case tag == "":
			panic(fmt.Sprintf("broker: configuration schema: field %s.%s has no toml tag", t, sf.Name))
		default:
			c := schemaOf(sf.Type)
			c.index = join(index, i)
			f.fields[tag] = c
		}
	}
}

// join is a new slice of s followed by more.
func join[T any](s []T, more ...T) []T {
	return append(s[:len(s):len(s)], more...)
}

// scalarKind is the schema kind a scalar TOML value has, or -1.
func scalarKind(k unstable.Kind) kind {
	switch k {
	case unstable.String:
		return kindString
	case unstable.Integer:
		return kindInteger
	case unstable.Bool:
		return kindBoolean
	}
	return -1
}

// describe says, in TOML's words, what a value is. String values are not
// repeated: they could be a secret written under the wrong key.
func describe(n *unstable.Node) string {
	switch n.Kind {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "the integer " + clip(string(n.Data))
	case unstable.Float:
		return "the float " + clip(string(n.Data))
	case unstable.Bool:
		return "the boolean " + string(n.Data)
	case unstable.Array:
		return "an array"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate:
		return "a date"
	case unstable.LocalTime:
		return "a time"
	}
	return "a date-time"
}

// clip shortens what an error repeats from the document.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}

// keyPath writes a key path as TOML would: parts that are not bare keys
// are quoted, so that a path is one unambiguous line.
func keyPath(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		if isBareKey(p) {
			b.WriteString(p)
		} else {
			b.WriteString(strconv.Quote(p))
		}
	}
	return b.String()
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// lineIndex finds the line of a byte offset: the offsets where lines
// start are indexed on first use, then each lookup is a binary search.
type lineIndex struct {
	data   []byte
	starts []int
}

func (l *lineIndex) line(offset int) int {
	if l.starts == nil {
		l.starts = append(make([]int, 0, 64), 0)
		for i, b := range l.data {
			if b == '\n' {
				l.starts = append(l.starts, i+1)
			}
		}
	}
	// The number of lines starting at or before offset.
	return sort.Search(len(l.starts), func(i int) bool { return l.starts[i] > offset })
}

package broker

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// The decoder makes one pass over the expressions of a document (go-toml's
// unstable parser does the syntax) and, for each key, checks it against the
// schema, checks that TOML allows defining it there, and stores its value
// in the document. Every step is a map lookup, so that the time to load
// grows with the size of the document, not with its square.
//
// TOML's rules on defining keys and tables, as applied here:
//   - a key is given a value once;
//   - a [table] header defines its table once; the tables it names on the
//     way are created if need be, and one of them may later get its own
//     header;
//   - a dotted key (a.b = 1) creates the tables before its last part; it
//     may add to them only within the same table section, and may not add
//     to a table that a header or an inline table defined;
//   - an inline table is complete: nothing can be added to it later.

// defKind is how a key or table of a document was defined.
type defKind uint8

const (
	defValue    defKind = iota // a key with a value other than a table
	defInline                  // an inline table
	defHeader                  // a table with a [header]
	defImplicit                // a table a header named on the way to its own
	defDotted                  // a table a dotted key created
)

// defNode records the definition of a key or table: how, in which section
// (for dotted keys), and on which line.
type defNode struct {
	kind     defKind
	section  int
	line     int
	children map[string]*defNode
}

func (n *defNode) child(name string) *defNode { return n.children[name] }

func (n *defNode) add(name string, kind defKind, section, line int) *defNode {
	if n.children == nil {
		n.children = map[string]*defNode{}
	}
	c := &defNode{kind: kind, section: section, line: line}
	n.children[name] = c
	return c
}

// cursor is a key of the document being decoded: its schema, its Go value
// (a struct or map for tables) and its definition.
type cursor struct {
	f    *field
	v    reflect.Value
	def  *defNode
	path []string
}

// decoder decodes one document.
type decoder struct {
	name  string // the file name errors start with
	data  []byte
	lines lineIndex
	p     unstable.Parser
	// section numbers table sections and inline tables; sections counts
	// them.
	section, sections int
	// seen, when not nil, receives the line each key path (as keyPath
	// writes it) is first defined on, tables included.
	seen map[string]int
}

// decode checks data against the schema and TOML's rules and stores it in
// doc. The first problem is the error, naming the file, the line and the
// key.
func (d *decoder) decode(data []byte, doc *document) error {
	d.data, d.lines = data, lineIndex{data: data}
	d.p.Reset(data)
	root := cursor{f: documentSchema(), v: reflect.ValueOf(doc).Elem(), def: &defNode{kind: defHeader}}
	cur := root
	for d.p.NextExpression() {
		e := d.p.Expression()
		var err error
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			d.sections++
			d.section = d.sections
			cur, err = d.header(root, e)
		case unstable.KeyValue:
			err = d.keyValue(cur, e)
		}
		if err != nil {
			return err
		}
	}
	return d.syntaxError(d.p.Error())
}

// header opens the table a [header] names, defining it.
func (d *decoder) header(root cursor, e *unstable.Node) (cursor, error) {
	parts, line := d.key(e.Key())
	if len(parts) == 0 {
		return cursor{}, fmt.Errorf("%s:%d: a table header without a name", d.name, line)
	}
	c := root
	for i, part := range parts {
		next, err := d.step(c, part, line)
		if err != nil {
			return cursor{}, err
		}
		last := i == len(parts)-1
		if last && e.Kind == unstable.ArrayTable {
			return cursor{}, d.wrongKind(next, line, "an array of tables")
		}
		if !next.f.isTable() {
			return cursor{}, d.wrongKind(next, line, "a table")
		}
		if next.def, err = d.defineHeaderPart(c, next, last, line); err != nil {
			return cursor{}, err
		}
		next.v = open(next.v)
		c = next
	}
	return c, nil
}

// defineHeaderPart records part next of a header, the table it defines
// when last, a table on the way otherwise.
func (d *decoder) defineHeaderPart(parent, next cursor, last bool, line int) (*defNode, error) {
	name := next.path[len(next.path)-1]
	n := parent.def.child(name)
	switch {
	case n == nil && last:
		return parent.def.add(name, defHeader, d.section, line), nil
	case n == nil:
		return parent.def.add(name, defImplicit, d.section, line), nil
	case n.kind == defValue || n.kind == defInline:
		return nil, d.redefined(next, line, n)
	case !last:
		return n, nil
	case n.kind == defImplicit:
		n.kind = defHeader
		return n, nil
	}
	return nil, d.redefined(next, line, n)
}

// keyValue decodes `key = value` in the table at c.
func (d *decoder) keyValue(c cursor, kv *unstable.Node) error {
	parts, line := d.key(kv.Key())
	if len(parts) == 0 {
		return fmt.Errorf("%s:%d: a key without a name", d.name, line)
	}
	for _, part := range parts[:len(parts)-1] {
		next, err := d.step(c, part, line)
		if err != nil {
			return err
		}
		if !next.f.isTable() {
			return d.wrongKind(next, line, "a table")
		}
		switch n := c.def.child(part); {
		case n == nil:
			next.def = c.def.add(part, defDotted, d.section, line)
		case n.kind == defDotted && n.section == d.section:
			next.def = n
		default:
			return d.redefined(next, line, n)
		}
		next.v = open(next.v)
		c = next
	}
	last, err := d.step(c, parts[len(parts)-1], line)
	if err != nil {
		return err
	}
	if n := c.def.child(parts[len(parts)-1]); n != nil {
		return d.redefined(last, line, n)
	}
	v := kv.Value()
	kind := defValue
	if v.Kind == unstable.InlineTable {
		kind = defInline
	}
	last.def = c.def.add(parts[len(parts)-1], kind, d.section, line)
	return d.value(last, v, line)
}

// step moves from the table at c to its key part: the schema must know
// the key. The value is not opened yet.
func (d *decoder) step(c cursor, part string, line int) (cursor, error) {
	next := cursor{f: c.f.child(part), path: join(c.path, part)}
	if next.f == nil {
		return cursor{}, fmt.Errorf("%s:%d: unknown key %q", d.name, line, keyPath(next.path...))
	}
	if c.f.kind == kindTables {
		next.v = mapEntry(c.v, part)
	} else {
		next.v = c.v.FieldByIndex(next.f.index)
	}
	d.record(next.path, line)
	return next, nil
}

// value checks that v is of c's kind and stores it.
func (d *decoder) value(c cursor, v *unstable.Node, line int) error {
	switch c.f.kind {
	case kindTable, kindTables:
		return d.inlineTable(c, v, line)
	case kindStrings, kindIntegers:
		return d.array(c, v, line)
	case kindDuration:
		return d.duration(c, v, line)
	}
	if scalarKind(v.Kind) != c.f.kind {
		return d.wrongKind(c, line, describe(v))
	}
	return d.scalar(c, leaf(c.v), v, line)
}

// inlineTable decodes { ... } into the table at c: a section of its own.
func (d *decoder) inlineTable(c cursor, v *unstable.Node, line int) error {
	if v.Kind != unstable.InlineTable {
		return d.wrongKind(c, line, describe(v))
	}
	c.v = open(c.v)
	outer := d.section
	d.sections++
	d.section = d.sections
	defer func() { d.section = outer }()
	it := v.Children()
	for it.Next() {
		if n := it.Node(); n.Kind == unstable.KeyValue {
			if err := d.keyValue(c, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// array decodes an array of strings or of integers.
func (d *decoder) array(c cursor, v *unstable.Node, line int) error {
	if v.Kind != unstable.Array {
		return d.wrongKind(c, line, describe(v))
	}
	want := kindString
	if c.f.kind == kindIntegers {
		want = kindInteger
	}
	s := leaf(c.v)
	s.Set(reflect.MakeSlice(s.Type(), 0, 4))
	it := v.Children()
	for it.Next() {
		n := it.Node()
		if n.Kind == unstable.Comment {
			continue
		}
		if scalarKind(n.Kind) != want {
			return d.wrongKind(c, line, "an array containing "+describe(n))
		}
		s.Set(reflect.Append(s, reflect.Zero(s.Type().Elem())))
		if err := d.scalar(c, s.Index(s.Len()-1), n, line); err != nil {
			return err
		}
	}
	return nil
}

// duration decodes a duration: a string time.ParseDuration accepts.
func (d *decoder) duration(c cursor, v *unstable.Node, line int) error {
	if v.Kind != unstable.String {
		return d.wrongKind(c, line, describe(v))
	}
	u := leaf(c.v).Addr().Interface().(encoding.TextUnmarshaler)
	if u.UnmarshalText(v.Data) != nil {
		return fmt.Errorf(`%s:%d: %s: %q is not a duration; expected a duration string such as "5m" or "1h30m"`,
			d.name, line, keyPath(c.path...), clip(string(v.Data)))
	}
	return nil
}

// scalar stores a string, integer or boolean n, of the kind dst holds.
func (d *decoder) scalar(c cursor, dst reflect.Value, n *unstable.Node, line int) error {
	switch n.Kind {
	case unstable.String:
		dst.SetString(string(n.Data))
	case unstable.Bool:
		dst.SetBool(string(n.Data) == "true")
	case unstable.Integer:
		i, err := parseInteger(string(n.Data))
		if err != nil || dst.OverflowInt(i) {
			return fmt.Errorf("%s:%d: %s: the integer %s is too large", d.name, line, keyPath(c.path...), clip(string(n.Data)))
		}
		dst.SetInt(i)
	}
	return nil
}

// parseInteger parses a TOML integer the parser has checked the syntax of:
// decimal with a sign, or 0x, 0o, 0b, with _ between digits.
func parseInteger(s string) (int64, error) {
	s = strings.ReplaceAll(s, "_", "")
	if len(s) > 2 && s[0] == '0' {
		switch s[1] {
		case 'x':
			return strconv.ParseInt(s[2:], 16, 64)
		case 'o':
			return strconv.ParseInt(s[2:], 8, 64)
		case 'b':
			return strconv.ParseInt(s[2:], 2, 64)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// open makes a table's Go value usable: a nil pointer gets a new struct, a
// nil map a new map.
func open(v reflect.Value) reflect.Value {
	v = leaf(v)
	if v.Kind() == reflect.Map && v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	return v
}

// leaf is what v points to, allocated if nil, or v itself.
func leaf(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Pointer {
		return v
	}
	if v.IsNil() {
		v.Set(reflect.New(v.Type().Elem()))
	}
	return v.Elem()
}

// mapEntry is the entry key of map m (a table of tables), created if need
// be. Entries are pointers, so the entry is filled in place.
func mapEntry(m reflect.Value, key string) reflect.Value {
	k := reflect.ValueOf(key)
	e := m.MapIndex(k)
	if !e.IsValid() {
		e = reflect.New(m.Type().Elem().Elem())
		m.SetMapIndex(k, e)
	}
	return e
}

// redefined reports a key or table that TOML does not allow defining (or
// adding to) at c, as n already defined it.
func (d *decoder) redefined(c cursor, line int, n *defNode) error {
	var how string
	switch n.kind {
	case defValue:
		how = "is already defined"
	case defInline:
		how = "is an inline table, which cannot be added to; it is defined"
	case defHeader:
		how = "is a table with a [header], which cannot be defined again or added to with dotted keys; it is defined"
	case defImplicit:
		how = "is a table named by a [header] below it, which cannot be added to with dotted keys; it is named"
	case defDotted:
		how = "is a table created by dotted keys, which cannot be defined again; it is created"
	}
	return fmt.Errorf("%s:%d: %s %s on line %d", d.name, line, keyPath(c.path...), how, n.line)
}

func (d *decoder) wrongKind(c cursor, line int, got string) error {
	return fmt.Errorf("%s:%d: %s: expected %s, got %s", d.name, line, keyPath(c.path...), c.f.expected(), got)
}

// syntaxError reports what the parser found wrong, with its line.
func (d *decoder) syntaxError(err error) error {
	var pe *unstable.ParserError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	where := d.name
	if off := cap(d.data) - cap(pe.Highlight); off >= 0 && off+len(pe.Highlight) <= len(d.data) {
		where = fmt.Sprintf("%s:%d", d.name, d.lines.line(off))
	}
	if len(pe.Key) > 0 {
		return fmt.Errorf("%s: %s: %s", where, keyPath(pe.Key...), pe.Message)
	}
	return fmt.Errorf("%s: %s", where, pe.Message)
}

// key returns the parts of a key and the line it starts on.
func (d *decoder) key(it unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = d.lines.line(int(n.Raw.Offset))
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

// record notes the line of a key path the first time it is defined.
func (d *decoder) record(path []string, line int) {
	if d.seen == nil {
		return
	}
	k := keyPath(path...)
	if _, ok := d.seen[k]; !ok {
		d.seen[k] = line
	}
}

// keyLines maps every key path of a document (as keyPath writes it, e.g.
// "tenants.contoso.id") to the line it is first defined on, up to the
// first problem of the document.
func keyLines(data []byte) map[string]int {
	d := decoder{seen: map[string]int{}}
	_ = d.decode(data, &document{})
	return d.seen
}

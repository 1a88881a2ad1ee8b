package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// The launchd agent in systemd/launchd is a well-formed property list
// whose arguments this brokerd accepts, pointing at the configuration and
// home directory layout macOS gives brokerd by default.
func TestLaunchdPlist(t *testing.T) {
	const file = "../../systemd/launchd/com.tokenbroker.brokerd.plist"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const home = "/Users/alice"
	v, err := decodePlist(strings.ReplaceAll(string(b), "@HOME@", home))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	want := map[string]any{
		"Label": "com.tokenbroker.brokerd",
		"ProgramArguments": []any{"/usr/local/bin/brokerd", "--config",
			home + "/Library/Application Support/tokenbroker/brokerd.toml"},
		"RunAtLoad":              true,
		"KeepAlive":              map[string]any{"SuccessfulExit": false},
		"LimitLoadToSessionType": "Aqua",
		"StandardErrorPath":      home + "/Library/Logs/brokerd.log",
	}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("%s is\n%#v\nwant\n%#v", file, v, want)
	}
	var args []string
	for _, a := range want["ProgramArguments"].([]any)[1:] {
		args = append(args, a.(string))
	}
	o, err := parseFlags(args)
	if err != nil || o.config != want["ProgramArguments"].([]any)[2] {
		t.Errorf("brokerd %q: options %+v, error %v", args, o, err)
	}
}

// decodePlist reads an XML property list of dicts, arrays, strings,
// integers and booleans.
func decodePlist(s string) (any, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "plist" {
				return nil, fmt.Errorf("root element <%s>, want <plist>", se.Name.Local)
			}
			return plistValue(d)
		}
	}
}

// plistValue reads the next value and the end of the element around it.
func plistValue(d *xml.Decoder) (any, error) {
	v, end, err := plistNext(d)
	if err != nil || end {
		return nil, errors.Join(err, errors.New("missing value"))
	}
	if _, end, err := plistNext(d); err != nil || !end {
		return nil, errors.Join(err, errors.New("more than one value"))
	}
	return v, nil
}

// plistNext reads one value, or reports the end of the enclosing element.
func plistNext(d *xml.Decoder) (v any, end bool, err error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, err
		}
		switch tok := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			v, err := plistElement(d, tok)
			return v, false, err
		}
	}
}

// plistKey is a dict's <key>, which only a dict may hold.
type plistKey string

func plistElement(d *xml.Decoder, se xml.StartElement) (any, error) {
	switch se.Name.Local {
	case "true", "false":
		return se.Name.Local == "true", d.Skip()
	case "string", "integer":
		var s string
		if err := d.DecodeElement(&s, &se); err != nil {
			return nil, err
		}
		if se.Name.Local == "integer" {
			return strconv.Atoi(s)
		}
		return s, nil
	case "array":
		a := []any{}
		for {
			v, end, err := plistNext(d)
			if err != nil || end {
				return a, err
			}
			a = append(a, v)
		}
	case "dict":
		m := map[string]any{}
		for {
			k, end, err := plistNext(d)
			if err != nil || end {
				return m, err
			}
			key, ok := k.(plistKey)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a <key>", k)
			}
			v, end, err := plistNext(d)
			if err != nil || end {
				return nil, errors.Join(err, fmt.Errorf("no value for key %q", key))
			}
			m[string(key)] = v
		}
	case "key":
		var s string
		err := d.DecodeElement(&s, &se)
		return plistKey(s), err
	}
	return nil, fmt.Errorf("unexpected <%s>", se.Name.Local)
}

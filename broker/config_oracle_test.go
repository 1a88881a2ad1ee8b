package broker

import (
	"bytes"
	"reflect"

	"github.com/pelletier/go-toml/v2"
)

// decodeWithGoTOML decodes doc with go-toml's strict decoder, the oracle
// for the decoder's handling of TOML (go-toml's decoder is quadratic in
// the number of tables, which is why brokerd does not use it).
func decodeWithGoTOML(doc []byte) (*document, error) {
	var d document
	dec := toml.NewDecoder(bytes.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	return &d, nil
}

// sameDocument reports whether two documents hold the same values, an
// empty slice or map being the same as none.
func sameDocument(a, b *document) bool {
	normalize(reflect.ValueOf(a).Elem())
	normalize(reflect.ValueOf(b).Elem())
	return reflect.DeepEqual(a, b)
}

// normalize replaces empty slices and maps within v by nil ones.
func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalize(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		if v.Kind() == reflect.Map {
			for _, k := range v.MapKeys() {
				normalize(v.MapIndex(k))
			}
		}
	}
}

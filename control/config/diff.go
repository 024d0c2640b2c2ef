package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Change is one difference between two configurations, by key as a
// problem names it (`route[2]`, `lisp.site[0].key`, `log.level`).
type Change struct {
	Key  string
	Kind ChangeKind
}

func (c Change) String() string { return c.Key + " " + c.Kind.String() }

// ChangeKind says how a key differs.
type ChangeKind int

const (
	Changed ChangeKind = iota
	Added
	Removed
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	}
	return "changed"
}

// Diff names every key that differs between the files of a and b (what
// they say, before defaults): a table or an array element that one has and
// the other lacks is one Added or Removed change; otherwise each differing
// value is a Changed change of its own key. A reload decides from these
// what it can apply live.
func Diff(a, b *Config) []Change {
	var out []Change
	diffValue(reflect.ValueOf(a.Source).Elem(), reflect.ValueOf(b.Source).Elem(), "", &out)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func diffValue(a, b reflect.Value, key string, out *[]Change) {
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil():
			*out = append(*out, Change{key, Added})
		case b.IsNil():
			*out = append(*out, Change{key, Removed})
		default:
			diffValue(a.Elem(), b.Elem(), key, out)
		}
	case reflect.Struct:
		t := a.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			diffValue(a.Field(i), b.Field(i), join(key, name), out)
		}
	case reflect.Slice:
		// Arrays of tables are compared element by element; arrays of
		// plain values ("prefixes", "rlocs") as one value.
		if a.Type().Elem().Kind() != reflect.Struct {
			if !reflect.DeepEqual(a.Interface(), b.Interface()) {
				*out = append(*out, Change{key, Changed})
			}
			return
		}
		for i := range max(a.Len(), b.Len()) {
			k := fmt.Sprintf("%s[%d]", key, i)
			switch {
			case i >= a.Len():
				*out = append(*out, Change{k, Added})
			case i >= b.Len():
				*out = append(*out, Change{k, Removed})
			default:
				diffValue(a.Index(i), b.Index(i), k, out)
			}
		}
	case reflect.Map:
		keys := map[string]bool{}
		for _, k := range a.MapKeys() {
			keys[fmt.Sprint(k.Interface())] = true
		}
		for _, k := range b.MapKeys() {
			keys[fmt.Sprint(k.Interface())] = true
		}
		for k := range keys {
			av, bv := a.MapIndex(reflect.ValueOf(k)), b.MapIndex(reflect.ValueOf(k))
			switch {
			case !av.IsValid():
				*out = append(*out, Change{join(key, k), Added})
			case !bv.IsValid():
				*out = append(*out, Change{join(key, k), Removed})
			case !reflect.DeepEqual(av.Interface(), bv.Interface()):
				*out = append(*out, Change{join(key, k), Changed})
			}
		}
	default:
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, Change{key, Changed})
		}
	}
}

package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/wire"
)

// schemas turns Go types into JSON Schemas (the dialect of OpenAPI 3.1):
// the request and response types the handlers encode and decode are the
// one source of the document's schemas. Named structs become components.
//
// Field names come from the json tag, or for generated proto messages
// from the proto name (protojson with UseProtoNames, as the API renders
// them). A field is required unless it is omitempty (proto messages: every
// field is written, EmitDefaultValues). Tags: doc:"…" is the description,
// enum:"a,b" the allowed values, or enum:"@name" a list of namedEnums (the
// vocabulary defined elsewhere, never copied into a tag).
type schemas struct {
	components map[string]any
	// omit lists fields of a component left out of what the API shows
	// (component → field → true).
	omit map[string]map[string]bool
	// optional lists fields of a component that are not always present.
	optional map[string]map[string]bool
	// required replaces the required fields of a component (requests:
	// what validation insists on).
	required map[string][]string
	// names renames types in the document (unexported request types).
	names map[reflect.Type]string
}

var (
	timeType      = reflect.TypeFor[time.Time]()
	timestampType = reflect.TypeFor[timestamppb.Timestamp]()
	rawType       = reflect.TypeFor[json.RawMessage]()
	valueType     = reflect.TypeFor[structpb.Value]()
)

func (s *schemas) of(t reflect.Type) map[string]any {
	switch t {
	case timeType, timestampType:
		return map[string]any{"type": "string", "format": "date-time"}
	case rawType, valueType:
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return s.of(t.Elem())
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": s.of(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.of(t.Elem())}
	case reflect.Struct:
		name := t.Name()
		if n, ok := s.names[t]; ok {
			name = n
		}
		if name == "" {
			return s.object(t, "")
		}
		if _, ok := s.components[name]; !ok {
			s.components[name] = nil // a recursive type refers to itself
			s.components[name] = s.object(t, name)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (s *schemas) object(t reflect.Type, name string) map[string]any {
	props := map[string]any{}
	var required []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		field, omitempty := jsonName(f)
		if field == "-" || s.omit[name][field] {
			continue
		}
		ps := s.of(f.Type)
		if d := f.Tag.Get("doc"); d != "" || f.Tag.Get("enum") != "" {
			ps = withMeta(ps, d, f.Tag.Get("enum"))
		}
		props[field] = ps
		if !omitempty && !s.optional[name][field] {
			required = append(required, field)
		}
	}
	out := map[string]any{"type": "object", "properties": props}
	if r, ok := s.required[name]; ok {
		required = r
	}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

// withMeta adds a description and an enum; a $ref gets them beside it
// (allowed in OpenAPI 3.1).
func withMeta(ps map[string]any, doc, enum string) map[string]any {
	out := map[string]any{}
	for k, v := range ps {
		out[k] = v
	}
	if doc != "" {
		out["description"] = doc
	}
	if name, ok := strings.CutPrefix(enum, "@"); ok {
		out["enum"] = namedEnums[name] // TestNamedEnums: every name is known
	} else if enum != "" {
		out["enum"] = strings.Split(enum, ",")
	}
	return out
}

// namedEnums are the enums whose values pkg/wire defines.
var namedEnums = map[string][]string{
	"dead_letter_reasons": wire.DeadLetterReasons(),
}

// jsonName is the field's name in JSON and whether it may be absent.
func jsonName(f reflect.StructField) (string, bool) {
	if pb := f.Tag.Get("protobuf"); pb != "" {
		for _, part := range strings.Split(pb, ",") {
			if n, ok := strings.CutPrefix(part, "name="); ok {
				return n, false
			}
		}
	}
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, strings.Contains(opts, "omitempty")
}

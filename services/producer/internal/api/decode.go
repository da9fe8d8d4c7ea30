package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// decodeJSON reads exactly one JSON object of at most limit bytes into v,
// refusing unknown fields. Every failure is the client's: 400, 413 or 415.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *Problem {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return problem(http.StatusUnsupportedMediaType, TypeUnsupportedMedia, "Content-Type must be application/json")
		}
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeProblem(err, limit)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if p := tooLarge(err, limit); p != nil {
			return p
		}
		return invalid("the body must hold a single JSON object")
	}
	return nil
}

// decodeIdempotent reads the Idempotency-Key of a request that may carry
// one (key "" without), then decodes its body as decodeJSON does; with a
// key it also returns the bytes read (the request fingerprints its body).
func decodeIdempotent(w http.ResponseWriter, r *http.Request, limit int64, v any) (key string, raw []byte, p *Problem) {
	if key, p = idempotencyKey(r); p != nil {
		return "", nil, p
	}
	if key == "" {
		return "", nil, decodeJSON(w, r, limit, v)
	}
	var buf bytes.Buffer
	r.Body = teeBody{Reader: io.TeeReader(r.Body, &buf), Closer: r.Body}
	p = decodeJSON(w, r, limit, v)
	return key, buf.Bytes(), p
}

type teeBody struct {
	io.Reader
	io.Closer
}

func tooLarge(err error, limit int64) *Problem {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem(http.StatusRequestEntityTooLarge, TypeTooLarge, fmt.Sprintf("the body is larger than %d bytes", limit))
	}
	return nil
}

func decodeProblem(err error, limit int64) *Problem {
	if p := tooLarge(err, limit); p != nil {
		return p
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return invalid("the body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("malformed JSON: the body ends too early")
	case errors.As(err, &syntax):
		return invalid(fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, syntax.Error()))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return invalid(fmt.Sprintf("the body must be a JSON object, not %s", typ.Value))
		}
		return invalid(fmt.Sprintf("field %q must be %s, not %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return invalid("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return invalid("malformed JSON: " + err.Error())
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "uint8", "uint16", "uint32", "uint64", "uint":
		return "a non-negative integer"
	case "int8", "int16", "int32", "int64", "int":
		return "an integer"
	case "float32", "float64":
		return "a number"
	default:
		return "another type"
	}
}

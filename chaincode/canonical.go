package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"
)

// parseCanonical decodes a JSON document and checks that data is its canonical encoding:
// the encoding BlockImage signs (Python's json.dumps with sort_keys=True, separators=(",", ":"),
// ensure_ascii=False): object keys sorted by code point, no insignificant whitespace, UTF-8,
// the short escapes \" \\ \b \f \n \r \t and \u00xx for other control characters only.
// Numbers are kept as written (json.Number), so re-encoding is exact for them.
func parseCanonical(data []byte) (map[string]interface{}, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("record JSON is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var value interface{}
	if err := dec.Decode(&value); err != nil {
		return nil, fmt.Errorf("record is not JSON: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("record JSON has trailing data")
	}
	object, ok := value.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("record JSON is not an object")
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, object); err != nil {
		return nil, err
	}
	if !bytes.Equal(buf.Bytes(), data) {
		return nil, fmt.Errorf("record JSON is not in canonical form (sorted keys, no whitespace, " +
			"minimal escapes, no duplicate keys)")
	}
	return object, nil
}

// canonicalJSON encodes value (as produced by parseCanonical) in canonical form.
func canonicalJSON(value interface{}) ([]byte, error) {
	var buf bytes.Buffer
	err := writeCanonical(&buf, value)
	return buf.Bytes(), err
}

func writeCanonical(buf *bytes.Buffer, value interface{}) error {
	switch v := value.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case json.Number:
		buf.WriteString(v.String())
	case string:
		writeString(buf, v)
	case []interface{}:
		buf.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, item); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]interface{}:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // byte order of UTF-8 is code point order
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			if err := writeCanonical(buf, v[k]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value of type %T", value)
	}
	return nil
}

func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(buf, `\u%04x`, r)
			} else {
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
}

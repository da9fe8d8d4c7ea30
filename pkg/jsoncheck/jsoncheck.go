// Package jsoncheck holds a fast JSON syntax check: Valid answers exactly what
// encoding/json.Valid answers, for every input, without its per-byte
// state-function calls.
//
// The grammar is RFC 8259 as encoding/json implements it:
//
//   - one value, with optional whitespace (space, \t, \n, \r) around it;
//     empty or all-whitespace input is invalid;
//   - strings: bytes below 0x20 are invalid, escapes are \" \\ \/ \b \f \n \r \t
//     and \u with four hex digits; UTF-8 is NOT checked (encoding/json.Valid
//     accepts invalid UTF-8 and lone surrogate escapes inside strings);
//   - numbers: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?;
//   - literals true, false, null;
//   - at most 10000 nested arrays and objects (encoding/json's maxNestingDepth).
package jsoncheck

import (
	"encoding/binary"
	"math/bits"
)

// maxDepth is encoding/json's maxNestingDepth: 10000 nested containers are
// valid, 10001 are not.
const maxDepth = 10000

// stackWords is how many 64-bit words of container kinds (one bit per level:
// 1 object, 0 array) live on Valid's stack frame; deeper input grows the
// stack on the heap. 4 words = 256 levels without an allocation.
const stackWords = 4

// Valid reports whether data is a valid JSON encoding. It returns the same as
// encoding/json.Valid for every input, and never allocates for input nested
// at most 256 deep.
//
// It is one iterative loop: parse a value; then, while the value just ended
// closes a container, pop; a ',' asks for the next value (after a key, in an
// object).
func Valid(data []byte) bool {
	var buf [stackWords]uint64
	kinds := buf[:]
	depth := 0
	n := len(data)
	i := 0
	for {
		// A value starts at i, after optional whitespace.
		i = skipSpace(data, i)
		if i >= n {
			return false
		}
		switch c := data[i]; {
		case c == '"':
			if i = scanString(data, i+1); i < 0 {
				return false
			}
		case c == '{' || c == '[':
			if depth == maxDepth {
				return false
			}
			w := depth >> 6
			if w == len(kinds) {
				kinds = append(kinds, 0)
			}
			bit := uint64(1) << (depth & 63)
			depth++
			i = skipSpace(data, i+1)
			if c == '{' {
				kinds[w] |= bit
				if i < n && data[i] == '}' {
					i++
					depth--
					break // an empty object is a value that just ended
				}
				if i = scanKey(data, i); i < 0 {
					return false
				}
			} else {
				kinds[w] &^= bit
				if i < n && data[i] == ']' {
					i++
					depth--
					break // an empty array is a value that just ended
				}
			}
			continue // the first member's value
		case c == '-' || c-'0' < 10:
			if i = scanNumber(data, i); i < 0 {
				return false
			}
		case c == 't':
			if n-i < 4 || string(data[i:i+4]) != "true" {
				return false
			}
			i += 4
		case c == 'f':
			if n-i < 5 || string(data[i:i+5]) != "false" {
				return false
			}
			i += 5
		case c == 'n':
			if n-i < 4 || string(data[i:i+4]) != "null" {
				return false
			}
			i += 4
		default:
			return false
		}

		// A value ended at i: close containers until one asks for another
		// value with ','. A number ends at the first byte that cannot
		// continue it, and that byte must be one of these too, so "01",
		// "1x" and "truex" fail here.
		for {
			if depth == 0 {
				return skipSpace(data, i) == n
			}
			i = skipSpace(data, i)
			if i >= n {
				return false
			}
			top := depth - 1
			object := kinds[top>>6]>>(top&63)&1 != 0
			c := data[i]
			if c == ',' {
				i++
				if object {
					if i = scanKey(data, i); i < 0 {
						return false
					}
				}
				break
			}
			if object && c == '}' || !object && c == ']' {
				i++
				depth--
				continue
			}
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace (len(data) if there is none).
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		c := data[i]
		if c > ' ' || c != ' ' && c != '\n' && c != '\r' && c != '\t' {
			break
		}
		i++
	}
	return i
}

// scanKey checks an object key and its colon, whitespace allowed before
// each, starting at i; it returns the index after the colon, or -1.
func scanKey(data []byte, i int) int {
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '"' {
		return -1
	}
	if i = scanString(data, i+1); i < 0 {
		return -1
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return -1
	}
	return i + 1
}

// SWAR constants: one in every byte, the high bit of every byte.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// scanString checks the rest of a string whose opening quote is just before
// i; it returns the index after the closing quote, or -1.
//
// Ordinary bytes are skipped eight at a time: a word is flagged when any byte
// is below 0x20, a '"' or a '\\' ("determine if a word has a byte less than
// n" and "has a zero byte" from Bit Twiddling Hacks). Each test is exact about
// whether such a byte exists and its lowest flagged byte is the first real
// one (a false flag can only sit above a real one, where the borrow went), so
// the lowest flag of their union is the first byte that is not ordinary.
func scanString(data []byte, i int) int {
	n := len(data)
	for {
		for ; n-i >= 8; i += 8 {
			x := binary.LittleEndian.Uint64(data[i:])
			q := x ^ (lsb * '"')
			b := x ^ (lsb * '\\')
			m := ((x - lsb*0x20) &^ x) | ((q - lsb) &^ q) | ((b - lsb) &^ b)
			if m &= msb; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
		}
		if i >= n {
			return -1
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= n {
				return -1
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if n-i < 6 || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return -1
				}
				i += 6
			default:
				return -1
			}
		case c < 0x20:
			return -1
		default:
			// An ordinary byte in the last seven, which the word loop
			// does not reach.
			i++
		}
	}
}

// isHex reports whether c is a hex digit, either case.
func isHex(c byte) bool {
	return c-'0' < 10 || (c|0x20)-'a' < 6
}

// scanNumber checks a number starting at i (at '-' or a digit); it returns the
// index of the first byte after it, or -1. What follows is not its business:
// the caller decides whether that byte may end a value.
func scanNumber(data []byte, i int) int {
	n := len(data)
	if data[i] == '-' {
		i++
		if i >= n {
			return -1
		}
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c-'1' < 9:
		i = skipDigits(data, i+1)
	default:
		return -1
	}
	if i < n && data[i] == '.' {
		start := i + 1
		if i = skipDigits(data, start); i == start {
			return -1
		}
	}
	if i < n && data[i]|0x20 == 'e' {
		i++
		if i < n && (data[i] == '+' || data[i] == '-') {
			i++
		}
		start := i
		if i = skipDigits(data, start); i == start {
			return -1
		}
	}
	return i
}

// skipDigits returns the index of the first byte at or after i that is not a
// decimal digit.
func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i]-'0' < 10 {
		i++
	}
	return i
}

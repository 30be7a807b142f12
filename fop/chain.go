// Package fop is the processing-URL language: a query such as
// "imageView2/2/w/200|ufop-demo/x&e=1700000000&token=..." becomes a Chain of
// Cmds plus the download parameters. It is pure: no I/O, no knowledge of what
// any command does beyond the names its Spec declares.
package fop

import (
	"fmt"
	"net/url"
	"strings"
)

// Cmd is one segment of a chain: a command name and its '/'-separated tokens.
type Cmd struct {
	Name  string   // command name, case-sensitive ("imageView2")
	Args  []string // tokens after the name, percent-decoded
	Raw   string   // the segment exactly as written in the URL
	Index int      // 1-based position in the chain, for error messages
}

// String returns the segment as written.
func (c Cmd) String() string { return c.Raw }

// Chain is a parsed processing query.
type Chain struct {
	Cmds []Cmd
	// Raw is the chain part of the query as sent (signatures are computed
	// over it, so it is kept byte for byte).
	Raw string
	// Download holds the k=v parameters after the chain (e, token, attname...).
	Download url.Values
}

// Empty reports whether the query asked for no processing.
func (c Chain) Empty() bool { return len(c.Cmds) == 0 }

// ParseError says which segment of a chain is wrong and why.
type ParseError struct {
	Segment int    // 1-based; 0 when the query as a whole is wrong
	Text    string // the offending segment as written
	Reason  string
}

func (e *ParseError) Error() string {
	if e.Segment == 0 {
		return "bad fop: " + e.Reason
	}
	return fmt.Sprintf("bad fop segment %d %q: %s", e.Segment, e.Text, e.Reason)
}

// HTTPStatus makes every parse error a 400 (see package errs).
func (e *ParseError) HTTPStatus() int { return 400 }

// Parse splits a raw URL query (without '?') into the command chain and the
// download parameters.
//
// The chain is the query up to the first '&', unless that first item looks
// like k=v (its command-name part holds '='), in which case the whole query is
// download parameters: "?e=1&token=x" is a plain download. The chain is split
// on '|' and its escaped form "%7C" before any decoding, so that a decoded
// base64 value can never introduce a separator; then each token is
// percent-decoded on its own.
//
// "ufop=<segment>" as the first item is accepted as an alias of "<segment>",
// the form some Qiniu-compatible vendors use.
func Parse(rawQuery string) (Chain, error) {
	first, rest, _ := strings.Cut(rawQuery, "&")
	var ch Chain
	if isKV(first) {
		if name, val, _ := strings.Cut(first, "="); name == "ufop" && val != "" {
			dl, err := url.ParseQuery(rest)
			if err != nil {
				return Chain{}, &ParseError{Reason: "bad download parameters: " + err.Error()}
			}
			ch.Download = dl
			first = val
		} else {
			dl, err := url.ParseQuery(rawQuery)
			if err != nil {
				return Chain{}, &ParseError{Reason: "bad query: " + err.Error()}
			}
			return Chain{Download: dl}, nil
		}
	} else {
		dl, err := url.ParseQuery(rest)
		if err != nil {
			return Chain{}, &ParseError{Reason: "bad download parameters: " + err.Error()}
		}
		ch.Download = dl
	}
	ch.Raw = first
	if first == "" {
		return ch, nil
	}
	for i, seg := range splitPipes(first) {
		cmd, err := parseSegment(i+1, seg)
		if err != nil {
			return Chain{}, err
		}
		ch.Cmds = append(ch.Cmds, cmd)
	}
	return ch, nil
}

// isKV reports whether a query item is k=v rather than a fop: the part before
// the first '/' or pipe holds '='. Base64 padding later in a fop ("...==")
// does not count.
func isKV(item string) bool {
	head := item
	if i := strings.IndexByte(head, '/'); i >= 0 {
		head = head[:i]
	}
	if i := strings.IndexByte(head, '|'); i >= 0 {
		head = head[:i]
	}
	if i := indexFold(head, "%7c"); i >= 0 {
		head = head[:i]
	}
	return strings.Contains(head, "=")
}

// splitPipes splits s on '|' and on "%7C" (either case).
func splitPipes(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); {
		switch {
		case s[i] == '|':
			out = append(out, s[start:i])
			i++
			start = i
		case s[i] == '%' && i+2 < len(s) && s[i+1] == '7' && (s[i+2] == 'C' || s[i+2] == 'c'):
			out = append(out, s[start:i])
			i += 3
			start = i
		default:
			i++
		}
	}
	return append(out, s[start:])
}

func parseSegment(idx int, seg string) (Cmd, error) {
	fail := func(format string, a ...any) error {
		return &ParseError{Segment: idx, Text: seg, Reason: fmt.Sprintf(format, a...)}
	}
	if seg == "" {
		return Cmd{}, fail("empty segment")
	}
	toks := strings.Split(seg, "/")
	dec := make([]string, len(toks))
	for i, t := range toks {
		if t == "" {
			if i == len(toks)-1 {
				return Cmd{}, fail("trailing '/'")
			}
			return Cmd{}, fail("empty token at position %d", i+1)
		}
		d, err := url.PathUnescape(t)
		if err != nil {
			return Cmd{}, fail("bad percent-escape in %q", t)
		}
		dec[i] = d
	}
	if !validName(dec[0]) {
		return Cmd{}, fail("bad command name %q", dec[0])
	}
	return Cmd{Name: dec[0], Args: dec[1:], Raw: seg, Index: idx}, nil
}

// validName accepts command and UFOP names: a letter or digit, then letters,
// digits, '-', '_', '.'.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '-' || r == '_' || r == '.'):
		default:
			return false
		}
	}
	return true
}

func indexFold(s, sub string) int {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		if strings.EqualFold(s[i:i+n], sub) {
			return i
		}
	}
	return -1
}

package fop

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Kind says how a named parameter is written.
type Kind int

const (
	// Value parameters are followed by one value token: "w/200".
	Value Kind = iota
	// Flag parameters stand alone: "auto-orient", "strip".
	Flag
)

// Spec declares the parameters a command accepts. The parser needs it because
// the grammar alone cannot tell a flag from a name followed by its value.
type Spec struct {
	// Positional is how many leading values come without a name
	// ("imageView2/<mode>" has 1).
	Positional int
	// Named maps each parameter name to its kind.
	Named map[string]Kind
	// Repeat allows a name more than once (imageMogr2 applies operations in
	// the order written, so "rotate/90/.../rotate/90" is meaningful).
	Repeat bool
}

// Param is one parameter in the order written.
type Param struct {
	Name  string // "" for a positional value
	Value string // "" for a flag
}

// Params parses the command's tokens against spec. Errors name the segment
// and the token at fault.
func (c Cmd) Params(spec Spec) ([]Param, error) {
	var out []Param
	args := c.Args
	for i := 0; i < spec.Positional && len(args) > 0; i++ {
		if _, named := spec.Named[args[0]]; named {
			break
		}
		out = append(out, Param{Value: args[0]})
		args = args[1:]
	}
	seen := map[string]bool{}
	for len(args) > 0 {
		name := args[0]
		kind, ok := spec.Named[name]
		if !ok {
			return nil, c.Errorf("unknown parameter %q", name)
		}
		if seen[name] && !spec.Repeat {
			return nil, c.Errorf("parameter %q given twice", name)
		}
		seen[name] = true
		if kind == Flag {
			out = append(out, Param{Name: name})
			args = args[1:]
			continue
		}
		if len(args) < 2 {
			return nil, c.Errorf("parameter %q needs a value", name)
		}
		out = append(out, Param{Name: name, Value: args[1]})
		args = args[2:]
	}
	return out, nil
}

// Errorf returns a *ParseError about this command.
func (c Cmd) Errorf(format string, a ...any) error {
	return &ParseError{Segment: c.Index, Text: c.Raw, Reason: fmt.Sprintf(format, a...)}
}

// Int parses a decimal parameter value within [min, max].
func (c Cmd) Int(name, v string, min, max int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || strings.HasPrefix(v, "+") {
		return 0, c.Errorf("%s must be an integer, got %q", name, v)
	}
	if n < min || n > max {
		return 0, c.Errorf("%s must be in %d..%d, got %d", name, min, max, n)
	}
	return n, nil
}

// DecodeBase64 decodes a URL-safe base64 parameter, with or without '='
// padding. Standard-alphabet input ('+', '/') is refused: '/' would already
// have split the token, so accepting '+' alone would only hide client bugs.
func DecodeBase64(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not URL-safe base64: %q", s)
	}
	return b, nil
}

// EncodeBase64 is the URL-safe base64 (with padding) that Qiniu uses.
func EncodeBase64(b []byte) string { return base64.URLEncoding.EncodeToString(b) }

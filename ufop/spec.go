// Package ufop is the domain of custom processors (UFOPs): the ufop.yaml
// description file, flavors, records and the Keeper that stores them, and
// the client of the /uop and /handler protocols.
package ufop

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Protocol is how the platform calls an instance.
type Protocol string

const (
	// ProtocolHandler is UFOP v2: POST /handler?cmd=&url= (or the input as
	// the body).
	ProtocolHandler Protocol = "handler"
	// ProtocolUOP is UFOP v1: POST /uop with a JSON body.
	ProtocolUOP Protocol = "uop"
)

// Spec is a parsed ufop.yaml: Qiniu's image, build_script and run, plus our
// extensions.
type Spec struct {
	Image       string   `json:"image"`
	BuildScript []string `json:"build_script,omitempty"`
	Run         string   `json:"run"`
	Protocol    Protocol `json:"protocol"`
	// Health is the HTTP path that answers 200 when an instance is ready.
	// Empty (Qiniu's ufop.yaml has no such key): an instance is ready when
	// its port accepts connections, and for ProtocolUOP when it gives any
	// HTTP answer to a probe.
	Health string            `json:"health,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	Flavor string            `json:"flavor"`
	// Concurrency is how many requests one instance takes at once.
	Concurrency int           `json:"concurrency"`
	Timeout     time.Duration `json:"timeout"`
	KillTimeout time.Duration `json:"kill_timeout"`
}

// Defaults of the extensions.
const (
	// DefaultProtocol is Qiniu v1's: ufop.yaml is v1's description file,
	// and its programs serve POST /uop (v2 programs say protocol: handler).
	DefaultProtocol    = ProtocolUOP
	DefaultFlavor      = "C1M1"
	DefaultConcurrency = 1
	DefaultTimeout     = 30 * time.Second
	DefaultKillTimeout = 5 * time.Second // Nomad's default kill_timeout

	MaxTimeout     = time.Hour
	MaxKillTimeout = 30 * time.Second // Nomad clients' default max_kill_timeout
	MaxConcurrency = 1024
	MaxSpecBytes   = 64 << 10
)

// SpecError is a ufop.yaml problem at a line.
type SpecError struct {
	Line int
	Key  string
	Msg  string
}

func (e *SpecError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("ufop.yaml:%d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("ufop.yaml:%d: %s: %s", e.Line, e.Key, e.Msg)
}

// HTTPStatus makes a bad ufop.yaml a 400 (see package errs).
func (e *SpecError) HTTPStatus() int { return 400 }

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	imageRef = regexp.MustCompile(`^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$`)
)

// reservedEnv are set by the platform and cannot be overridden.
var reservedEnv = map[string]bool{"PORT_HTTP": true, "RESOURCE": true}

// ParseSpec parses and validates ufop.yaml. Every error names the line and
// the key; all of them are reported at once.
func ParseSpec(data []byte) (*Spec, error) {
	if len(data) > MaxSpecBytes {
		return nil, &SpecError{Line: 1, Msg: fmt.Sprintf("file is %d bytes, over the %d-byte limit", len(data), MaxSpecBytes)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &SpecError{Line: 1, Msg: "file is empty"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &SpecError{Line: root.Line, Msg: "want a mapping of keys (image, build_script, run, ...)"}
	}
	s := &Spec{
		Protocol:    DefaultProtocol,
		Flavor:      DefaultFlavor,
		Concurrency: DefaultConcurrency,
		Timeout:     DefaultTimeout,
		KillTimeout: DefaultKillTimeout,
	}
	var es []error
	bad := func(n *yaml.Node, key, format string, a ...any) {
		es = append(es, &SpecError{Line: n.Line, Key: key, Msg: fmt.Sprintf(format, a...)})
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		if prev, dup := seen[key]; dup {
			bad(k, key, "given twice (first at line %d)", prev.Line)
			continue
		}
		seen[key] = k
		switch key {
		case "image":
			if str, ok := scalar(v); !ok || str == "" {
				bad(v, key, "want a non-empty image name")
			} else if !validImage(str) {
				bad(v, key, "%q is not an image name (ubuntu, <ufop>.v<N>, or repo/name:tag)", str)
			} else {
				s.Image = str
			}
		case "build_script":
			if v.Kind != yaml.SequenceNode {
				bad(v, key, "want a list of shell commands")
				continue
			}
			for _, item := range v.Content {
				str, ok := scalar(item)
				if !ok || strings.TrimSpace(str) == "" {
					bad(item, key, "each entry must be a non-empty command")
					continue
				}
				s.BuildScript = append(s.BuildScript, str)
			}
		case "run":
			if str, ok := scalar(v); !ok || strings.TrimSpace(str) == "" {
				bad(v, key, "want the command that starts the program")
			} else {
				s.Run = str
			}
		case "protocol":
			str, _ := scalar(v)
			switch Protocol(str) {
			case ProtocolHandler, ProtocolUOP:
				s.Protocol = Protocol(str)
			default:
				bad(v, key, "want handler or uop, got %q", v.Value)
			}
		case "health":
			if str, ok := scalar(v); !ok || !strings.HasPrefix(str, "/") || strings.ContainsAny(str, " \t\n?#") {
				bad(v, key, "want an HTTP path such as /health, got %q", v.Value)
			} else {
				s.Health = str
			}
		case "env":
			if v.Kind != yaml.MappingNode {
				bad(v, key, "want a mapping NAME: value")
				continue
			}
			s.Env = map[string]string{}
			for j := 0; j+1 < len(v.Content); j += 2 {
				ek, ev := v.Content[j], v.Content[j+1]
				val, ok := scalar(ev)
				switch {
				case !envName.MatchString(ek.Value):
					bad(ek, key, "%q is not a valid variable name", ek.Value)
				case reservedEnv[ek.Value]:
					bad(ek, key, "%s is set by the platform", ek.Value)
				case !ok:
					bad(ev, key, "%s: want a string value", ek.Value)
				default:
					s.Env[ek.Value] = val
				}
			}
		case "flavor":
			str, _ := scalar(v)
			if _, err := ParseFlavor(str); err != nil {
				bad(v, key, "%v", err)
			} else {
				s.Flavor = str
			}
		case "concurrency":
			str, _ := scalar(v)
			n, err := strconv.Atoi(str)
			if err != nil || n < 1 || n > MaxConcurrency {
				bad(v, key, "want an integer in 1..%d, got %q", MaxConcurrency, v.Value)
			} else {
				s.Concurrency = n
			}
		case "timeout":
			if d, err := duration(v, MaxTimeout); err != nil {
				bad(v, key, "%v", err)
			} else {
				s.Timeout = d
			}
		case "kill_timeout":
			if d, err := duration(v, MaxKillTimeout); err != nil {
				bad(v, key, "%v", err)
			} else {
				s.KillTimeout = d
			}
		default:
			bad(k, key, "unknown key (known: image, build_script, run, protocol, health, env, flavor, concurrency, timeout, kill_timeout)")
		}
	}
	for _, req := range []string{"image", "run"} {
		if seen[req] == nil {
			es = append(es, &SpecError{Line: root.Line, Key: req, Msg: "missing (required)"})
		}
	}
	if len(es) > 0 {
		return nil, errors.Join(es...)
	}
	return s, nil
}

// scalar returns the value of a scalar node (numbers and booleans as
// written).
func scalar(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", false
	}
	return n.Value, true
}

// duration accepts Go durations ("30s", "1m30s") or whole seconds (30).
func duration(n *yaml.Node, max time.Duration) (time.Duration, error) {
	str, ok := scalar(n)
	if !ok {
		return 0, fmt.Errorf("want a duration such as 30s")
	}
	d, err := time.ParseDuration(str)
	if err != nil {
		secs, aerr := strconv.Atoi(str)
		if aerr != nil {
			return 0, fmt.Errorf("want a duration such as 30s, got %q", str)
		}
		d = time.Duration(secs) * time.Second
	}
	if d <= 0 || d > max {
		return 0, fmt.Errorf("want a duration in (0, %s], got %s", max, d)
	}
	return d, nil
}

func validImage(s string) bool {
	return len(s) <= 255 && imageRef.MatchString(s)
}

// yamlError turns a yaml.v3 syntax error ("yaml: line 3: ...") into a
// SpecError with its line.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, tail
			}
		}
	}
	return &SpecError{Line: line, Msg: "not valid YAML: " + msg}
}

// prevVersion is ufop.yaml's way of building on another UFOP's version:
// image: <ufop>.v<N> (Qiniu's "test.v7").
var prevVersion = regexp.MustCompile(`^([a-z0-9]+(?:[._-][a-z0-9]+)*)\.v([1-9][0-9]*)$`)

// ParseBase reads an image of the form <ufop>.v<N>: the UFOP name and
// version an image is built on.
func ParseBase(image string) (name string, version int, ok bool) {
	m := prevVersion.FindStringSubmatch(image)
	if m == nil {
		return "", 0, false
	}
	v, err := strconv.Atoi(m[2])
	if err != nil {
		return "", 0, false
	}
	return m[1], v, true
}

// BaseVersion says which version of UFOP name image builds on, if any.
func BaseVersion(image, name string) (int, bool) {
	n, v, ok := ParseBase(image)
	return v, ok && n == name
}

package fop

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// mustCmd parses a one-segment chain.
func mustCmd(t *testing.T, seg string) Cmd {
	t.Helper()
	ch, err := Parse(seg)
	if err != nil || len(ch.Cmds) != 1 {
		t.Fatalf("Parse(%q) = %+v, %v", seg, ch, err)
	}
	return ch.Cmds[0]
}

var (
	view2Spec = Spec{
		Positional: 1,
		Named:      map[string]Kind{"w": Value, "h": Value, "q": Value, "format": Value, "interlace": Value},
	}
	mogrSpec = Spec{
		Named:  map[string]Kind{"auto-orient": Flag, "strip": Flag, "rotate": Value, "thumbnail": Value},
		Repeat: true,
	}
	twoPosSpec = Spec{
		Positional: 2,
		Named:      map[string]Kind{"x": Value, "f": Flag},
	}
)

func TestParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		seg  string
		spec Spec
		want []Param
		err  string // substring of the error; "" for success
	}{
		{name: "no args", seg: "imageInfo", spec: Spec{}, want: nil},
		{name: "no args, spec with positional", seg: "imageView2", spec: view2Spec, want: nil},
		{
			name: "positional and named",
			seg:  "imageView2/2/w/200/h/100",
			spec: view2Spec,
			want: []Param{{Value: "2"}, {Name: "w", Value: "200"}, {Name: "h", Value: "100"}},
		},
		{
			name: "positional omitted",
			seg:  "imageView2/w/200",
			spec: view2Spec,
			want: []Param{{Name: "w", Value: "200"}},
		},
		{
			name: "positional only",
			seg:  "imageView2/1",
			spec: view2Spec,
			want: []Param{{Value: "1"}},
		},
		{
			name: "two positionals",
			seg:  "c/a/b/x/1/f",
			spec: twoPosSpec,
			want: []Param{{Value: "a"}, {Value: "b"}, {Name: "x", Value: "1"}, {Name: "f"}},
		},
		{
			name: "fewer positionals than allowed",
			seg:  "c/a/f",
			spec: twoPosSpec,
			want: []Param{{Value: "a"}, {Name: "f"}},
		},
		{
			name: "too many positionals",
			seg:  "c/a/b/c",
			spec: twoPosSpec,
			err:  `unknown parameter "c"`,
		},
		{
			name: "flags and values in order",
			seg:  "imageMogr2/auto-orient/thumbnail/200x300%3E/strip",
			spec: mogrSpec,
			want: []Param{{Name: "auto-orient"}, {Name: "thumbnail", Value: "200x300>"}, {Name: "strip"}},
		},
		{
			name: "repeat allowed",
			seg:  "imageMogr2/rotate/90/strip/rotate/90",
			spec: mogrSpec,
			want: []Param{{Name: "rotate", Value: "90"}, {Name: "strip"}, {Name: "rotate", Value: "90"}},
		},
		{
			name: "repeated flag allowed",
			seg:  "imageMogr2/strip/strip",
			spec: mogrSpec,
			want: []Param{{Name: "strip"}, {Name: "strip"}},
		},
		{
			name: "repeat forbidden",
			seg:  "imageView2/2/w/200/w/300",
			spec: view2Spec,
			err:  `parameter "w" given twice`,
		},
		{
			name: "repeated flag forbidden",
			seg:  "c/f/f",
			spec: twoPosSpec,
			err:  `parameter "f" given twice`,
		},
		{
			name: "unknown name",
			seg:  "imageView2/2/x/1",
			spec: view2Spec,
			err:  `unknown parameter "x"`,
		},
		{
			name: "names are case-sensitive",
			seg:  "imageView2/2/W/1",
			spec: view2Spec,
			err:  `unknown parameter "W"`,
		},
		{
			name: "missing value",
			seg:  "imageView2/2/w/200/h",
			spec: view2Spec,
			err:  `parameter "h" needs a value`,
		},
		{
			name: "missing value, no positional",
			seg:  "imageMogr2/rotate",
			spec: mogrSpec,
			err:  `parameter "rotate" needs a value`,
		},
		{
			name: "value may look like a name",
			seg:  "imageView2/2/format/w",
			spec: view2Spec,
			want: []Param{{Value: "2"}, {Name: "format", Value: "w"}},
		},
		{
			name: "unknown parameter with no spec names",
			seg:  "imageInfo/x",
			spec: Spec{},
			err:  `unknown parameter "x"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCmd(t, tc.seg)
			got, err := c.Params(tc.spec)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Params: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Params = %#v, want %#v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Params = %#v, want error ~%q", got, tc.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Segment != 1 || pe.Text != tc.seg || pe.HTTPStatus() != 400 {
				t.Errorf("error %#v should be a 400 *ParseError for segment 1 %q", err, tc.seg)
			}
			if !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "segment 1") {
				t.Errorf("error %q, want ~%q naming segment 1", err, tc.err)
			}
		})
	}
}

func TestParamsNamesSegment(t *testing.T) {
	ch, err := Parse("imageInfo|imageView2/2/z/1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.Cmds[1].Params(view2Spec)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Segment != 2 || pe.Text != "imageView2/2/z/1" {
		t.Fatalf("error %v should name segment 2", err)
	}
	if !strings.Contains(err.Error(), `bad fop segment 2 "imageView2/2/z/1"`) {
		t.Errorf("message %q", err)
	}
}

func TestInt(t *testing.T) {
	c := mustCmd(t, "imageView2/2/w/200")
	for _, tc := range []struct {
		v        string
		min, max int
		want     int
		err      string
	}{
		{"200", 1, 9999, 200, ""},
		{"1", 1, 9999, 1, ""},
		{"9999", 1, 9999, 9999, ""},
		{"0", 0, 0, 0, ""},
		{"-5", -10, 10, -5, ""},
		{"007", 0, 10, 7, ""},
		{"0", 1, 9999, 0, "w must be in 1..9999, got 0"},
		{"10000", 1, 9999, 0, "w must be in 1..9999, got 10000"},
		{"-1", 0, 100, 0, "w must be in 0..100, got -1"},
		{"+5", 0, 100, 0, `w must be an integer, got "+5"`},
		{"", 0, 100, 0, `w must be an integer, got ""`},
		{"1.5", 0, 100, 0, "must be an integer"},
		{"0x10", 0, 100, 0, "must be an integer"},
		{" 5", 0, 100, 0, "must be an integer"},
		{"5 ", 0, 100, 0, "must be an integer"},
		{"1e3", 0, 10000, 0, "must be an integer"},
		{"abc", 0, 100, 0, "must be an integer"},
		{"99999999999999999999999", 0, 100, 0, "must be an integer"},
	} {
		got, err := c.Int("w", tc.v, tc.min, tc.max)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("Int(%q, %d, %d) = %d, %v; want %d", tc.v, tc.min, tc.max, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Int(%q, %d, %d) = %d, %v; want error ~%q", tc.v, tc.min, tc.max, got, err, tc.err)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Segment != 1 || pe.Text != "imageView2/2/w/200" {
			t.Errorf("Int error %#v does not name the segment", err)
		}
	}
}

func TestDecodeBase64(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "", true},
		{"aGk=", "hi", true}, // padded
		{"aGk", "hi", true},  // unpadded
		{"aGVsbG8=", "hello", true},
		{"aGVsbG8", "hello", true},
		{"YQ==", "a", true},
		{"YQ", "a", true},
		{"YWJj", "abc", true},
		{"bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn", "mybucket:thumbs/cat-200.jpg", true},
		{"aHR0cDovL2Nkbi5leGFtcGxlLmNvbS9sb2dvLnBuZw==", "http://cdn.example.com/logo.png", true},
		{"-_-_", "\xfb\xff\xbf", true}, // URL-safe alphabet
		{"+/+/", "", false},            // standard alphabet refused
		{"-_+_", "", false},
		{"ab/c", "", false},
		{"a", "", false}, // impossible length
		{"aG=k", "", false},
		{"a Gk", "", false},
		{"aGk*", "", false},
	} {
		got, err := DecodeBase64(tc.in)
		if tc.ok {
			if err != nil || string(got) != tc.want {
				t.Errorf("DecodeBase64(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		} else if err == nil {
			t.Errorf("DecodeBase64(%q) = %q, want an error", tc.in, got)
		}
	}
}

func TestBase64RoundTrip(t *testing.T) {
	for _, s := range []string{"", "a", "ab", "abc", "abcd", "mybucket:key with spaces/和中文", "\x00\xff\xfe\xfb"} {
		enc := EncodeBase64([]byte(s))
		if strings.ContainsAny(enc, "+/") {
			t.Errorf("EncodeBase64(%q) = %q uses the standard alphabet", s, enc)
		}
		if len(enc)%4 != 0 {
			t.Errorf("EncodeBase64(%q) = %q is not padded", s, enc)
		}
		for _, e := range []string{enc, strings.TrimRight(enc, "=")} {
			got, err := DecodeBase64(e)
			if err != nil || string(got) != s {
				t.Errorf("DecodeBase64(%q) = %q, %v; want %q", e, got, err, s)
			}
		}
		if enc == "" {
			continue // an empty token is not allowed in a chain
		}
		// Through a chain: the padding survives parsing as a token.
		ch, err := Parse("watermark/2/text/" + enc)
		if err != nil {
			t.Fatalf("Parse with %q: %v", enc, err)
		}
		if got, err := DecodeBase64(ch.Cmds[0].Args[2]); err != nil || string(got) != s {
			t.Errorf("via Parse: %q, %v", got, err)
		}
	}
}

func TestProcessorFunc(t *testing.T) {
	var p Processor = ProcessorFunc(func(_ context.Context, c Cmd, in Blob) (Blob, error) {
		return Blob{Data: append([]byte(c.Name+":"), in.Data...), MIME: "text/plain", Derived: true}, nil
	})
	out, err := p.Process(context.Background(), mustCmd(t, "x"), Blob{Data: []byte("in")})
	if err != nil || string(out.Data) != "x:in" || !out.Derived {
		t.Fatalf("Process = %+v, %v", out, err)
	}
	r := Registry{"x": p}
	if _, ok := r["x"]; !ok {
		t.Fatal("registry lookup")
	}
}

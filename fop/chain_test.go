package fop

import (
	"errors"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// cmd builds the Cmd the parser should return for a segment.
func cmd(idx int, raw, name string, args ...string) Cmd {
	if args == nil {
		args = []string{}
	}
	return Cmd{Name: name, Args: args, Raw: raw, Index: idx}
}

// sameCmds compares chains treating nil and empty Args alike.
func sameCmds(a, b []Cmd) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Raw != b[i].Raw || a[i].Index != b[i].Index ||
			len(a[i].Args) != len(b[i].Args) {
			return false
		}
		for j := range a[i].Args {
			if a[i].Args[j] != b[i].Args[j] {
				return false
			}
		}
	}
	return true
}

func TestParse(t *testing.T) {
	const b64 = "aHR0cDovL2Nkbi5leGFtcGxlLmNvbS9sb2dvLnBuZw=="
	for _, tc := range []struct {
		name  string
		query string
		cmds  []Cmd
		raw   string
		dl    url.Values
	}{
		{
			name:  "empty query",
			query: "",
			dl:    url.Values{},
		},
		{
			name:  "command without params",
			query: "imageInfo",
			cmds:  []Cmd{cmd(1, "imageInfo", "imageInfo")},
			raw:   "imageInfo",
			dl:    url.Values{},
		},
		{
			name:  "command with params",
			query: "imageView2/2/w/640/h/960",
			cmds:  []Cmd{cmd(1, "imageView2/2/w/640/h/960", "imageView2", "2", "w", "640", "h", "960")},
			raw:   "imageView2/2/w/640/h/960",
			dl:    url.Values{},
		},
		{
			name:  "names are case-sensitive and may hold - _ .",
			query: "ufop-demo_v1.2/x",
			cmds:  []Cmd{cmd(1, "ufop-demo_v1.2/x", "ufop-demo_v1.2", "x")},
			raw:   "ufop-demo_v1.2/x",
			dl:    url.Values{},
		},
		{
			name:  "pipe",
			query: "imageView2/2/h/200|imageInfo",
			cmds:  []Cmd{cmd(1, "imageView2/2/h/200", "imageView2", "2", "h", "200"), cmd(2, "imageInfo", "imageInfo")},
			raw:   "imageView2/2/h/200|imageInfo",
			dl:    url.Values{},
		},
		{
			name:  "escaped pipe upper case",
			query: "imageView2/2/h/200%7CimageInfo",
			cmds:  []Cmd{cmd(1, "imageView2/2/h/200", "imageView2", "2", "h", "200"), cmd(2, "imageInfo", "imageInfo")},
			raw:   "imageView2/2/h/200%7CimageInfo",
			dl:    url.Values{},
		},
		{
			name:  "escaped pipe lower case",
			query: "imageView2/2/h/200%7cimageInfo",
			cmds:  []Cmd{cmd(1, "imageView2/2/h/200", "imageView2", "2", "h", "200"), cmd(2, "imageInfo", "imageInfo")},
			raw:   "imageView2/2/h/200%7cimageInfo",
			dl:    url.Values{},
		},
		{
			name:  "mixed separators",
			query: "a|b%7Cc%7cd",
			cmds:  []Cmd{cmd(1, "a", "a"), cmd(2, "b", "b"), cmd(3, "c", "c"), cmd(4, "d", "d")},
			raw:   "a|b%7Cc%7cd",
			dl:    url.Values{},
		},
		{
			name:  "download params kept apart",
			query: "imageView2/2/w/200&e=1&token=a:b",
			cmds:  []Cmd{cmd(1, "imageView2/2/w/200", "imageView2", "2", "w", "200")},
			raw:   "imageView2/2/w/200",
			dl:    url.Values{"e": {"1"}, "token": {"a:b"}},
		},
		{
			name:  "download params after a chain, decoded",
			query: "a|b&attname=%E5%9B%BE.jpg&token=AK%3Asig%3D",
			cmds:  []Cmd{cmd(1, "a", "a"), cmd(2, "b", "b")},
			raw:   "a|b",
			dl:    url.Values{"attname": {"图.jpg"}, "token": {"AK:sig="}},
		},
		{
			name:  "plain download",
			query: "e=1&token=x",
			dl:    url.Values{"e": {"1"}, "token": {"x"}},
		},
		{
			name:  "plain download, one item",
			query: "attname=a.jpg",
			dl:    url.Values{"attname": {"a.jpg"}},
		},
		{
			name:  "k=v with slashes in the value is still k=v",
			query: "attname=a/b.jpg",
			dl:    url.Values{"attname": {"a/b.jpg"}},
		},
		{
			name:  "empty chain before download params",
			query: "&e=1",
			dl:    url.Values{"e": {"1"}},
		},
		{
			name:  "base64 padding in a fop is not k=v",
			query: "watermark/1/image/" + b64,
			cmds:  []Cmd{cmd(1, "watermark/1/image/"+b64, "watermark", "1", "image", b64)},
			raw:   "watermark/1/image/" + b64,
			dl:    url.Values{},
		},
		{
			name:  "base64 padding in a later segment",
			query: "imageView2/2/h/200|watermark/1/image/" + b64 + "&e=5",
			cmds: []Cmd{
				cmd(1, "imageView2/2/h/200", "imageView2", "2", "h", "200"),
				cmd(2, "watermark/1/image/"+b64, "watermark", "1", "image", b64),
			},
			raw: "imageView2/2/h/200|watermark/1/image/" + b64,
			dl:  url.Values{"e": {"5"}},
		},
		{
			name:  "padding right after a no-param first segment",
			query: "imageInfo|saveas/YTpi==",
			cmds:  []Cmd{cmd(1, "imageInfo", "imageInfo"), cmd(2, "saveas/YTpi==", "saveas", "YTpi==")},
			raw:   "imageInfo|saveas/YTpi==",
			dl:    url.Values{},
		},
		{
			name:  "padding after an escaped pipe",
			query: "imageInfo%7Csaveas/YTpi==",
			cmds:  []Cmd{cmd(1, "imageInfo", "imageInfo"), cmd(2, "saveas/YTpi==", "saveas", "YTpi==")},
			raw:   "imageInfo%7Csaveas/YTpi==",
			dl:    url.Values{},
		},
		{
			name:  "saveas with sign",
			query: "imageView2/2/w/200|saveas/bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn/sign/AK_EXAMPLE:w9Nm748D5BfGciOvvzYLgjpU-EQ=",
			cmds: []Cmd{
				cmd(1, "imageView2/2/w/200", "imageView2", "2", "w", "200"),
				cmd(2, "saveas/bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn/sign/AK_EXAMPLE:w9Nm748D5BfGciOvvzYLgjpU-EQ=",
					"saveas", "bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn", "sign", "AK_EXAMPLE:w9Nm748D5BfGciOvvzYLgjpU-EQ="),
			},
			raw: "imageView2/2/w/200|saveas/bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn/sign/AK_EXAMPLE:w9Nm748D5BfGciOvvzYLgjpU-EQ=",
			dl:  url.Values{},
		},
		{
			name:  "ufop alias",
			query: "ufop=demo",
			cmds:  []Cmd{cmd(1, "demo", "demo")},
			raw:   "demo",
			dl:    url.Values{},
		},
		{
			name:  "ufop alias with params, chain and download params",
			query: "ufop=demo/x/y==|imageInfo&e=9&token=t",
			cmds:  []Cmd{cmd(1, "demo/x/y==", "demo", "x", "y=="), cmd(2, "imageInfo", "imageInfo")},
			raw:   "demo/x/y==|imageInfo",
			dl:    url.Values{"e": {"9"}, "token": {"t"}},
		},
		{
			name:  "empty ufop alias is a plain download",
			query: "ufop=&e=1",
			dl:    url.Values{"ufop": {""}, "e": {"1"}},
		},
		{
			name:  "tokens are percent-decoded",
			query: "imageMogr2/thumbnail/200x300%3E",
			cmds:  []Cmd{cmd(1, "imageMogr2/thumbnail/200x300%3E", "imageMogr2", "thumbnail", "200x300>")},
			raw:   "imageMogr2/thumbnail/200x300%3E",
			dl:    url.Values{},
		},
		{
			name:  "plus is not a space, %2F does not split",
			query: "x/a+b/c%2Fd/%25",
			cmds:  []Cmd{cmd(1, "x/a+b/c%2Fd/%25", "x", "a+b", "c/d", "%")},
			raw:   "x/a+b/c%2Fd/%25",
			dl:    url.Values{},
		},
		{
			name:  "decoded %7C does not split: %257C",
			query: "x/a%257Cb",
			cmds:  []Cmd{cmd(1, "x/a%257Cb", "x", "a%7Cb")},
			raw:   "x/a%257Cb",
			dl:    url.Values{},
		},
		{
			name:  "escaped name",
			query: "image%49nfo",
			cmds:  []Cmd{cmd(1, "image%49nfo", "imageInfo")},
			raw:   "image%49nfo",
			dl:    url.Values{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := Parse(tc.query)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.query, err)
			}
			if !sameCmds(ch.Cmds, tc.cmds) {
				t.Errorf("Parse(%q).Cmds =\n  %#v\nwant\n  %#v", tc.query, ch.Cmds, tc.cmds)
			}
			if ch.Raw != tc.raw {
				t.Errorf("Raw = %q, want %q", ch.Raw, tc.raw)
			}
			if !reflect.DeepEqual(ch.Download, tc.dl) {
				t.Errorf("Download = %v, want %v", ch.Download, tc.dl)
			}
			if ch.Empty() != (len(tc.cmds) == 0) {
				t.Errorf("Empty() = %v", ch.Empty())
			}
			for _, c := range ch.Cmds {
				if c.String() != c.Raw {
					t.Errorf("String() = %q, Raw %q", c.String(), c.Raw)
				}
			}
		})
	}
}

func TestParseLongChains(t *testing.T) {
	for _, n := range []int{1, 2, 50} {
		for _, sep := range []string{"|", "%7C", "%7c"} {
			segs := make([]string, n)
			for i := range segs {
				segs[i] = "cmd" + strconv.Itoa(i) + "/p/" + strconv.Itoa(i)
			}
			q := strings.Join(segs, sep)
			ch, err := Parse(q + "&e=1")
			if err != nil {
				t.Fatalf("n=%d sep=%q: %v", n, sep, err)
			}
			if len(ch.Cmds) != n || ch.Raw != q || ch.Download.Get("e") != "1" {
				t.Fatalf("n=%d sep=%q: %d cmds, Raw %q, Download %v", n, sep, len(ch.Cmds), ch.Raw, ch.Download)
			}
			for i, c := range ch.Cmds {
				if c.Index != i+1 || c.Name != "cmd"+strconv.Itoa(i) || c.Raw != segs[i] ||
					len(c.Args) != 2 || c.Args[1] != strconv.Itoa(i) {
					t.Errorf("n=%d sep=%q: cmd %d = %#v", n, sep, i, c)
				}
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		query   string
		segment int
		text    string
		reason  string // substring
	}{
		{"a||b", 2, "", "empty segment"},
		{"|a", 1, "", "empty segment"},
		{"a|", 2, "", "empty segment"},
		{"a%7C", 2, "", "empty segment"},
		{"a|b%7c%7Cc", 3, "", "empty segment"},
		{"a/", 1, "a/", "trailing '/'"},
		{"a|imageView2/2/", 2, "imageView2/2/", "trailing '/'"},
		{"a//b", 1, "a//b", "empty token at position 2"},
		{"x|y/1//2", 2, "y/1//2", "empty token at position 3"},
		{"/a", 1, "/a", "empty token at position 1"},
		{"a|b/c|d!e", 3, "d!e", `bad command name "d!e"`},
		{"a b", 1, "a b", "bad command name"},
		{"%E5%9B%BE/1", 1, "%E5%9B%BE/1", "bad command name"},
		{"%2Fetc", 1, "%2Fetc", "bad command name"},
		{strings.Repeat("n", 129), 1, strings.Repeat("n", 129), "bad command name"},
		{"..|x", 1, "..", `bad command name ".."`},
		{"-x", 1, "-x", "bad command name"},
		{"a|b%7Cc=d", 3, "c=d", "bad command name"},
		{"a/%zz", 1, "a/%zz", `bad percent-escape in "%zz"`},
		{"a|b/%", 2, "b/%", "bad percent-escape"},
		{"a|b/x%4", 2, "b/x%4", "bad percent-escape"},
		{"ufop=demo/%zz", 1, "demo/%zz", "bad percent-escape"},
		{"a&%zz", 0, "", "bad download parameters"},
		{"e=1&%zz", 0, "", "bad query"},
		{"ufop=a&%zz", 0, "", "bad download parameters"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			ch, err := Parse(tc.query)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tc.query, ch)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.Segment != tc.segment || pe.Text != tc.text || !strings.Contains(pe.Reason, tc.reason) {
				t.Errorf("got %+v, want segment %d text %q reason ~%q", pe, tc.segment, tc.text, tc.reason)
			}
			if pe.HTTPStatus() != 400 {
				t.Errorf("status %d", pe.HTTPStatus())
			}
			msg := err.Error()
			if tc.segment > 0 && !strings.Contains(msg, "segment "+strconv.Itoa(tc.segment)) {
				t.Errorf("message %q does not name segment %d", msg, tc.segment)
			}
			if !strings.Contains(msg, tc.reason) {
				t.Errorf("message %q does not say %q", msg, tc.reason)
			}
			if len(ch.Cmds) != 0 || ch.Raw != "" || ch.Download != nil {
				t.Errorf("a failed Parse returned data: %+v", ch)
			}
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	e := &ParseError{Segment: 2, Text: "a//b", Reason: "empty token at position 2"}
	if got, want := e.Error(), `bad fop segment 2 "a//b": empty token at position 2`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &ParseError{Reason: "bad query: x"}
	if got, want := e.Error(), "bad fop: bad query: x"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"imageView2", true},
		{"a", true},
		{"A-b_c.d9", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"a b", false},
		{"a=b", false},
		{"a/b", false},
		{"a|b", false},
		{"é", false},
		{"a\x00", false},
	} {
		if got := validName(tc.name); got != tc.ok {
			t.Errorf("validName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestSplitPipes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", []string{""}},
		{"a", []string{"a"}},
		{"a|b", []string{"a", "b"}},
		{"a%7Cb%7cc", []string{"a", "b", "c"}},
		{"%7C", []string{"", ""}},
		{"a%7", []string{"a%7"}},
		{"a%", []string{"a%"}},
		{"a%7D|b", []string{"a%7D", "b"}},
		{"%257C", []string{"%257C"}},
	} {
		if got := splitPipes(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitPipes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsKV(t *testing.T) {
	for _, tc := range []struct {
		item string
		kv   bool
	}{
		{"e=1", true},
		{"ufop=demo", true},
		{"a=b/c", true},
		{"=", true},
		{"imageInfo", false},
		{"a/b=", false},
		{"a/b==", false},
		{"a|b=c", false},
		{"a%7Cb=c", false},
		{"a%7cb=c", false},
		{"", false},
	} {
		if got := isKV(tc.item); got != tc.kv {
			t.Errorf("isKV(%q) = %v, want %v", tc.item, got, tc.kv)
		}
	}
}

package fop

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"imageInfo",
		"imageView2/2/w/200",
		"imageView2/2/w/200&e=1&token=a:b",
		"imageView2/2/h/200|watermark/1/image/aHR0cDovL2Nkbi5leGFtcGxlLmNvbS9sb2dvLnBuZw==",
		"imageView2/2/h/200%7CimageInfo%7cexif",
		"imageMogr2/auto-orient/thumbnail/200x300%3E/rotate/90",
		"imageView2/2/w/200|saveas/bXlidWNrZXQ6dGh1bWJzL2NhdC0yMDAuanBn/sign/AK_EXAMPLE:w9Nm748D5BfGciOvvzYLgjpU-EQ=",
		"e=1&token=x",
		"ufop=demo/x|imageInfo&e=1",
		"ufop=",
		"&e=1",
		"a||b", "a/", "a//b", "/a", "|", "%7C", "a!b", "a/%zz", "a/%", "a%7",
		"a&%zz", "e=1&;", "x/a%257Cb", "%2e%2e", "a=b|c", "a|b=c", "a%7cb=c",
		"a\x00b", "a/\xff", "é/1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		ch, err := Parse(q)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): error %T is not a *ParseError", q, err)
			}
			if pe.HTTPStatus() != 400 || pe.Reason == "" {
				t.Fatalf("Parse(%q): bad error %+v", q, pe)
			}
			if pe.Segment < 0 || pe.Segment > strings.Count(q, "|")+strings.Count(strings.ToLower(q), "%7c")+1 {
				t.Fatalf("Parse(%q): segment %d out of range", q, pe.Segment)
			}
			if pe.Segment > 0 && !strings.Contains(q, pe.Text) {
				t.Fatalf("Parse(%q): segment text %q not in the query", q, pe.Text)
			}
			return
		}
		if ch.Download == nil {
			t.Fatalf("Parse(%q): nil Download", q)
		}
		if ch.Empty() != (len(ch.Cmds) == 0) {
			t.Fatalf("Parse(%q): Empty() = %v with %d cmds", q, ch.Empty(), len(ch.Cmds))
		}
		if (ch.Raw == "") != (len(ch.Cmds) == 0) {
			t.Fatalf("Parse(%q): Raw %q with %d cmds", q, ch.Raw, len(ch.Cmds))
		}
		if len(ch.Cmds) == 0 {
			return
		}
		// The chain is the first query item, or the value of ufop=.
		first, _, _ := strings.Cut(q, "&")
		if ch.Raw != first && "ufop="+ch.Raw != first {
			t.Fatalf("Parse(%q): Raw %q is not the first item %q", q, ch.Raw, first)
		}
		raws := make([]string, len(ch.Cmds))
		for i, c := range ch.Cmds {
			if !validName(c.Name) {
				t.Fatalf("Parse(%q): cmd %d has a bad name %q", q, i+1, c.Name)
			}
			if c.Index != i+1 {
				t.Fatalf("Parse(%q): cmd %d has Index %d", q, i+1, c.Index)
			}
			if c.Raw == "" || strings.Count(c.Raw, "/") != len(c.Args) {
				t.Fatalf("Parse(%q): cmd %d Raw %q vs %d args", q, i+1, c.Raw, len(c.Args))
			}
			if slices.Contains(c.Args, "") {
				t.Fatalf("Parse(%q): cmd %d has an empty arg: %q", q, i+1, c.Args)
			}
			raws[i] = c.Raw
		}
		if !strings.Contains(strings.ToLower(ch.Raw), "%7c") {
			if got := strings.Join(raws, "|"); got != ch.Raw {
				t.Fatalf("Parse(%q): segments join to %q, want %q", q, got, ch.Raw)
			}
		}
		// The chain alone parses to the same commands.
		again, err := Parse(ch.Raw)
		if err != nil {
			t.Fatalf("Parse(%q) ok but Parse(Raw %q): %v", q, ch.Raw, err)
		}
		if !sameCmds(again.Cmds, ch.Cmds) {
			t.Fatalf("Parse(%q) and Parse(%q) differ:\n%#v\n%#v", q, ch.Raw, ch.Cmds, again.Cmds)
		}
	})
}

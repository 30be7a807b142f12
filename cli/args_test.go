package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNormalizeArgs(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{"state", "demo", "-index", "2"}, []string{"state", "demo", "--index", "2"}},
		{[]string{"state", "demo", "-index=2"}, []string{"state", "demo", "--index=2"}},
		{[]string{"state", "demo", "-range", "1:3"}, []string{"state", "demo", "--range", "1:3"}},
		{[]string{"state", "demo", "-range=1:3"}, []string{"state", "demo", "--range=1:3"}},
		{[]string{"resize", "demo", "-num", "2"}, []string{"resize", "demo", "--num", "2"}},
		{[]string{"resize", "demo", "-num=2"}, []string{"resize", "demo", "--num=2"}},
		{[]string{"reg", "demo", "-mode=2", "-desc='html2pdf ufop'"}, []string{"reg", "demo", "--mode=2", "--desc='html2pdf ufop'"}},
		{[]string{"reg", "demo", "-mode", "2", "-desc", "x"}, []string{"reg", "demo", "--mode", "2", "--desc", "x"}},
		{[]string{"build", "demo", "-dir", "./app"}, []string{"build", "demo", "--dir", "./app"}},
		// Ordinary shorthands, double-dash flags and unknown names are left alone.
		{[]string{"resize", "demo", "-n", "2", "--num", "3", "-n=4"}, []string{"resize", "demo", "-n", "2", "--num", "3", "-n=4"}},
		{[]string{"logs", "demo", "-f", "-index", "2"}, []string{"logs", "demo", "-f", "--index", "2"}},
		{[]string{"list", "-json", "-v", "-"}, []string{"list", "-json", "-v", "-"}},
		{[]string{"state", "demo", "--index", "1"}, []string{"state", "demo", "--index", "1"}},
		{[]string{"reg", "demo", "-indexes"}, []string{"reg", "demo", "-indexes"}},
		// A description's value is not a flag.
		{[]string{"reg", "demo", "-d", "-mode", "-m", "1"}, []string{"reg", "demo", "-d", "-mode", "-m", "1"}},
		{[]string{"reg", "demo", "-desc", "-num", "-num", "1"}, []string{"reg", "demo", "--desc", "-num", "--num", "1"}},
		{[]string{"reg", "demo", "--desc", "-dir"}, []string{"reg", "demo", "--desc", "-dir"}},
		// Nothing after "--".
		{[]string{"state", "--", "-index", "1"}, []string{"state", "--", "-index", "1"}},
	} {
		assert.Equal(t, tc.want, NormalizeArgs(tc.in), "%q", tc.in)
	}
}

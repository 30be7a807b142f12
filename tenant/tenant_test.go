package tenant

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseClass(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Class
		err  string
	}{
		{"", Free, ""},
		{"free", Free, ""},
		{"paid", Paid, ""},
		{"gold", "", `unknown class "gold": want free or paid`},
	} {
		got, err := ParseClass(tc.in)
		if tc.err != "" {
			assert.EqualError(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
}

func TestFromDefaultsToFree(t *testing.T) {
	assert.Equal(t, Tenant{Class: Free}, From(context.Background()))
	ctx := With(context.Background(), Tenant{User: "alice", Class: Paid})
	assert.Equal(t, Tenant{User: "alice", Class: Paid}, From(ctx))
}

func TestLimitsOver(t *testing.T) {
	class := Limits{RPS: 10, Burst: 20, Commands: map[string]int{"imageMogr2": 2, "imageView2": 8}}
	user := Limits{RPS: 50, Commands: map[string]int{"imageMogr2": 4}}
	got := user.Over(class)
	assert.Equal(t, Limits{RPS: 50, Burst: 20, Commands: map[string]int{"imageMogr2": 4, "imageView2": 8}}, got)
	assert.Equal(t, 2, class.Commands["imageMogr2"], "the class's map is not changed")
	assert.Equal(t, class, Limits{}.Over(class))
}

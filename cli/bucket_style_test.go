package cli

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/client/clienttest"
	"github.com/qufop/qufop/control/api"
)

func TestBucketStyleVerbs(t *testing.T) {
	srv := clienttest.Start(t)
	cliEnv(t)
	t.Setenv(envAddr, srv.URL)
	t.Setenv(envAccessKey, srv.AdminCreds.AccessKey)
	t.Setenv(envSecretKey, srv.AdminCreds.SecretKey)
	dir := t.TempDir()
	_, _, err := runCLI(t, "bucket", "add", "photos", "--dir", dir)
	require.NoError(t, err)

	for _, step := range []struct {
		args []string
		out  string
	}{
		{[]string{"bucket", "styles", "photos"}, "Bucket photos has no styles: add one with qufop bucket style photos NAME CHAIN.\n"},
		{[]string{"bucket", "style", "photos", "thumb", "imageView2/2/w/200"}, "Bucket photos: style thumb = imageView2/2/w/200 (URLs /photos/KEY-thumb).\n"},
		{[]string{"bucket", "style", "photos", "info", "imageInfo"}, "Bucket photos: style info = imageInfo (URLs /photos/KEY-info).\n"},
		{[]string{"bucket", "styles", "photos"}, "Separator \"-\": URLs /photos/KEY-STYLE.\nSTYLE  CHAIN\ninfo   imageInfo\nthumb  imageView2/2/w/200\n"},
		{[]string{"bucket", "separator", "photos", "!-"}, "Bucket photos: style separator any of \"!-\" (URLs /photos/KEY!STYLE).\n"},
		{[]string{"bucket", "style", "photos", "info", "--rm"}, "Bucket photos: style info removed.\n"},
		{[]string{"bucket", "styles", "photos"}, "Separator any of \"!-\": URLs /photos/KEY!STYLE.\nSTYLE  CHAIN\nthumb  imageView2/2/w/200\n"},
		// A separator that starts with '-' is no flag.
		{[]string{"bucket", "separator", "photos", "-!"}, "Bucket photos: style separator any of \"-!\" (URLs /photos/KEY-STYLE).\n"},
		{[]string{"bucket", "separator", "photos", "-"}, "Bucket photos: style separator \"-\" (URLs /photos/KEY-STYLE).\n"},
		{[]string{"bucket", "separator", "photos", "-_"}, "Bucket photos: style separator any of \"-_\" (URLs /photos/KEY-STYLE).\n"},
		{[]string{"bucket", "separator", "photos", "!-"}, "Bucket photos: style separator any of \"!-\" (URLs /photos/KEY!STYLE).\n"},
	} {
		out, _, err := runCLI(t, step.args...)
		require.NoError(t, err, "%v", step.args)
		assert.Equal(t, step.out, out, "%v", step.args)
	}
	out, _, err := runCLI(t, "bucket", "styles", "photos", "--json")
	require.NoError(t, err)
	var st api.BucketStyles
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	assert.Equal(t, api.BucketStyles{Bucket: "photos", Separator: "!-", Styles: map[string]string{"thumb": "imageView2/2/w/200"}}, st)

	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no chain", []string{"bucket", "style", "photos", "thumb"}, "qufop bucket style photos thumb: say the chain (e.g. 'imageView2/2/w/200'), or --rm"},
		{"--rm and a chain", []string{"bucket", "style", "photos", "thumb", "imageInfo", "--rm"}, "qufop bucket style photos thumb: --rm takes no chain"},
		{"bad chain", []string{"bucket", "style", "photos", "x", "imageInfo&e=1"}, `style chain "imageInfo&e=1": no download parameters (&k=v) in a style`},
		{"bad name", []string{"bucket", "style", "photos", "a b", "imageInfo"}, `style name "a b": use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit`},
		{"rm a missing style", []string{"bucket", "style", "photos", "nope", "--rm"}, `bucket "photos" has no style "nope"`},
		{"bad separator", []string{"bucket", "separator", "photos", "#"}, `style separator "#": '#' is not allowed (use one or more of ~@$^&*()-_/!+={}[]|:;"'<>,)`},
		{"no such bucket", []string{"bucket", "styles", "nope"}, "bucket does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			require.Error(t, err)
			assert.Equal(t, tc.msg, err.Error())
		})
	}

	// Only the admin manages styles.
	t.Setenv(envAccessKey, srv.Creds.AccessKey)
	t.Setenv(envSecretKey, srv.Creds.SecretKey)
	_, _, err = runCLI(t, "bucket", "style", "photos", "x", "imageInfo")
	require.Error(t, err)
	assert.Equal(t, "only the admin manages buckets", err.Error())
}

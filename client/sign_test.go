package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/auth"
	"github.com/qufop/qufop/client"
	"github.com/qufop/qufop/control/api"
)

// TestRequestsAreDatedAndCovered: every request the client sends is signed
// with X-Qiniu-Date and verifies, and an upload's body is covered by
// X-Qiniu-Content-Sha256 even when the caller gave no sum.
func TestRequestsAreDatedAndCovered(t *testing.T) {
	creds := auth.NewCredentials()
	users := &auth.Users{}
	users.Add("alice", creds)
	type seen struct {
		date, sum string
		err       error
	}
	got := make(chan seen, 10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := auth.Verify(r, users.Lookup, time.Now())
		if err == nil {
			_, err = io.ReadAll(r.Body)
		}
		got <- seen{r.Header.Get(auth.HeaderDate), r.Header.Get(auth.HeaderSHA256), err}
		_ = json.NewEncoder(w).Encode(api.Uploaded{Version: 1})
	}))
	t.Cleanup(ts.Close)
	c := client.New(ts.URL, creds)
	ctx := context.Background()

	_, err := c.Upload(ctx, "demo", "", bytes.NewReader([]byte("a tarball")), 9, "")
	require.NoError(t, err)
	s := <-got
	require.NoError(t, s.err)
	assert.NotEmpty(t, s.date)
	assert.Equal(t, sum([]byte("a tarball")), s.sum)

	_, err = c.Register(ctx, "demo", "2", "")
	require.NoError(t, err)
	s = <-got
	require.NoError(t, s.err)
	assert.NotEmpty(t, s.date)

	// A body that cannot be read twice needs the caller's sum.
	_, err = c.Upload(ctx, "demo", "", io.MultiReader(bytes.NewReader([]byte("x"))), -1, "")
	assert.ErrorContains(t, err, "give the tarball's SHA-256")
}

package dispatch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/qufop/qufop/ufop"
)

// A UFOP step's version names the deployed version, and differs between a
// UFOP and one registered again under the same name, whose version 1 is
// other code.
func TestStepVersion(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	rec := &ufop.Record{Name: "demo", CreatedAt: t0, Deployed: 1}
	v1 := (&step{rec: rec}).Version()
	rec2 := *rec
	rec2.Deployed = 2
	v2 := (&step{rec: &rec2}).Version()
	again := &ufop.Record{Name: "demo", CreatedAt: t0.Add(time.Hour), Deployed: 1}
	v1again := (&step{rec: again}).Version()

	assert.NotEqual(t, v1, v2)
	assert.NotEqual(t, v1, v1again)
	assert.Equal(t, v2, versionOf(rec, 2), "what a version-2 instance reports is what resolving version 2 says")
}

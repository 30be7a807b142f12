package platform

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/qufop/qufop/jobspecs"
)

// --ufop-network names the network of rendered UFOP jobs; without it the
// environment's ($QUFOP_UFOP_NETWORK) stays.
func TestUFOPJobOptions(t *testing.T) {
	t.Setenv(jobspecs.EnvNetwork, "from-env")
	assert.Equal(t, "from-env", ufopJobOptions("").Network)
	assert.Equal(t, "qufop-ufops", ufopJobOptions("qufop-ufops").Network)
	t.Setenv(jobspecs.EnvNetwork, "")
	assert.Equal(t, "", ufopJobOptions("").Network)
}

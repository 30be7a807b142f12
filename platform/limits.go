package platform

import (
	"github.com/qufop/qufop/gateway"
	"github.com/qufop/qufop/ratelimit"
)

// admission is the gateway option of the per-user limits read from p (the
// users store's cache, so a change of a user's or a class's limits in the
// Keeper applies within the cache's TTL, without a restart). Nothing is
// limited until the admin sets limits: today's users see no change.
func admission(p ratelimit.Policy) gateway.Option {
	return gateway.WithAdmission(ratelimit.New(p, ratelimit.Options{}), ratelimit.Reasons...)
}

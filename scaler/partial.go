package scaler

import "errors"

// ErrPartial is wrapped by the error of a Source that could read only some
// of the gateways (one did not answer its scrape, or Prometheus reports it
// down). The figures returned beside such an error are those of the
// gateways that answered: work waiting or running at a missing gateway is
// not in them, so Pending and InFlight may be too low but not too high. A
// caller may scale up on them and must not scale down this round.
//
// A Source that could read no gateway at all returns nil figures and an
// error that does not wrap ErrPartial: nothing is known, skip the round.
var ErrPartial = errors.New("partial figures")

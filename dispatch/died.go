package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/ufop"
)

// Autopsy is what a Catalog may also be: a runtime that can say why one of
// its instances stopped (the local runtimes: the supervisor's reason, such
// as the kernel's kill for exceeding the flavor's memory).
type Autopsy interface {
	// WhyStopped waits, within ctx, for instance id of ufop name to be
	// seen stopped and says why; "" when it does not know.
	WhyStopped(ctx context.Context, name, id string) string
}

// autopsyWait bounds how long a step whose instance died waits for the
// runtime to tell why: about a supervision tick.
const autopsyWait = 3 * time.Second

// explainDeath gives the 599 of a step whose instance died under it the
// runtime's reason ("killed: out of memory (limit 64 MiB)"), so that the
// client learns what to change instead of "instance died mid-request".
// Other errors, and deaths the catalog cannot explain, are returned as
// they are.
func (d *Dispatcher) explainDeath(ctx context.Context, name string, ep cluster.Endpoint, err error) error {
	a, ok := d.catalog.(Autopsy)
	if !ok || ep.ID == "" || !errors.Is(err, ufop.ErrInstanceDied) {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, autopsyWait)
	defer cancel()
	why := a.WhyStopped(actx, name, ep.ID)
	if why == "" {
		return err
	}
	return errs.Wrap(errs.StatusProcessingFailed, err, "ufop %q: the instance running the step stopped: %s", name, why)
}

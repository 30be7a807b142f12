package platform

import (
	"context"

	"github.com/qufop/qufop/dispatch"
	"github.com/qufop/qufop/scaler"
)

// dispatchSource is the scaler's source on the embedded default: the
// dispatcher's own figures, read in process (no scrape lag).
type dispatchSource struct{ d *dispatch.Dispatcher }

func (s dispatchSource) Figures(context.Context) (map[string]scaler.Figures, error) {
	stats := s.d.Stats()
	out := make(map[string]scaler.Figures, len(stats))
	for name, st := range stats {
		out[name] = scaler.Figures{
			Pending: float64(st.Pending), InFlight: float64(st.InFlight),
			Capacity: float64(st.Capacity), Healthy: float64(st.Healthy),
			NoInstance: float64(st.NoInstanceWaiting),
		}
	}
	return out, nil
}

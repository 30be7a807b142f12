package dispatch

import (
	"strconv"

	"github.com/qufop/qufop/ufop"
)

// Version is the version of the UFOP's output a step expects before it runs:
// that of the deployed version. It implements fop.Versioner, so results of
// a UFOP get new ETags after an upgrade.
func (s *step) Version() string { return versionOf(s.rec, s.rec.Deployed) }

// versionOf names version n of rec's UFOP uniquely: the number alone would
// repeat if the UFOP were unregistered and registered again, so the
// registration time is part of it.
func versionOf(rec *ufop.Record, n int) string {
	return rec.Name + "@" + strconv.Itoa(n) + "." + strconv.FormatInt(rec.CreatedAt.UnixNano(), 36)
}

package control

import (
	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/control/api"
	"github.com/qufop/qufop/ufop"
)

// The Keeper's records are the platform's storage format; the API answers
// with the types of package api, so that the two can change apart.

// ufopView is rec as its owner sees it.
func ufopView(rec *ufop.Record) api.UFOP {
	out := api.UFOP{
		Name: rec.Name, Owner: rec.Owner, Mode: string(rec.Mode), Description: rec.Desc,
		CreatedAt: rec.CreatedAt, Current: rec.Current, Deployed: rec.Deployed, Desired: rec.Desired,
		MaxInstances: rec.MaxInstances, Versions: versionViews(rec.Versions), Flavor: flavorOf(rec),
		ScalePolicy: policyView(rec.Scale), ScaleHistory: scaleEventViews(rec.ScaleHistory),
	}
	return out
}

// publicView is another user's public UFOP: its existence and mode.
func publicView(rec *ufop.Record) api.UFOP {
	return api.UFOP{Name: rec.Name, Mode: string(rec.Mode), Description: rec.Desc}
}

// flavorOf is the flavor of the version that runs, else of the current
// one, else of the newest upload.
func flavorOf(rec *ufop.Record) string {
	for _, n := range []int{rec.Deployed, rec.Current} {
		if v := rec.Version(n); n > 0 && v != nil && v.Spec != nil {
			return v.Spec.Flavor
		}
	}
	for i := len(rec.Versions) - 1; i >= 0; i-- {
		if s := rec.Versions[i].Spec; s != nil {
			return s.Flavor
		}
	}
	return ""
}

func versionViews(vs []ufop.Version) []api.Version {
	out := make([]api.Version, 0, len(vs))
	for _, v := range vs {
		out = append(out, versionView(v))
	}
	return out
}

func versionView(v ufop.Version) api.Version {
	return api.Version{
		Version: v.N, State: string(v.State), Description: v.Desc, CreatedAt: v.CreatedAt,
		Image: v.Image, Dir: v.Dir, Spec: specView(v.Spec), Error: v.Error,
	}
}

func specView(s *ufop.Spec) *api.Spec {
	if s == nil {
		return nil
	}
	return &api.Spec{
		Image: s.Image, BuildScript: s.BuildScript, Run: s.Run, Protocol: string(s.Protocol),
		Health: s.Health, Env: s.Env, Flavor: s.Flavor, Concurrency: s.Concurrency,
		Timeout: s.Timeout.String(), KillTimeout: s.KillTimeout.String(),
	}
}

// instanceView numbers the instance from 1 and names its addresses.
func instanceView(in cluster.Instance) api.Instance {
	out := api.Instance{
		Index: in.Index + 1, ID: in.ID, Version: in.Version, State: in.State, Healthy: in.Healthy,
		Restarts: in.Restarts, Message: in.Message, Started: in.Started,
	}
	switch in.AddrKind {
	case "bridge":
		out.BridgeAddr, out.HostAddr = in.Addr, in.PublishedAddr
	case "node":
		out.NodeAddr = in.Addr
	default:
		out.HostAddr = in.Addr
	}
	return out
}

package jobspecs_test

import (
	"fmt"
	"time"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/jobspecs"
)

func ExampleUFOPJob() {
	job, err := jobspecs.UFOPJob(cluster.Workload{
		Name: "demo", Owner: "alice", Version: 3,
		Image: "127.0.0.1:5000/alice/demo:v3",
		Port:  9100, HealthPath: "/health",
		CPUs: 1, MemoryMB: 1024, Count: 2, KillTimeout: 10 * time.Second,
	}, jobspecs.DefaultOptions())
	if err != nil {
		fmt.Println(err)
		return
	}
	g := job.TaskGroups[0]
	fmt.Println(*job.ID, *g.Name, *g.Count, g.Services[0].Tags, *g.Update.Canary)

	_, err = jobspecs.UFOPJob(cluster.Workload{Name: "demo", Version: 1, Image: "alice/demo:latest", Port: 9100, HealthPath: "/health", CPUs: 1, MemoryMB: 1024}, jobspecs.DefaultOptions())
	fmt.Println(err)
	// Output:
	// ufop-demo ufop 2 [v3 ufop] 1
	// jobspecs: Image: "alice/demo:latest" uses the tag latest, which Nomad always pulls and which moves; use the version's tag, e.g. v3
}

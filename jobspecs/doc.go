// Package jobspecs renders a UFOP version (a cluster.Workload) into the Nomad
// job that runs it (github.com/hashicorp/nomad/api), ready for
// POST /v1/jobs. UFOPJob validates and renders; Marshal gives the stable,
// indented JSON kept in testdata/*.golden.json (go test -run Golden
// -update regenerates them).
//
// # The rendered job
//
//	job "ufop-<name>"                      type service, datacenters ["*"]
//	  meta  qufop.ufop, qufop.owner, qufop.version
//	  group "ufop"                         count = Workload.Count (within Scaling)
//	    scaling { min, max, enabled = false }   when Workload.Scaling is set
//	    network { port "http" { to = Workload.Port } }   dynamic host port → 9100
//	    service "ufop-<name>"              provider consul, port "http",
//	                                       tags ["v<N>", "ufop"],
//	                                       canary_tags ["v<N>", "ufop", "canary"]
//	      check "http-alive"               http, path = HealthPath, interval, timeout
//	      (or check "tcp-alive"            tcp, interval, timeout: no HealthPath)
//	    update   { canary, max_parallel, health_check = "checks",
//	               min_healthy_time = WarmUp, healthy_deadline,
//	               progress_deadline, auto_revert, auto_promote }
//	    restart  { attempts, interval, delay, mode = "delay" }
//	    reschedule { unlimited, exponential delay … max_delay }
//	    task "ufop"                        driver docker
//	      config { image = <version tag>, ports = ["http"], force_pull = false,
//	               labels = the meta above }
//	      env    Workload.Env + PORT_HTTP = Workload.Port
//	      kill_signal = "SIGTERM", kill_timeout = Workload.KillTimeout
//	      shutdown_delay = Options.ShutdownDelay
//	      resources { cpu = CPUs × 1000 MHz, memory = MemoryMB,
//	                  memory_max = MemoryMB × MemoryMaxFactor }
//	      meta  (as the job's; Nomad exports it as NOMAD_META_*)
//
// # Relation to the recorded job (shared/reference/api-transcripts/01)
//
// The transcript registered ufop-demo on Nomad 1.6.5 from HCL through
// `nomad job run -output`, i.e. through the same api structs: Marshal's
// output has the same field names, order and encoding (durations in
// nanoseconds, unset pointers null), minus the {"Job": …} wrapper, plus the
// fields newer api versions added (Nomad's JSON decoding should ignore the
// ones 1.6.5 does not know; not yet checked against a real agent).
//
// What matches: job ID/Name ufop-<name>, type service, datacenters ["*"],
// one group "ufop" with the count, a dynamic port labelled "http", a
// group-level Consul service ufop-<name> on port "http" tagged v<N> with an
// HTTP check named "http-alive" (the Consul check name seen in scenario 7),
// a docker task with a versioned image and force_pull = false, a task-level
// kill_timeout and shutdown_delay (scenario 5 shows the order: deregister,
// shutdown_delay, signal, kill_timeout), and an update block with
// health_check = "checks", min_healthy_time, healthy_deadline,
// auto_revert = true and canaries that wait for a manual promotion
// (scenario 3).
//
// What we chose differently, and why:
//
//   - Networking. The transcript ran busybox with network_mode = "host" on
//     ${NOMAD_PORT_http}. A UFOP listens on 9100 in its container (DESIGN),
//     so we keep Docker's bridge network and map the dynamic host port to it
//     (port "http" { to = 9100 }, config.ports = ["http"]); PORT_HTTP says
//     the port, as on the local orchestrator. The Consul service advertises
//     the host address and dynamic port, which is what gateways dial.
//   - No command/args: the builder's image has the CMD (/bin/sh -c <run>).
//   - A workload without a HealthPath (a Qiniu v1 program: POST /uop on
//     9100, no health endpoint; ufop.yaml without a health key) gets a
//     Consul TCP check "tcp-alive" on the service's port instead of the
//     HTTP check, with the same interval and timeout: the instance passes
//     once its port accepts connections. Everything else in the job is
//     the same. An HTTP check of some other path would not do: Consul
//     counts only 2xx (and 429, as warning) as alive, and such a program
//     answers 404 to anything but /uop. Caveat: on a node whose address is
//     on 127.0.0.0/8 (a `nomad agent -dev -bind 127.0.0.1`), Consul dials
//     the host port on loopback, where Docker's userland proxy accepts for
//     the container before the program listens; the check then passes as
//     soon as the container runs. On a node address outside 127.0.0.0/8
//     Docker's iptables rules forward the connection to the container,
//     which refuses it until the program listens.
//   - The update block is on the group, not the job. Nomad merges a job-level
//     block into the groups anyway, but then reads the job-level one back
//     with everything but max_parallel zeroed (scenario 1.2); on the group it
//     reads back as written. progress_deadline is explicit (scenario 4: with
//     the default 10 m an unhealthy canary does not fail the deployment
//     before then; 0 fails it at healthy_deadline).
//   - Canaries. The transcript used canary = 1, and so does DefaultOptions:
//     one instance of the new version starts next to the old ones, the
//     upgrade promotes it once healthy, then the rest are replaced
//     max_parallel at a time. CanaryAll (canary = count, blue/green: every
//     old instance serves until the promotion) costs twice the resources
//     during an upgrade; on a 2-core Nomad dev node the 2nd and 3rd
//     canaries of a 3-instance UFOP were never placed. Options.Canary = k
//     gives k canaries, CanaryAll blue/green,
//     NoCanary a plain rolling update. canary is fixed when the job is
//     registered and a scale does not change it, so whoever registers an
//     upgrade with PreserveCounts must render it with the current count.
//     A count-only change or a first registration places no canaries
//     (scenario 1.7), so count 0 is fine. canary_tags add "canary" so the
//     Catalog can tell unpromoted instances apart (without them a canary
//     carries the normal tags, scenario 3.6); the version tag is the same.
//   - kill_signal = "SIGTERM" (Nomad's default is SIGINT) so a UFOP drains
//     on the signal Docker would send; the transcript's busybox ignored it
//     and was killed at kill_timeout. kill_timeout comes from ufop.yaml
//     (default 5 s); a value over the clients' max_kill_timeout (default
//     30 s, Options.MaxKillTimeout) is refused instead of being cut short.
//   - resources from the flavor: cpu = cores × 1000 MHz, memory, and
//     memory_max = memory × 1.5 (oversubscription; Nomad ignores it with a
//     warning where the scheduler does not allow it). The transcript set
//     only cpu = 50, memory = 32.
//   - restart (mode "delay": a crashing instance keeps being restarted on
//     its node instead of failing the allocation) and reschedule (unlimited,
//     exponential) are explicit rather than server defaults, so the golden
//     files show the whole policy.
//   - meta (qufop.ufop, qufop.owner, qufop.version) on the job and the task,
//     and the same as Docker labels, the names the builder and the local
//     orchestrator use.
//   - No image_pull_timeout, no network_mode, no priority, node pool or
//     constraints: server defaults (Nomad adds the ${attr.consul.version}
//     constraint itself).
//   - Images must carry an explicit tag other than latest (or a digest):
//     the docker driver pulls :latest even with force_pull = false, which
//     fails without a reachable registry, and Nomad does not reject it at
//     registration (scenario 6.10), so we do.
package jobspecs

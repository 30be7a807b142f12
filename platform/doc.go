// Package platform wires the platform's parts into the roles the qufop
// binary runs:
//
//   - Dev: the whole platform on one machine on embedded defaults (local
//     buckets, a file KV, UFOPs as Docker containers or processes, the
//     builder, the management API and the gateway on one listener);
//   - Gateway: the data plane, with UFOP steps through Consul when asked;
//   - Builder: the control plane at scale (management API, Docker builds
//     pushed to a registry, records in Consul KV, UFOPs as Nomad jobs).
//
// Package cli turns flags into the Configs here and prints what the roles
// report; nothing here reads flags. Environment variables are read only by
// the Nomad, Consul and Docker API clients' own defaults (NOMAD_ADDR,
// CONSUL_HTTP_ADDR, DOCKER_HOST, ...).
package platform

output "server" {
  description = "Files of a server machine (Nomad and Consul servers, no Docker): nomad_hcl (<paths.nomad_config>/nomad.hcl), consul_hcl (<paths.consul_config>/consul.hcl), nomad_service and consul_service (systemd units); docker_daemon_json is null. Without gossip keys (see gossip)."
  value       = local.server

  precondition {
    condition     = length(local.server_addresses) == 0 || length(local.server_addresses) == var.server_count
    error_message = "retry_join lists ${length(local.server_addresses)} server addresses for server_count = ${var.server_count}: list every server (or use a cloud auto-join string)."
  }
  precondition {
    condition     = length(local.server_addresses) == length(distinct(local.server_addresses))
    error_message = "retry_join lists a server address twice."
  }
}

output "clients" {
  description = "Per client class (node_class): count, node_pool, host_volumes (name => path) and the files nomad_hcl, consul_hcl, docker_daemon_json (/etc/docker/daemon.json), nomad_service, consul_service. Without gossip keys (see gossip)."
  value       = local.clients

  precondition {
    condition     = alltrue([for c in values(var.client_classes) : c.node_pool == "default" || contains(keys(var.node_pools), c.node_pool)])
    error_message = "Every client class's node_pool must be \"default\" or a key of node_pools (${join(", ", keys(var.node_pools))})."
  }
  precondition {
    condition     = !var.registry_tls || var.registry_address != null
    error_message = "registry_tls = true needs registry_address (the host:port of the registry's TLS certificate)."
  }
}

output "node_pool_specs" {
  description = "Per node pool, its spec for `nomad node pool apply` (clients also create their pool, without a description, when they register)."
  value       = local.node_pool_specs
}

output "gossip" {
  description = "The gossip key files, null without keys: nomad_hcl (<paths.nomad_config>/gossip.hcl, servers only) and consul_hcl (<paths.consul_config>/gossip.hcl, every machine)."
  sensitive   = true
  value = {
    nomad_hcl  = local.nomad_gossip_hcl
    consul_hcl = local.consul_gossip_hcl
  }
}

output "server_cloud_init" {
  description = "cloud-init user data (#cloud-config) of a server machine: writes the server files and gossip keys, installs Nomad and Consul, starts them. Sensitive: it holds the gossip keys."
  sensitive   = true
  value       = local.server_cloud_init
}

output "client_cloud_init" {
  description = "Per client class, cloud-init user data (#cloud-config) of its machines: writes the class's files and Consul's gossip key, installs Docker, Nomad and Consul, makes the host volumes' folders, starts the agents. Sensitive: it holds the gossip key."
  sensitive   = true
  value       = local.client_cloud_init
}
